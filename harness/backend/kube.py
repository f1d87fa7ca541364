"""Talking to the API server about the run's workload objects, with errors a user can act on.

Every call goes through clients bound to an ``ApiClient`` built from the
configured kubeconfig/context, never through the kubernetes package's
process-global configuration: a test process may talk to several clusters, and
a backend must not re-point the caller's other clients. The calls themselves
are :class:`harness.workloads.api.WorkloadClient`'s (the same the harness
uses); this module turns their errors into messages naming the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from harness.backend.config import BackendConfig
from harness.backend.errors import (
    ApiRejected,
    ClusterUnreachable,
    CrdNotInstalled,
    CustomJobBackendError,
    NamespaceNotFound,
)
from harness.workloads.api import REQUEST_TIMEOUT, KindNotServed, WorkloadClient, not_found_kind
from harness.workloads.kind import WorkloadKind

__all__ = [
    "REQUEST_TIMEOUT",
    "Workloads",
    "api_client",
    "api_message",
    "translate_error",
]


def api_client(cfg: BackendConfig) -> k8s_client.ApiClient:
    """An ``ApiClient`` of its own for the configured cluster (in-cluster config inside a pod)."""
    try:
        return k8s_config.new_client_from_config(
            config_file=cfg.kubeconfig, context=cfg.kube_context, persist_config=False
        )
    except (ConfigException, OSError) as exc:
        if cfg.kubeconfig is None and cfg.kube_context is None and _in_cluster():
            configuration = k8s_client.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            return k8s_client.ApiClient(configuration)
        raise ClusterUnreachable(
            f"cannot load {cfg.describe_cluster()}: {exc}. Check 'kubeconfig' and "
            f"'kube-context' in the backend config (`kubectl config get-contexts`)."
        ) from exc


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def api_message(exc: ApiException) -> str:
    """The API server's own explanation from an ``ApiException`` body (a Status object)."""
    body = exc.body or ""
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return str(body).strip() or str(exc.reason or "")
    if isinstance(status, Mapping):
        return str(status.get("message") or status.get("reason") or body)
    return str(body)


def translate_error(
    exc: BaseException, cfg: BackendConfig, kind: WorkloadKind, namespace: str, action: str, name: str | None = None
) -> CustomJobBackendError | None:
    """Map a kubernetes/urllib3 error to our error, or None if it is not one of them."""
    where = (f"{action} {kind.kind} {namespace}/{name}" if name else f"{action} {kind.kind}s in {namespace!r}")
    if isinstance(exc, KindNotServed):
        return CrdNotInstalled(f"{kind.kind} CRD not installed ({kind.api_version}): install it and its controller "
                               f"(the stub's: `kubectl apply -k crds/`) ({where}: {exc})")
    if isinstance(exc, ApiException):
        status = exc.status
        message = api_message(exc)
        if status == 404:
            missing = not_found_kind(exc)
            if missing == "namespaces":
                return NamespaceNotFound(
                    f"{where}: namespace {namespace!r} does not exist "
                    f"(`kubectl create namespace {namespace}`, or set 'namespace')"
                )
            if missing is not None and missing != "namespaces":
                return ApiRejected(f"{where}: not found: {message}", status)
            return CrdNotInstalled(f"{kind.kind} CRD not installed ({kind.api_version}): install it and its "
                                   f"controller (the stub's: `kubectl apply -k crds/`) ({where}: {message})")
        if status == 401:
            return ClusterUnreachable(
                f"{where}: the API server rejected the credentials of {cfg.describe_cluster()}: {message}"
            )
        if status == 403:
            return ApiRejected(f"{where}: forbidden (RBAC): {message}", status)
        if status == 409:
            return ApiRejected(f"{where}: already exists: {message}", status)
        if status in (400, 422):
            return ApiRejected(f"{where}: the API server rejected the object: {message}", status)
        return ApiRejected(f"{where}: HTTP {status}: {message}", status)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return ClusterUnreachable(f"{where}: cannot reach the API server of {cfg.describe_cluster()}: {exc}")
    return None


class Workloads:
    """The calls the backend makes about one kind in one namespace, errors translated."""

    def __init__(self, client: WorkloadClient, cfg: BackendConfig) -> None:
        self.client = client
        self._cfg = cfg

    @classmethod
    def connect(cls, cfg: BackendConfig, kind: WorkloadKind, namespace: str) -> Workloads:
        return cls(WorkloadClient.of(api_client(cfg), kind, namespace), cfg)

    @property
    def namespace(self) -> str:
        return self.client.namespace

    @property
    def kind(self) -> WorkloadKind:
        return self.client.kind

    def _translated(self, exc: BaseException, action: str, name: str | None = None) -> BaseException:
        return translate_error(exc, self._cfg, self.kind, self.namespace, action, name) or exc

    def preflight(self) -> None:
        """Prove the cluster answers and serves the kind here (discovery, then a list), before a build."""
        try:
            self.client.list_objects(limit=1)
        except Exception as exc:
            raise self._translated(exc, "list") from exc

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = str(body.get("metadata", {}).get("name"))
        try:
            return self.client.create(body)
        except Exception as exc:
            raise self._translated(exc, "create", name) from exc

    def get(self, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist (any other error raises)."""
        try:
            return self.client.get(name)
        except Exception as exc:
            raise self._translated(exc, "read", name) from exc

    def delete(self, name: str) -> bool:
        """Delete with background propagation (its pods go too); False if absent."""
        try:
            return self.client.delete(name)
        except Exception as exc:
            raise self._translated(exc, "delete", name) from exc

    def wait_change(self, name: str, resource_version: str, timeout: float) -> bool:
        return self.client.wait_change(name, resource_version, timeout)
