"""Cluster providers: where the tests run, behind one seam.

A provider is one module and one entry in :data:`PROVIDERS` (``setting value
-> "module:Class"``); the test bed, the stack, the CLI, ``doctor`` and the
settings ask it what they need instead of branching on its name (a unit test
keeps it so). The class answers before anything runs (:class:`ProviderClass`:
its settings, its session-lock key, its preflight, its keep policy, how it is
built from the settings); an instance hands out a ready :class:`Cluster` and,
on the way out, undoes only what it did (:class:`ClusterProvider`, also a
context manager). A package of its own adds one without touching this one:
an entry point in the group ``mlflow_crd_harness.cluster_providers``
(``name = "module:Class"``) is found when ``cluster = name`` is asked for.
The two shipped:

* ``kind`` (:class:`~harness.clusters.kind.KindProvider`): creates a kind
  cluster or reuses one of its own whose fingerprint matches; deletes it
  afterwards unless kept. Images reach the nodes by ``kind load`` (verified).
* ``existing`` (:class:`~harness.clusters.existing.ExistingProvider`): a
  cluster given by kubeconfig and context (shared staging, a cluster made by
  hand). It is never created or deleted; the harness only works in namespaces
  it labels as its own, and images go through a registry the cluster pulls from.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # the dataclasses name it; importing the kubernetes client waits until a cluster exists
    from harness.delivery import Route
    from harness.findings import Finding
    from harness.kubeapi import Kube
    from harness.options import Settings
    from harness.registry import LocalRegistry
    from harness.timing import Phases

__all__ = ["ENTRY_POINT_GROUP", "MANAGED_BY_LABEL", "PROVIDERS", "SESSION_LABEL", "Cluster", "ClusterProvider",
           "ProviderClass", "ProviderContext", "provider_class", "provider_names", "register"]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
"""Label (value ``mlflow-crd-harness``) on every namespace the harness creates."""
MANAGED_BY = "mlflow-crd-harness"
SESSION_LABEL = "mlflow-crd-harness/session"
"""Label naming the session that created a namespace (for reaping and for the existing provider)."""


@dataclass(frozen=True)
class Cluster:
    """A ready cluster: how to reach it, how images get there, whether this session created it."""

    name: str
    provider: str
    """The :data:`PROVIDERS` key of the provider that handed it out."""
    kube: Kube
    created: bool
    images: Route
    """How images reach its nodes (:mod:`harness.delivery`)."""
    fingerprint: str
    mlflow_host_port: int | None
    """Host port mapped to the in-cluster MLflow NodePort (kind); None: use a port-forward."""
    node_image: str | None = None
    shared: bool = False
    """Other sessions may use this cluster at once (an existing one): the stack is theirs too (applied without
    force, reference-counted through the sessions' Leases, always re-applied), and the cluster is left as found."""
    export_logs_with: Callable[[Path], None] | None = field(default=None, compare=False)
    """How the provider exports the nodes' logs into an evidence bundle; None: it cannot (no node access)."""

    def export_logs(self, dest: Path) -> None:
        """Node logs for an evidence bundle (``kind export logs``; nothing where the provider has no nodes' logs)."""
        if self.export_logs_with is not None:
            self.export_logs_with(dest)


class ClusterProvider(Protocol):
    """A provider instance: ``start`` gives a ready cluster, ``finish`` undoes what ``start`` did.

    Also a context manager (``with provider as cluster:``), finished as at the end of a session that failed.
    """

    def start(self) -> Cluster: ...

    def others(self) -> set[str]:
        """Ids of other sessions using the cluster now: the shared stack stays while there are any."""
        ...

    def attach_registry(self, cluster: Cluster, registry: LocalRegistry) -> Cluster:
        """The cluster with its images routed through ``registry`` (a container on this engine), wired in where
        the nodes need it."""
        ...

    def describe(self, cluster: Cluster, settings: Settings) -> dict[str, Any]:
        """What the run manifest records of this provider's cluster beyond the server version (tool versions,
        node image), merged into the manifest's top level."""
        ...

    def finish(self, cluster: Cluster, *, keep: bool) -> str:
        """Undo what ``start`` did (delete, unless kept); returns what happened, for the phase line."""
        ...

    def __enter__(self) -> Cluster: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class ProviderContext:
    """``with provider as cluster:`` for every provider: :meth:`start` on entry, :meth:`finish` (not kept) on exit.

    A base class, so a provider writes only its own ``start`` and ``finish``.
    """

    _entered: Cluster | None = None

    def start(self) -> Cluster:
        raise NotImplementedError

    def finish(self, cluster: Cluster, *, keep: bool) -> str:
        raise NotImplementedError

    def __enter__(self) -> Cluster:
        self._entered = self.start()
        return self._entered

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._entered is not None:
            self.finish(self._entered, keep=False)
            self._entered = None


class ProviderClass(Protocol):
    """What the harness asks a provider before any instance exists (the class itself)."""

    provider_name: ClassVar[str]
    """Its :data:`PROVIDERS` key: the ``cluster`` setting's value."""
    deletes_clusters: ClassVar[bool]
    """It creates and deletes clusters (``python -m harness down`` applies; ``keep-cluster`` decides)."""
    wires_registries: ClassVar[bool]
    """Its nodes pull from a registry only once the provider wires it in (kind: a containerd host file per node).
    Then ``registry = localhost:PORT`` names a registry container on this Docker engine that the test bed finds
    and hands to :meth:`ClusterProvider.attach_registry`; otherwise such an address is the cluster's business."""

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        """Raise :class:`~harness._errors.ConfigError` (field, its source and the fix) for settings this provider
        cannot run; called at load, so a session stops before any work."""
        ...

    @classmethod
    def lock_key(cls, settings: Settings) -> tuple[str, bool]:
        """The session lock's name for this cluster, and whether the lock may do without Docker."""
        ...

    @classmethod
    def keep_by_default(cls, settings: Settings) -> bool:
        """``keep-cluster = auto``: whether the cluster stays after a session that did not fail."""
        ...

    @classmethod
    def preflight(cls, settings: Settings) -> list[Finding]:
        """``python -m harness doctor``: what this provider needs, checked in seconds."""
        ...

    @classmethod
    def logs_exporter(cls, settings: Settings, cluster: Cluster) -> Callable[[Path], None] | None:
        """How to export ``cluster``'s node logs from another process than the one that started it (an xdist
        worker attached to the owner's cluster); None where the provider has no node logs."""
        ...

    @classmethod
    def from_settings(cls, settings: Settings, *, kubectl_bin: Path, log: Callable[[str], None], phases: Phases,
                      preload: Callable[[Route], None] | None, session: str) -> ClusterProvider:
        """The provider for these settings; ``preload`` may run beside a cluster's creation (the stack's images),
        ``session`` is this session's id (its Lease on a shared cluster)."""
        ...


ENTRY_POINT_GROUP = "mlflow_crd_harness.cluster_providers"
"""Installed packages' providers: ``name = "module:Class"`` entry points, asked after :data:`PROVIDERS`."""

PROVIDERS: dict[str, str] = {
    "kind": "harness.clusters.kind:KindProvider",
    "existing": "harness.clusters.existing:ExistingProvider",
}
"""Setting ``cluster`` -> the provider class (``module:Class``, imported when first asked for)."""


def register(name: str, target: str) -> None:
    """Add a provider (``module:Class``) under ``name``: how a plugin or a test brings its own."""
    PROVIDERS[name] = target


def provider_names() -> tuple[str, ...]:
    return tuple(PROVIDERS)


def provider_class(name: str) -> type[ProviderClass]:
    """The class registered under ``name``; a :class:`~harness._errors.ConfigError` naming the choices if none."""
    from harness._errors import ConfigError

    target = PROVIDERS.get(name)
    if target is None:
        installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
        target = installed.get(name)
        if target is None:
            choices = ", ".join([*PROVIDERS, *sorted(set(installed) - set(PROVIDERS))])
            raise ConfigError(f"cluster = {name!r}: no such provider; one of {choices} (a package adds one as an "
                              f"entry point in the group {ENTRY_POINT_GROUP})")
    module, _, attr = target.partition(":")
    found: type[ProviderClass] = getattr(importlib.import_module(module), attr)
    return found

