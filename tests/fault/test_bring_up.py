"""Fault tier: a bring-up that fails part-way leaves nothing behind (a real child session, real kind).

The image builds run beside ``kind create``. When a build fails, the cluster that is
still being created is no use to anyone: the session stops ``kind create``, removes the
half-made cluster and ends with the build's error. Under ``keep-cluster = auto`` on a
workstation (where a working cluster would be kept for the next run) nothing is kept
either: nothing was deployed on it. Asserted on state: the exit code, node containers,
kind's cluster list, the host marker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.fault.childsession import REPO, Child, assert_nothing_left, kind_clusters

CLUSTER = "fault-bring-up"
Start = Callable[..., Child]


def test_a_failed_image_build_stops_kind_create_and_keeps_no_cluster(child: Start, tmp_path: Path) -> None:
    broken = tmp_path / "broken-image"
    broken.mkdir()
    # Fails a few seconds in: kind create has started by then (it starts with the builds).
    (broken / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN sleep 8 && exit 3\n")
    controller = REPO / "crds" / "controller"
    images = [{"name": "controller", "context": str(controller), "repository": "customjob-controller"},
              {"name": "broken", "context": str(broken), "repository": "fault-broken", "deliver": False}]
    assert CLUSTER not in kind_clusters(), "a cluster of an earlier run is in the way"
    session = child("--harness-cluster-name", CLUSTER, "--harness-images", json.dumps(images),
                    select="test_cluster_answers")  # keep-cluster auto, not under CI: a good cluster would be kept
    assert session.finish(600) != 0, session.tail()
    assert not session.ready.exists(), "the test ran although the bring-up failed"
    assert_nothing_left(CLUSTER)


def test_an_image_no_container_uses_stops_the_session_before_any_cluster(tmp_path: Path) -> None:
    """A misspelt ``repository`` used to be found at deploy, minutes after the cluster was made."""
    import subprocess
    import sys

    images = [{"name": "controller", "context": str(REPO / "crds" / "controller"),
               "repository": "customjob-controler"}]  # the stack's is customjob-controller
    done = subprocess.run([sys.executable, "-m", "harness", "up", "--cluster-name", CLUSTER, "--stack", '["crds"]',
                           "--images", json.dumps(images), "--state-dir", str(tmp_path / "state")],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert_nothing_left(CLUSTER)
    assert not any((tmp_path / "state").rglob("kind-config.yaml")), "kind create was started"
