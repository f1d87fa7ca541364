"""The ``kind`` cluster provider: create or reuse a kind cluster, and delete only what we created.

A cluster is reused only when its *fingerprint* matches: a hash of the kind
version, the node image id and the kind config (with the host port left out,
since it is chosen per cluster). The fingerprint, who created the cluster and
its MLflow host port live in a ConfigMap inside the cluster
(``kube-system/mlflow-crd-harness``), so they travel with the cluster itself.

A copy of that marker is also kept on the host (in the cache directory), so a
cluster whose node was stopped (a Docker restart, a rebooted CI machine) is
still known to be ours and is recreated rather than reported as foreign. The
host copy names the node containers it was written for, so a stale copy never
claims a same-named cluster someone made later; it is written (as
``creating``, with the session's owner token) before ``kind create``, so a
create killed mid-way leaves a node the next session may remove.

A same-named cluster without either marker was not made by the harness: it is
never adopted or deleted; the user is told to pick another name.

While ``kind create`` runs, an optional *preload* (the stack's images) goes
into the nodes as soon as their containerd is configured for good: kind
restarts containerd while it writes its configuration, and only then does
kubeadm write the control plane's static Pod manifests, so the first
manifest on the control-plane node is the signal. Loading an image is disk
and I/O work; starting the control plane is mostly CPU: on 2 cores they
overlap well. Delivery after creation still verifies every node, so a
preload that failed costs time, never correctness.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from harness import _exec, dockercli, owners, toolchain
from harness._errors import ConfigError, HarnessError, WaitTimeout
from harness._waiting import Probe, wait_for
from harness.cachedir import cache_dir
from harness.clusters import Cluster, ProviderContext
from harness.clusters.kind_cli import KindCluster, kind_config, node_container_ids
from harness.delivery import KindLoad, Route
from harness.envflags import env_flag
from harness.findings import Finding
from harness.kubeapi import Kube
from harness.options import Settings
from harness.ports import free_port
from harness.registry import lending
from harness.registry.local import KIND_NETWORK

if TYPE_CHECKING:
    from harness.registry import LocalRegistry
    from harness.timing import Phases
    from harness.versions import Release

__all__ = ["KIND_LOAD", "KUBELET_SYNC_PATCH", "KindProvider", "cgroupfs_driver_wanted", "check_kind_tools",
           "check_node_image", "cluster_fingerprint", "delete_cluster", "forget_cluster", "is_ours",
           "merge_kind_config", "nodes_configured", "reuse_refusal", "with_workers"]

MARKER_NAMESPACE = "kube-system"
MARKER_NAME = "mlflow-crd-harness"

KUBELET_SYNC_PATCH = "kind: KubeletConfiguration\nsyncFrequency: 10s\n"
"""kubeadm patch for every kind node we create: the kubelet re-syncs each pod every 10 s, not every minute.

A Secret or ConfigMap volume follows its object only at the pod's next sync.
Operators that write their own webhook certificate into a mounted Secret
(Kubeflow's training-operator, cert-controller in general) are not ready until
then: measured here, 128 s from pod start to Ready with the default, of which
~110 s waiting for the certificate files. The cost is a pod sync every 10 s on
a node running a handful of pods. Part of the cluster fingerprint."""


def cluster_fingerprint(kind_version: str, node_image_id: str, config: dict[str, object]) -> str:
    """Hash of everything that makes two clusters interchangeable (host port excluded)."""
    neutral = json.loads(json.dumps(config))
    for node in neutral.get("nodes", []):
        for mapping in node.get("extraPortMappings", []):
            mapping["hostPort"] = 0
    text = "\n".join([kind_version, node_image_id, yaml.safe_dump(neutral, sort_keys=True)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


KIND_LOAD = "kind load"
"""The marker's ``delivery`` for sessions whose images go in by ``kind load``."""


def reuse_refusal(marker: dict[str, str] | None, *, fingerprint: str, delivery: str, reuse: bool) -> str | None:
    """Why a running cluster of ours with this marker is not reused by this session; None if it is.

    The delivery route counts as much as the fingerprint: a node that pulled an image from a registry
    and is then given the same image id by ``kind load`` lists the loaded name in ``ctr`` while the
    kubelet cannot see it (containerd 2.4's CRI; the pod goes to ``ErrImagePull`` for
    ``docker.io/library/<name>``). A marker from before the route was recorded cannot tell, and is reused.
    """
    if not reuse:
        return "reuse disabled"
    if marker is None:
        return "its marker cannot be read"
    if marker.get("fingerprint") != fingerprint:
        return f"fingerprint {marker.get('fingerprint')} != {fingerprint}"
    recorded = marker.get("delivery")
    if recorded is not None and recorded != delivery:
        return (f"its images came by {recorded}, this session's come by {delivery}: a node given one image id "
                "both ways can lose the kind-loaded name from the kubelet's view (docs/limits.md); one cluster "
                "name per route keeps both")
    return None


def host_marker_path(name: str) -> Path:
    """The host-side copy of a cluster's marker (outside the clone, like the other caches)."""
    return cache_dir("clusters") / f"{name}.json"


def read_host_marker(name: str) -> dict[str, str] | None:
    try:
        data = json.loads(host_marker_path(name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def forget_cluster(name: str) -> None:
    """Drop the host marker once the harness deleted the cluster."""
    host_marker_path(name).unlink(missing_ok=True)


def delete_cluster(kind: KindCluster, *, settle: float = 0.0, log: Callable[[str], None] = print) -> None:
    """``kind delete`` and forget the host marker: how the harness removes a cluster of its own.

    When it was the last kind cluster, the user's registries the harness joined to
    the ``kind`` network leave it again (:func:`harness.registry.lending.return_lent`).

    ``settle`` > 0 after an interrupted ``kind create``: the Docker daemon may
    still be finishing a ``docker run`` that kind issued before it died, so a
    node container can appear *after* the first delete. Such late nodes are
    deleted until none has appeared for ``settle`` seconds. The host marker is
    dropped only once no node is left; otherwise it stays (``creating``, with
    this session as owner) and the next session removes the rest.
    """
    kind.delete()
    if settle > 0:
        quiet_since = [time.monotonic()]

        def probe() -> Probe[None]:
            if node_container_ids(kind.name):
                kind.delete()
                quiet_since[0] = time.monotonic()
                return Probe(False, "a late node container appeared; deleted it")
            quiet = time.monotonic() - quiet_since[0]
            return Probe(quiet >= settle, f"no node container for {quiet:.0f} s")

        with contextlib.suppress(WaitTimeout):
            wait_for(probe, what=f"no late node of {kind.name} to appear", timeout=settle * 6, interval=0.5)
    if not node_container_ids(kind.name):
        forget_cluster(kind.name)
    if lending.lent() and not kind.all_clusters():
        lending.return_lent(log)


def host_marker_owns(marker: dict[str, Any] | None, node_ids: list[str]) -> bool:
    """Whether the host marker proves that *these* node containers are the harness's.

    A marker alone is not proof: a cluster the harness deleted by hand-off (or
    lost track of) may since have been re-made under the same name by someone
    else. A complete marker names the node containers it was written for; a
    ``creating`` one (written before ``kind create``) counts only if the
    session that wrote it is gone — a create that was killed mid-way, whose
    half-made node has no in-cluster marker yet.
    """
    if not marker or not node_ids:
        return False
    if marker.get("state") == "creating":
        return not owners.is_alive(str(marker.get("owner", "")))
    return set(node_ids) <= set(marker.get("nodes") or [])


def _node_running(kind: KindCluster) -> bool:
    proc = _exec.run(["docker", "inspect", "--format", "{{.State.Running}}", kind.control_plane],
                     check=False, timeout=30)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def _read_cluster_marker(kind: KindCluster, kubectl_bin: Path) -> tuple[Kube | None, dict[str, str] | None]:
    """(client, marker) of a running cluster; (None, None) if its API does not answer."""
    try:
        kind.export_kubeconfig()
        kube = Kube(kind.kubeconfig, kubectl_bin)
        return kube, kube.read_config_map(MARKER_NAMESPACE, MARKER_NAME)
    except Exception:  # an unreachable API looks like many exception types; all mean "cannot tell"
        return None, None


def merge_kind_config(ours: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """The user's kind config merged into ours: theirs wins, except where ours must stay.

    ``nodes``: theirs (e.g. two workers) with our port mapping added to the
    first control-plane node; ``containerdConfigPatches`` and
    ``kubeadmConfigPatches``: ours then theirs; any other key: theirs.
    """
    if not extra:
        return ours
    merged = {**ours, **{k: v for k, v in extra.items() if k not in ("kind", "apiVersion")}}
    our_cp = ours["nodes"][0]
    nodes = [dict(n) for n in extra.get("nodes") or [{"role": "control-plane"}]]
    control_planes = [n for n in nodes if n.get("role", "control-plane") == "control-plane"]
    if not control_planes:
        raise HarnessError("kind-config: nodes must include a control-plane node")
    first = control_planes[0]
    first["extraPortMappings"] = [*our_cp["extraPortMappings"], *first.get("extraPortMappings", [])]
    merged["nodes"] = nodes
    for key in ("containerdConfigPatches", "kubeadmConfigPatches"):
        if key in ours or key in extra:
            merged[key] = [*ours.get(key, []), *extra.get(key, [])]
    return merged


def is_ours(kind: KindCluster, kubectl_bin: Path) -> bool:
    """True if the cluster carries our marker, or the host marker names its very node containers."""
    if host_marker_owns(read_host_marker(kind.name), node_container_ids(kind.name)):
        return True
    _kube, marker = _read_cluster_marker(kind, kubectl_bin) if _node_running(kind) else (None, None)
    return marker is not None


class _Beside:
    """The preload's thread: waits for configured nodes, then runs it; :meth:`end` once ``kind create`` returned."""

    def __init__(self, preload: Callable[[Route], None], route: Route, name: str, timeout: float,
                 log: Callable[[str], None]) -> None:
        self.preload, self.route, self.name, self.timeout, self.log = preload, route, name, timeout, log
        self.created = threading.Event()  # kind create returned: nothing more to wait for
        self.thread = threading.Thread(target=self._run, name=f"preload-{name}", daemon=True)

    def _run(self) -> None:
        try:
            wait_for(lambda: nodes_configured(self.name, self.created), timeout=self.timeout, interval=0.5,
                     what=f"the nodes of {self.name} to have their containerd configured")
            if not self.created.is_set():
                self.preload(self.route)
        except Exception as exc:  # reported; the delivery after creation does the work
            self.log(f"cluster: loading images beside kind create did not work ({type(exc).__name__}: "
                     f"{' '.join(str(exc).split())[:300]}); they are delivered after it instead")

    def end(self, *, wait: bool) -> None:
        """``kind create`` returned; with ``wait``, let a preload under way finish (its steps are bounded).

        After a good create it must finish first: delivery must not start a second load beside it.
        """
        self.created.set()
        if wait:
            self.thread.join()


def nodes_configured(name: str, created: threading.Event | None = None) -> Probe[list[str]]:
    """Done when every node of kind cluster ``name`` runs a containerd kind will not restart again.

    kind's config step patches and restarts every node's containerd before kubeadm init writes the
    control plane's static Pod manifests; a manifest there means that step is over everywhere.
    Also done (with no nodes) once ``created`` is set: ``kind create`` returned, whichever way.
    """
    if created is not None and created.is_set():
        return Probe(True, "kind create returned", [])
    nodes = node_container_ids(name)
    if not nodes:
        return Probe(False, "no control-plane node container yet")
    started = _exec.run(["docker", "exec", f"{name}-control-plane", "test", "-e",
                         "/etc/kubernetes/manifests/kube-apiserver.yaml"], check=False, timeout=30)
    if started.returncode != 0:
        return Probe(False, "kind is preparing and configuring the nodes")
    for node in nodes:
        if _exec.run(["docker", "exec", node, "ctr", "version"], check=False, timeout=30).returncode != 0:
            return Probe(False, f"containerd of {node} does not answer yet")
    return Probe(True, f"{len(nodes)} node(s) configured", nodes)


@dataclass
class KindProvider(ProviderContext):
    """Create or reuse the kind cluster ``name``; on finish delete it if this provider created it."""

    provider_name: ClassVar[str] = "kind"
    deletes_clusters: ClassVar[bool] = True
    wires_registries: ClassVar[bool] = True

    name: str
    kind_bin: Path
    kubectl_bin: Path
    state_dir: Path
    node_image: str
    reuse: bool = True
    config_extra: dict[str, Any] | None = None
    containerd_patches: tuple[str, ...] = ()
    """Ours, always applied (e.g. the registry ``config_path`` a registry-less node image lacks)."""
    kubeadm_patches: tuple[str, ...] = ()
    """Ours too (e.g. the kubelet's cgroup driver, which must agree with containerd's)."""
    wait_seconds: int = 300
    delivery: str = KIND_LOAD
    """How the session's images reach the nodes: :data:`KIND_LOAD`, or ``registry <setting>``. Recorded in
    the cluster's marker; a cluster is reused only by sessions delivering the same way (:func:`reuse_refusal`)."""
    log: Callable[[str], None] = print
    preload: Callable[[Route], None] | None = None
    """Run beside ``kind create`` once the nodes' containerd is configured (see the module docstring).

    It gets the route images will take; what it raises is logged, never raised: the delivery after
    creation checks every node anyway."""

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        from harness.registry.wiring import loopback_port

        registry = settings.build.registry
        if registry not in (None, "local") and loopback_port(registry) is None:
            raise ConfigError(f"registry = {registry!r} ({settings.sources['registry']}) with cluster = kind: kind "
                              "nodes pull from a registry only once the harness wires it in, which it does for a "
                              "registry container on this Docker engine, named by the loopback address it "
                              "publishes (registry = \"localhost:PORT\", kind's documented pattern) or "
                              "registry = \"local\" (the harness's own); drop 'registry' for kind load, or use "
                              "cluster = existing for a cluster that already pulls from this one")

    @classmethod
    def lock_key(cls, settings: Settings) -> tuple[str, bool]:
        """The cluster's name; the lock is per Docker engine (every user's kind clusters), so Docker is needed."""
        return settings.cluster_name, False

    @classmethod
    def keep_by_default(cls, settings: Settings) -> bool:
        """A local kind cluster is kept for the next run; under CI it is deleted."""
        return not env_flag("CI")

    @classmethod
    def preflight(cls, settings: Settings) -> list[Finding]:
        return [*check_kind_tools(settings), check_node_image(settings)]

    @classmethod
    def logs_exporter(cls, settings: Settings, cluster: Cluster) -> Callable[[Path], None]:
        """``kind export logs`` of ``cluster``, resolving the pinned kind only when logs are wanted (a failure)."""

        def export(dest: Path) -> None:
            kind_bin = toolchain.resolve_kind(settings.tools.kind_bin, log=lambda _line: None,
                                              kubernetes_version=settings.cluster.release)
            KindCluster(cluster.name, kind_bin, cluster.kube.kubeconfig.parent).export_logs(dest)

        return export

    @classmethod
    def from_settings(cls, settings: Settings, *, kubectl_bin: Path, log: Callable[[str], None], phases: Phases,
                      preload: Callable[[Route], None] | None, session: str) -> KindProvider:
        """The kind binary and node image for the configured minor, and our config patches (workers, the
        registry's ``config_path``, the kubelet's sync period, the cgroup driver a cgroup v1 host needs)."""
        del session  # a kind cluster is this machine's: its session lock admits one session at a time
        c = settings.cluster
        with phases.phase("tools (kind)") as note:  # built from Go modules on a new machine: minutes, heartbeated
            kind_bin = toolchain.resolve_kind(settings.tools.kind_bin, log=log, kubernetes_version=c.release)
            note["note"] = str(kind_bin)
        with phases.phase("node image") as note:
            choice = toolchain.resolve_node_image(mode=c.node_image_mode, override=c.node_image,
                                                  log=log, kubernetes_version=c.release)
            note["note"] = f"{choice.source}: {choice.image}"
        registry_less = toolchain.registry_less(choice)
        extra = None
        if c.kind_config is not None:
            extra = yaml.safe_load(c.kind_config.read_text()) or {}
            if not isinstance(extra, dict):
                raise HarnessError(f"kind-config {c.kind_config} must hold a kind Cluster config mapping")
        from harness.nodeimage.nodefiles import cgroupfs_driver_patches
        from harness.registry import kind_config_patches
        from harness.registry.wiring import node_lacks_config_path

        extra = with_workers(extra, c.workers, kubernetes_version=c.release,
                             local=registry_less)

        # Only the 1.34 registry-less node (Debian containerd 1.6) lacks certs.d's config_path; patched in so a
        # registry can be attached. The 1.35+ rows' containerd 2.x config sets it.
        local_node = node_lacks_config_path(registry_less, c.release)
        containerd, kubeadm = kind_config_patches(local_node), [KUBELET_SYNC_PATCH]
        if cgroupfs_driver_wanted(registry_less, c.release, toolchain.host_is_cgroup_v1()):
            runc, kubelet = cgroupfs_driver_patches()
            containerd, kubeadm = [*containerd, runc], [*kubeadm, kubelet]
        registry = settings.build.registry
        delivery = KIND_LOAD if registry is None else f"registry {registry}"
        return cls(name=settings.cluster_name, kind_bin=kind_bin, kubectl_bin=kubectl_bin, delivery=delivery,
                   state_dir=settings.state_dir, node_image=choice.image, reuse=c.reuse,
                   config_extra=extra, containerd_patches=tuple(containerd), kubeadm_patches=tuple(kubeadm),
                   log=log, preload=preload)

    def __post_init__(self) -> None:
        self.kind = KindCluster(self.name, self.kind_bin, self.state_dir / "clusters" / self.name, log=self.log)

    def _config(self, host_port: int) -> dict[str, Any]:
        ours = kind_config(host_port=host_port)
        if self.containerd_patches:
            ours["containerdConfigPatches"] = list(self.containerd_patches)
        if self.kubeadm_patches:
            ours["kubeadmConfigPatches"] = list(self.kubeadm_patches)
        return merge_kind_config(ours, self.config_extra)

    def start(self) -> Cluster:
        """Return a ready cluster: reused when allowed and matching, else created."""
        kind = self.kind
        kind_version = kind.version()
        fingerprint = cluster_fingerprint(kind_version, dockercli.image_id(self.node_image), self._config(0))

        if kind.exists():
            host_marker = read_host_marker(kind.name)
            kube, marker = _read_cluster_marker(kind, self.kubectl_bin) if _node_running(kind) else (None, None)
            if marker is None and not host_marker_owns(host_marker, node_container_ids(kind.name)):
                if host_marker is not None:
                    self.log(f"cluster: the host marker of {kind.name} names other node containers or a live "
                             "session; dropping it (stale), not trusting it")
                    forget_cluster(kind.name)
                raise HarnessError(
                    f"a kind cluster named {kind.name!r} exists but was not created by this harness; "
                    "it is left alone. Pick another name (cluster-name / --harness-cluster-name), or delete it "
                    f"yourself (kind delete cluster --name {kind.name})."
                )
            why = (reuse_refusal(marker, fingerprint=fingerprint, delivery=self.delivery, reuse=self.reuse)
                   if kube is not None else "its node is stopped or its API does not answer")
            if why is None and kube is not None and marker is not None:
                self.log(f"cluster: reusing {kind.name} (fingerprint {fingerprint})")
                return self._cluster(kube, False, int(marker["mlflow-host-port"]), fingerprint)
            self.log(f"cluster: recreating {kind.name} ({why})")
            delete_cluster(kind)

        port = free_port()
        self.log(f"cluster: creating {kind.name} from {self.node_image} (MLflow on 127.0.0.1:{port})")
        # Before the first node exists: if this session is killed mid-create, the next one knows the half-made
        # node is the harness's (and its session gone), removes it and starts over.
        host_marker_path(kind.name).write_text(json.dumps({"state": "creating", "owner": owners.owner_token(),
                                                           "created-at": _now()}))
        beside = self._start_preload(kind)
        try:
            kind.create(node_image=self.node_image, config=self._config(port), wait_seconds=self.wait_seconds)
            if beside is not None:
                beside.end(wait=True)
            marker_data = {
                "fingerprint": fingerprint,
                "created-by": "mlflow-crd-harness",
                "created-at": _now(),
                "mlflow-host-port": str(port),
                "node-image": self.node_image,
                "kind-version": kind_version,
                "delivery": self.delivery,
            }
            host_marker_path(kind.name).write_text(json.dumps(
                {**marker_data, "state": "created", "nodes": node_container_ids(kind.name)}, indent=2))
            kube = Kube(kind.kubeconfig, self.kubectl_bin)
            kube.write_config_map(MARKER_NAMESPACE, MARKER_NAME, marker_data)
        except BaseException:
            if beside is not None:
                beside.end(wait=False)  # a load under way fails with the nodes it was loading into
            # A half-made cluster is ours to remove: the next run must not find a node without a marker.
            self.log(f"cluster: creating {kind.name} failed; deleting what was made")
            delete_cluster(kind, settle=3.0)
            raise
        return self._cluster(kube, True, port, fingerprint)

    def _start_preload(self, kind: KindCluster) -> _Beside | None:
        if self.preload is None:
            return None
        beside = _Beside(self.preload, KindLoad(kind_cluster=self.name, kind_bin=self.kind_bin),
                         kind.name, self.wait_seconds, self.log)
        beside.thread.start()
        return beside

    def _cluster(self, kube: Kube, created: bool, port: int, fingerprint: str) -> Cluster:
        return Cluster(
            name=self.name, provider=self.provider_name, kube=kube, created=created,
            images=KindLoad(kind_cluster=self.name, kind_bin=self.kind_bin),
            fingerprint=fingerprint, mlflow_host_port=port, node_image=self.node_image,
            export_logs_with=self.kind.export_logs,
        )

    def others(self) -> set[str]:
        """None: a kind cluster belongs to this machine, and its session lock admits one session at a time."""
        return set()

    def attach_registry(self, cluster: Cluster, registry: LocalRegistry) -> Cluster:
        """Wire the registry container into the nodes the way kind documents; images then go through it.

        A container that is not the harness's and was not on the ``kind`` network
        yet is recorded (:mod:`harness.registry.lending`), so that deleting the last
        kind cluster takes it off again, whichever session deletes it.
        """
        joined = registry.attach_to_cluster(cluster.name, self.kind_bin, cluster.kube.kubeconfig)
        if joined and not registry.created_by_harness():
            lending.note_lent(registry.name, KIND_NETWORK)
        return replace(cluster, images=registry.route())

    def describe(self, cluster: Cluster, settings: Settings) -> dict[str, Any]:
        """kind's version, the Kubernetes minor, and the node image (its id, and whether we built it)."""
        from harness.nodeimage.versions import NODE_IMAGE_REPO

        row = settings.cluster.release
        kind_version = _exec.run([self.kind_bin, "version"], timeout=30).stdout.split()
        node = cluster.node_image or ""
        local = node.startswith(NODE_IMAGE_REPO)
        return {
            "kind": {"version": kind_version[1] if len(kind_version) > 1 else " ".join(kind_version)},
            "kubernetes": {"minor": row.minor},
            "settings": {} if settings.cluster.node_image is not None
            else {"node-image-mode": "local" if local else "public"},
            "node_image": {"ref": node, "id": dockercli.image_id(node) if node else None,
                           "source": "local" if local else "public",
                           "published": None if local else row.public_node_image},
        }

    def finish(self, cluster: Cluster, *, keep: bool) -> str:
        if cluster.created and not keep:
            self.log(f"cluster: deleting {self.name}")
            delete_cluster(self.kind, log=self.log)
            for name in lending.lent():  # still recorded: delete_cluster saw another kind cluster left
                self.log(f"registry: {name} stays on the kind network while other kind clusters may pull from it; "
                         "deleting the last kind cluster takes it off")
            return "deleted"
        return "kept"


def cgroupfs_driver_wanted(registry_less: bool, kubernetes_version: str | Release, cgroup_v1: bool) -> bool:
    """Our own 1.35+ node (containerd 2.x, runc 1.5) on a cgroup v1 host: see ``cgroupfs_driver_patches``.

    Not a published node image (it is not ours to reconfigure, and cannot run on cgroup v1 from 1.35
    anyway), not the 1.34 node (Debian's runc 1.1 only logs a failed freeze), never on cgroup v2.
    """
    from harness.versions import release_for

    return registry_less and cgroup_v1 and release_for(kubernetes_version).runtime is not None


def with_workers(extra: dict[str, Any] | None, workers: int, *, kubernetes_version: str | Release,
                 local: bool) -> dict[str, Any] | None:
    """``extra`` (the user's kind config) with ``workers`` worker nodes added.

    Refused, with the fix, when it cannot work: a kind-config that already
    lists nodes (two sources for one shape), or a registry-less 1.34 node,
    whose static CNI has no routes between nodes.
    """
    if workers == 0:
        return extra
    if extra and extra.get("nodes"):
        raise HarnessError(f"workers = {workers} and kind-config lists nodes: set the worker count in one "
                           "place (drop 'workers', or the worker entries of kind-config's nodes)")
    from harness.versions import release_for

    if local and release_for(kubernetes_version).runtime is None:
        raise HarnessError(f"workers = {workers}: the registry-less Kubernetes {kubernetes_version} node has a "
                           "single-node CNI; use kubernetes-version 1.35 or later (its node carries harness-netd)")
    nodes: list[dict[str, Any]] = [{"role": "control-plane"}, *({"role": "worker"} for _ in range(workers))]
    return {**(extra or {}), "nodes": nodes}


def check_kind_tools(settings: Settings) -> list[Finding]:
    """kind and kubectl for the configured minor: given, on PATH at the pinned version, cached, or to be fetched."""
    from harness import toolchain

    row = settings.cluster.release
    out = []
    for tool, pinned, override in (("kind", row.kind, settings.tools.kind_bin),
                                   ("kubectl", row.kubernetes, settings.tools.kubectl_bin)):
        if override is not None:
            ok = Path(override).is_file()
            out.append(Finding(tool, "ok" if ok else "fail", f"{override} (given)",
                               "" if ok else f"{tool}-bin {override} does not exist: fix the path or drop it"))
            continue
        cached = toolchain.cached_tool(tool, row)
        if cached is not None:
            out.append(Finding(tool, "ok", f"{pinned} (the harness's cache: {cached})"))
        else:
            out.append(Finding(tool, "warn", f"{pinned} not on this machine yet",
                               "the first session downloads it (checksum-verified) or builds it from Go modules"))
    return out


def check_node_image(settings: Settings) -> Finding:
    """The node image the configured minor will use: the override, a present build, or what would happen."""
    from harness import dockercli, toolchain
    from harness.versions import cgroup_v1_verdict

    minor, row = settings.cluster.kubernetes_version, settings.cluster.release
    name = f"node image ({minor})"
    if settings.cluster.node_image:
        present = dockercli.image_exists(settings.cluster.node_image)
        return Finding(name, "ok" if present else "warn", f"{settings.cluster.node_image} (given)"
                       + ("" if present else ": not in Docker yet, will be pulled"))
    public_runs = not toolchain.host_is_cgroup_v1() or cgroup_v1_verdict(row, public=True)[0]
    if settings.cluster.node_image_mode != "local" and public_runs:
        proc = _exec.run(["docker", "manifest", "inspect", row.public_node_image], check=False, timeout=60)
        if proc.returncode == 0 or dockercli.image_exists(row.public_node_image):
            return Finding(name, "ok", f"{row.public_node_image.split('@')[0]} (published, pinned by digest)")
        if settings.cluster.node_image_mode == "public":
            return Finding(name, "fail", f"{row.public_node_image} cannot be pulled",
                           "use node-image-mode local (a registry-less build) or make the registry reachable")
    if settings.cluster.node_image_mode == "public" and not public_runs:
        return Finding(name, "fail", f"kind's published {minor} image cannot run on this cgroup v1 host",
                       "use node-image-mode auto or local (the registry-less build sets failCgroupV1: false)")
    from harness import nodeimage

    try:
        tag = nodeimage.node_image_tag(kubernetes_version=minor)
    except Exception as exc:  # no Go toolchain, no mirror: the build itself would say the same
        return Finding(name, "fail", f"the registry-less build cannot start: {exc}", "install Go >= 1.24 and "
                       "debootstrap (Debian: scripts/docker-up.sh from a clone of the harness)")
    if dockercli.image_exists(tag):
        return Finding(name, "ok", f"{tag} (registry-less build, present)")
    return Finding(name, "warn", f"{tag} is not built yet: the first session builds it",
                   f"prebuild it now: python -m harness node-image build --kubernetes-version {minor} "
                   "(cold: ~10-15 min on 2 cores, then cached)")
