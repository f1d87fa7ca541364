"""Unit tier: the cluster-provider seam.

A third provider (:mod:`tests.support.fakeprovider`: one module, one registry
entry) drives the whole test bed, from the settings to the session's end, so
the seam is shown to be enough; and no module outside ``harness/clusters``
branches on a provider's name (a grep, shown to catch a planted branch).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness import baseimage, clusters, dockercli, images, imagesource, leftovers, sessionlock, testbed, toolchain
from harness._errors import ConfigError
from harness.clusters import ClusterProvider, ProviderClass, provider_class
from harness.clusters.existing import ExistingProvider
from harness.clusters.kind import KindProvider
from harness.settings import load_settings
from harness.stack import Stack
from tests.support import fakeprovider

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

# The classes meet the class-side Protocol (mypy checks these lines); instances meet ClusterProvider.
_KIND: type[ProviderClass] = KindProvider
_EXISTING: type[ProviderClass] = ExistingProvider
_FAKE: type[ProviderClass] = fakeprovider.FakeProvider


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, Any]]:
    """The fake provider registered, and what a unit test cannot do for real replaced: tools, the base image,
    the stack's render and deploy (they need kubectl and a cluster), the reaper and the Docker-keyed lock."""
    monkeypatch.setitem(clusters.PROVIDERS, "fake", "tests.support.fakeprovider:FakeProvider")
    fakeprovider.calls.clear()
    monkeypatch.setattr(toolchain, "resolve_kubectl", lambda *_a, **_k: Path("/usr/bin/true"))
    monkeypatch.setattr(baseimage, "resolve_base_image",
                        lambda **_k: imagesource.Choice("base:1", "override", "unit test"))
    monkeypatch.setattr(dockercli, "image_id", lambda ref: f"sha256:{ref}")
    monkeypatch.setattr(leftovers, "reap", lambda *_a, **_k: [])
    monkeypatch.setattr(testbed, "render_stack", lambda *_a, **_k: [])
    monkeypatch.setattr(images, "build_spec", lambda spec, **_k: images.BuiltImage(
        f"{spec.repository}:unit", f"sha256:{spec.name}", 1, 0.0, True))
    monkeypatch.setattr(images, "deliver", lambda tag, route, **_k: fakeprovider.calls.append(
        ("deliver", (tag, route.mode))) or tag)
    real_lock = sessionlock.SessionLock

    def lock(name: str, **kw: Any) -> sessionlock.SessionLock:
        return real_lock(name, **{**kw, "directory": tmp_path / "locks"})

    monkeypatch.setattr(testbed, "SessionLock", lock)

    def deploy(cluster: clusters.Cluster, **_kw: Any) -> Stack:
        fakeprovider.calls.append(("deploy_stack", cluster.name))
        return Stack(cluster=cluster, tracking_uri="http://127.0.0.1:9", pod_tracking_uri="http://tracking:9")

    monkeypatch.setattr(testbed, "deploy_stack", deploy)
    return fakeprovider.calls


def _settings(tmp_path: Path, **extra: str) -> Any:
    env = {"HARNESS_CLUSTER": "fake", "HARNESS_IMAGES": "[]", "HARNESS_TRACKING": "http://127.0.0.1:9",
           "HARNESS_STACK": "stub", **{f"HARNESS_{k.upper()}": v for k, v in extra.items()}}
    return load_settings(root=tmp_path, environ=env)


def test_a_third_provider_drives_the_whole_test_bed(fake: list[tuple[str, Any]], tmp_path: Path) -> None:
    settings = _settings(tmp_path, cluster_name="unit", keep_cluster="auto")
    assert fake == [("check_settings", "fake")], "the provider checked its own settings at load"
    with testbed.Testbed(settings, log=lambda _line: None) as bed:
        assert bed.cluster is not None
        assert (bed.cluster.provider, bed.cluster.name) == ("fake", "fake-1")
        assert bed.stack is not None
        assert bed.manifest["cluster"] == {"provider": "fake", "nodes": 2}
        assert bed.manifest["kubernetes"] == {"server": "v1.99.0-fake", "minor": "1.99"}
        assert bed.manifest["fake"] == {"nodes": "in memory"}
    steps = [name for name, _ in fake]
    assert steps == ["check_settings", "lock_key", "from_settings", "preload", "start", "deliver", "deploy_stack",
                     "describe", "keep_by_default", "finish"], steps
    assert ("preload", True) in fake, "no registry to attach: the stack's images may go beside the creation"
    assert ("deliver", ("customjob-controller:unit", "registry")) in fake, "images went by the provider's route"
    assert ("from_settings", bed.session) in fake, "the provider got the session's id"
    assert fake[-1] == ("finish", False), "keep-cluster auto asked the provider: not kept"
    assert bed.kept is False


def test_a_loopback_registry_is_found_on_the_engine_and_attached_by_a_provider_that_wires_registries(
        fake: list[tuple[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``registry = localhost:PORT``: the container this engine publishes there is handed to the provider's
    attach_registry, images take that route, and nothing is delivered beside the creation."""
    from harness.registry import LocalRegistry

    found: list[str] = []

    def serving(address: str, **_kw: Any) -> LocalRegistry:
        found.append(address)
        return LocalRegistry(image="", name="users-registry", host_port=5999, container_port=5000)

    monkeypatch.setattr(LocalRegistry, "serving", staticmethod(serving))
    settings = _settings(tmp_path, registry="localhost:5999")
    with testbed.Testbed(settings, log=lambda _line: None) as bed:
        assert bed.cluster is not None
        assert bed.cluster.images.registry == "localhost:5999"
    assert found == ["localhost:5999"]
    assert ("attach_registry", "localhost:5999") in fake
    assert ("preload", False) in fake, "images go through the registry once attached, not beside the creation"
    assert ("deliver", ("customjob-controller:unit", "registry")) in fake


def test_a_failure_after_the_providers_start_finishes_its_cluster(fake: list[tuple[str, Any]],
                                                                 tmp_path: Path) -> None:
    settings = _settings(tmp_path, context="describe")  # the fake provider's describe() raises
    with pytest.raises(RuntimeError, match="describe fails"):
        testbed.Testbed(settings, log=lambda _line: None).start()
    steps = [name for name, _ in fake]
    assert steps[-3:] == ["describe", "keep_by_default", "finish"], steps
    assert fake[-1] == ("finish", False), "finished as a failed session: not kept under auto"


def test_the_provider_refuses_its_own_settings_and_an_unknown_one_names_the_choices(
        fake: list[tuple[str, Any]], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the fake provider has no nodes"):
        _settings(tmp_path, registry="elsewhere:5000")
    with pytest.raises(ConfigError, match=r"cluster = 'kubernetes-in-a-teacup': no such provider; one of kind, "
                                          r"existing, fake \(a package adds one as an entry point in the group "
                                          r"mlflow_crd_harness.cluster_providers\) \(env HARNESS_CLUSTER\)"):
        _settings(tmp_path, cluster="kubernetes-in-a-teacup")


def test_an_installed_package_adds_a_provider_by_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """No edit to the harness: ``[project.entry-points."mlflow_crd_harness.cluster_providers"]`` in the
    package's own pyproject is enough; the registry's own names come first, and an unknown name lists both."""
    import importlib.metadata

    entry = importlib.metadata.EntryPoint("teacup", "tests.support.fakeprovider:FakeProvider",
                                          clusters.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [entry] if group == clusters.ENTRY_POINT_GROUP else [])
    assert provider_class("teacup") is fakeprovider.FakeProvider
    assert provider_class("kind") is KindProvider
    with pytest.raises(ConfigError, match=r"one of kind, existing, teacup \(a package adds one as an entry point"):
        provider_class("saucer")


def test_a_provider_instance_is_a_context_manager(fake: list[tuple[str, Any]], tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    provider: ClusterProvider = provider_class("fake").from_settings(
        settings, kubectl_bin=Path("/usr/bin/true"), log=print, phases=testbed.Phases(), preload=None, session="s1")
    with provider as cluster:
        assert cluster.name == "fake-1"
    assert [name for name, _ in fake][-2:] == ["start", "finish"]


PROVIDER_BRANCH = re.compile(
    r"""(\.provider\b|\[\s*["']cluster["']\s*\])\s*(==|!=|\bin\b|\bnot\s+in\b)"""
    r"""|["'](kind|existing)["']\s*(==|!=)\s*\S*(provider|\[\s*["']cluster["']\s*\])""")
"""``cluster.provider == "kind"``, ``settings["cluster"] != "existing"``, ``"kind" == x.provider``: a provider's
name decided outside the provider."""


def _branches(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if PROVIDER_BRANCH.search(line)]


def test_no_module_outside_the_providers_branches_on_a_providers_name() -> None:
    found = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        rel = path.relative_to(REPO / "harness")
        if rel.parts[0] == "clusters":
            continue
        found += [f"harness/{rel}: {line}" for line in _branches(path.read_text())]
    assert found == [], "ask the provider (harness.clusters.ProviderClass / ClusterProvider) instead"


@pytest.mark.parametrize("planted", [
    'if cluster.provider == "kind":', 'if settings["cluster"] != "existing":', "if s['cluster'] in ('kind',):",
    'shared = "existing" == self.cluster.provider',
])
def test_the_grep_catches_a_planted_branch(planted: str) -> None:
    assert _branches(f"x = 1\n    {planted}\n") == [planted]
