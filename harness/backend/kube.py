"""Talking to the API server about CustomJobs, with errors a user can act on.

Every call goes through a ``CustomObjectsApi`` bound to an ``ApiClient`` built
from the configured kubeconfig/context, never through the kubernetes package's
process-global configuration: a test process may talk to several clusters, and
a backend must not re-point the caller's other clients. Calls carry a request
timeout so an unreachable cluster fails in seconds, not after the TCP default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, cast

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from harness import contract
from harness.backend.config import BackendConfig
from harness.backend.errors import (
    ApiRejected,
    ClusterUnreachable,
    CrdNotInstalled,
    CustomJobBackendError,
    NamespaceNotFound,
)

__all__ = [
    "REQUEST_TIMEOUT",
    "CustomJobs",
    "api_message",
    "custom_objects_api",
    "translate_error",
]

REQUEST_TIMEOUT: tuple[float, float] = (10.0, 60.0)
"""(connect, read) seconds for one API request."""

CRD_HINT = "CustomJob CRD not installed: install with `kubectl apply -k crds/`"


def custom_objects_api(cfg: BackendConfig) -> k8s_client.CustomObjectsApi:
    """A ``CustomObjectsApi`` on a private ``ApiClient`` for the configured cluster."""
    try:
        api_client = k8s_config.new_client_from_config(
            config_file=cfg.kubeconfig, context=cfg.kube_context, persist_config=False
        )
    except (ConfigException, OSError) as exc:
        if cfg.kubeconfig is None and cfg.kube_context is None and _in_cluster():
            configuration = k8s_client.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            api_client = k8s_client.ApiClient(configuration)
        else:
            raise ClusterUnreachable(
                f"cannot load {cfg.describe_cluster()}: {exc}. Check 'kubeconfig' and "
                f"'kube-context' in the backend config (`kubectl config get-contexts`)."
            ) from exc
    return k8s_client.CustomObjectsApi(api_client)


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


def _not_found_kind(exc: ApiException) -> str | None:
    try:
        details = json.loads(exc.body or "").get("details") or {}
    except (TypeError, ValueError, AttributeError):
        return None
    kind = details.get("kind") if isinstance(details, Mapping) else None
    return str(kind) if kind else None


def translate_error(
    exc: BaseException, cfg: BackendConfig, action: str, name: str | None = None
) -> CustomJobBackendError | None:
    """Map a kubernetes/urllib3 error to our error, or None if it is not one of them."""
    where = f"{action} CustomJob {cfg.namespace}/{name}" if name else f"{action} CustomJobs in {cfg.namespace!r}"
    if isinstance(exc, ApiException):
        status = exc.status
        message = api_message(exc)
        if status == 404:
            missing = _not_found_kind(exc)
            if missing == "namespaces":
                return NamespaceNotFound(
                    f"{where}: namespace {cfg.namespace!r} does not exist "
                    f"(`kubectl create namespace {cfg.namespace}`, or set 'namespace')"
                )
            if missing == contract.PLURAL:
                return ApiRejected(f"{where}: not found: {message}", status)
            return CrdNotInstalled(f"{CRD_HINT} ({where}: {message})")
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


class CustomJobs:
    """The four CustomJob calls the backend makes, in one namespace, errors translated."""

    def __init__(self, objects: k8s_client.CustomObjectsApi, cfg: BackendConfig) -> None:
        self._objects = objects
        self._cfg = cfg

    @property
    def namespace(self) -> str:
        return self._cfg.namespace

    def preflight(self) -> None:
        """Prove the cluster answers and serves the CRD, before an expensive image build."""
        try:
            self._objects.list_namespaced_custom_object(
                contract.GROUP,
                contract.VERSION,
                self._cfg.namespace,
                contract.PLURAL,
                limit=1,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as exc:
            raise self._translated(exc, "list") from exc

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = str(body.get("metadata", {}).get("name"))
        try:
            created = self._objects.create_namespaced_custom_object(
                contract.GROUP,
                contract.VERSION,
                self._cfg.namespace,
                contract.PLURAL,
                dict(body),
                field_validation="Strict",  # a misspelt template field is refused, never silently pruned
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as exc:
            raise self._translated(exc, "create", name) from exc
        return cast(dict[str, Any], created)

    def get(self, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist (any other error raises)."""
        try:
            obj = self._objects.get_namespaced_custom_object(
                contract.GROUP,
                contract.VERSION,
                self._cfg.namespace,
                contract.PLURAL,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404 and _not_found_kind(exc) == contract.PLURAL:
                return None
            raise self._translated(exc, "read", name) from exc
        except Exception as exc:
            raise self._translated(exc, "read", name) from exc
        return cast(dict[str, Any], obj)

    def wait_change(self, name: str, resource_version: str, timeout: float) -> bool:
        """Block until ``name`` changes after ``resource_version``, or ``timeout`` seconds pass.

        A watch instead of a sleep: the run's end is seen the moment the
        controller writes it, not up to a poll interval later. False if the
        watch could not be opened or broke (e.g. 410 Gone for an old version):
        the caller then sleeps its interval, as without a watch.
        """
        watcher = k8s_watch.Watch()
        try:
            for _event in watcher.stream(
                self._objects.list_namespaced_custom_object,
                contract.GROUP,
                contract.VERSION,
                self._cfg.namespace,
                contract.PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=resource_version,
                timeout_seconds=max(1, int(timeout)),
                _request_timeout=(REQUEST_TIMEOUT[0], timeout + REQUEST_TIMEOUT[1]),
            ):
                return True
        except Exception:
            return False
        finally:
            watcher.stop()
        return True

    def delete(self, name: str) -> bool:
        """Delete with background propagation (the Job and pods go too); False if absent."""
        try:
            self._objects.delete_namespaced_custom_object(
                contract.GROUP,
                contract.VERSION,
                self._cfg.namespace,
                contract.PLURAL,
                name,
                propagation_policy="Background",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404 and _not_found_kind(exc) == contract.PLURAL:
                return False
            raise self._translated(exc, "delete", name) from exc
        except Exception as exc:
            raise self._translated(exc, "delete", name) from exc
        return True

    def _translated(self, exc: Exception, action: str, name: str | None = None) -> Exception:
        return translate_error(exc, self._cfg, action, name) or exc
