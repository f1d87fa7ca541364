"""Fault tier: two sessions at once, on two clusters or fighting over one (real child sessions, real kind).

Two CI jobs on one machine, a teammate, a second terminal: sessions with
different cluster names must run side by side; a second session naming a
cluster another one uses must never delete or recreate it under the running
test (the session lock, :mod:`harness.sessionlock`). It waits, recorded as
waiting, and gets the cluster once the first session has ended. Asserted on
state: node container ids, the lock's holder and waiter records, exit codes.
The scenarios run in file order and share a cluster name: the second starts
on what the first kept, as the next local run would. Their images go through
the harness's local registry: the scenarios are about sessions and the lock,
and three bring-ups each streaming two images whole through ``kind load`` were
most of their CPU (the example tier and MLflow's own example test cover
``kind load``; Ctrl-C during ``kind create`` covers it under an interrupt).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness._errors import WaitTimeout
from harness._waiting import Probe, wait_for
from harness.clusters.kind_cli import node_container_ids
from harness.sessionlock import SessionLock
from tests.fault.childsession import Child, assert_nothing_left, down_if_left, wait_until

A, B = "fault-sessions-a", "fault-sessions-b"
Start = Callable[..., Child]
ROUTE = {"HARNESS_REGISTRY": "local"}
BRING_UP = 1500.0
"""Seconds a child may take to have its test running (two bring-ups share two cores in the first scenario)."""


@pytest.fixture(scope="module", autouse=True)
def _no_cluster_outlives_the_module() -> Iterator[None]:
    """After the assertions: a failed scenario's clusters are not left for the machine's next user."""
    yield
    down_if_left(A, B)


def _hold_for(what: str, seconds: float, invariant: Callable[[], str | None]) -> None:
    """For ``seconds``, ``invariant`` must keep returning None; what it returns otherwise fails the test."""
    def probe() -> Probe[None]:
        broken = invariant()
        if broken is not None:
            pytest.fail(f"{what}: {broken}")
        return Probe(False, "holds")

    with contextlib.suppress(WaitTimeout):  # the whole period went by with the invariant true
        wait_for(probe, what=what, timeout=seconds, interval=1.0)


def test_two_sessions_on_different_clusters_run_side_by_side(child: Start) -> None:
    first = child("--harness-cluster-name", A, "--harness-keep-cluster=always", select="test_cluster_until_go",
                  env=ROUTE)
    second = child("--harness-cluster-name", B, "--harness-keep-cluster=never", select="test_cluster_until_go",
                   env=ROUTE)
    first.wait_ready("the first session's test runs", BRING_UP)
    second.wait_ready("the second session's test runs", BRING_UP)
    nodes = {name: node_container_ids(name) for name in (A, B)}
    assert all(nodes.values()), f"both clusters run at the same time: {nodes}"
    for session in (first, second):
        session.go.touch()
    assert first.finish(300) == 0, first.tail()
    assert second.finish(300) == 0, second.tail()
    assert node_container_ids(A) == nodes[A], "the first session's cluster is kept (keep-cluster=always)"
    assert_nothing_left(B)


def test_a_second_session_on_the_same_cluster_waits_and_never_touches_it(child: Start) -> None:
    """Session B names A's cluster and forces a fresh one (reuse off, as under CI) while A's test runs."""
    first = child("--harness-cluster-name", A, "--harness-keep-cluster=never", select="test_cluster_until_go",
                  env=ROUTE)
    first_pid = first.wait_ready("the first session's test runs", BRING_UP)["pid"]
    nodes = node_container_ids(A)
    assert nodes, "the first session's cluster runs"
    lock = SessionLock(A, log=lambda _line: None)
    assert lock.holder_record().get("pid") == first_pid, "the lock file names the first session as holder"

    second = child("--harness-cluster-name", A, "--harness-reuse=false", "--harness-keep-cluster=never",
                   select="test_cluster_until_go", env=ROUTE)

    def second_waits() -> Probe[dict[str, Any]]:
        waiting = [w for w in lock.waiters() if w.get("pid") == second.pid]
        return Probe(bool(waiting), f"waiters {lock.waiters()}", waiting[0] if waiting else None)

    record = wait_until("the second session waits for the lock", second_waits, 300, second)
    assert record["holder"].get("pid") == first_pid, "it waits for the first session"

    def untouched() -> str | None:
        if (now := node_container_ids(A)) != nodes:
            return f"the first session's node containers changed: {nodes} -> {now}"
        if first.proc.poll() is not None:
            return f"the first session ended ({first.proc.returncode}) before it was told to"
        if second.proc.poll() is not None:
            return f"the second session ended ({second.proc.returncode}) instead of waiting:\n{second.tail()}"
        if not any(w.get("pid") == second.pid for w in lock.waiters()):
            return "the second session stopped waiting while the first still holds the cluster"
        if lock.holder_record().get("pid") != first_pid:
            return f"the lock changed hands: {lock.holder_record()}"
        return None

    _hold_for("the first session keeps its cluster while the second waits", 30, untouched)
    assert untouched() is None
    first.go.touch()
    assert first.finish(300) == 0, first.tail()  # its test ran on its own cluster, untouched, to the end

    second_pid = second.wait_ready("the second session's test runs", BRING_UP)["pid"]
    assert lock.holder_record().get("pid") == second_pid, "the second session holds the cluster now"
    assert not lock.waiters()
    fresh = node_container_ids(A)
    assert fresh, "the second session's cluster runs"
    assert set(fresh).isdisjoint(nodes), "reuse off: the second session made its own cluster, after the first"
    second.go.touch()
    assert second.finish(300) == 0, second.tail()
    assert_nothing_left(A)
