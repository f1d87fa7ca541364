"""Unit tier: one session per cluster (real flock between real processes; no cluster)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.sessionlock import ClusterBusy, SessionLock

HOLD = """
import sys, time
from pathlib import Path
from harness.sessionlock import SessionLock
lock = SessionLock("c1", directory=Path(sys.argv[1]), log=lambda m: None).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_session_waits_and_then_gets_the_cluster(tmp_path: Path) -> None:
    other = _holder(tmp_path, 1.5)
    said: list[str] = []
    started = time.monotonic()
    with SessionLock("c1", directory=tmp_path, timeout=30, log=said.append):
        waited = time.monotonic() - started
    other.wait(timeout=10)
    assert waited >= 1.0
    assert "in use by pid" in said[0]


def test_a_second_session_refuses_clearly_after_its_timeout(tmp_path: Path) -> None:
    other = _holder(tmp_path, 30)
    try:
        with pytest.raises(ClusterBusy, match=rf"in use by pid {other.pid}"):
            SessionLock("c1", directory=tmp_path, timeout=1, log=lambda _m: None).acquire()
    finally:
        other.kill()
        other.wait()


def test_a_killed_session_leaves_no_stale_lock(tmp_path: Path) -> None:
    other = _holder(tmp_path, 30)
    other.kill()  # SIGKILL: no finally, no cleanup; the kernel drops the flock
    other.wait()
    with SessionLock("c1", directory=tmp_path, timeout=1, log=lambda _m: None):
        pass


def test_other_cluster_names_do_not_wait(tmp_path: Path) -> None:
    other = _holder(tmp_path, 30)
    try:
        with SessionLock("c2", directory=tmp_path, timeout=1, log=lambda _m: None):
            pass
    finally:
        other.kill()
        other.wait()


def test_down_refuses_a_cluster_a_session_holds_and_deletes_nothing(tmp_path: Path) -> None:
    """`python -m harness down` takes the session's lock: it never deletes a cluster under a running session.

    The real CLI in a real process, against a real held lock; it must stop before it even looks for kind.
    Its ``docker`` is a stand-in that names an engine: the lock is that engine's, in ``HARNESS_LOCK_DIR``.
    """
    import os

    from harness.sessionlock import engine_dir

    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text('#!/bin/sh\n[ "$1" = info ] && echo engine-1 && exit 0\nexit 1\n')
    docker.chmod(0o755)
    other = _holder(engine_dir("engine-1", base=tmp_path / "locks"), 30)  # holds cluster "c1" of engine-1
    try:
        env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path), "HARNESS_KIND_BIN": str(tmp_path / "no-kind"),
               "HARNESS_LOCK_DIR": str(tmp_path / "locks"), "PATH": f"{docker.parent}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run([sys.executable, "-m", "harness", "down", "--cluster-name", "c1"], env=env,
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr  # the CLI's exit for a refusal before any work
        assert f"in use by pid {other.pid}" in done.stderr
        assert "down --wait SECONDS" in done.stderr
        assert other.poll() is None, "the holder is untouched"
    finally:
        other.kill()
        other.wait()
