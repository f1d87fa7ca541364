"""The MLflow tracking server the stack runs in the cluster, for the e2e tier.

It is the setup the MLflow notes recommend: sqlite on a volume, proxied
artifacts and an explicit ``--allowed-hosts`` list (never ``*``), reached by
pods through Service DNS and by the host through the kind port mapping (kind)
or a supervised ``kubectl port-forward`` (existing clusters). The stack
(:mod:`harness.stack`) applies these manifests as one of its parts; this module
never imports the stack.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import _exec
from harness._waiting import Probe, wait_for
from harness.cachedir import cache_dir
from harness.clusters import Cluster
from harness.ports import MLFLOW_NODE_PORT
from harness.tracking.serverenv import SERVER_ENV

__all__ = [
    "MLFLOW_NAMESPACE",
    "MLFLOW_PORT",
    "POD_URI",
    "mlflow_allowed_hosts",
    "mlflow_server_manifests",
    "port_forward",
    "wait_tracking_api",
]

MLFLOW_NAMESPACE = "mlflow"
MLFLOW_PORT = 5000
POD_URI = f"http://mlflow.{MLFLOW_NAMESPACE}.svc.cluster.local:{MLFLOW_PORT}"
"""Where pods reach the in-cluster server: its Service's DNS name."""


def mlflow_allowed_hosts(host_port: int | None, namespace: str = MLFLOW_NAMESPACE) -> list[str]:
    """Exactly the Host headers our clients send: Service DNS forms and the mapped loopback port.

    ``host_port`` None (a shared cluster, reached through port-forwards): every session forwards from
    a loopback port of its own machine's choosing, so any loopback port. A page on another site that
    a browser resolves to 127.0.0.1 still sends its own name as Host and is still refused.
    """
    names = ["mlflow", f"mlflow.{namespace}", f"mlflow.{namespace}.svc", f"mlflow.{namespace}.svc.cluster.local"]
    hosts = [h for n in names for h in (n, f"{n}:{MLFLOW_PORT}")]
    port = "*" if host_port is None else str(host_port)
    return [*hosts, f"127.0.0.1:{port}", f"localhost:{port}"]


def mlflow_server_manifests(image: str, host_port: int | None,
                            namespace: str = MLFLOW_NAMESPACE) -> list[dict[str, Any]]:
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
        "env": [{"name": name, "value": value} for name, value in SERVER_ENV.items()],
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


def port_forward(cluster: Cluster, port: int, log: Callable[[str], None]) -> _exec.Popen[bytes]:
    """``kubectl port-forward svc/mlflow`` on loopback, for clusters without a port mapping."""
    kube = cluster.kube
    ctx = ["--context", kube.context] if kube.context else []
    argv: list[str | Path] = [kube.kubectl_bin, "--kubeconfig", str(kube.kubeconfig), *ctx, "-n", MLFLOW_NAMESPACE,
                              "port-forward", "--address", "127.0.0.1", "svc/mlflow", f"{port}:{MLFLOW_PORT}"]
    log(f"stack: port-forward svc/mlflow to 127.0.0.1:{port}")
    # Its log goes to our cache, never next to a kubeconfig the user owns.
    return _exec.spawn(argv, log_path=cache_dir("logs") / f"port-forward-{port}.log")


def wait_tracking_api(uri: str, *, timeout: float) -> None:
    """A real API call, not /health: /health skips the Host-header check we must pass.

    The stack waits this way for an external tracking server too, the one it is pointed at instead.
    """
    url = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"

    def probe() -> Probe[None]:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback URL we built
                return Probe(resp.status == 200, f"HTTP {resp.status}")
        except urllib.error.HTTPError as exc:
            return Probe(False, f"HTTP {exc.code}: {exc.read()[:200]!r}")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            return Probe(False, f"{type(exc).__name__}: {exc}")

    wait_for(probe, what=f"MLflow API at {uri} from this host", timeout=timeout, interval=1.0)
