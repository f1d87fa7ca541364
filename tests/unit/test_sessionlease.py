"""Unit tier: who else uses a shared cluster, which namespaces belong to sessions that are gone, whether a session's
stack may be applied beside the others', and when the Leases' namespace goes (issue 24).

The Leases are faked here (objects shaped like the kubernetes client's); the existing tier runs real sessions
against one cluster, including one whose stack differs and one that starts while the Leases' namespace goes.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from harness import sessionlease
from harness.sessionlease import (
    CHECKING,
    DIGEST_ANNOTATION,
    PENDING,
    REFUSED,
    RUNNING,
    STATE_ANNOTATION,
    Peer,
    SessionLease,
    StackMismatch,
    lease_namespace_kept,
    peers,
    stack_verdict,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
LABEL = "mlflow-crd-harness/session"
OURS = {"app.kubernetes.io/managed-by": "mlflow-crd-harness"}


def _lease(session: str, renewed_ago: float | None, duration: int = 120, *, digest: str | None = None,
           state: str | None = None, created_ago: float = 300, name: str | None = None) -> Any:
    renewed = None if renewed_ago is None else NOW - dt.timedelta(seconds=renewed_ago)
    notes = {k: v for k, v in ((DIGEST_ANNOTATION, digest), (STATE_ANNOTATION, state)) if v is not None}
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name or f"session-{session}", annotations=notes or None,
                                 creation_timestamp=NOW - dt.timedelta(seconds=created_ago)),
        spec=SimpleNamespace(renew_time=renewed, acquire_time=None, lease_duration_seconds=duration,
                             holder_identity=f"host-{session}/{session}"))


def _namespace(name: str, session: str | None, age: float, phase: str = "Active") -> Any:
    labels = {LABEL: session} if session else {}
    return SimpleNamespace(metadata=SimpleNamespace(name=name, labels=labels,
                                                    creation_timestamp=NOW - dt.timedelta(seconds=age)),
                           status=SimpleNamespace(phase=phase))


class _Leases:
    """The Lease API's list and patch, over a list of Lease-shaped objects."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.patches: list[dict[str, Any]] = []

    def list_namespaced_lease(self, namespace: str) -> Any:
        assert namespace == sessionlease.NAMESPACE
        return SimpleNamespace(items=self.items)

    def patch_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        assert namespace == sessionlease.NAMESPACE
        self.patches.append(body)
        for lease in self.items:
            if lease.metadata.name == name:
                lease.metadata.annotations = {**(lease.metadata.annotations or {}),
                                              **body.get("metadata", {}).get("annotations", {})}


@pytest.fixture
def lease(monkeypatch: pytest.MonkeyPatch) -> SessionLease:
    monkeypatch.setattr(sessionlease, "_now", lambda: NOW)
    found = SessionLease(kube=None, session="me", log=lambda _line: None)  # type: ignore[arg-type]
    leases = _Leases([_lease("me", 5), _lease("other", 100), _lease("stale", 121), _lease("never", None),
                      _lease("", 0, name="not-a-session")])
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


# -- one stack per shared cluster -------------------------------------------------------------------------------


def _peer(session: str, digest: str | None, state: str | None, created_ago: float = 300) -> Peer:
    return Peer(session=session, holder=f"host-{session}/{session}", digest=digest, state=state,
                since=NOW - dt.timedelta(seconds=created_ago))


ME = _peer("me", "aaaa", CHECKING, created_ago=10)


def test_peers_reads_digest_state_and_holder_of_live_sessions_only() -> None:
    found = peers([_lease("a", 5, digest="aaaa", state=RUNNING), _lease("old", 5),
                   _lease("gone", 500, digest="bbbb", state=RUNNING), _lease("", 0, name="not-a-session")], NOW)
    assert [(p.session, p.holder, p.digest, p.state) for p in found] == [
        ("a", "host-a/a", "aaaa", RUNNING), ("old", "host-old/old", None, None)]


def test_the_same_stack_as_every_live_session_proceeds() -> None:
    verdict = stack_verdict("me", "aaaa", [ME, _peer("a", "aaaa", RUNNING), _peer("b", "aaaa", CHECKING)])
    assert (verdict.action, verdict.against, verdict.unaware) == ("proceed", (), ())


def test_a_live_session_running_another_stack_refuses_this_one() -> None:
    other = _peer("a", "bbbb", RUNNING, created_ago=5)  # came later than this one, and still wins: it runs
    verdict = stack_verdict("me", "aaaa", [ME, other, _peer("c", "aaaa", RUNNING)])
    assert (verdict.action, verdict.against) == ("refuse", (other,))


def test_sessions_that_have_not_rendered_or_were_refused_are_not_compared() -> None:
    verdict = stack_verdict("me", "aaaa", [ME, _peer("starting", None, PENDING), _peer("no", "bbbb", REFUSED)])
    assert verdict.action == "proceed"


def test_an_older_harness_without_the_annotation_is_a_warning_not_a_refusal() -> None:
    old = _peer("old", None, None)
    verdict = stack_verdict("me", "aaaa", [ME, old])
    assert (verdict.action, verdict.unaware) == ("proceed", (old,))


def test_one_comparing_another_stack_beside_an_established_one_of_ours_is_waited_for() -> None:
    """It will see the running session of our stack and refuse; this one must not refuse because of it."""
    newcomer = _peer("c", "bbbb", CHECKING, created_ago=60)  # even if its Lease is older than this one's
    verdict = stack_verdict("me", "aaaa", [ME, _peer("a", "aaaa", RUNNING), newcomer])
    assert (verdict.action, verdict.against) == ("wait", (newcomer,))


def test_two_new_stacks_at_once_the_lease_that_came_first_wins() -> None:
    first, later = _peer("p", "bbbb", CHECKING, created_ago=60), _peer("q", "cccc", CHECKING, created_ago=1)
    assert stack_verdict("me", "aaaa", [ME, first]).action == "refuse"
    assert stack_verdict("me", "aaaa", [ME, first]).against == (first,)
    assert (stack_verdict("me", "aaaa", [ME, later]).action, stack_verdict("me", "aaaa", [ME, later]).against) == \
        ("wait", (later,))
    # The same creation second: the session ids decide, the same way on both sides.
    twin = _peer("zz", "bbbb", CHECKING, created_ago=10)
    assert stack_verdict("me", "aaaa", [ME, twin]).action == "wait"
    assert stack_verdict("zz", "bbbb", [ME, twin]).action == "refuse"


def test_at_most_one_of_two_different_stacks_proceeds_whatever_each_sees() -> None:
    """Each names its digest before it compares, so the later one to compare sees the other in some state."""
    p_states = [CHECKING, RUNNING]
    for p_state in p_states:
        p = _peer("p", "bbbb", p_state, created_ago=60)
        q = _peer("q", "cccc", CHECKING, created_ago=30)
        # q compared after p named its digest: q never proceeds while p is live and undecided or running
        assert stack_verdict("q", "cccc", [p, q]).action != "proceed"


def test_claim_names_the_digest_and_running_state_on_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessionlease, "_now", lambda: NOW)
    leases = _Leases([_lease("me", 1, state=PENDING), _lease("a", 5, digest="aaaa", state=RUNNING)])
    monkeypatch.setattr(SessionLease, "_api", property(lambda _self: leases))
    mine = SessionLease(kube=None, session="me", log=lambda _line: None)  # type: ignore[arg-type]
    mine._thread = SimpleNamespace()  # type: ignore[assignment]  # held: start() ran
    mine.claim_stack("aaaa")
    assert [p["metadata"]["annotations"] for p in leases.patches] == [
        {DIGEST_ANNOTATION: "aaaa", STATE_ANNOTATION: CHECKING}, {STATE_ANNOTATION: RUNNING}]


def test_a_refusal_names_the_session_its_machine_its_digest_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessionlease, "_now", lambda: NOW)
    leases = _Leases([_lease("me", 1, state=PENDING), _lease("a1b2c3d4", 5, digest="bbbb", state=RUNNING),
                      _lease("old", 5)])
    monkeypatch.setattr(SessionLease, "_api", property(lambda _self: leases))
    lines: list[str] = []
    mine = SessionLease(kube=None, session="me", log=lines.append)  # type: ignore[arg-type]
    mine._thread = SimpleNamespace()  # type: ignore[assignment]
    with pytest.raises(StackMismatch) as err:
        mine.claim_stack("aaaa")
    text = str(err.value)
    for part in ("session a1b2c3d4", "host-a1b2c3d4/a1b2c3d4", "bbbb", "aaaa", "same stack", "another cluster",
                 "wait for that session to end"):
        assert part in text
    assert leases.patches[-1]["metadata"]["annotations"] == {STATE_ANNOTATION: REFUSED}  # withdrawn at once
    assert [line for line in lines if "session old" in line and "warning" in line]  # the older harness: a warning


def test_no_lease_held_means_nothing_is_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refuses:
        def patch_namespaced_lease(self, *args: Any) -> None:
            raise AssertionError("no Lease is held: nothing to annotate")

    monkeypatch.setattr(SessionLease, "_api", property(lambda _self: Refuses()))
    SessionLease(kube=None, session="me").claim_stack("aaaa")  # type: ignore[arg-type]


# -- the Leases' namespace ---------------------------------------------------------------------------------------


def test_the_last_session_out_removes_the_namespace_the_harness_made() -> None:
    assert lease_namespace_kept(OURS, OURS, [], NOW) is None


def test_leases_of_sessions_that_are_gone_do_not_keep_the_namespace() -> None:
    assert lease_namespace_kept(OURS, OURS, [_lease("killed", 500), _lease("never", None)], NOW) is None


def test_a_live_session_keeps_the_namespace() -> None:
    assert "session-other" in (lease_namespace_kept(OURS, OURS, [_lease("other", 10)], NOW) or "")


def test_a_namespace_the_harness_did_not_make_is_never_deleted() -> None:
    assert lease_namespace_kept({}, OURS, [], NOW) is not None
    assert lease_namespace_kept({"app.kubernetes.io/managed-by": "platform-team"}, OURS, [], NOW) is not None
    assert lease_namespace_kept(OURS, {}, [], NOW) is not None  # a session that cannot tell whose it is


def test_someone_elses_lease_in_it_keeps_the_namespace() -> None:
    assert "their-lock" in (lease_namespace_kept(OURS, OURS, [_lease("", 500, name="their-lock")], NOW) or "")


def test_a_namespace_already_gone_is_not_deleted_again() -> None:
    assert lease_namespace_kept(None, OURS, [], NOW) is not None
