"""Fault tier: sessions interrupted or killed for real, then the host and Docker inspected.

Each scenario runs a *child* pytest session (the plugin, a real kind cluster
or a real ``mlflow server``), interrupts it the way a terminal, tox or a CI
runner would, and asserts on state: node containers, kind clusters, the
session's processes, its host marker. Triggers are state too (a node
container exists, the child wrote that its test runs), never log lines.
Scenarios run in file order: the one after the interrupted ``kind create``
reuses that cluster name, proving the next run needs no manual cleanup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import _exec
from harness.clusters.kind import host_marker_path, node_container_ids

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "fault-interrupts"
CHILD_TEST = '''
import json, os, time
from pathlib import Path

def test_hold_the_session(e2e_namespace, e2e_kube, local_tracking_server):
    Path(os.environ["FAULT_READY"]).write_text(json.dumps(
        {"namespace": e2e_namespace, "server_pid": local_tracking_server.pid}))
    time.sleep(900)

def test_hold_without_cluster(local_tracking_server):
    Path(os.environ["FAULT_READY"]).write_text(json.dumps({"server_pid": local_tracking_server.pid}))
    time.sleep(900)

def test_nothing():
    pass
'''


def _wait(what: str, done: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes] | None = None,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log else ""
            pytest.fail(f"the child session exited ({proc.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log else ""
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{tail}")
        time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path, Path]]]:
    """Start a child session in its own process group (as a terminal runs it); never leaves it running."""
    test_file = tmp_path / "test_child.py"
    test_file.write_text(CHILD_TEST)
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str, select: str, via_tox: bool = False) -> tuple[subprocess.Popen[bytes], Path, Path]:
        ready, log = tmp_path / f"ready-{len(started)}", tmp_path / f"child-{len(started)}.log"
        pytest_args = [str(test_file), "-k", select, "-p", "no:cacheprovider", "--rootdir", str(REPO),
                       "-c", str(REPO / "pyproject.toml"), "--harness-no-skip", *argv]
        cmd = ([str(REPO / "scripts" / "tox"), "-e", "fault-child", "--", *pytest_args] if via_tox
               else [sys.executable, "-m", "pytest", *pytest_args])
        # A clean environment for a nested tox: not the outer tox env's variables.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOX_") and k != "VIRTUAL_ENV"}
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**env, "FAULT_READY": str(ready), "CI": ""})
        started.append(proc)
        return proc, ready, log

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _kind_clusters() -> list[str]:
    from harness import toolchain

    return _exec.run([toolchain.resolve_kind(None), "get", "clusters"], timeout=60).stdout.split()


def _assert_nothing_left(cluster: str, server_pid: int | None = None) -> None:
    assert node_container_ids(cluster) == [], f"node containers of {cluster} are left"
    assert cluster not in _kind_clusters()
    assert not host_marker_path(cluster).exists(), "the host marker of a deleted cluster is left"
    if server_pid is not None:
        assert not _alive(server_pid), f"the session's mlflow server (pid {server_pid}) still runs"


def test_ctrl_c_during_kind_create_leaves_no_cluster(child: Callable[..., tuple[subprocess.Popen[bytes], Path,
                                                                                 Path]]) -> None:
    proc, _ready, log = child("--harness-cluster-name", CLUSTER, "--harness-keep-cluster=never",
                              select="test_hold_the_session")
    _wait("kind made the first node container", lambda: bool(node_container_ids(CLUSTER)), 900, proc, log)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground process group
    assert proc.wait(240) != 0
    _assert_nothing_left(CLUSTER)


@pytest.mark.parametrize("how", ["SIGTERM to pytest", "SIGINT through tox"])
def test_an_interrupted_test_leaves_nothing_behind(how: str, child: Callable[..., tuple[subprocess.Popen[bytes],
                                                                                        Path, Path]]) -> None:
    """A test is running on a live cluster (and the docker tier's mlflow server) when the signal comes."""
    import json

    proc, ready, log = child("--harness-cluster-name", CLUSTER, "--harness-keep-cluster=never",
                             select="test_hold_the_session", via_tox=how.endswith("tox"))
    _wait("the child's test is running", ready.exists, 1200, proc, log)
    info = json.loads(ready.read_text())
    assert node_container_ids(CLUSTER), "the cluster runs while the test does"
    if how.startswith("SIGTERM"):
        os.kill(proc.pid, signal.SIGTERM)  # to pytest alone, as `kill`, a CI runner or tox's escalation send it
    else:
        # SIGINT to tox, which passes it on and waits interrupt_timeout. (A terminal's Ctrl-C to the whole group
        # can reach tox twice, and tox 4 then force-stops at once: seen here once, SIGKILL mid-teardown; the next
        # session reaps what that leaves. The direct Ctrl-C case is the kind-create test above.)
        os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(300) != 0
    _assert_nothing_left(CLUSTER, info["server_pid"])


def test_a_killed_sessions_server_is_reaped_by_the_next_session(
        child: Callable[..., tuple[subprocess.Popen[bytes], Path, Path]]) -> None:
    import json

    proc, ready, log = child(select="test_hold_without_cluster")
    _wait("the child's test is running", ready.exists, 600, proc, log)
    server = json.loads(ready.read_text())["server_pid"]
    os.killpg(proc.pid, signal.SIGKILL)  # no teardown at all; the server is in a session of its own
    proc.wait()
    assert _alive(server), "the server outlives a SIGKILLed session (that is what the reaper is for)"

    again, _ready, again_log = child(select="test_nothing")
    assert again.wait(300) == 0, again_log.read_text()[-3000:]
    _wait("the next session stopped the orphaned server", lambda: not _alive(server), 30)
