"""Loading the stack's images beside ``kind create``: when it starts, and that it can only cost time.

The probe reads the node containers through ``docker``; here ``_exec.run`` answers
from a table, so each step of kind's create can be played in order.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness import _exec
from harness.clusters.kind import _Beside, nodes_configured
from harness.delivery import KindLoad, Route

NAME = "bench"
CONTROL = f"{NAME}-control-plane"
WORKER = f"{NAME}-worker"


class FakeDocker:
    """``docker ps`` lists ``nodes`` (names stand in for ids); ``test -e`` of the apiserver manifest and
    ``ctr version`` per node."""

    def __init__(self, nodes: Sequence[str] = (), manifest: bool = False, answering: Sequence[str] = ()) -> None:
        self.nodes, self.manifest, self.answering = list(nodes), manifest, set(answering)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str | Path], **_: object) -> subprocess.CompletedProcess[str]:
        args = [str(a) for a in argv]
        self.calls.append(args)
        if args[:2] == ["docker", "ps"]:
            return subprocess.CompletedProcess(args, 0, "\n".join(self.nodes) + "\n", "")
        if args[:2] == ["docker", "exec"] and args[3:5] == ["test", "-e"]:
            return subprocess.CompletedProcess(args, 0 if self.manifest else 1, "", "")
        if args[:2] == ["docker", "exec"] and args[3:] == ["ctr", "version"]:
            return subprocess.CompletedProcess(args, 0 if args[2] in self.answering else 1, "", "")
        raise AssertionError(f"unexpected command {args}")


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    fake = FakeDocker()
    monkeypatch.setattr(_exec, "run", fake)  # the module kind.py calls through
    return fake


def test_nodes_are_configured_only_once_kubeadm_began_and_every_containerd_answers(docker: FakeDocker) -> None:
    assert nodes_configured(NAME).state == "no control-plane node container yet"
    docker.nodes = [CONTROL, WORKER]
    probe = nodes_configured(NAME)
    assert not probe.done
    assert "configuring" in probe.state
    docker.manifest = True
    docker.answering = {CONTROL}
    probe = nodes_configured(NAME)
    assert not probe.done
    assert WORKER in probe.state
    docker.answering = {CONTROL, WORKER}
    probe = nodes_configured(NAME)
    assert probe.done
    assert probe.value == [CONTROL, WORKER]


def test_a_create_that_returned_ends_the_wait_without_asking_docker(docker: FakeDocker) -> None:
    created = threading.Event()
    created.set()
    probe = nodes_configured(NAME, created)
    assert probe.done
    assert probe.value == []
    assert docker.calls == []


def _beside(preload: object, lines: list[str]) -> _Beside:
    return _Beside(preload, KindLoad(kind_cluster=NAME, kind_bin=Path("/kind")),  # type: ignore[arg-type]
                   NAME, timeout=5, log=lines.append)


def test_the_preload_runs_with_the_kind_route_once_the_nodes_are_configured(docker: FakeDocker) -> None:
    docker.nodes, docker.manifest, docker.answering = [CONTROL], True, {CONTROL}
    routes: list[Route] = []
    beside = _beside(routes.append, lines := list[str]())
    beside.thread.start()
    beside.end(wait=True)
    assert [r.kind_cluster for r in routes] == [NAME]
    assert routes[0].mode == "kind"
    assert lines == []


def test_a_failing_preload_is_reported_not_raised(docker: FakeDocker) -> None:
    docker.nodes, docker.manifest, docker.answering = [CONTROL], True, {CONTROL}

    def preload(_route: Route) -> None:
        raise RuntimeError("kind load: node went away")

    beside = _beside(preload, lines := list[str]())
    beside.thread.start()
    beside.end(wait=True)
    assert len(lines) == 1
    assert "node went away" in lines[0]
    assert "after it instead" in lines[0]


def test_no_preload_once_kind_create_returned_before_the_nodes_were_ready(docker: FakeDocker) -> None:
    called: list[Route] = []
    beside = _beside(called.append, lines := list[str]())
    beside.thread.start()
    beside.end(wait=True)  # the nodes never came up: create failed early, or the probe never saw them
    assert called == []
    assert lines == []
    assert not beside.thread.is_alive()


# The cgroupfs driver for our containerd 2.x nodes on cgroup v1 (runc's freeze-before-set is the flake).


@pytest.mark.parametrize(
    ("registry_less", "version", "cgroup_v1", "wanted"),
    [
        (True, "1.35", True, True),
        (True, "1.37", True, True),
        (True, "1.34", True, False),  # Debian's runc 1.1 only logs a failed freeze
        (True, "1.35", False, False),  # cgroup v2: its freezer settles; systemd stays
        (False, "1.35", True, False),  # a published node image is not ours to reconfigure
    ],
)
def test_the_cgroupfs_driver_is_only_for_our_runc_on_cgroup_v1(registry_less: bool, version: str, cgroup_v1: bool,
                                                                wanted: bool) -> None:
    from harness.clusters.kind import cgroupfs_driver_wanted

    assert cgroupfs_driver_wanted(registry_less, version, cgroup_v1) is wanted


def test_the_cgroupfs_patches_agree_and_reach_the_kind_config(tmp_path: Path) -> None:
    import tomllib

    import yaml

    from harness.clusters.kind import KindProvider
    from harness.nodeimage.nodefiles import cgroupfs_driver_patches

    runc, kubelet = cgroupfs_driver_patches()
    options = tomllib.loads(runc)["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    assert options["options"] == {"SystemdCgroup": False}
    assert yaml.safe_load(kubelet) == {"kind": "KubeletConfiguration", "cgroupDriver": "cgroupfs"}
    provider = KindProvider(name=NAME, kind_bin=Path("/kind"), kubectl_bin=Path("/kubectl"), state_dir=tmp_path,
                            node_image="local/kind-node-offline:x", containerd_patches=(runc,),
                            kubeadm_patches=(kubelet,),
                            config_extra={"kubeadmConfigPatches": ["kind: ClusterConfiguration\n"]})
    config = provider._config(40000)
    assert config["containerdConfigPatches"] == [runc]
    assert config["kubeadmConfigPatches"] == [kubelet, "kind: ClusterConfiguration\n"]  # ours, then the user's
