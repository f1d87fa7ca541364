"""Unit tests of the version table (harness.versions) and the per-version node image plan."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from harness import toolchain
from harness.nodeimage import gobuild, nodefiles, rootfs
from harness.nodeimage.pipeline import BuildPlan
from harness.versions import (
    BUILT_RUNTIME,
    DEFAULT_RELEASE,
    RELEASES,
    cgroup_v1_verdict,
    release_for,
)

pytestmark = pytest.mark.unit

_DIGEST_REF = re.compile(r"kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}")


def test_release_for_accepts_minor_and_the_pinned_patch() -> None:
    assert release_for(None) is DEFAULT_RELEASE
    assert release_for("") is DEFAULT_RELEASE
    assert release_for("1.35") is RELEASES["1.35"]
    assert release_for("v1.35") is RELEASES["1.35"]
    assert release_for("v1.35.4") is RELEASES["1.35"]
    assert release_for(" 1.36.3 ") is RELEASES["1.36"]


@pytest.mark.parametrize("bad", ["v1.35.3", "1.99", "2.1", "latest", "v1"])
def test_release_for_refuses_what_the_table_does_not_build(bad: str) -> None:
    with pytest.raises(ValueError):
        release_for(bad)


@pytest.mark.parametrize("minor", sorted(RELEASES))
def test_every_row_is_consistent(minor: str) -> None:
    row = RELEASES[minor]
    n = row.minor_number
    assert row.minor == minor
    assert row.kubernetes.startswith(f"v{minor}.")
    m = _DIGEST_REF.fullmatch(row.public_node_image)
    assert m, row.public_node_image
    assert int(m.group(1)) == n
    # kind v0.33 writes v1beta3 below 1.36 and v1beta4 from 1.36 (pkg/cluster/internal/kubeadm/config.go).
    assert row.kubeadm_api == ("v1beta4" if n >= 36 else "v1beta3")
    # The kubelet's FailCgroupV1 defaults to true from 1.35.
    assert row.fail_cgroup_v1_off == (n >= 35)
    # Debian's containerd 1.6 only up to 1.34; kind >= v0.31 with containerd 2.x after that.
    assert (row.runtime is None) == (n <= 34)
    assert (row.kind == "v0.30.0") == (n <= 34)


def test_default_is_the_oldest_supported_minor_on_kind_033() -> None:
    # 1.34's support window closed in October 2026; the default must be a supported minor.
    supported = sorted((r for r in RELEASES.values() if r.minor_number >= 35), key=lambda r: r.minor_number)
    assert DEFAULT_RELEASE is supported[0]
    assert (DEFAULT_RELEASE.kubernetes, DEFAULT_RELEASE.kind) == ("v1.35.4", "v0.33.0")
    assert DEFAULT_RELEASE.kind == toolchain.PUBLIC_KIND_VERSION
    assert DEFAULT_RELEASE.public_node_image == toolchain.PUBLIC_NODE_IMAGE


def test_cgroup_v1_verdicts_say_why() -> None:
    ok, why = cgroup_v1_verdict(RELEASES["1.34"], public=True)
    assert ok
    assert "without patches" in why
    ok, why = cgroup_v1_verdict(RELEASES["1.35"], public=True)
    assert not ok
    assert "failCgroupV1" in why
    assert "registry-less" in why
    ok, why = cgroup_v1_verdict(RELEASES["1.37"], public=False)
    assert ok
    assert "failCgroupV1: false" in why
    ok, why = cgroup_v1_verdict(replace(RELEASES["1.37"], minor="1.38"), public=False)
    assert not ok
    assert "removes cgroup v1" in why


def _plan(minor: str | None = None, **over: object) -> BuildPlan:
    common = {"cache_dir": Path("/c"), "go_version": "go1.26.8", "mirror": "http://m", "files_hash": "abc"}
    if minor is None:
        return BuildPlan(**common, **over)  # type: ignore[arg-type]
    return replace(BuildPlan.for_release(RELEASES[minor], **common), **over)  # type: ignore[arg-type]


def test_default_row_plan_keeps_the_pre_table_tag() -> None:
    assert _plan("1.34").tag == _plan().tag
    assert _plan("1.34").node_packages == rootfs.NODE_PACKAGES
    assert _plan("1.34").kubelet_files() == {}
    assert _plan("1.34").base_extra_files() == {}


def test_new_minors_key_the_runtime_and_the_kubelet_dropin() -> None:
    p135 = _plan("1.35")
    assert p135.tag.startswith("local/kind-node-offline:v1.35.4-")
    assert "containerd" not in p135.node_packages
    assert "runc" not in p135.node_packages
    assert len({p135.tag, _plan("1.36").tag, _plan("1.34").tag}) == 3
    other_runtime = replace(BUILT_RUNTIME, containerd="v2.4.1")
    assert _plan("1.35", runtime=other_runtime).tag != p135.tag
    assert _plan("1.35", fail_cgroup_v1_off=False).tag != p135.tag
    assert set(p135.kubelet_files()) == {nodefiles.KUBELET_CONFIG_DIR_DROPIN_PATH,
                                         nodefiles.KUBELET_CGROUP_V1_DROPIN_PATH}
    assert set(p135.base_extra_files()) == {nodefiles.CONTAINERD_UNIT_PATH}


def test_containerd2_config_is_v3_where_kind_reads_it() -> None:
    conf = tomllib.loads(_plan("1.35").containerd_config("registry.k8s.io/pause:3.10.1"))
    assert conf["version"] == 3
    plugins = conf["plugins"]
    # kind >= v0.31 reads the snapshotter here for `kind load` (nodeutils.getSnapshotter).
    assert plugins["io.containerd.cri.v1.images"]["snapshotter"] == "overlayfs"
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10.1"
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert runtime["cni"]["bin_dirs"] == [nodefiles.CNI_BIN_DIR]
    with pytest.raises(ValueError):
        nodefiles.containerd2_config('x"y')
    # The default row keeps containerd 1.6's v2 syntax.
    assert tomllib.loads(_plan("1.34").containerd_config("p:1"))["version"] == 2


def test_kubelet_dropins() -> None:
    dropin = yaml.safe_load(nodefiles.kubelet_cgroup_v1_dropin())
    assert dropin == {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                      "failCgroupV1": False}
    unit = nodefiles.kubelet_config_dir_unit_dropin()
    assert f"--config-dir={nodefiles.KUBELET_CONFIG_DIR}" in unit
    assert "--config=/var/lib/kubelet/config.yaml" in unit
    assert nodefiles.KUBELET_CGROUP_V1_DROPIN_PATH.endswith(".conf")  # the kubelet reads only *.conf
    assert "ExecStart=/usr/local/bin/containerd" in nodefiles.containerd_unit()


def test_containerd_ldflags_stamp_the_version() -> None:
    flags = gobuild.containerd_ldflags("v2.4.2")
    assert "-X github.com/containerd/containerd/v2/version.Version=v2.4.2" in flags
    assert flags.startswith("-s -w")


def test_doctor_names_what_each_minor_can_do_on_cgroup_v1() -> None:
    from harness import doctor

    seen = doctor.check_cgroups(v2=False).seen
    assert "1.34 any node image" in seen
    for minor in ("1.35", "1.36", "1.37"):
        assert f"{minor} registry-less build only" in seen
    assert doctor.check_cgroups(v2=True).seen == "cgroup v2"


def test_netd_manifest_is_kind_templatable_and_never_pulls() -> None:
    text = nodefiles.netd_manifest("local/harness-netd:abc")
    assert text.startswith("# would you kindly template this file\n# would you kindly patch this file\n")
    # kind renders it with Go's text/template: the pod subnet is the only action.
    assert text.count("{{") == 1
    assert "{{ .PodSubnet }}" in text
    docs = list(yaml.safe_load_all(text.replace("{{ .PodSubnet }}", "10.244.0.0/16")))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]
    pod = docs[3]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["hostNetwork"] is True
    assert container["imagePullPolicy"] == "Never"
    assert isinstance(container["env"], list)  # kind appends CONTROL_PLANE_ENDPOINT with a JSON patch
    assert {"name": "POD_SUBNET", "value": "10.244.0.0/16"} in container["env"]
    with pytest.raises(ValueError):
        nodefiles.netd_manifest("a{b")


def test_netd_plan_keys_differ_and_drop_the_static_conflist() -> None:
    assert _plan("1.35").cni == "netd"
    assert _plan("1.34").cni == "static"
    assert _plan("1.35", cni="static").tag != _plan("1.35").tag


def _fake_node_sources(monkeypatch: pytest.MonkeyPatch, *, cgroup_v1: bool) -> list[str]:
    import harness.nodeimage

    calls: list[str] = []
    monkeypatch.setattr(toolchain, "host_is_cgroup_v1", lambda: cgroup_v1)

    def obtain(ref: str, pull_timeout: float = 0) -> tuple[str | None, str]:
        calls.append(f"pull {ref}")
        return "pulled", ""

    def ensure(kubernetes_version: str | None = None, log: object = None) -> str:
        calls.append(f"build {kubernetes_version}")
        return f"local/kind-node-offline:{kubernetes_version}"

    monkeypatch.setattr(toolchain.dockercli, "obtain", obtain)
    monkeypatch.setattr(harness.nodeimage, "ensure_node_image", ensure)
    return calls


def test_cgroup_v1_host_never_pulls_a_published_image_that_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_node_sources(monkeypatch, cgroup_v1=True)
    logged: list[str] = []
    choice = toolchain.resolve_node_image(mode="auto", kubernetes_version="1.35", log=logged.append)
    assert choice.source == "local"
    assert calls == ["build 1.35"]
    assert "cgroup v1" in logged[0]
    with pytest.raises(toolchain.HarnessError, match=r"cannot run on this cgroup v1 host.*failCgroupV1"):
        toolchain.resolve_node_image(mode="public", kubernetes_version="1.36")
    # 1.34's published image runs on cgroup v1: pulled as before.
    assert toolchain.resolve_node_image(mode="auto", kubernetes_version="1.34").source == "public"


def test_cgroup_v2_host_uses_the_published_image_of_any_minor(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_node_sources(monkeypatch, cgroup_v1=False)
    choice = toolchain.resolve_node_image(mode="auto", kubernetes_version="1.37")
    assert choice.image == RELEASES["1.37"].public_node_image
    assert calls == [f"pull {RELEASES['1.37'].public_node_image}"]


def test_containerd2_config_reads_the_registry_hosts_dir() -> None:
    from harness.registry.wiring import CERTS_DIR, containerd_config_paths

    assert containerd_config_paths(_plan("1.35").containerd_config("p:1")) == [CERTS_DIR]


def test_tox_matrix_env_runs_the_newest_minor_of_the_table() -> None:
    import configparser

    tox = configparser.ConfigParser(interpolation=None)
    tox.read(Path(__file__).resolve().parents[2] / "tox.ini")
    env = dict(line.split("=", 1) for line in tox["testenv:matrix"]["set_env"].split("\n") if "=" in line)
    newest = max(RELEASES.values(), key=lambda r: r.minor_number)
    assert env["HARNESS_KUBERNETES_VERSION "].strip() == newest.minor
    assert newest.minor != DEFAULT_RELEASE.minor, "the matrix tier must add a minor to the e2e tier's"
    assert int(env["HARNESS_WORKERS "].strip()) >= 1


def test_the_public_python_base_is_pinned_by_digest_everywhere_it_is_named() -> None:
    from harness.baseimage import PUBLIC_PYTHON_BASE

    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", PUBLIC_PYTHON_BASE)
    root = Path(__file__).resolve().parents[2]
    dockerfiles = [root / p for p in ("trainer/Dockerfile", "crds/controller/Dockerfile",
                                      "harness/assets/mlflow-server/Dockerfile", "examples/iris/project/Dockerfile")]
    for path in dockerfiles:
        args = [ln for ln in path.read_text().splitlines() if ln.startswith("ARG BASE_IMAGE=")]
        assert args == [f"ARG BASE_IMAGE={PUBLIC_PYTHON_BASE}"], path
