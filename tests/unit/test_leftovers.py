"""Interrupts run the cleanup; what a killed session left is reaped by the next one (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import _exec, leftovers, owners

# A "session": handlers installed, then a cleanup in `finally` that takes a while and is signalled again.
SESSION = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness import interrupts
    out = Path(sys.argv[1])
    interrupts.install(lambda line: print(line, flush=True))
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt as exc:
        out.write_text(f"interrupted by {exc}")
    finally:
        print("cleaning", flush=True)
        time.sleep(1.5)
        out.write_text(out.read_text() + "; cleaned up")
""")


def _as_from_a_terminal() -> None:
    """Default dispositions, as a terminal's session has them: a runner that started us in the
    background (``cmd &`` ignores SIGINT, ``nohup`` SIGHUP) must not make these signals vanish."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _session(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", SESSION, str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                            preexec_fn=_as_from_a_terminal)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_runs_the_cleanup(tmp_path: Path, sig: signal.Signals) -> None:
    proc, out = _session(tmp_path)
    proc.send_signal(sig)
    proc.wait(30)
    assert out.read_text() == f"interrupted by {sig.name}; cleaned up"


def test_signals_during_the_cleanup_do_not_cut_it_short(tmp_path: Path) -> None:
    """tox's sequence: SIGINT, then SIGTERM while the teardown still runs."""
    proc, out = _session(tmp_path)
    assert proc.stdout is not None
    proc.send_signal(signal.SIGINT)
    while proc.stdout.readline().strip() != "cleaning":
        pass
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert out.read_text() == "interrupted by SIGINT; cleaned up"


def test_a_users_own_handler_is_kept() -> None:
    from harness import interrupts

    def mine(_signum: int, _frame: object) -> None:
        pass

    before = signal.signal(signal.SIGHUP, mine)
    try:
        installed = interrupts.install(lambda _line: None)
        assert signal.getsignal(signal.SIGHUP) is mine
        installed.restore()
    finally:
        signal.signal(signal.SIGHUP, before)


def test_owner_tokens_tell_a_live_process_from_a_dead_or_reused_pid() -> None:
    assert owners.is_alive(owners.owner_token())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not owners.is_alive(f"{child.pid}:1")
    me = owners.owner_token().split(":")[0]
    assert not owners.is_alive(f"{me}:0")  # this pid, but not this process's start time: a reused pid


def test_a_killed_sessions_spawned_server_is_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL a session that spawned a long-running child in its own process group; the next one stops it."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from harness import _exec
        proc = _exec.spawn([sys.executable, "-c", "import time; time.sleep(300)"], log_path=Path(sys.argv[1]))
        print(proc.pid, flush=True)
        time.sleep(300)
    """)
    session = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "server.log")], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert session.stdout is not None
    server_pid = int(session.stdout.readline())
    session.kill()
    session.wait()
    os.kill(server_pid, 0)  # the server outlived its session (its own process group)
    assert list((tmp_path / "cache" / "sessions").glob("proc-*.json"))

    reaped = leftovers.reap_processes(log=lambda _line: None)

    assert len(reaped) == 1
    assert "sleep(300)" in reaped[0] or sys.executable in reaped[0]
    _wait_gone(server_pid, "after the reap")
    assert not list((tmp_path / "cache" / "sessions").glob("proc-*.json"))


def test_a_live_sessions_processes_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    proc = _exec.spawn([sys.executable, "-c", "import time; time.sleep(300)"], log_path=tmp_path / "x.log")
    try:
        assert leftovers.reap_processes(log=lambda _line: None) == []
        assert proc.poll() is None
    finally:
        _exec.stop(proc)
    assert not list((tmp_path / "cache" / "sessions").glob("proc-*.json")), "stop() forgets the record"


def test_containers_of_dead_owners_are_picked() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    listing = (f"nodeimg-build-1 {dead.pid}:1\nnodeimg-build-2 {owners.owner_token()}\n"
               # a kind node run from a committed node image inherits its builder's label: never reaped
               f"someones-cluster-control-plane {dead.pid}:1\nother-worker \n")
    assert leftovers.dead_owner_containers(listing) == ["nodeimg-build-1"]


def test_a_host_marker_owns_only_the_node_containers_it_names() -> None:
    from harness.clusters.kind import host_marker_owns

    marker = {"state": "created", "nodes": ["aaa", "bbb"]}
    assert host_marker_owns(marker, ["aaa"])
    assert host_marker_owns(marker, ["aaa", "bbb"])
    assert not host_marker_owns(marker, ["ccc"]), "a same-named cluster made later by someone else"
    assert not host_marker_owns({"state": "created"}, ["aaa"]), "an old marker names no nodes: no proof"
    assert not host_marker_owns(None, ["aaa"])
    assert not host_marker_owns(marker, []), "no node containers: nothing to own"


def test_a_creating_marker_owns_the_half_made_node_only_once_its_session_is_gone() -> None:
    from harness.clusters.kind import host_marker_owns

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert host_marker_owns({"state": "creating", "owner": f"{dead.pid}:1"}, ["aaa"])
    assert not host_marker_owns({"state": "creating", "owner": owners.owner_token()}, ["aaa"])


def test_a_token_of_another_pid_namespace_or_boot_is_never_judged_dead() -> None:
    """Sessions in other containers share one Docker engine: their pids mean nothing here."""
    mine = owners.owner_token()
    _pid, started, scope = mine.split(":")
    assert scope == owners._scope() != "?"
    assert owners.is_alive(f"999999999:{started}:{scope}") is False  # ours, and provably gone
    assert owners.is_alive(f"999999999:{started}:4026531999-deadbeef") is True  # elsewhere: not provable


def test_stop_ends_a_group_whose_leader_already_exited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24: stop() returned as soon as the leader had exited, and the group's members (workers) lived on."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    member_pid = tmp_path / "member.pid"
    # The leader forks a member into its own group (as a server forks workers), says so, and exits at once.
    leader = _exec.spawn([sys.executable, "-c", (
        "import subprocess, sys; "
        "m = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        f"open({str(member_pid)!r}, 'w').write(str(m.pid))")], log_path=tmp_path / "x.log")
    leader.wait(timeout=30)
    member = int(member_pid.read_text())
    os.kill(member, 0)  # alive, in the leader's group
    assert os.getpgid(member) == leader.pid
    _exec.stop(leader, grace=5)
    _wait_gone(member, "(a member of the stopped group)")
    assert not list((tmp_path / "cache" / "sessions").glob("proc-*.json")), "stop() forgets the record"


def _wait_gone(pid: int, why: str) -> None:
    """Until ``pid`` has exited (10 s at most)."""
    from harness._waiting import Probe, wait_for

    def probe() -> Probe[None]:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return Probe(True, "gone")
        return Probe(False, "alive")

    wait_for(probe, what=f"pid {pid} to exit {why}", timeout=10, interval=0.1)
