"""Failure evidence: everything needed to debug a red e2e test without re-running it.

One directory per failed test under the bundle root (default
``build/e2e-bundles/<test id>/``, uploaded by GitHub Actions), for every
workload kind: the workload objects of every known kind, the Jobs and Pods as
YAML, ``ownership.txt`` (the tree from each top object through its Jobs or
replicas down to its Pods, walked by ownerReferences, with every container's
end and *which replica failed first*), the namespace's events in time order,
every container's current and previous log, the controllers' and the MLflow
server's logs, and ``kind export logs``. Collection never raises: a
half-broken cluster still yields what could be read, and ``errors.txt`` says
what could not.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from harness.kubeapi import Kube
from harness.workloads import CUSTOMJOB, PRESETS, state
from harness.workloads import pods as pod_facts
from harness.workloads.api import REQUEST_TIMEOUT, Owners, WorkloadClient, owner_refs
from harness.workloads.kind import WorkloadKind

__all__ = ["bundle_dir_for", "collect_bundle", "ownership_report"]


def bundle_dir_for(root: Path, nodeid: str) -> Path:
    """A predictable, filesystem-safe directory name for a test id."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
    return root / safe[:150]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def collect_bundle(
    dest: Path,
    kube: Kube,
    *,
    namespaces: list[str],
    export_logs: Callable[[Path], None] | None = None,
    system_namespaces: tuple[str, ...] = ("customjob-system", "mlflow"),
    log: Callable[[str], None] = print,
    kinds: Sequence[WorkloadKind] = (),
) -> Path:
    """Write the bundle for ``namespaces`` (the test's) plus the system components; return ``dest``.

    ``kinds``: workload kinds to list besides the presets (a settings' own).
    """
    dest.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    all_kinds = _unique([*PRESETS.values(), *kinds])

    def attempt(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # evidence collection must never mask the real failure
            errors.append(f"{what}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=2)}")

    for ns in namespaces:
        out = dest / ns
        for kind in all_kinds:
            attempt(f"{ns} {kind.name} objects", partial(_workload_objects, kube, kind, ns, out, errors))
        attempt(f"{ns} jobs", partial(_jobs, kube, ns, out))
        attempt(f"{ns} ownership", partial(_ownership_file, kube, ns, out, all_kinds))
        attempt(f"{ns} events", partial(_events_file, kube, ns, out))
        attempt(f"{ns} pods", partial(_pods_and_logs, kube, ns, out))
    for ns in system_namespaces:
        out = dest / "system" / ns
        attempt(f"{ns} events", partial(_events_file, kube, ns, out))
        attempt(f"{ns} pods", partial(_pods_and_logs, kube, ns, out))
    if export_logs is not None:
        attempt("node logs (kind export logs)", partial(export_logs, dest / "kind-logs"))
    if errors:
        _write(dest / "errors.txt", "\n".join(errors))
    log(f"evidence bundle: {dest}")
    return dest


def _unique(kinds: Iterable[WorkloadKind]) -> list[WorkloadKind]:
    seen: dict[tuple[str, str], WorkloadKind] = {}
    for k in kinds:
        seen.setdefault((k.api_version, k.kind), k)
    return list(seen.values())


def _workload_objects(kube: Kube, kind: WorkloadKind, namespace: str, out: Path, errors: list[str]) -> None:
    """``<plural>.yaml`` for each kind the cluster serves and that has objects here (the stub's: customjobs.yaml)."""
    client = WorkloadClient.of(kube.api, kind, namespace)
    try:
        items = client.list_objects()
    except Exception:
        if kind is CUSTOMJOB:
            raise  # the stub is always installed by our tiers: say why it could not be read
        return  # a kind this cluster does not serve has nothing to show
    if items or kind is CUSTOMJOB:
        _write(out / f"{client.served.plural}.yaml", _yaml({"items": items}))


def _jobs(kube: Kube, namespace: str, out: Path) -> None:
    jobs = kube.batch.list_namespaced_job(namespace)
    _write(out / "jobs.yaml", _yaml(kube.api.sanitize_for_serialization(jobs)))


@dataclass
class _Node:
    kind: str
    name: str
    obj: dict[str, Any] | None
    children: list[_Node] = field(default_factory=list)
    pod: Any = None


def ownership_report(kube: Kube, namespace: str, kinds: Sequence[WorkloadKind] = ()) -> str:
    """The ownership tree of ``namespace``'s pods, each top object with its state, and the first failure."""
    pods = kube.core.list_namespaced_pod(namespace, _request_timeout=REQUEST_TIMEOUT).items
    owners = Owners(kube.custom, namespace)
    nodes: dict[str, _Node] = {}
    parents: dict[str, str] = {}

    def owner_node(ref: dict[str, Any]) -> str:
        uid = str(ref.get("uid"))
        if uid not in nodes:
            obj = owners.read(ref)
            nodes[uid] = _Node(str(ref.get("kind")), str(ref.get("name")), obj)
            up = [r for r in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
                  if r.get("controller", True)]
            if up:
                parents[uid] = owner_node(up[0])
        return uid

    for pod in pods:
        uid = str(pod.metadata.uid)
        nodes[uid] = _Node("Pod", str(pod.metadata.name), None, pod=pod)
        refs = [r for r in owner_refs(pod) if r["controller"] is not False]
        if refs:
            parents[uid] = owner_node(refs[0])
    for child, parent in parents.items():
        nodes[parent].children.append(nodes[child])
    known = {(k.api_version, k.kind): k for k in _unique([*PRESETS.values(), *kinds])}
    lines: list[str] = []

    def show(node: _Node, depth: int) -> None:
        pad = "  " * depth
        if node.pod is not None:
            lines.append(f"{pad}Pod {node.name} {node.pod.status.phase} (replica {pod_facts.replica_of(node.pod)}, "
                         f"node {node.pod.spec.node_name or '-'})")
            for end in pod_facts.terminations([node.pod]):
                lines.append(f"{pad}  - {end.describe()}")
            for why in pod_facts.stuck([node.pod]):
                lines.append(f"{pad}  - waiting: {why}")
            return
        kind = known.get((str((node.obj or {}).get("apiVersion")), node.kind))
        shown = state.describe(kind, node.obj) if kind is not None and node.obj is not None else ""
        lines.append(f"{pad}{node.kind} {node.name} {shown}".rstrip())
        for child in sorted(node.children, key=lambda n: (n.pod is not None, n.name)):
            show(child, depth + 1)

    roots = [uid for uid in nodes if uid not in parents]
    for uid in sorted(roots, key=lambda u: (nodes[u].pod is not None, nodes[u].name)):
        show(nodes[uid], 0)
    first = pod_facts.first_failure(pods)
    lines.append("")
    lines.append(f"first failure: {first.describe()} (replica {first.replica})" if first is not None
                 else "first failure: none (no container ended with an error)")
    return "\n".join(lines) + "\n"


def _ownership_file(kube: Kube, namespace: str, out: Path, kinds: Sequence[WorkloadKind]) -> None:
    _write(out / "ownership.txt", ownership_report(kube, namespace, kinds))


def _events_file(kube: Kube, namespace: str, out: Path) -> None:
    _write(out / "events.txt", _events(kube, namespace))


def _events(kube: Kube, namespace: str) -> str:
    events = kube.core.list_namespaced_event(namespace).items

    def when(e: Any) -> str:
        t = e.last_timestamp or e.event_time or e.first_timestamp or e.metadata.creation_timestamp
        return t.isoformat() if t else ""

    lines = []
    for e in sorted(events, key=when):
        obj = e.involved_object
        lines.append(f"{when(e)}  {e.type:<7} {e.reason:<24} {obj.kind}/{obj.name}  x{e.count or 1}  {e.message}")
    return "\n".join(lines) + "\n"


def _pods_and_logs(kube: Kube, namespace: str, out: Path) -> None:
    pods = kube.core.list_namespaced_pod(namespace)
    _write(out / "pods.yaml", _yaml(kube.api.sanitize_for_serialization(pods)))
    for pod in pods.items:
        containers = [c.name for c in (pod.spec.init_containers or []) + pod.spec.containers]
        for c in containers:
            for previous in (False, True):
                try:
                    text = kube.core.read_namespaced_pod_log(pod.metadata.name, namespace, container=c,
                                                            previous=previous, timestamps=True)
                except ApiException as exc:
                    if previous:
                        continue  # no previous instance: the normal case
                    text = f"<no log: HTTP {exc.status} {exc.reason}>"
                suffix = ".previous.log" if previous else ".log"
                _write(out / "logs" / f"{pod.metadata.name}.{c}{suffix}", text)
