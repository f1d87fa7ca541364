"""The fault tier's child sessions: real pytest sessions (plugin, kind, ``mlflow server``) to interrupt.

A child runs one test of :data:`CHILD_TEST` in its own process group, as a
terminal runs a command, directly (``python -m pytest``) or through
``scripts/tox -e fault-child``. It tells the parent where it is through files,
never log lines: ``FAULT_READY`` is written once its test runs (with what the
parent needs to inspect), and a test that holds its session ends when the
parent creates ``FAULT_GO``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import _exec, contract
from harness._errors import WaitTimeout
from harness._waiting import Probe, wait_for
from harness.cachedir import cache_dir
from harness.clusters.kind import host_marker_path
from harness.clusters.kind_cli import node_container_ids
from harness.sessionlock import SessionLock

__all__ = ["CHILD_STACK", "CHILD_TEST", "KEPT", "REPO", "Child", "alive", "assert_nothing_left", "assert_session_gone",
           "down_if_left", "end_of_an_interrupted_run", "group_alive", "kind_clusters", "run_ended",
           "running_customjob", "wait_until"]

REPO = Path(__file__).resolve().parents[2]
KEPT = "fault-kept"
"""The cluster the interrupt scenarios keep (``keep-cluster=always``) and the session scenarios then start on, as
the next run on a developer's machine would: one bring-up for four sessions. The session scenarios make the fresh
clusters they are about; the tier deletes whatever is left at its end (``tests/fault/conftest.py``)."""
CHILD_STACK = {
    "HARNESS_STACK": "crds",
    "HARNESS_IMAGES": json.dumps([{"name": "controller", "context": "crds/controller",
                                   "repository": "customjob-controller"}]),
}
"""What a child session brings up: the stub stack alone. Interrupts are about the session, not the stack
(the repository's own settings add a second controller, whose build and rollout each child would pay)."""
CHILD_TEST = '''
import json, os, time
from pathlib import Path

def _ready(**info):
    Path(os.environ["FAULT_READY"]).write_text(json.dumps({"pid": os.getpid(), **info}))

def _until_go(seconds=900):
    go = Path(os.environ["FAULT_GO"])
    deadline = time.monotonic() + seconds
    while not go.exists():
        assert time.monotonic() < deadline, "the parent never said go"
        time.sleep(0.5)

def test_hold_a_run(project_runner, harness_images, local_tracking_server, tmp_path):
    """`mlflow run --backend customjob` of a project that sleeps, built FROM the controller's image (non-root,
    already built, 275 MB to load: no trainer image for the fault tier); the parent interrupts it."""
    import dataclasses
    project = tmp_path / "sleeper"
    project.mkdir()
    (project / "MLproject").write_text(
        "name: sleeper\\n"
        f"docker_env:\\n  image: {harness_images['controller'].tag}\\n"
        "entry_points:\\n  main:\\n    command: python3 -c 'import time; time.sleep(900)'\\n")
    spec = dataclasses.replace(project_runner.spec("trainer"), name="sleeper", path=project, params={},
                               declared_params=())
    stack = project_runner.stack
    _ready(namespace=project_runner.namespace, server_pid=local_tracking_server.pid,
           tracking_uri=stack.tracking_uri, kubeconfig=str(stack.cluster.kube.kubeconfig))
    project_runner.run(spec)

def test_hold_without_cluster(local_tracking_server):
    _ready(server_pid=local_tracking_server.pid)
    time.sleep(900)

def test_cluster_until_go(e2e_kube):
    _ready()
    _until_go()
    assert e2e_kube.core.read_namespace("kube-system").metadata.name == "kube-system"

def test_cluster_answers(e2e_kube):
    assert e2e_kube.core.read_namespace("kube-system").metadata.name == "kube-system"

def test_hold_the_bring_up(testbed):
    _ready()
    time.sleep(900)

def test_images_build(harness_images):
    assert harness_images and all(image.id for image in harness_images.values())

def test_nothing():
    pass

def test_docker_answers(docker_ready):
    pass
'''


def _default_signals() -> None:
    """A terminal's dispositions: a parent started in the background (``cmd &``) ignores SIGINT, and a
    child inherits that; the signals these scenarios send must reach the child's own handlers."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@dataclass
class Child:
    """One child session: its process (the group leader: pytest, or tox), its files."""

    proc: subprocess.Popen[bytes]
    ready: Path
    go: Path
    log: Path

    @classmethod
    def start(cls, test_file: Path, directory: Path, index: int, *argv: str, select: str,
              via_tox: bool = False, env: dict[str, str] | None = None) -> Child:
        ready, go, log = directory / f"ready-{index}", directory / f"go-{index}", directory / f"child-{index}.log"
        # -s: the test's own output (the run driver's "ended run … KILLED") reaches the log, so a failure's tail
        # shows what the interrupted test did, not only the session's phase lines.
        pytest_args = [str(test_file), "-k", select, "-p", "no:cacheprovider", "--rootdir", str(REPO),
                       "-c", str(REPO / "pyproject.toml"), "--harness-no-skip", "-s", *argv]
        cmd = ([str(REPO / "scripts" / "tox"), "-e", "fault-child", "--", *pytest_args] if via_tox
               else [sys.executable, "-m", "pytest", *pytest_args])
        # A clean environment for a nested tox: not the outer tox env's variables.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TOX_") and k != "VIRTUAL_ENV"}
        env = {**CHILD_STACK, **inherited, **(env or {})}  # the caller's environment, then the test's, win
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_default_signals,
                                    env={**env, "FAULT_READY": str(ready), "FAULT_GO": str(go), "CI": ""})
        return cls(proc, ready, go, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def info(self) -> dict[str, Any]:
        """What the child's test wrote once it ran (its pid, namespace, server pid)."""
        data: dict[str, Any] = json.loads(self.ready.read_text())
        return data

    def wait_ready(self, what: str, timeout: float) -> dict[str, Any]:
        wait_until(what, self.ready.exists, timeout, self)
        return self.info()

    def finish(self, timeout: float) -> int:
        """The child's exit code; fails with its log tail if it does not end within ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the child session (pid {self.pid}) still runs after {timeout:.0f} s:\n{self.tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_until(what: str, check: Callable[[], bool | Probe[Any]], timeout: float, child: Child | None = None,
               interval: float = 0.5) -> Any:
    """A bounded wait for ``check`` (a bool, or a :class:`Probe` saying what it saw) that explains itself.

    If ``child`` exits first, fail at once with its log tail (it will never get there); on timeout,
    fail with the states seen and the tail.
    """
    def probe() -> Probe[Any]:
        seen = check()
        result = seen if isinstance(seen, Probe) else Probe(bool(seen), "yes" if seen else "not yet")
        if result.done:
            return result
        if child is not None and child.proc.poll() is not None:
            pytest.fail(f"the child session exited ({child.proc.returncode}) before {what}:\n{child.tail()}")
        return result

    try:
        return wait_for(probe, what=what, timeout=timeout, interval=interval)
    except WaitTimeout as exc:
        pytest.fail(f"{exc}\n{child.tail() if child is not None else ''}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of the group ``pgid`` runs (a child session's, with every tool it started)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def kind_clusters() -> list[str]:
    from harness import toolchain

    return _exec.run([toolchain.resolve_kind(None), "get", "clusters"], timeout=60).stdout.split()


def assert_nothing_left(cluster: str, server_pid: int | None = None) -> None:
    assert node_container_ids(cluster) == [], f"node containers of {cluster} are left"
    assert cluster not in kind_clusters()
    assert not host_marker_path(cluster).exists(), "the host marker of a deleted cluster is left"
    if server_pid is not None:
        assert not alive(server_pid), f"the session's mlflow server (pid {server_pid}) still runs"


def down_if_left(*names: str) -> None:
    """After a module's assertions: clusters a failed scenario left are not left for the machine's next user."""
    for name in names:
        if name in kind_clusters():
            subprocess.run([sys.executable, "-m", "harness", "down", "--cluster-name", name], cwd=REPO,
                           check=False, timeout=300)


def running_customjob(info: dict[str, Any]) -> Probe[str]:
    """The MLflow run id of a Running CustomJob in the child's namespace (the trigger: a run under way)."""
    from kubernetes import client as k8s
    from kubernetes import config

    api = config.new_client_from_config(config_file=info["kubeconfig"])
    try:
        items = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
            contract.GROUP, contract.VERSION, info["namespace"], contract.PLURAL)["items"]
    finally:
        api.close()
    phases = [(obj.get("status") or {}).get("phase") for obj in items]
    running = [obj for obj in items if (obj.get("status") or {}).get("phase") == contract.RUNNING]
    run_id = str(running[0]["spec"]["mlflow"]["runId"]) if running else None
    return Probe(run_id is not None, f"CustomJobs: {phases or 'none'}", run_id)


def run_ended(tracking_uri: str, run_id: str) -> Probe[dict[str, Any]]:
    """The run's info from the tracking server's REST API once it is terminal (no client retries: a server that
    is gone is a state to report, not to wait out)."""
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/runs/get?{urllib.parse.urlencode({'run_id': run_id})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            run = json.load(resp)["run"]["info"]
    except (OSError, ValueError, KeyError) as exc:
        return Probe(False, f"tracking server: {type(exc).__name__}: {exc}")
    status = str(run.get("status"))
    return Probe(status in ("FINISHED", "FAILED", "KILLED"), f"run {status}", dict(run))


def assert_session_gone(session: Child, cluster: str, pytest_pid: int | None = None) -> None:
    """No process of the child is left (its group: pytest, tox, kind, docker CLIs), nor a record it owns,
    nor a hold on the session lock of ``cluster``."""
    assert not group_alive(session.pid), f"processes of the child's group {session.pid} still run"
    owners = {session.pid} | ({pytest_pid} if pytest_pid else set())
    records = []
    for path in cache_dir("sessions").glob("proc-*.json"):
        try:
            owner = str(json.loads(path.read_text()).get("owner", ""))
        except (OSError, ValueError):
            continue
        if owner.split(":")[0] in {str(pid) for pid in owners}:
            records.append(path.name)
    assert records == [], f"records of processes the child started are left: {records}"
    lock = SessionLock(cluster, timeout=1, log=lambda _line: None)
    assert not lock.waiters(), "a session is still recorded as waiting for the cluster"
    with lock:  # ClusterBusy if the child's flock were still held
        pass


def end_of_an_interrupted_run(session: Child, cluster: str, info: dict[str, Any], run_id: str) -> None:
    """After the signal: the child's MLflow run ends KILLED (read while the session ends: a cluster it deletes takes
    its tracking server along), the session exits non-zero, and nothing of it is left (:func:`assert_session_gone`)."""
    ended = wait_until(f"MLflow run {run_id} to be ended", lambda: run_ended(info["tracking_uri"], run_id), 240,
                       session)
    assert ended["status"] == "KILLED", ended
    assert ended.get("end_time"), ended
    assert session.finish(300) != 0
    assert_session_gone(session, cluster, pytest_pid=info["pid"])
