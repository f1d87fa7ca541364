"""Create or reuse the e2e kind cluster, and delete only what we created.

A cluster is reused only when its *fingerprint* matches: a hash of the kind
version, the node image id and the kind config (with the host port left out,
since it is chosen per cluster). The fingerprint, who created the cluster and
its MLflow host port live in a ConfigMap inside the cluster
(``kube-system/mlflow-crd-harness``), so they travel with the cluster itself.

A same-named cluster without that ConfigMap was not made by the harness: it is
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

from harness._errors import HarnessError
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


def _image_id(image: str) -> str:
    from harness import _exec

    return _exec.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], timeout=30).stdout.strip()


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
    fingerprint = cluster_fingerprint(kind_version, _image_id(node_image), probe_config)

    if kind.exists():
        kind.export_kubeconfig()
        kube = Kube(kind.kubeconfig, kubectl_bin)
        marker = kube.read_config_map(MARKER_NAMESPACE, MARKER_NAME)
        if marker is None:
            raise HarnessError(
                f"a kind cluster named {kind.name!r} exists but was not created by this harness; "
                "it is left alone. Use --cluster-name to pick another name, or delete it yourself "
                f"(kind delete cluster --name {kind.name})."
            )
        if reuse and marker.get("fingerprint") == fingerprint:
            log(f"cluster: reusing {kind.name} (fingerprint {fingerprint})")
            return ClusterHandle(kind, kube, False, int(marker["mlflow-host-port"]), fingerprint, node_image)
        why = "reuse disabled" if not reuse else f"fingerprint {marker.get('fingerprint')} != {fingerprint}"
        log(f"cluster: recreating {kind.name} ({why})")
        kind.delete()

    port = free_port()
    log(f"cluster: creating {kind.name} from {node_image} (MLflow on 127.0.0.1:{port})")
    kind.create(node_image=node_image, config=kind_config(host_port=port, extra=config_extra),
                wait_seconds=wait_seconds)
    kube = Kube(kind.kubeconfig, kubectl_bin)
    kube.write_config_map(MARKER_NAMESPACE, MARKER_NAME, {
        "fingerprint": fingerprint,
        "created-by": "mlflow-crd-harness",
        "created-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mlflow-host-port": str(port),
        "node-image": node_image,
        "kind-version": kind_version,
    })
    return ClusterHandle(kind, kube, True, port, fingerprint, node_image)
