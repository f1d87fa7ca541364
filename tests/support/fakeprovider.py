"""A third cluster provider, for the unit tier: no cluster at all, every call recorded.

It shows what adding a provider takes: this one module (the two Protocols of
:mod:`harness.clusters`) and one registry entry
(``harness.clusters.register("fake", "tests.support.fakeprovider:FakeProvider")``).
The test bed then runs through it like through kind or existing: settings
checked by the provider, its session-lock key, its keep policy, the cluster it
starts, the registry it attaches, what it adds to the run manifest, its finish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from harness._errors import ConfigError
from harness.clusters import Cluster, ProviderContext
from harness.delivery import RegistryPush, Route
from harness.findings import Finding
from harness.options import Settings
from harness.registry import LocalRegistry
from harness.timing import Phases

__all__ = ["FakeKube", "FakeProvider", "calls"]

calls: list[tuple[str, Any]] = []
"""Every call the test bed made to the provider, in order (the unit test reads and clears it)."""


class _Nodes:
    def list_node(self) -> Any:
        return type("NodeList", (), {"items": [object(), object()]})()


@dataclass
class FakeKube:
    """The two things the test bed asks of the cluster's API directly (its version, its nodes)."""

    kubeconfig: Path
    core: _Nodes = field(default_factory=_Nodes)

    def server_version(self) -> str:
        return "v1.99.0-fake"


@dataclass
class FakeProvider(ProviderContext):
    """A cluster that exists only in memory; ``fail-at`` in the settings' context makes a step raise."""

    provider_name: ClassVar[str] = "fake"
    deletes_clusters: ClassVar[bool] = True
    wires_registries: ClassVar[bool] = True

    state_dir: Path
    session: str
    fail_at: str | None = None

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        calls.append(("check_settings", settings.cluster.provider))
        registry = settings.build.registry
        if registry not in (None, "local") and not registry.startswith("localhost:"):
            raise ConfigError(f"registry = {registry!r} ({settings.sources['registry']}): the fake provider has "
                              "no nodes to pull from it; drop it")

    @classmethod
    def lock_key(cls, settings: Settings) -> tuple[str, bool]:
        calls.append(("lock_key", settings.cluster_name))
        return f"fake-{settings.cluster_name}", True

    @classmethod
    def keep_by_default(cls, settings: Settings) -> bool:
        calls.append(("keep_by_default", None))
        return False

    @classmethod
    def preflight(cls, settings: Settings) -> list[Finding]:
        return [Finding("fake cluster", "ok", "nothing to check")]

    @classmethod
    def logs_exporter(cls, settings: Settings, cluster: Cluster) -> None:
        return None

    @classmethod
    def from_settings(cls, settings: Settings, *, kubectl_bin: Path, log: Callable[[str], None], phases: Phases,
                      preload: Callable[[Route], None] | None, session: str) -> FakeProvider:
        calls.append(("from_settings", session))
        calls.append(("preload", preload is not None))
        return cls(state_dir=settings.state_dir, session=session, fail_at=settings.cluster.context)

    def _step(self, name: str, value: Any = None) -> None:
        calls.append((name, value))
        if self.fail_at == name:
            raise RuntimeError(f"fake provider: {name} fails, as asked")

    def start(self) -> Cluster:
        self._step("start")
        kube: Any = FakeKube(self.state_dir / "fake-kubeconfig")
        return Cluster(name="fake-1", provider=self.provider_name, kube=kube, created=True,
                       images=RegistryPush(registry="fake.invalid:5000"), fingerprint="f00d",
                       mlflow_host_port=None)

    def others(self) -> set[str]:
        self._step("others")
        return set()

    def attach_registry(self, cluster: Cluster, registry: LocalRegistry) -> Cluster:
        self._step("attach_registry", registry.host)
        return replace(cluster, images=RegistryPush(registry=registry.host))

    def describe(self, cluster: Cluster, settings: Settings) -> dict[str, Any]:
        self._step("describe")
        return {"fake": {"nodes": "in memory"}, "kubernetes": {"minor": "1.99"}}

    def finish(self, cluster: Cluster, *, keep: bool) -> str:
        self._step("finish", keep)
        return "kept" if keep else "forgotten"

