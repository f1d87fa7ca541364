"""Unit tier: the session lock is per Docker engine, shared by every user of it (real users, real flock; no Docker).

kind clusters belong to the engine, so root and another account that drive one
engine must wait for each other. The cross-user tests run a real second process
as ``nobody`` (and as a uid with no name at all), which needs root; without
root they are a missing prerequisite, so ``--harness-no-skip`` turns them red.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness
from harness import dockercli
from harness._errors import CommandError, HarnessError
from harness._waiting import Probe, wait_for
from harness.pytest_plugin import missing_prerequisite
from harness.sessionlock import LOCK_DIR_ENV, ClusterBusy, SessionLock, engine_dir

NOBODY = 65534
STRANGER = 65533
"""A uid (and gid) with no passwd entry: neither root nor ``nobody``, nor in their groups."""

TAKE = """
import sys
from harness.sessionlock import ClusterBusy, SessionLock
name = sys.argv[3] if len(sys.argv) > 3 else "c1"
lock = SessionLock(name, engine=sys.argv[1], timeout=float(sys.argv[2]), log=lambda m: None)
try:
    lock.acquire()
except ClusterBusy as exc:
    print("busy", str(exc).splitlines()[0], flush=True)
    sys.exit(3)
print("held", flush=True)
sys.stdin.read()  # holds the lock until the test closes our stdin
"""


def quiet(_line: str) -> None:
    """A log that says nothing: the tests look at records and exceptions."""


@dataclass
class Users:
    """A lock base every user can reach, and how to run the lock's code there as another user."""

    base: Path
    python: str
    env: dict[str, str]

    def take(self, uid: int, engine: str, timeout: float, umask: int = 0o022,
             name: str = "c1") -> subprocess.Popen[str]:
        """A process of ``uid`` that takes cluster ``name``'s lock on ``engine``; it holds it until its stdin closes."""
        return subprocess.Popen([self.python, "-c", TAKE, engine, str(timeout), name], env=self.env, cwd="/",
                                user=uid, group=uid, extra_groups=[], umask=umask, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def said(proc: subprocess.Popen[str]) -> str:
    """The first line the taker printed ("held" or "busy …"), with its stderr if it printed none."""
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.wait(30)
        assert proc.stderr is not None
        raise AssertionError(f"the taker said nothing (exit {proc.returncode}): {proc.stderr.read()}")
    return line


def let_go(proc: subprocess.Popen[str]) -> None:
    """End a holding taker: its stdin closes, it exits, the kernel drops its flock."""
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(30)


def _runs_as(python: str, uid: int) -> bool:
    try:
        done = subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"], user=uid,
                              group=uid, extra_groups=[], cwd="/", capture_output=True, timeout=60, check=False)
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture
def users(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Users]:
    """Root's tests and other users' processes share one lock base under /tmp (pytest's tmp_path is root's only)."""
    if os.geteuid() != 0:
        missing_prerequisite(request.config, "the cross-user session-lock tests run a process as another user: "
                                             "run the unit tier as root (as CI does)")
    candidates = dict.fromkeys([sys.executable, getattr(sys, "_base_executable", ""), shutil.which("python3") or "",
                                "/usr/bin/python3"])
    python = next((p for p in candidates if p and _runs_as(p, NOBODY) and _runs_as(p, STRANGER)), None)
    if python is None:
        missing_prerequisite(request.config, f"no Python >= 3.11 that uid {NOBODY} and {STRANGER} may run "
                                             f"(tried {', '.join(p for p in candidates if p)})")
    shared = Path(tempfile.mkdtemp(prefix="sessionlock-users-", dir="/tmp"))  # other users must reach it
    try:
        shared.chmod(0o1777)  # as /tmp, the default lock base's parent: any user may create the base
        # The package, readable by anyone: the clone (and a venv's site-packages) may be root's only.
        src = shared / "src" / "harness"
        shutil.copytree(Path(harness.__file__).parent, src, ignore=shutil.ignore_patterns("__pycache__"))
        for path in [shared / "src", *(shared / "src").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        base = shared / "locks"
        monkeypatch.setenv(LOCK_DIR_ENV, str(base))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(shared / "src"),
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(shared), LOCK_DIR_ENV: str(base)}
        yield Users(base, python, env)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_another_user_of_the_engine_is_refused_while_root_holds_it_and_takes_it_after(users: Users) -> None:
    with SessionLock("c1", engine="engine-a", timeout=1, log=quiet) as mine:
        theirs = users.take(NOBODY, "engine-a", timeout=1)
        since = mine.holder_record()["since"]
        assert said(theirs) == (f"busy cluster c1 is in use by pid {os.getpid()} since {since}; not touching it. "
                                "Use another cluster-name to run both at once.")
        assert theirs.wait(30) == 3
    later = users.take(NOBODY, "engine-a", timeout=1)
    try:
        assert said(later) == "held"
        record = SessionLock("c1", engine="engine-a", log=quiet).holder_record()
        assert (record["pid"], record["engine"]) == (later.pid, "engine-a"), "nobody wrote its record in root's file"
        with pytest.raises(ClusterBusy, match=rf"in use by pid {later.pid}"):
            SessionLock("c1", engine="engine-a", timeout=0.5, log=quiet).acquire()
    finally:
        let_go(later)
    with SessionLock("c1", engine="engine-a", timeout=1, log=quiet):
        pass


def test_two_users_neither_root_share_the_lock_even_with_a_strict_umask(users: Users) -> None:
    """nobody creates the directories and the lock file (umask 077); a uid outside its group waits, then takes it."""
    first = users.take(NOBODY, "engine-b", timeout=1, umask=0o077)
    try:
        assert said(first) == "held"
        refused = users.take(STRANGER, "engine-b", timeout=1, umask=0o077)
        assert said(refused).startswith(f"busy cluster c1 is in use by pid {first.pid} since ")
        assert refused.wait(30) == 3
    finally:
        let_go(first)
    second = users.take(STRANGER, "engine-b", timeout=1, umask=0o077)
    beside = users.take(STRANGER, "engine-b", timeout=1, umask=0o077, name="c2")  # a new file in nobody's directory
    try:
        assert said(second) == "held"
        assert said(beside) == "held"
        assert SessionLock("c1", engine="engine-b", log=quiet).holder_record()["pid"] == second.pid
    finally:
        let_go(second)
        let_go(beside)
    lock_file = engine_dir("engine-b") / "cluster-c1.lock"
    assert lock_file.stat().st_uid == NOBODY, "made by the first user, used by the second"


def test_a_lock_file_another_user_can_only_read_still_locks(users: Users) -> None:
    """A 0644 lock file of root's: nobody locks it read-only and writes no record; root still has to wait."""
    directory = engine_dir("engine-c")
    directory.mkdir(parents=True, mode=0o1777)
    for level in (directory.parent, directory):
        level.chmod(0o1777)
    lock_file = directory / "cluster-c1.lock"
    lock_file.write_text('{"pid": 1, "since": "earlier"}')
    lock_file.chmod(0o644)
    theirs = users.take(NOBODY, "engine-c", timeout=1)
    try:
        assert said(theirs) == "held"
        with pytest.raises(ClusterBusy, match=r"in use by pid 1 since earlier"):  # the record is an earlier one's
            SessionLock("c1", engine="engine-c", timeout=0.5, log=quiet).acquire()
    finally:
        let_go(theirs)
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o644, "another user's file is not re-moded"


def test_lock_directories_are_1777_and_lock_files_0666_past_any_umask(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    old = os.umask(0o077)
    try:
        with SessionLock("c1", engine="engine-d", log=quiet) as lock:
            waiter = subprocess.Popen([sys.executable, "-c", TAKE, "engine-d", "30"], umask=0o077, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                records = wait_for(lambda: Probe(bool(found := list(lock.path.parent.glob("*.wait-*.json"))),
                                                 "no waiter record yet", found),
                                   what="the waiter's record", timeout=20, interval=0.1)
                assert records is not None
                assert [stat.S_IMODE(r.stat().st_mode) for r in records] == [0o644], "every user reads a waiter"
            finally:
                waiter.kill()
                waiter.wait()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o1777
    assert stat.S_IMODE((tmp_path / "locks" / "engine-d").stat().st_mode) == 0o1777
    assert lock.path == tmp_path / "locks" / "engine-d" / "cluster-c1.lock"
    assert stat.S_IMODE(lock.path.stat().st_mode) == 0o666


def test_the_engine_id_is_part_of_the_path_so_two_engines_have_two_locks(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    a = SessionLock("c1", engine="ASV2:OSPI:XDDF", log=quiet)
    b = SessionLock("c1", engine="0b6e3f1c-9b1a-4f7e-8d2a-5c7a1e2f3d4b", log=quiet)
    assert a.path == tmp_path / "ASV2:OSPI:XDDF" / "cluster-c1.lock"
    assert b.path == tmp_path / "0b6e3f1c-9b1a-4f7e-8d2a-5c7a1e2f3d4b" / "cluster-c1.lock"
    with a, b:  # one name, two engines: two clusters, two locks, both held at once
        assert a.holder_record()["engine"] == "ASV2:OSPI:XDDF"
        assert b.holder_record()["engine"] == "0b6e3f1c-9b1a-4f7e-8d2a-5c7a1e2f3d4b"
        with pytest.raises(ClusterBusy):
            SessionLock("c1", engine="ASV2:OSPI:XDDF", timeout=0.5, log=quiet).acquire()
    assert engine_dir("../up", base=tmp_path) == tmp_path / "_up", "an id never leaves the base directory"


def test_the_engine_is_asked_of_docker_once_and_only_when_the_lock_is_used(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    asked: list[float] = []

    def engine_id(timeout: float = 20.0) -> str:
        asked.append(timeout)
        return "engine-e"

    monkeypatch.setattr(dockercli, "engine_id", engine_id)
    lock = SessionLock("c1", log=quiet)
    assert asked == []
    with lock:
        assert lock.path == tmp_path / "engine-e" / "cluster-c1.lock"
        assert lock.waiters() == []
    assert len(asked) == 1


def _no_docker(timeout: float = 20.0) -> str:
    raise CommandError(["docker", "info"], 1, "", "Cannot connect to the Docker daemon")


def test_an_existing_cluster_without_docker_locks_per_user_and_says_so(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(dockercli, "engine_id", _no_docker)
    lines: list[str] = []
    with SessionLock("existing-ctx", docker_optional=True, log=lines.append) as lock:
        assert lock.path == tmp_path / "cache" / "locks" / "cluster-existing-ctx.lock"
        assert lock.holder_record()["engine"] is None
    assert len(lines) == 1
    assert "Docker does not answer, so the session lock is this user's only" in lines[0]


def test_a_kind_cluster_without_docker_stops_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(dockercli, "engine_id", _no_docker)
    with pytest.raises(HarnessError, match=r"(?s)per Docker engine.*Cannot connect to the Docker daemon") as caught:
        SessionLock("c1", log=quiet).acquire()
    assert not isinstance(caught.value, ClusterBusy)


def test_engine_id_is_what_docker_info_says_and_an_empty_answer_is_an_error(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\n[ "$*" = "info --format {{.ID}}" ] && printf "%s\\n" "$ANSWER"\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANSWER", "ASV2:OSPI:XDDF")
    assert dockercli.engine_id() == "ASV2:OSPI:XDDF"
    monkeypatch.setenv("ANSWER", "")
    with pytest.raises(HarnessError, match="names no engine ID"):
        dockercli.engine_id()
