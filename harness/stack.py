"""Deploy what the tests run against: the CustomJob stack(s) and an MLflow tracking server.

The stack is whatever the settings name: kustomize directories (the
packaged stub, a platform team's ``config/default``, an overlay of the stub),
rendered with ``kubectl kustomize`` exactly as ``kubectl apply -k`` would,
with every container image whose repository matches a configured image
replaced by the freshly built (and delivered) reference. CRDs are applied
first and waited Established; then everything else, and every Deployment in
the rendered manifests is waited for. The in-cluster tracking server
(:mod:`harness.tracking.incluster`) is applied with the rest, reached by pods
through Service DNS and by the host through the kind port mapping (kind) or a
supervised ``kubectl port-forward`` (existing clusters).

Every Namespace the stack creates is labelled as the harness's own; on an
existing cluster, applying into a namespace that exists without that label is
refused. Re-applying is skipped when a hash of the rendered manifests matches
what the cluster already runs (a warm, reused cluster). On an existing cluster
every session applies the same shared stack, so its digest goes on the
session's Lease first, and a session whose stack differs from a live session's
stops there (:meth:`harness.sessionlease.SessionLease.claim_stack`).
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import _exec, clusterobjects, imagerefs, sessionlease
from harness._errors import HarnessError
from harness._waiting import Probe, wait_for
from harness.clusters import MANAGED_BY, MANAGED_BY_LABEL, Cluster
from harness.ports import free_port
from harness.tracking import incluster
from harness.workloads import stub

__all__ = ["Stack", "deploy_stack", "instances_of", "jobs_still_held", "let_the_controller_release_its_jobs",
           "render_stack", "replace_images", "trust_tracking_uri"]

STACK_MARKER = "mlflow-crd-harness-stack"
STACK_MARKER_NAMESPACE = "kube-system"
"""Where the stack's marker ConfigMap (the digest of what was applied) lives on a cluster the harness created."""


@dataclass(frozen=True)
class Stack:
    """A deployed stack: where MLflow answers for the host and for pods."""

    cluster: Cluster
    tracking_uri: str          # from this host
    pod_tracking_uri: str      # from pods
    namespaces: tuple[str, ...] = ()
    """Namespaces of the stack (controller, tracking server): collected into evidence bundles."""
    deployments: tuple[str, ...] = ()
    """``namespace/name`` of every Deployment waited for."""
    redeployed: bool = True
    forward: _exec.Popen[bytes] | None = field(default=None, compare=False, repr=False)
    cluster_objects: tuple[str, ...] = ()
    """On an existing cluster: the stack's cluster-scoped objects this session created (``Kind/name``), left
    in place at the end, as other sessions on the cluster may use them (:mod:`harness.clusterobjects`)."""

    @property
    def controllers(self) -> tuple[tuple[str, str], ...]:
        """(namespace, name) of the stack's Deployments other than the tracking server."""
        pairs = (tuple(ref.split("/", 1)) for ref in self.deployments)
        return tuple((ns, name) for ns, name in pairs if ns != incluster.MLFLOW_NAMESPACE)


_IMAGE_FLAG = re.compile(r"^(--[A-Za-z0-9-]*image=)(.+)$")
"""An operator's flag naming an image it starts (``--pytorch-init-container-image=alpine:3.10``)."""


def replace_images(docs: list[dict[str, Any]], images: Mapping[str, str]) -> int:
    """Point every container whose image repository is a key of ``images`` at its value; return the count.

    Operators name the images *they* start in flags (Kubeflow's
    ``--pytorch-init-container-image=``); a container argument ``--<...>image=REF``
    whose repository is a key is swapped the same way, so those images reach
    the nodes like the operator's own.
    """
    swapped = 0
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec") if isinstance(doc.get("spec"), dict) else None
        if not isinstance(spec, dict):
            continue
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            repo = imagerefs.repository(str(c.get("image", "")))
            if repo in images:
                c["image"] = images[repo]
                c["imagePullPolicy"] = "IfNotPresent"
                swapped += 1
            for key in ("command", "args"):
                for i, arg in enumerate(c.get(key) or []):
                    match = _IMAGE_FLAG.match(str(arg))
                    if match and imagerefs.repository(match.group(2)) in images:
                        c[key][i] = match.group(1) + images[imagerefs.repository(match.group(2))]
                        swapped += 1
    return swapped


ALLOWED_TRACKING_URIS_ENV = "CUSTOMJOB_ALLOWED_TRACKING_URIS"
"""The controller's tracking-server allowlist (crds/manager/deployment.yaml)."""


def trust_tracking_uri(docs: list[dict[str, Any]], uri: str) -> list[str]:
    """Add the session's tracking server to every controller allowlist in ``docs``; return what was changed.

    The controller calls only listed servers (it closes runs there, with its
    token). The stack's own default lists the in-cluster server; an external
    or port-mapped server of this session is added here, in the rendered
    manifests, never in the user's files. ``*`` (any) is left alone.
    """
    parts = urllib.parse.urlsplit(uri)
    origin = f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    changed = []
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        for container in ((doc.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or ():
            for env in container.get("env") or ():
                if env.get("name") != ALLOWED_TRACKING_URIS_ENV or "value" not in env:
                    continue
                entries = [e.strip() for e in str(env["value"]).split(",") if e.strip()]
                if "*" in entries or origin in entries or uri.rstrip("/") in entries:
                    continue
                env["value"] = ",".join([*entries, origin])
                changed.append(f"{doc['metadata'].get('namespace', 'default')}/{doc['metadata']['name']}")
    return changed


def render_stack(kube_kustomize: Callable[[Path], str], dirs: Sequence[Path],
                 images: Mapping[str, str]) -> list[dict[str, Any]]:
    """All documents of ``dirs`` (kustomize), images replaced; each configured image must be used."""
    docs: list[dict[str, Any]] = []
    for d in dirs:
        if not (d / "kustomization.yaml").is_file() and not (d / "kustomization.yml").is_file():
            raise HarnessError(f"stack directory {d} has no kustomization.yaml (setting stack)")
        docs += [doc for doc in yaml.safe_load_all(kube_kustomize(d)) if doc]
    for repo, ref in images.items():
        if replace_images(docs, {repo: ref}) == 0:
            raise HarnessError(f"image {repo} is to be delivered to the stack (setting images), but no container "
                               f"in {[str(d) for d in dirs]} uses it; fix the image's repository, set "
                               "deliver = false for an image that is only built FROM, or fix the manifests")
    for doc in docs:
        if doc.get("kind") == "Namespace":
            doc.setdefault("metadata", {}).setdefault("labels", {})[MANAGED_BY_LABEL] = MANAGED_BY
    return docs


def _check_namespaces_are_ours(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    """On a cluster we did not create, only namespaces we created (or labelled earlier) are touched."""
    wanted = {d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace"}
    wanted |= {d["metadata"]["namespace"] for d in docs if d.get("metadata", {}).get("namespace")}
    for ns in sorted(wanted):
        labels = cluster.kube.namespace_labels(ns)
        if labels is not None and labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            raise HarnessError(f"namespace {ns} exists on {cluster.name} without the label "
                               f"{MANAGED_BY_LABEL}={MANAGED_BY}: the harness does not install into namespaces it "
                               "does not own. Use another namespace in your overlay, or label it if it is a leftover "
                               "of the harness")


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=True)


def deploy_stack(
    cluster: Cluster,
    *,
    stack_dirs: Sequence[Path],
    images: Mapping[str, str],
    tracking: str = "in-cluster",
    tracking_image: str | None = None,
    tracking_pod_uri: str | None = None,
    timeout: float = 300,
    log: Callable[[str], None] = print,
    cluster_objects: str = "refuse",
) -> Stack:
    """Apply the stack and (unless external) the tracking server; wait until all are ready.

    ``images`` maps a repository used in the manifests to the reference pods
    must run (already delivered to the cluster).
    """
    kube = cluster.kube
    docs = render_stack(kube.kustomize, stack_dirs, images)
    session_pod_uri = incluster.POD_URI if tracking == "in-cluster" else (tracking_pod_uri or tracking)
    for ref in trust_tracking_uri(docs, session_pod_uri):
        log(f"stack: {ref} may call this session's tracking server {session_pod_uri}")
    host_port = cluster.mlflow_host_port or free_port()
    mlflow_docs: list[dict[str, Any]] = []
    if tracking == "in-cluster":
        if tracking_image is None:
            raise HarnessError("the in-cluster tracking server needs its image (tracking_image)")
        # The same manifests from every session on a shared cluster: one session's apply must not roll the
        # server (and break the port-forwards) of another.
        mlflow_docs = incluster.mlflow_server_manifests(tracking_image, cluster.mlflow_host_port)
        mlflow_docs[0]["metadata"]["labels"][MANAGED_BY_LABEL] = MANAGED_BY
    all_docs = docs + mlflow_docs
    # What this session would make the cluster run, whoever made which object first: every session on a shared
    # cluster renders the same text for the same stack (images by digest, the tracking server's allowed hosts the
    # same for all). A session's own external tracking server in the controller's allowlist counts too: its apply
    # would replace another session's list.
    stack_digest = hashlib.sha256(_dump(all_docs).encode()).hexdigest()[:16]
    shared = cluster.shared
    created: list[str] = []
    if shared:
        _check_namespaces_are_ours(cluster, all_docs)
        # Before anything is applied: someone else's CRDs and cluster RBAC are used or refused, never overwritten.
        decided = clusterobjects.plan(all_docs, kube.get_object, label=(MANAGED_BY_LABEL, MANAGED_BY),
                                      policy=cluster_objects, cluster=cluster.name)
        for ref in decided.used:
            log(f"stack: using the cluster's own {ref} as it is (not applied)")
        for ref in decided.created:
            log(f"stack: creating {ref}, labelled {MANAGED_BY_LABEL}={MANAGED_BY}; left in place at the end "
                "(cluster-scoped objects are shared by every session on the cluster)")
        all_docs, created = decided.apply, decided.created
        lease = sessionlease.held(kube)
        if lease is not None:  # last before applying: a session whose stack differs from a live one's stops here
            lease.claim_stack(stack_digest)
            log(f"stack: digest {stack_digest}, named on this session's Lease; no live session runs another stack")
    digest = hashlib.sha256(_dump(all_docs).encode()).hexdigest()[:16]
    # A cluster of this session's alone keeps a marker of what it runs (a warm re-run skips the apply); a shared
    # one is always re-applied: another session may have changed it meanwhile.
    marker = kube.read_config_map(STACK_MARKER_NAMESPACE, STACK_MARKER) if not shared else None
    up_to_date = (marker or {}).get("digest") == digest

    if up_to_date:
        log(f"stack: manifests unchanged (digest {digest}); not re-applying")
    else:
        crd_docs = [d for d in all_docs if d["kind"] == "CustomResourceDefinition"]
        rest = [d for d in all_docs if d["kind"] != "CustomResourceDefinition"]
        # One kubectl for everything (a loop's re-apply: one process and round trip less, ~0.4 s here), unless
        # an object of a kind these CRDs define is among the rest: that one can only go once its CRD is served.
        first, after = (crd_docs, rest) if instances_of(crd_docs, rest) else (crd_docs + rest, [])
        kube.apply(_dump(first), force=not shared)
        for crd in crd_docs:
            kube.wait_crd_established(crd["metadata"]["name"])
        if after:
            kube.apply(_dump(after), force=not shared)
    deployments = [f"{d['metadata'].get('namespace', 'default')}/{d['metadata']['name']}"
                   for d in all_docs if d.get("kind") == "Deployment"]
    for ref in deployments:
        ns, name = ref.split("/", 1)
        kube.wait_deployment_available(ns, name, timeout=timeout)
    namespaces = tuple(sorted({ref.split("/", 1)[0] for ref in deployments}))

    forward = None
    if tracking == "in-cluster":
        if cluster.mlflow_host_port is None:
            forward = incluster.port_forward(cluster, host_port, log)
        tracking_uri = f"http://127.0.0.1:{host_port}"
        pod_uri = incluster.POD_URI
        try:
            incluster.wait_tracking_api(tracking_uri, timeout=timeout)
        except BaseException:
            if forward is not None:
                _exec.stop(forward)
            raise
    else:
        tracking_uri, pod_uri = tracking, tracking_pod_uri or tracking
        incluster.wait_tracking_api(tracking_uri, timeout=timeout)
    if not up_to_date and not shared:
        kube.write_config_map(STACK_MARKER_NAMESPACE, STACK_MARKER, {"digest": digest})
    return Stack(cluster=cluster, tracking_uri=tracking_uri, pod_tracking_uri=pod_uri, namespaces=namespaces,
                 deployments=tuple(deployments), redeployed=not up_to_date, forward=forward,
                 cluster_objects=tuple(created))


def instances_of(crds: Sequence[Mapping[str, Any]], docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """``kind/name`` of each document whose kind one of ``crds`` defines (group and kind compared)."""
    defined = {(str((c.get("spec") or {}).get("group")), str(((c.get("spec") or {}).get("names") or {}).get("kind")))
               for c in crds}
    return [f"{d['kind']}/{(d.get('metadata') or {}).get('name', '?')}" for d in docs
            if (str(d.get("apiVersion", "")).split("/")[0], str(d.get("kind"))) in defined]


def jobs_still_held(kube: Any) -> Probe[None]:
    """The controller's Jobs that are going (deleted, or in a namespace being deleted) but still hold its
    outcome finalizer: while there are any, the controller must stay."""
    terminating = {n.metadata.name for n in kube.core.list_namespace().items if n.metadata.deletion_timestamp}
    jobs = kube.batch.list_job_for_all_namespaces(label_selector=stub.CUSTOMJOB_JOB_LABEL).items
    held = [f"{j.metadata.namespace}/{j.metadata.name}" for j in jobs
            if stub.OUTCOME_FINALIZER in (j.metadata.finalizers or ())
            and (j.metadata.deletion_timestamp or j.metadata.namespace in terminating)]
    return Probe(not held, f"held by the controller: {', '.join(sorted(held)) or 'none'}")


def let_the_controller_release_its_jobs(kube: Any, timeout: float = 180) -> None:
    """Before the controller goes: wait until no Job being deleted, or in a namespace being deleted, still holds
    its finalizer.

    Test namespaces are deleted in the background; a Job there keeps the
    controller's finalizer until the controller has recorded its outcome
    (and closed its run). Removing the controller first would leave those
    namespaces Terminating on a cluster that is not ours. The namespace
    controller marks their Jobs deleted only some time after the namespace
    itself, so a Job of a Terminating namespace counts before it is marked.
    """
    wait_for(lambda: jobs_still_held(kube), what="the controller to release the Jobs of deleted namespaces",
             timeout=timeout, interval=2.0, hint="the customjob controller must be running; its log says why it "
             "holds them")

