"""Deploy what the e2e tier runs against: the CustomJob CRD + controller and an MLflow server.

Everything is applied from the repository's own manifests (``kubectl
kustomize crds/``, as a user would ``kubectl apply -k crds/``) with the
controller image swapped for the freshly built one. The tracking server is the
setup the MLflow notes recommend: sqlite on a volume, proxied artifacts and an
explicit ``--allowed-hosts`` list (Service DNS names and the mapped host port;
never ``*``), reachable from pods by Service DNS and from the host through the
kind port mapping.

Re-deploying is skipped when a hash of the rendered manifests matches what the
cluster already runs (a warm, reused cluster).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness._waiting import Probe, wait_for
from harness.cluster import MARKER_NAMESPACE, ClusterHandle
from harness.kind import MLFLOW_NODE_PORT

__all__ = ["Stack", "StackImages", "deploy_stack", "mlflow_server_manifests", "render_controller"]

CONTROLLER_NAMESPACE = "customjob-system"
CONTROLLER_DEPLOYMENT = "customjob-controller"
CONTROLLER_IMAGE_NAME = "customjob-controller"
MLFLOW_NAMESPACE = "mlflow"
MLFLOW_PORT = 5000
STACK_MARKER = "mlflow-crd-harness-stack"


@dataclass(frozen=True)
class StackImages:
    controller: str
    mlflow_server: str


@dataclass(frozen=True)
class Stack:
    """A deployed stack: where MLflow answers for the host and for pods."""

    cluster: ClusterHandle
    tracking_uri: str          # from this host (kind port mapping)
    pod_tracking_uri: str      # from pods (Service DNS)
    controller_namespace: str = CONTROLLER_NAMESPACE
    mlflow_namespace: str = MLFLOW_NAMESPACE
    redeployed: bool = True


def mlflow_allowed_hosts(host_port: int, namespace: str = MLFLOW_NAMESPACE) -> list[str]:
    """Exactly the Host headers our clients send: Service DNS forms and the mapped loopback port."""
    names = ["mlflow", f"mlflow.{namespace}", f"mlflow.{namespace}.svc", f"mlflow.{namespace}.svc.cluster.local"]
    hosts = [h for n in names for h in (n, f"{n}:{MLFLOW_PORT}")]
    return [*hosts, f"127.0.0.1:{host_port}", f"localhost:{host_port}"]


def mlflow_server_manifests(image: str, host_port: int, namespace: str = MLFLOW_NAMESPACE) -> list[dict[str, Any]]:
    """Namespace, Deployment and NodePort Service of the in-cluster tracking server."""
    labels = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/part-of": "mlflow-crd-harness"}
    args = [
        "--backend-store-uri", "sqlite:////data/mlflow.db",
        "--artifacts-destination", "/data/artifacts",
        "--serve-artifacts",
        "--host", "0.0.0.0",  # noqa: S104 - inside the pod; the Service and host mapping are the exposure
        "--port", str(MLFLOW_PORT),
        "--workers", "1",
        "--allowed-hosts", ",".join(mlflow_allowed_hosts(host_port, namespace)),
    ]
    container = {
        "name": "mlflow",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [{"name": "http", "containerPort": MLFLOW_PORT}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10,
                          "initialDelaySeconds": 60},
        "resources": {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"memory": "2Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}},
        {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "mlflow", "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # one sqlite writer at a time
                "selector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 10002, "runAsGroup": 10002,
                                            "fsGroup": 10002, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [container],
                        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "mlflow", "namespace": namespace, "labels": labels},
            "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": "mlflow"},
                     "ports": [{"name": "http", "port": MLFLOW_PORT, "targetPort": "http",
                                "nodePort": MLFLOW_NODE_PORT}]},
        },
    ]


def render_controller(kustomized: str, image: str) -> list[dict[str, Any]]:
    """The kustomize output with the controller image replaced by ``image``."""
    docs = [d for d in yaml.safe_load_all(kustomized) if d]
    swapped = 0
    for doc in docs:
        if doc.get("kind") == "Deployment":
            for c in doc["spec"]["template"]["spec"].get("containers", []):
                if c["image"].split(":")[0] == CONTROLLER_IMAGE_NAME:
                    c["image"] = image
                    c["imagePullPolicy"] = "IfNotPresent"
                    swapped += 1
    if swapped != 1:
        raise ValueError(f"expected one {CONTROLLER_IMAGE_NAME} container in crds/, found {swapped}")
    return docs


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=True)


def deploy_stack(
    cluster: ClusterHandle,
    images: StackImages,
    *,
    crds_dir: Path,
    timeout: float = 300,
    log: Callable[[str], None] = print,
) -> Stack:
    """Load images, install CRD + controller and the MLflow server; wait until all are ready."""
    kube = cluster.kube
    controller_docs = render_controller(kube.kustomize(crds_dir), images.controller)
    mlflow_docs = mlflow_server_manifests(images.mlflow_server, cluster.mlflow_host_port)
    digest = hashlib.sha256((_dump(controller_docs) + _dump(mlflow_docs)).encode()).hexdigest()[:16]
    marker = kube.read_config_map(MARKER_NAMESPACE, STACK_MARKER) or {}
    up_to_date = marker.get("digest") == digest

    node = cluster.kind.control_plane
    on_node = cluster.kind.images_on_node(node)
    missing = [i for i in (images.controller, images.mlflow_server)
               if not {i, f"docker.io/library/{i}"} & on_node]
    if missing:
        # Loads are I/O bound (docker save | ctr import): run them side by side.
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            list(pool.map(cluster.kind.load_image, missing))
    else:
        log("stack: images already on the node")

    if up_to_date:
        log(f"stack: manifests unchanged (digest {digest}); not re-applying")
    else:
        crd_docs = [d for d in controller_docs if d["kind"] == "CustomResourceDefinition"]
        rest = [d for d in controller_docs if d["kind"] != "CustomResourceDefinition"]
        kube.apply(_dump(crd_docs))
        for crd in crd_docs:
            kube.wait_crd_established(crd["metadata"]["name"])
        kube.apply(_dump(rest))
        kube.apply(_dump(mlflow_docs))
    kube.wait_deployment_available(CONTROLLER_NAMESPACE, CONTROLLER_DEPLOYMENT, timeout=timeout)
    kube.wait_deployment_available(MLFLOW_NAMESPACE, "mlflow", timeout=timeout)
    tracking_uri = f"http://127.0.0.1:{cluster.mlflow_host_port}"
    _wait_tracking_api(tracking_uri, timeout=timeout)
    if not up_to_date:
        kube.write_config_map(MARKER_NAMESPACE, STACK_MARKER, {"digest": digest})
    return Stack(
        cluster=cluster,
        tracking_uri=tracking_uri,
        pod_tracking_uri=f"http://mlflow.{MLFLOW_NAMESPACE}.svc.cluster.local:{MLFLOW_PORT}",
        redeployed=not up_to_date,
    )


def _wait_tracking_api(uri: str, *, timeout: float) -> None:
    """A real API call, not /health: /health skips the Host-header check we must pass."""
    url = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"

    def probe() -> Probe[None]:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback URL we built
                return Probe(resp.status == 200, f"HTTP {resp.status}")
        except urllib.error.HTTPError as exc:
            return Probe(False, f"HTTP {exc.code}: {exc.read()[:200]!r}")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            return Probe(False, f"{type(exc).__name__}: {exc}")

    wait_for(probe, what=f"MLflow API at {uri} through the kind port mapping", timeout=timeout, interval=1.0)

