"""The xdist workers' shared test bed: who brings it up, who attaches, who ends it (real processes, no cluster)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.clusters import Cluster
from harness.images import BuiltImage
from harness.kubeapi import Kube
from harness.pytest_plugin.shared import XdistRun, attach, bed_record
from harness.registry.route import LocalRegistryPush
from harness.settings import load_settings
from harness.stack import Stack
from harness.testbed import Testbed as Bed  # (not named Test*: pytest would try to collect it)
from tests.support.pytester import WITHOUT_UNUSED_PLUGINS

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
pytest_plugins = ["pytester"]


def _workerinput(uid: str, worker: str, count: int = 2) -> dict[str, object]:
    return {"testrunuid": uid, "workerid": worker, "workercount": count, "mainargv": ["pytest"]}


def test_outside_xdist_there_is_no_shared_run(tmp_path: Path) -> None:
    assert XdistRun.current(tmp_path, None) is None
    assert XdistRun.current(tmp_path, {}) is None
    run = XdistRun.current(tmp_path, _workerinput("abc", "gw1", 3))
    assert run == XdistRun(tmp_path / "xdist" / "abc", "gw1", 3)
    assert run.others() == ["gw0", "gw2"]


def test_a_session_started_by_a_worker_is_not_a_worker_of_its_run(monkeypatch: pytest.MonkeyPatch,
                                                                  pytester: pytest.Pytester) -> None:
    """A worker's environment says PYTEST_XDIST_*; a pytest session its test starts inherits it, but is its own.

    (Seen in the fault tier under ``-n 2``: child sessions took themselves for workers of the outer
    run and attached to each other's test beds.)
    """
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "outer")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    pytester.makepyfile(test_child="""
        import os
        from harness.pytest_plugin.shared import XdistRun

        def test_child(request, tmp_path):
            assert os.environ["PYTEST_XDIST_WORKER"] == "gw0"  # inherited from the outer worker
            assert XdistRun.of_session(request.config, tmp_path) is None  # as the testbed fixture asks
    """)
    result = pytester.runpytest_subprocess(*WITHOUT_UNUSED_PLUGINS, "-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=1)


def _hold(root: str, seconds: float, marker: str) -> None:
    run = XdistRun(Path(root), "gw0", 2)
    with run.bringup():
        Path(marker).write_text("held")
        time.sleep(seconds)


def test_bringup_lock_excludes_another_process(tmp_path: Path) -> None:
    marker = tmp_path / "held"
    proc = multiprocessing.get_context("fork").Process(target=_hold, args=(str(tmp_path), 1.5, str(marker)))
    proc.start()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    with XdistRun(tmp_path, "gw1", 2).bringup():
        waited = time.monotonic() - t0
    proc.join(30)
    assert proc.exitcode == 0
    assert waited > 0.5, "the second worker must wait until the first released the lock"


def test_publish_then_read_back(tmp_path: Path) -> None:
    run = XdistRun(tmp_path, "gw0", 2)
    run.started()
    assert run.published() is None
    run.publish(bed={"x": 1})
    assert run.published() == {"bed": {"x": 1}}
    run.publish(error="boom")
    assert run.published() == {"error": "boom"}


def test_owner_waits_for_the_others_and_counts_their_failures(tmp_path: Path) -> None:
    owner = XdistRun(tmp_path, "gw0", 3)
    owner.started()
    XdistRun(tmp_path, "gw1", 3).finished(2)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "gw2.pid").write_text(str(sleeper.pid))
        with pytest.raises(Exception, match="other xdist workers"):
            owner.wait_for_others(1.5, log=lambda _line: None)  # gw2 still runs: bounded, and says why
    finally:
        sleeper.kill()
        sleeper.wait()
    # gw2 died without finishing (SIGKILL): it no longer holds the owner, and counts as a failure
    assert owner.wait_for_others(10, log=lambda _line: None) == 2 + 1


def test_a_worker_that_never_started_is_waited_for(tmp_path: Path) -> None:
    owner = XdistRun(tmp_path, "gw0", 2)
    with pytest.raises(Exception, match="gw1"):
        owner.wait_for_others(1.0, log=lambda _line: None)
    XdistRun(tmp_path, "gw1", 2).finished(0)
    assert owner.wait_for_others(5, log=lambda _line: None) == 0


def test_the_record_attaches_to_the_same_cluster_and_stack(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    kube = Kube(kubeconfig, Path("/opt/kubectl"), "x")
    cluster = Cluster(name="h", provider="kind", kube=kube, created=True,
                      images=LocalRegistryPush(registry="localhost:5001"),
                      fingerprint="f", mlflow_host_port=30555, node_image="local/node:1")
    settings = load_settings(root=tmp_path, explicit={}, environ={})
    bed = Bed(settings)
    bed.cluster = cluster
    bed.stack = Stack(cluster=cluster, tracking_uri="http://127.0.0.1:30555", pod_tracking_uri="http://mlflow:5000",
                      namespaces=("mlflow",), deployments=("mlflow/mlflow",), redeployed=False)
    bed.built = {"trainer": BuiltImage("t:1", "sha256:ab", 10, 0.0, True)}

    again = attach(settings, bed_record(bed), phases=bed.phases, log=print)

    assert again.stack == bed.stack  # the clients compare by kubeconfig, kubectl and context
    assert again.cluster == cluster
    assert again.cluster is not None
    assert again.cluster.shared == cluster.shared
    assert again.cluster.export_logs_with is not None, "a worker's failed test still gets the nodes' logs (kind)"
    assert again.built == bed.built
    assert again.session == bed.session, "every worker's test namespaces carry the owner's session id"
    # What makes its finish() end nothing: no provider to delete the cluster, no session lock to release.
    assert again._provider is None
    assert again._lock is None
