"""Unit tier: who holds a cluster and who waits for it is on record, not only in a log (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import owners
from harness._waiting import Probe, wait_for
from harness.sessionlock import ClusterBusy, SessionLock

TAKE = """
import sys, time
from pathlib import Path
from harness.sessionlock import SessionLock
lock = SessionLock("c1", directory=Path(sys.argv[1]), timeout=float(sys.argv[2]), log=lambda m: None).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def _take(tmp_path: Path, timeout: float, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", TAKE, str(tmp_path), str(timeout), str(hold)],
                            stdout=subprocess.PIPE, text=True)


def test_the_holder_and_a_waiter_are_recorded_until_the_waiter_has_the_lock(tmp_path: Path) -> None:
    lock = SessionLock("c1", directory=tmp_path, log=lambda _m: None)
    with lock:
        mine = lock.holder_record()
        assert mine["pid"] > 0
        assert owners.is_alive(mine["owner"])
        waiter = _take(tmp_path, 30, 0)

        def waiting() -> Probe[list[dict[str, object]]]:
            found = lock.waiters()
            return Probe(bool(found), str(found), found)

        found = wait_for(waiting, what="the second process to wait", timeout=20, interval=0.1)
        assert found is not None
        assert [w["pid"] for w in found] == [waiter.pid]
        assert found[0]["holder"] == mine
    assert waiter.stdout is not None
    assert waiter.stdout.readline().strip() == "held"
    assert lock.holder_record()["pid"] == waiter.pid
    assert lock.waiters() == []
    waiter.wait(10)


def test_a_waiter_that_gives_up_or_is_killed_leaves_no_waiter(tmp_path: Path) -> None:
    lock = SessionLock("c1", directory=tmp_path, log=lambda _m: None)
    with lock:
        with pytest.raises(ClusterBusy):
            SessionLock("c1", directory=tmp_path, timeout=0.5, log=lambda _m: None).acquire()
        assert lock.waiters() == []
        killed = _take(tmp_path, 30, 0)
        wait_for(lambda: Probe(bool(list(tmp_path.glob("cluster-c1.wait-*.json"))), "no record yet"),
                 what="a waiter record", timeout=20, interval=0.1)
        killed.kill()  # SIGKILL: its record stays, with an owner that is gone
        killed.wait()
        assert list(tmp_path.glob("cluster-c1.wait-*.json"))
        assert lock.waiters() == []
        assert not list(tmp_path.glob("cluster-c1.wait-*.json")), "the dead waiter's record was dropped"


def test_a_record_names_its_owner_so_a_reused_pid_does_not_count(tmp_path: Path) -> None:
    lock = SessionLock("c1", directory=tmp_path, log=lambda _m: None)
    (tmp_path / "cluster-c1.wait-1.json").write_text(json.dumps({"pid": 1, "owner": "1:-1", "since": "x"}))
    assert lock.waiters() == [], "pid 1 runs, but not as the process that wrote the record (its start time differs)"
