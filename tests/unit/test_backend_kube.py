"""API errors become errors a user can act on (no cluster: exceptions built by hand)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from harness.backend.config import BackendConfig
from harness.backend.errors import (
    ApiRejected,
    ClusterUnreachable,
    CrdNotInstalled,
    NamespaceNotFound,
)
from harness.backend.kube import Workloads
from harness.backend.kube import translate_error as _translate
from harness.workloads import CUSTOMJOB
from harness.workloads.api import Served, WorkloadClient, pause_until_changed

CFG = BackendConfig.from_dict(
    {"template-path": "t", "kind-cluster": "c", "kube-context": "kind-c", "namespace": "team"}
)


def translate_error(exc: BaseException, cfg: BackendConfig, action: str, name: str | None = None) -> Any:
    return _translate(exc, cfg, CUSTOMJOB, "team", action, name)


def CustomJobs(objects: Any, cfg: BackendConfig) -> Workloads:
    client = WorkloadClient(objects, objects, CUSTOMJOB, "team", served=Served("customjobs", True))
    return Workloads(client, cfg)


def api_error(
    status: int, message: str = "", details: dict[str, str] | None = None, raw: str | None = None
) -> ApiException:
    body = (
        raw
        if raw is not None
        else json.dumps(
            {
                "kind": "Status",
                "status": "Failure",
                "message": message,
                "code": status,
                "details": details or {},
            }
        )
    )
    return ApiException(status=status, reason="x", body=body)


def test_crd_missing_plain_404() -> None:
    err = translate_error(api_error(404, raw="404 page not found"), CFG, "create", "j")
    assert isinstance(err, CrdNotInstalled)
    assert "CustomJob CRD not installed" in str(err)
    assert "`kubectl apply -k crds/`" in str(err)


def test_crd_missing_status_404() -> None:
    err = translate_error(api_error(404, "the server could not find the requested resource"), CFG, "list")
    assert isinstance(err, CrdNotInstalled)


def test_namespace_missing() -> None:
    err = translate_error(
        api_error(404, 'namespaces "team" not found', {"name": "team", "kind": "namespaces"}),
        CFG,
        "create",
        "j",
    )
    assert isinstance(err, NamespaceNotFound)
    assert "kubectl create namespace team" in str(err)


def test_422_carries_the_servers_validation_message() -> None:
    msg = 'CustomJob.training.example.com "j" is invalid: spec.command: Required value'
    err = translate_error(api_error(422, msg), CFG, "create", "j")
    assert isinstance(err, ApiRejected)
    assert err.status == 422
    assert msg in str(err)
    assert "team/j" in str(err)


def test_403_mentions_rbac() -> None:
    err = translate_error(api_error(403, "customjobs is forbidden"), CFG, "create", "j")
    assert isinstance(err, ApiRejected)
    assert "RBAC" in str(err)


def test_connection_error_names_context() -> None:
    err = translate_error(urllib3.exceptions.ProtocolError("Connection aborted."), CFG, "list")
    assert isinstance(err, ClusterUnreachable)
    assert "'kind-c'" in str(err)


def test_unrelated_errors_are_not_translated() -> None:
    assert translate_error(ValueError("x"), CFG, "list") is None


class _Objects:
    """Raises a scripted error from every call (enough to test the backend's translation)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Callable[..., None]:
        def call(*args: object, **kwargs: object) -> None:
            raise self.exc

        return call


def fake_api(exc: Exception) -> Any:
    """Typed as Any: it stands in for CustomObjectsApi by duck typing."""
    return _Objects(exc)


def test_get_and_delete_treat_a_missing_object_as_none() -> None:
    gone = api_error(404, 'customjobs "j" not found', {"name": "j", "kind": "customjobs"})
    jobs = CustomJobs(fake_api(gone), CFG)
    assert jobs.get("j") is None
    assert jobs.delete("j") is False


def test_get_with_crd_missing_raises() -> None:
    jobs = CustomJobs(fake_api(api_error(404, raw="404 page not found")), CFG)
    with pytest.raises(CrdNotInstalled):
        jobs.get("j")


def test_preflight_translates() -> None:
    jobs = CustomJobs(fake_api(urllib3.exceptions.ProtocolError("Connection aborted.")), CFG)
    with pytest.raises(ClusterUnreachable, match="kind-c"):
        jobs.preflight()


class _Watching(WorkloadClient):
    """A client whose watch is scripted: records what it was asked to watch and answers ``can_watch``."""

    def __init__(self, can_watch: bool) -> None:
        super().__init__(object(), None, CUSTOMJOB, "team", served=Served("customjobs", True))  # type: ignore[arg-type]
        self.can_watch = can_watch
        self.watched: list[tuple[str, str, float]] = []

    def wait_change(self, name: str, resource_version: str, timeout: float) -> bool:
        self.watched.append((name, resource_version, timeout))
        return self.can_watch


@pytest.mark.parametrize(
    ("obj", "can_watch", "watched", "slept"),
    [
        ({"metadata": {"name": "j", "resourceVersion": "41"}}, True, [("j", "41", 2.0)], []),
        ({"metadata": {"name": "j", "resourceVersion": "41"}}, False, [("j", "41", 2.0)], [2.0]),
        (None, True, [], [2.0]),
        ({"metadata": {"name": "j"}}, True, [], [2.0]),
    ],
    ids=["woken-by-the-watch", "watch-refused-so-it-sleeps", "absent-object-sleeps", "no-version-sleeps"],
)
def test_pause_watches_from_the_version_it_saw_and_sleeps_only_when_it_cannot(
    obj: dict[str, Any] | None, can_watch: bool, watched: list[tuple[str, str, float]], slept: list[float]
) -> None:
    client = _Watching(can_watch)
    sleeps: list[float] = []
    pause_until_changed(client.wait_change, "j", obj, 2.0, sleep=sleeps.append)
    assert client.watched == watched
    assert sleeps == slept


def test_the_core_api_is_made_on_first_use_over_the_same_api_client() -> None:
    from kubernetes import client as k8s_client

    api = k8s_client.ApiClient(k8s_client.Configuration())
    client = WorkloadClient.of(api, CUSTOMJOB, "team")
    assert client._core is None  # not made by `of`: its import costs the backend's process ~0.7 s
    assert client.core.api_client is api
    assert client.core is client.core
