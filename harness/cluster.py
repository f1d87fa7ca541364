"""Create or reuse the e2e kind cluster, and delete only what we created.

A cluster is reused only when its *fingerprint* matches: a hash of the kind
version, the node image id and the kind config (with the host port left out,
since it is chosen per cluster). The fingerprint, who created the cluster and
its MLflow host port live in a ConfigMap inside the cluster
(``kube-system/mlflow-crd-harness``), so they travel with the cluster itself.

A copy of that marker is also kept on the host (in the cache directory), so a
cluster whose node was stopped (a Docker restart, a rebooted CI machine) is
still known to be ours and is recreated rather than reported as foreign.

A same-named cluster without either marker was not made by the harness: it is
never adopted or deleted; the user is told to pick another name.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness import _exec, dockercli
from harness._errors import HarnessError
from harness.cachedir import cache_dir
from harness.kind import KindCluster, kind_config
from harness.kube import Kube
from harness.tracking_server import free_port

__all__ = ["ClusterHandle", "cluster_fingerprint", "provision_cluster"]

MARKER_NAMESPACE = "kube-system"
MARKER_NAME = "mlflow-crd-harness"


@dataclass(frozen=True)
class ClusterHandle:
    """A ready cluster: how to reach it and whether this session created it."""

    kind: KindCluster
    kube: Kube
    created: bool
    mlflow_host_port: int
    fingerprint: str
    node_image: str


def cluster_fingerprint(kind_version: str, node_image_id: str, config: dict[str, object]) -> str:
    """Hash of everything that makes two clusters interchangeable (host port excluded)."""
    neutral = json.loads(json.dumps(config))
    for node in neutral.get("nodes", []):
        for mapping in node.get("extraPortMappings", []):
            mapping["hostPort"] = 0
    text = "\n".join([kind_version, node_image_id, yaml.safe_dump(neutral, sort_keys=True)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def provision_cluster(
    kind: KindCluster,
    *,
    node_image: str,
    kubectl_bin: Path,
    reuse: bool,
    config_extra: dict[str, object] | None = None,
    wait_seconds: int = 300,
    log: Callable[[str], None] = print,
) -> ClusterHandle:
    """Return a ready cluster named ``kind.name``: reused when allowed and matching, else created."""
    kind_version = kind.version()
    probe_config = kind_config(host_port=0, extra=config_extra)
    fingerprint = cluster_fingerprint(kind_version, dockercli.image_id(node_image), probe_config)

    if kind.exists():
        host_marker = read_host_marker(kind.name)
        kube, marker = _read_cluster_marker(kind, kubectl_bin) if _node_running(kind) else (None, None)
        if marker is None and host_marker is None:
            raise HarnessError(
                f"a kind cluster named {kind.name!r} exists but was not created by this harness; "
                "it is left alone. Use --cluster-name to pick another name, or delete it yourself "
                f"(kind delete cluster --name {kind.name})."
            )
        if kube is not None and marker is not None and reuse and marker.get("fingerprint") == fingerprint:
            log(f"cluster: reusing {kind.name} (fingerprint {fingerprint})")
            return ClusterHandle(kind, kube, False, int(marker["mlflow-host-port"]), fingerprint, node_image)
        if kube is None:
            why = "its node is stopped or its API does not answer"
        elif not reuse:
            why = "reuse disabled"
        else:
            why = f"fingerprint {(marker or {}).get('fingerprint')} != {fingerprint}"
        log(f"cluster: recreating {kind.name} ({why})")
        kind.delete()
        forget_cluster(kind.name)

    port = free_port()
    log(f"cluster: creating {kind.name} from {node_image} (MLflow on 127.0.0.1:{port})")
    kind.create(node_image=node_image, config=kind_config(host_port=port, extra=config_extra),
                wait_seconds=wait_seconds)
    marker_data = {
        "fingerprint": fingerprint,
        "created-by": "mlflow-crd-harness",
        "created-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mlflow-host-port": str(port),
        "node-image": node_image,
        "kind-version": kind_version,
    }
    host_marker_path(kind.name).write_text(json.dumps(marker_data, indent=2))
    kube = Kube(kind.kubeconfig, kubectl_bin)
    kube.write_config_map(MARKER_NAMESPACE, MARKER_NAME, marker_data)
    return ClusterHandle(kind, kube, True, port, fingerprint, node_image)
