"""Unit tests of harness.nodeimage's pure parts (no Docker, no Go, no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import debian
from harness._errors import HarnessError
from harness.nodeimage import assemble, cache, gobuild, hostcheck, images, nodefiles, versions
from harness.nodeimage.pipeline import BuildPlan

pytestmark = pytest.mark.unit

GOMOD = """module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
\tgithub.com/spf13/cobra v1.9.1
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0 // indirect
\tk8s.io/klog/v2 v2.130.1
\tk8s.io/utils v0.0.0-20250604170112-4c0f3b243397
)

require k8s.io/kubelet v0.0.0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/kubelet => ./staging/src/k8s.io/kubelet
)
"""

KUBEADM_LIST = """W1126 10:00:00.000000  123 version.go:104] could not fetch a Kubernetes version
registry.k8s.io/kube-apiserver:v1.34.4
registry.k8s.io/kube-controller-manager:v1.34.4
registry.k8s.io/kube-scheduler:v1.34.4
registry.k8s.io/kube-proxy:v1.34.4
registry.k8s.io/coredns/coredns:v1.12.1
registry.k8s.io/pause:3.10.1
registry.k8s.io/etcd:3.6.5-0
"""


# --- cache keys -------------------------------------------------------------


def test_input_key_is_order_independent_and_input_sensitive() -> None:
    a = cache.input_key({"k8s": "v1.34.4", "go": "go1.26.8"})
    assert a == cache.input_key({"go": "go1.26.8", "k8s": "v1.34.4"})
    assert a != cache.input_key({"k8s": "v1.34.5", "go": "go1.26.8"})
    assert a != cache.input_key({"k8s": "v1.34.4", "go": "go1.26.9"})


def test_hash_tree_tracks_content_names_and_exec_bit(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one")
    first = cache.hash_tree(tmp_path)
    (tmp_path / "a").write_text("two")
    second = cache.hash_tree(tmp_path)
    assert second != first
    (tmp_path / "a").rename(tmp_path / "b")
    third = cache.hash_tree(tmp_path)
    assert third != second
    os.chmod(tmp_path / "b", 0o755)
    assert cache.hash_tree(tmp_path) != third


def test_resolve_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    assert cache.resolve_cache_dir() == cache.DEFAULT_CACHE_DIR
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "env"))
    assert cache.resolve_cache_dir() == tmp_path / "env"
    assert cache.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_publish_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "artefact"

    def fail_halfway() -> None:
        with cache.publish_dir(final) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_halfway()
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []
    with cache.publish_dir(final) as tmp:
        (tmp / "whole").write_text("x")
    assert (final / "whole").read_text() == "x"


def _plan(**over: str) -> BuildPlan:
    base = {"go_version": "go1.26.8", "mirror": "http://deb.debian.org/debian", "files_hash": "abc"}
    base.update(over)
    return BuildPlan(cache_dir=Path("/c"), **base)


def test_node_image_tag_changes_with_every_primary_input() -> None:
    tags = {
        _plan().tag,
        _plan(go_version="go1.26.9").tag,
        _plan(mirror="http://mirror.example/debian").tag,
        _plan(files_hash="def").tag,
        _plan(kubernetes_version="v1.34.3").tag,
    }
    assert len(tags) == 5
    tag = _plan().tag
    assert tag.startswith(f"{versions.NODE_IMAGE_REPO}:{versions.RELEASES['1.34'].kubernetes}-")
    assert len(tag.rsplit("-", 1)[1]) == 8
    assert _plan().archive.name.endswith(".tar.zst")
    assert _plan().archive.parent == Path("/c/node")


# --- Go build inputs --------------------------------------------------------


def test_staging_replaces_from_gomod() -> None:
    assert gobuild.staging_replaces(GOMOD) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kubelet"]


def test_staging_version() -> None:
    assert versions.staging_version("v1.34.4") == "v0.34.4"
    with pytest.raises(ValueError):
        versions.staging_version("v2.0.0")
    with pytest.raises(ValueError):
        versions.staging_version("1.34")


def test_version_ldflags_stamp_both_packages() -> None:
    flags = gobuild.version_ldflags("v1.34.4", "f" * 40, "2026-01-01T00:00:00Z")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.34.4" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=34" in flags
        assert f"-X {pkg}.gitCommit={'f' * 40}" in flags
        assert f"-X {pkg}.gitTreeState=clean" in flags
        assert f"-X {pkg}.buildDate=2026-01-01T00:00:00Z" in flags
    assert flags.startswith("-s -w ")
    with pytest.raises(ValueError):
        gobuild.version_ldflags("1.34", "x", "y")


def test_generated_go_sources() -> None:
    src = gobuild.coredns_main_source(["metrics", "cache"])
    assert src.index('"github.com/coredns/coredns/plugin/cache"') < src.index("plugin/metrics")
    assert "coremain.Run()" in src
    tools = gobuild.kubernetes_tools_source(["kubeadm"])
    assert tools.startswith("//go:build tools")
    assert '_ "k8s.io/kubernetes/cmd/kubeadm"' in tools


def test_coredns_plugins_cover_kubeadm_corefile() -> None:
    # kubeadm's Corefile directives -> plugin packages ("prometheus" lives in metrics).
    corefile = [
        "errors",
        "health",
        "ready",
        "kubernetes",
        "metrics",
        "forward",
        "cache",
        "loop",
        "reload",
        "loadbalance",
    ]
    assert set(corefile) <= set(gobuild.COREDNS_PLUGINS)


# --- image names ------------------------------------------------------------


def test_parse_kubeadm_images() -> None:
    got = images.parse_kubeadm_images(KUBEADM_LIST)
    assert got.apiserver == "registry.k8s.io/kube-apiserver:v1.34.4"
    assert got.coredns == "registry.k8s.io/coredns/coredns:v1.12.1"
    assert got.pause == "registry.k8s.io/pause:3.10.1"
    assert got.etcd_version == "v3.6.5"
    assert got.coredns_version == "v1.12.1"
    assert len(got.all) == 7
    assert len(set(got.all)) == 7


def test_parse_kubeadm_images_names_missing_component() -> None:
    text = KUBEADM_LIST.replace("registry.k8s.io/etcd:3.6.5-0\n", "")
    with pytest.raises(HarnessError, match="etcd"):
        images.parse_kubeadm_images(text)


def test_scratch_dockerfile() -> None:
    text = images.scratch_dockerfile("etcd", "/usr/local/bin/etcd")
    assert text.splitlines()[0] == "FROM scratch"
    assert "COPY etcd /usr/local/bin/etcd" in text
    assert 'ENTRYPOINT ["/usr/local/bin/etcd"]' in text
    assert "ENV PATH=" in text
    assert images.scratch_dockerfile("kp", "/kp", base="local/net:1").startswith("FROM local/net:1\n")


def test_missing_images_reports_only_absent_refs() -> None:
    listed = "registry.k8s.io/pause:3.10.1\nregistry.k8s.io/etcd:3.6.5-0\nsha256:abc\n"
    required = ["registry.k8s.io/pause:3.10.1", "registry.k8s.io/etcd:3.6.5-0", "registry.k8s.io/x:1"]
    assert assemble.missing_images(required, listed) == ["registry.k8s.io/x:1"]


# --- rendered node files ----------------------------------------------------


def test_containerd_config() -> None:
    text = nodefiles.containerd_config("registry.k8s.io/pause:3.10.1")
    assert text.splitlines()[1] == "version = 2"
    assert 'sandbox_image = "registry.k8s.io/pause:3.10.1"' in text
    assert "restrict_oom_score_adj = true" in text
    assert "tolerate_missing_hugepages_controller = true" in text
    assert "SystemdCgroup = true" in text
    assert 'snapshotter = "overlayfs"' in text
    with pytest.raises(ValueError):
        nodefiles.containerd_config('bad"ref')
    tomllib = pytest.importorskip("tomllib")
    parsed = tomllib.loads(text)
    cri = parsed["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True


def test_cni_conflist() -> None:
    conf = json.loads(nodefiles.cni_conflist("10.244.0.0/24"))
    types = [p["type"] for p in conf["plugins"]]
    assert types == ["ptp", "portmap"]
    assert conf["plugins"][0]["ipam"]["type"] == "host-local"
    assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]


def test_node_pod_cidr() -> None:
    assert nodefiles.node_pod_cidr("10.244.0.0/16") == "10.244.0.0/24"
    assert nodefiles.node_pod_cidr("10.244.0.0/16", 2) == "10.244.2.0/24"
    with pytest.raises(ValueError):
        nodefiles.node_pod_cidr("10.244.0.0/28")


def test_default_cni_manifest_and_version_file() -> None:
    manifest = nodefiles.default_cni_manifest("10.244.0.0/24")
    assert "kind: ConfigMap" in manifest
    assert "10.244.0.0/24" in manifest
    assert nodefiles.kind_version_file("v1.34.4") == "v1.34.4\n"
    with pytest.raises(ValueError):
        nodefiles.kind_version_file("1.34.4")


# --- host facts --------------------------------------------------------------


def test_parse_mirror_deb822_and_one_line() -> None:
    deb822 = (
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert debian.parse_mirror(deb822) == "http://mirror.example/debian"
    one_line = "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n"
    assert debian.parse_mirror(one_line) == "http://m.example/debian"
    assert debian.parse_mirror("# nothing\n") is None


def test_debian_mirror_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(debian.MIRROR_ENV, "http://override.example/debian/")
    assert debian.debian_mirror() == "http://override.example/debian"


def test_missing_capabilities() -> None:
    full = "CapBnd:\t000001ffffffffff\n"
    assert hostcheck.missing_capabilities(full, 40) == ()
    no_sys_resource = "Name:\tx\nCapBnd:\t000001fffeffffff\n"
    assert hostcheck.missing_capabilities(no_sys_resource, 40) == ("CAP_SYS_RESOURCE",)


def test_runtime_status_logic() -> None:
    broken = hostcheck.RuntimeStatus(missing_caps=("CAP_SYS_RESOURCE",), default_runtime="runc")
    assert broken.needs_fix
    assert not broken.fix_active
    assert not broken.ok
    fixed = hostcheck.RuntimeStatus(missing_caps=("CAP_SYS_RESOURCE",), default_runtime="nosr")
    assert fixed.ok
    fine = hostcheck.RuntimeStatus(missing_caps=(), default_runtime="runc")
    assert fine.ok
    assert not fine.needs_fix


def test_build_lock_is_reentrant_across_sequential_uses(tmp_path: Path) -> None:
    with cache.build_lock(tmp_path / "c"):
        assert (tmp_path / "c" / ".build.lock").exists()
    with cache.build_lock(tmp_path / "c"):  # released: a second use does not block
        pass


def test_a_builder_waiting_for_the_lock_says_who_holds_it_and_separate_names_do_not_wait(tmp_path: Path) -> None:
    """A second process holds the lock (flock locks are per open file, so a thread with its own handle is one);
    the waiter names it at once, then takes the lock when it is released. kind's own lock is not held up."""
    import threading

    held, release, lines = threading.Event(), threading.Event(), []

    def holder() -> None:
        with cache.build_lock(tmp_path, what="node image kindest/node:v9"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    with cache.build_lock(tmp_path, name=".kind-v0.1.0.lock", what="kind v0.1.0", log=lines.append):
        assert lines == [], "another artefact's lock does not wait"
    threading.Timer(1.5, release.set).start()
    with cache.build_lock(tmp_path, what="node image kindest/node:v8", log=lines.append):
        assert release.is_set(), "taken only once the holder let go"
    thread.join(10)
    assert len(lines) == 1, lines
    assert f"waiting for pid {os.getpid()} (node image kindest/node:v9) to finish" in lines[0]


def test_hash_tree_ignores_bytecode(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one")
    before = cache.hash_tree(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert cache.hash_tree(tmp_path) == before


def test_public_api_is_small_and_stable() -> None:
    import harness.nodeimage as api

    assert sorted(api.__all__) == api.__all__
    for name in ("ensure_node_image", "ensure_kind_binary", "ensure_kubectl_binary", "host_needs_runtime_fix"):
        assert callable(getattr(api, name))


def test_node_files_exist_and_are_executable() -> None:
    from harness.nodeimage import nodebase

    root = nodebase.FILES_DIR
    for rel in ("rootfs/usr/local/bin/entrypoint", "rootfs/usr/local/bin/kubelet-cgroups", "setup-node.sh"):
        assert os.access(root / rel, os.X_OK), rel
    entry = (root / "rootfs/usr/local/bin/entrypoint").read_text()
    assert 'echo "detected cgroup v1"' in entry  # kind's readiness regexp depends on it
    unit = (root / "rootfs/etc/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    assert "/var/lib/kubelet/kubeadm-flags.env" in unit


def test_the_build_containers_containerd_is_waited_for_and_stopped_by_bounded_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """containerd answers on the third try; after the kill it is gone on the third check."""
    import subprocess

    from harness import _exec

    calls: list[str] = []
    answers = iter([1, 1, 0])
    alive = iter([0, 0, 1])

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        cmd = " ".join(argv)
        calls.append(cmd)
        code = next(answers) if "ctr version" in cmd else next(alive) if "kill -0" in cmd else 0
        return subprocess.CompletedProcess(argv, code, "", "")

    monkeypatch.setattr(_exec, "run", run)
    monkeypatch.setattr(assemble, "_docker_exec", lambda *a, **k: "")
    monkeypatch.setattr("harness._waiting.time.sleep", lambda _s: None)
    assemble._import_images("b", [], log=lambda _m: None)
    assemble._stop_containerd("b")
    assert sum("ctr version" in c for c in calls) == 3
    assert sum("kill -0" in c for c in calls) == 3


def test_a_containerd_that_never_answers_fails_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from harness import _exec

    monkeypatch.setattr(_exec, "run", lambda argv, **_: subprocess.CompletedProcess(argv, 1, "", ""))
    monkeypatch.setattr(assemble, "_docker_exec", lambda *a, **k: "containerd: permission denied")
    monkeypatch.setattr(assemble, "_CONTAINERD_SOCK_WAIT", 0.05)
    with pytest.raises(HarnessError, match=r"(?s)containerd did not start.*permission denied"):
        assemble._import_images("b", [], log=lambda _m: None)
