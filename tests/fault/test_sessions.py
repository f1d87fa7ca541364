"""Fault tier: two sessions at once, on two clusters or fighting over one (real child sessions, real kind).

Two CI jobs on one machine, a teammate, a second terminal: sessions with
different cluster names must run side by side, and a Ctrl-C to one of them
must end it (its run KILLED, its fresh cluster deleted) without the other
noticing; a second session naming a cluster another one uses must never
delete or recreate it under the running test (the session lock,
:mod:`harness.sessionlock`). It waits, recorded as waiting, and gets the
cluster once the first session has ended. Asserted on state: node container
ids, the lock's holder and waiter records, MLflow run states, exit codes.
The scenarios run in file order and start on the cluster
:mod:`.test_interrupts` kept (:data:`~.childsession.KEPT`), as the next local
run would. Their images go through the harness's local registry: the
scenarios are about sessions and the lock, and bring-ups each streaming two
images whole through ``kind load`` were most of their CPU (the example tier
and MLflow's own example test cover ``kind load``; Ctrl-C during ``kind
create`` covers it under an interrupt).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from harness._errors import WaitTimeout
from harness._waiting import Probe, wait_for
from harness.clusters.kind_cli import node_container_ids
from harness.sessionlock import SessionLock
from tests.fault.childsession import (
    KEPT,
    Child,
    assert_nothing_left,
    end_of_an_interrupted_run,
    running_customjob,
    wait_until,
)

A, B = KEPT, "fault-sessions-b"
Start = Callable[..., Child]
ROUTE = {"HARNESS_REGISTRY": "local"}
BRING_UP = 1500.0
"""Seconds a child may take to have its test running (two bring-ups share two cores in the first scenario)."""


def _hold_for(what: str, seconds: float, invariant: Callable[[], str | None]) -> None:
    """For ``seconds``, ``invariant`` must keep returning None; what it returns otherwise fails the test."""
    def probe() -> Probe[None]:
        broken = invariant()
        if broken is not None:
            pytest.fail(f"{what}: {broken}")
        return Probe(False, "holds")

    with contextlib.suppress(WaitTimeout):  # the whole period went by with the invariant true
        wait_for(probe, what=what, timeout=seconds, interval=1.0)


def test_a_ctrl_c_to_one_of_two_sessions_side_by_side_ends_it_and_leaves_the_other_alone(child: Start) -> None:
    """Session A holds its test on cluster A (kept by :mod:`.test_interrupts`, reused; made if run alone); session
    B, through tox on cluster B, runs ``mlflow run --backend customjob`` when a terminal's Ctrl-C reaches B's whole
    process group. tox passes it on too (its main thread and its scheduler each interrupt the env, "forcing full
    stop" the second time, still waiting interrupt_timeout before SIGTERM): B's teardown must shrug off the extra
    signals, end its run KILLED (read while the session ends: the deleted cluster takes its tracking server
    along), delete the fresh cluster it made (``keep-cluster=never``, reuse off) and leave nothing. A goes on,
    on the same node containers, and ends green when told to, its cluster kept."""
    kept = node_container_ids(A)
    first = child("--harness-cluster-name", A, "--harness-keep-cluster=always", select="test_cluster_until_go",
                  env=ROUTE)
    second = child("--harness-cluster-name", B, "--harness-keep-cluster=never", "--harness-reuse=false",
                   select="test_hold_a_run", via_tox=True, env=ROUTE)
    first.wait_ready("the first session's test runs", BRING_UP)
    info = second.wait_ready("the second session's test runs", BRING_UP)
    nodes = {name: node_container_ids(name) for name in (A, B)}
    assert all(nodes.values()), f"both clusters run at the same time: {nodes}"
    if kept:
        assert nodes[A] == kept, "the first session reused the cluster the interrupted sessions kept"
    run_id = wait_until("the second session's mlflow run to run its CustomJob", lambda: running_customjob(info),
                        600, second)

    os.killpg(second.pid, signal.SIGINT)  # a terminal's Ctrl-C: tox and pytest both get it
    end_of_an_interrupted_run(second, B, info, run_id)
    assert_nothing_left(B, info["server_pid"])

    assert first.proc.poll() is None, f"the first session ended ({first.proc.returncode}):\n{first.tail()}"
    assert node_container_ids(A) == nodes[A], "the first session's cluster changed under the other's Ctrl-C"
    first.go.touch()
    assert first.finish(300) == 0, first.tail()
    assert node_container_ids(A) == nodes[A], "the first session's cluster is kept (keep-cluster=always)"


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

    # Ten seconds are five of the waiter's 2-second tries at the lock (harness.sessionlock); a waiter that gives up,
    # takes the lock or touches the nodes shows within them (was 30 s: the fault lane's longest idle stretch).
    _hold_for("the first session keeps its cluster while the second waits", 10, untouched)
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
