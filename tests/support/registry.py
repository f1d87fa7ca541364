"""The harness's local registry, wired into the session's cluster (as ``registry = "local"`` would)."""

from __future__ import annotations

from harness.images import LOCAL_REGISTRY_HOST
from harness.registry import LocalRegistry, ensure_registry_image
from harness.runs import ProjectRunner


def attached_registry(launcher: ProjectRunner) -> LocalRegistry:
    """The local registry, reachable from the cluster's nodes as ``localhost:5001``, whichever way the
    session delivers its own images (a kind cluster gets it wired in here; a registry session has it)."""
    route = launcher.stack.cluster.images
    registry = LocalRegistry(ensure_registry_image(log=lambda _line: None), log=lambda _line: None)
    if route.mode == "kind":
        assert route.kind_cluster is not None
        assert route.kind_bin is not None
        registry.ensure_running()
        registry.attach_to_cluster(route.kind_cluster, route.kind_bin, launcher.stack.cluster.kube.kubeconfig)
    else:
        assert route.registry == LOCAL_REGISTRY_HOST, f"this test reads the harness's own registry, not {route}"
    return registry
