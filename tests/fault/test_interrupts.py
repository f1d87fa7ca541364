"""Fault tier: sessions interrupted or killed for real, then the host and Docker inspected.

Each scenario runs a *child* pytest session (the plugin, a real kind cluster
or a real ``mlflow server``; see :mod:`.childsession`), interrupts it the way
a terminal, tox or a CI runner would, and asserts on state: node containers,
kind clusters, build containers, the session's processes, its records. Triggers
are state too (a node or build container exists, the child wrote that its test
runs), never log lines. Scenarios run in file order and share one cluster
name: each one after the interrupted ``kind create`` starts where the previous
one left the machine, proving the next run needs no manual cleanup. The
cluster the interrupted sessions keep is left for :mod:`.test_sessions`, whose
first session starts on it (a Ctrl-C that deletes a fresh cluster is proven
there, beside a session that must not notice).
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import _exec
from harness.clusters.kind_cli import node_container_ids
from tests.fault.childsession import (
    KEPT,
    Child,
    alive,
    assert_nothing_left,
    assert_session_gone,
    end_of_an_interrupted_run,
    kind_clusters,
    run_ended,
    running_customjob,
    wait_until,
)

CLUSTER = KEPT
BUILD_CLUSTER = "fault-build"
"""Ctrl-C during an image build interrupts ``kind create`` too: a name of its own, not the kept cluster."""
Start = Callable[..., Child]


def test_ctrl_c_during_kind_create_leaves_no_cluster(child: Start) -> None:
    session = child("--harness-cluster-name", CLUSTER, "--harness-keep-cluster=never", select="test_hold_a_run")
    wait_until("kind made the first node container", lambda: bool(node_container_ids(CLUSTER)), 900, session)
    os.killpg(session.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground process group
    assert session.finish(240) != 0
    assert_session_gone(session, CLUSTER)
    assert_nothing_left(CLUSTER)


_kept: dict[str, list[str]] = {}
"""Node container ids of the cluster an interrupted session kept, for the next scenario to find again."""


@pytest.mark.parametrize("how", ["SIGTERM to pytest", "SIGINT to tox"])
def test_an_interrupted_test_leaves_its_kept_cluster_whole(how: str, child: Start) -> None:
    """A test's ``mlflow run --backend customjob`` runs its CustomJob on a live cluster (beside the docker
    tier's mlflow server) when the signal comes. Whichever process the signal reaches (pytest alone, or
    tox, which relays it), the run must end KILLED, never stay RUNNING (issue #24): it is read from the
    tracking server as the session ends, and again from the kept cluster afterwards.

    Both sessions keep their cluster (``keep-cluster=always``): the interrupt must leave it whole, and the
    second session, interrupted another way, reuses it (one bring-up for two interrupts). A Ctrl-C to a
    whole process group through tox that must delete a fresh cluster under the signals (``never``) is
    :mod:`.test_sessions`' first scenario.

    Images go through the harness's local registry (``registry = local``): each new cluster pulls
    only the trainer's and controller's layers instead of a ``kind load`` of both images whole,
    the fault tier's largest CPU cost. Ctrl-C during ``kind create`` covers ``kind load`` here (the
    preload beside it); the example tier and MLflow's own example test cover it whole.
    """
    session = child("--harness-cluster-name", CLUSTER, "--harness-keep-cluster=always", select="test_hold_a_run",
                    via_tox="tox" in how, env={"HARNESS_REGISTRY": "local"})
    info = session.wait_ready("the child's test is running", 1200)
    run_id = wait_until("the child's mlflow run to run its CustomJob", lambda: running_customjob(info), 600, session)
    nodes = node_container_ids(CLUSTER)
    assert nodes, "the cluster runs while the test does"
    if _kept:
        assert nodes == _kept["nodes"], "the second session reused the kept cluster"
    if how == "SIGTERM to pytest":
        os.kill(session.pid, signal.SIGTERM)  # to pytest alone, as `kill`, a CI runner or tox's escalation send it
    else:
        os.kill(session.pid, signal.SIGINT)  # to tox alone, as a CI runner cancelling it does; tox relays it
    end_of_an_interrupted_run(session, CLUSTER, info, run_id)
    assert not alive(info["server_pid"]), f"the session's mlflow server (pid {info['server_pid']}) still runs"
    assert node_container_ids(CLUSTER) == nodes, "the interrupt left the kept cluster whole"
    after = run_ended(info["tracking_uri"], run_id).value
    assert after is not None, "the kept cluster's tracking server still answers"
    assert after["status"] == "KILLED", f"nothing reopened or re-ended the run: {after}"
    assert CLUSTER in kind_clusters()
    _kept["nodes"] = nodes


@pytest.fixture
def slow_image(tmp_path: Path) -> Iterator[tuple[str, Callable[[int], str]]]:
    """A build context whose one RUN step takes ``HOLD`` s and names a token no other build has.

    Yields the token and ``images(hold)``: the ``images`` setting (JSON) building it with that HOLD.
    Its images are removed afterwards.
    """
    token = f"fault-build-{uuid.uuid4().hex[:10]}"
    context = tmp_path / "slow-image"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG HOLD=600\n"
        f"RUN sleep ${{HOLD}} # {token}\n")

    def images(hold: int) -> str:
        return json.dumps([{"name": "slow", "context": str(context), "repository": "fault-slow-build",
                            "deliver": False, "build-args": {"HOLD": str(hold)}}])

    yield token, images
    tags = _exec.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "fault-slow-build"],
                     check=False, timeout=60).stdout.split()
    if tags:
        _exec.run(["docker", "rmi", "-f", *tags], check=False, timeout=120)


def _build_containers(token: str, *, running: bool = False) -> list[str]:
    """Containers of the build naming ``token``: the classic builder runs each RUN step in one."""
    argv = ["docker", "ps", "--no-trunc", "--format", "{{.ID}} {{.Command}}"]
    out = _exec.run([*argv] if running else [*argv, "-a"], timeout=60).stdout
    return [line.split()[0] for line in out.splitlines() if token in line]


def test_ctrl_c_during_an_image_build(child: Start, slow_image: tuple[str, Callable[[int], str]]) -> None:
    """Ctrl-C while the test bed builds its images (beside ``kind create``): the build stops too."""
    token, images = slow_image
    session = child("--harness-cluster-name", BUILD_CLUSTER, "--harness-keep-cluster=never", "--harness-images",
                    images(600), select="test_hold_the_bring_up")
    wait_until("the image build runs its RUN step", lambda: bool(_build_containers(token, running=True)), 900,
               session)
    os.killpg(session.pid, signal.SIGINT)
    assert session.finish(240) != 0
    assert_session_gone(session, BUILD_CLUSTER)
    assert _build_containers(token) == [], "the interrupted build's container is left"
    assert_nothing_left(BUILD_CLUSTER)

    again = child("--harness-images", images(1), select="test_images_build")
    assert again.finish(600) == 0, again.tail()


def test_a_killed_sessions_server_is_reaped_by_the_next_session(child: Start, tmp_path: Path) -> None:
    """The three sessions share a cache directory of their own: the records the reaper reads live there, so
    no session of another tier running beside this one (CI's lanes, a teammate) can reap the orphan first."""
    own = {"HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    session = child(select="test_hold_without_cluster", env=own)
    server = session.wait_ready("the child's test is running", 600)["server_pid"]
    os.killpg(session.pid, signal.SIGKILL)  # no teardown at all; the server is in a session of its own
    session.proc.wait()
    assert alive(server), "the server outlives a SIGKILLed session (that is what the reaper is for)"

    idle = child(select="test_nothing", env=own)  # a session with no tier test touches no process (issue 25)
    assert idle.finish(300) == 0, idle.tail()
    assert alive(server), "a unit-only session reaped: it should do no process or Docker work"
    again = child(select="test_docker_answers", env=own)  # the next session that runs a tier test does reap
    assert again.finish(300) == 0, again.tail()
    wait_until("the next session stopped the orphaned server", lambda: not alive(server), 30)
