"""Unit tier: who else uses a shared cluster, and which namespaces belong to sessions that are gone (issue 24).

The Leases are faked here (objects shaped like the kubernetes client's); the existing tier runs two real
sessions against one cluster.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from harness import sessionlease
from harness.sessionlease import SessionLease

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
LABEL = "mlflow-crd-harness/session"


def _lease(session: str, renewed_ago: float | None, duration: int = 120) -> Any:
    renewed = None if renewed_ago is None else NOW - dt.timedelta(seconds=renewed_ago)
    return SimpleNamespace(metadata=SimpleNamespace(name=f"session-{session}"),
                           spec=SimpleNamespace(renew_time=renewed, acquire_time=None, lease_duration_seconds=duration))


def _namespace(name: str, session: str | None, age: float, phase: str = "Active") -> Any:
    labels = {LABEL: session} if session else {}
    return SimpleNamespace(metadata=SimpleNamespace(name=name, labels=labels,
                                                    creation_timestamp=NOW - dt.timedelta(seconds=age)),
                           status=SimpleNamespace(phase=phase))


class _Leases:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def list_namespaced_lease(self, namespace: str) -> Any:
        assert namespace == sessionlease.NAMESPACE
        return SimpleNamespace(items=self.items)


@pytest.fixture
def lease(monkeypatch: pytest.MonkeyPatch) -> SessionLease:
    monkeypatch.setattr(sessionlease, "_now", lambda: NOW)
    found = SessionLease(kube=None, session="me", log=lambda _line: None)  # type: ignore[arg-type]
    leases = _Leases([_lease("me", 5), _lease("other", 100), _lease("stale", 121), _lease("never", None),
                      SimpleNamespace(metadata=SimpleNamespace(name="not-a-session"),
                                      spec=SimpleNamespace(renew_time=NOW, acquire_time=None,
                                                           lease_duration_seconds=120))])
    monkeypatch.setattr(SessionLease, "_api", property(lambda _self: leases))
    return found


def test_only_sessions_renewed_within_their_duration_are_alive(lease: SessionLease) -> None:
    assert lease.alive_sessions() == {"me", "other"}
    assert lease.others() == {"other"}


def test_namespaces_of_gone_sessions_are_picked_once_past_the_grace(lease: SessionLease) -> None:
    namespaces = [
        _namespace("e2e-mine", "me", 3600),
        _namespace("e2e-other", "other", 3600),            # another machine's session, alive
        _namespace("e2e-stale", "stale", 3600),            # its Lease stopped being renewed: gone
        _namespace("e2e-killed", "killed", 3600),          # no Lease at all (SIGKILL before ending it)
        _namespace("e2e-young", "killed", 60),             # too young: maybe a session still starting
        _namespace("e2e-going", "killed", 3600, "Terminating"),
        _namespace("customjob-system", None, 3600),        # the shared stack: no session label
    ]
    assert lease.dead_namespaces(namespaces, LABEL) == ["e2e-killed", "e2e-stale"]


def test_no_lease_namespace_yet_means_no_other_session(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.client.exceptions import ApiException

    class Absent:
        def list_namespaced_lease(self, namespace: str) -> Any:
            raise ApiException(status=404, reason="Not Found")

    monkeypatch.setattr(SessionLease, "_api", property(lambda _self: Absent()))
    assert SessionLease(kube=None, session="me").others() == set()  # type: ignore[arg-type]


def test_a_lease_never_held_is_not_deleted_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refuses:
        def delete_namespaced_lease(self, name: str, namespace: str) -> None:
            raise AssertionError("a lease this session never held must not be deleted")

    monkeypatch.setattr(SessionLease, "_api", property(lambda _self: Refuses()))
    SessionLease(kube=None, session="me").end()  # type: ignore[arg-type]
