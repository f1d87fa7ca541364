"""Extended resources on kind nodes: ``nvidia.com/gpu: 1`` on a worker, without a GPU.

Training jobs request accelerators; on kind they would stay Pending forever.
Kubernetes documents advertising an extended resource by patching a node's
``status.capacity``; the scheduler then places pods that request it (whole
numbers, requests equal to limits). This tests the scheduling and quota side
of a GPU platform — which replica lands where, what a quota refuses — with no
device at all: the containers see no GPU.

Settings ``extended-resources`` (kind clusters only; validated by :mod:`harness.settings`) map a node selector —
``worker`` (every worker), ``control-plane``, ``all`` or a node's name — to
``{resource = count}``. Each session makes the nodes say exactly that:
resources an earlier session advertised and the settings no longer name are
removed again (the node annotation :data:`ADVERTISED` remembers them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from harness._errors import HarnessError
from harness._waiting import Probe, wait_for

if TYPE_CHECKING:  # the settings validate the table without loading the kubernetes client
    from harness.kubeapi import Kube

__all__ = ["ADVERTISED", "advertise", "select_nodes"]

ADVERTISED = "mlflow-crd-harness/extended-resources"
"""Node annotation: the JSON list of resources the harness advertised there (to undo them later)."""
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


def select_nodes(selector: str, nodes: list[Any]) -> list[str]:
    """The node names ``selector`` means: ``worker``, ``control-plane``, ``all`` or one node's name."""
    def is_cp(n: Any) -> bool:
        return CONTROL_PLANE_LABEL in (n.metadata.labels or {})

    if selector == "all":
        return [n.metadata.name for n in nodes]
    if selector in ("worker", "workers"):
        return [n.metadata.name for n in nodes if not is_cp(n)]
    if selector == "control-plane":
        return [n.metadata.name for n in nodes if is_cp(n)]
    return [n.metadata.name for n in nodes if n.metadata.name == selector]


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def advertise(kube: Kube, wanted: Mapping[str, Mapping[str, int]], *, log: Callable[[str], None] = print,
              timeout: float = 60) -> dict[str, dict[str, int]]:
    """Make each node advertise what ``wanted`` gives it (and nothing the harness gave it before); return that."""
    nodes = kube.core.list_node().items
    plan: dict[str, dict[str, int]] = {n.metadata.name: {} for n in nodes}
    for selector, resources in wanted.items():
        chosen = select_nodes(selector, nodes)
        if not chosen:
            raise HarnessError(f"extended-resources: {selector!r} matches no node of this cluster (nodes: "
                               f"{', '.join(sorted(plan))}); use worker, control-plane, all or a node name "
                               "(a worker needs workers >= 1)")
        for name in chosen:
            plan[name].update(resources)
    for node in nodes:
        name = node.metadata.name
        before = json.loads((node.metadata.annotations or {}).get(ADVERTISED, "[]"))
        ops: list[dict[str, Any]] = []
        capacity = node.status.capacity or {}
        for resource in before:
            if resource not in plan[name] and resource in capacity:
                ops += [{"op": "remove", "path": f"/status/{field}/{_pointer(resource)}"}
                        for field in ("capacity", "allocatable") if resource in (getattr(node.status, field) or {})]
        for resource, count in plan[name].items():
            ops += [{"op": "add", "path": f"/status/{field}/{_pointer(resource)}", "value": str(count)}
                    for field in ("capacity", "allocatable")]
        if ops:
            kube.core.patch_node_status(name, ops, _content_type="application/json-patch+json")
        if plan[name] or before:
            kube.core.patch_node(name, {"metadata": {"annotations": {ADVERTISED: json.dumps(sorted(plan[name]))}}})
        if plan[name]:
            log(f"cluster: node {name} advertises {', '.join(f'{k}={v}' for k, v in plan[name].items())}")

    def probe() -> Probe[None]:
        seen = {n.metadata.name: n.status.allocatable or {} for n in kube.core.list_node().items}
        missing = [f"{n}:{r}" for n, res in plan.items() for r, c in res.items() if seen.get(n, {}).get(r) != str(c)]
        return Probe(not missing, f"not yet allocatable: {', '.join(missing) or 'none'}")

    wait_for(probe, what="the extended resources to be allocatable", timeout=timeout, interval=1.0,
             hint="the kubelet recomputes allocatable from capacity; check `kubectl describe node`")
    return {n: r for n, r in plan.items() if r}
