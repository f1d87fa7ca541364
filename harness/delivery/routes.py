"""How an image built on this host reaches a cluster's nodes: one :class:`Route` per way.

A route does three things, so its shape is written down once, here:

* :meth:`Route.deliver` gets a local image onto the nodes and says what a pod
  should name (the test bed delivers the stack's images with it, the
  ``customjob`` backend the project's);
* :meth:`Route.backend_config` is what the run driver tells the backend
  (``--backend-config`` keys), so the backend delivers the same way;
* :meth:`Route.to_record` / :func:`route_from_record` carry it to xdist
  workers (JSON, no credentials).

Shipped: :class:`KindLoad` (``kind load``, verified on every node),
:class:`RegistryPush` (``docker push``; pods pull by digest), :class:`NoDelivery`
(the nodes share this Docker engine) and, in :mod:`harness.registry.route`,
``LocalRegistryPush`` (a registry container on this engine: nothing is pushed
that it already holds). A new one is a class and an entry in :data:`ROUTES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from harness import imagerefs
from harness.delivery.kindload import load_verified
from harness.delivery.push import DeliveredImage, push_to_registry

__all__ = ["ROUTES", "KindLoad", "NoDelivery", "RegistryPush", "Route", "route_from_record"]

Log = Callable[[str], None]


class Route(Protocol):
    """One way images reach the nodes (see the module docstring)."""

    route: ClassVar[str]
    """Its :data:`ROUTES` key, written into records."""

    @property
    def mode(self) -> str:
        """What the backend's ``image-delivery`` key says: ``kind``, ``registry`` or ``none``."""
        ...

    @property
    def kind_cluster(self) -> str | None: ...

    @property
    def kind_bin(self) -> Path | None: ...

    @property
    def registry(self) -> str | None:
        """``host[:port]`` images are pushed to and pulled from (registry routes)."""
        ...

    def deliver(self, ref: str, *, log: Log | None = None) -> DeliveredImage:
        """Get local image ``ref`` onto the nodes; what pods should name (a digest where there is one)."""
        ...

    def backend_config(self, project: str) -> dict[str, str]:
        """The ``--backend-config`` keys that make the backend deliver project ``project`` this way."""
        ...

    def to_record(self) -> dict[str, Any]:
        """JSON for :func:`route_from_record` (never credentials)."""
        ...


@dataclass(frozen=True)
class KindLoad:
    """``kind load`` into every node of ``kind_cluster``, then verified on each (see :mod:`.kindload`)."""

    route: ClassVar[str] = "kind"
    mode: ClassVar[str] = "kind"
    registry: ClassVar[str | None] = None

    kind_cluster: str
    kind_bin: Path

    def deliver(self, ref: str, *, log: Log | None = None) -> DeliveredImage:
        load_verified(str(self.kind_bin), self.kind_cluster, ref, log=log)
        return DeliveredImage(ref=ref)

    def backend_config(self, project: str) -> dict[str, str]:
        return {"image-delivery": "kind", "kind-cluster": self.kind_cluster, "kind-binary": str(self.kind_bin)}

    def to_record(self) -> dict[str, Any]:
        return {"route": self.route, "kind_cluster": self.kind_cluster, "kind_bin": str(self.kind_bin)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> KindLoad:
        return cls(kind_cluster=str(record["kind_cluster"]), kind_bin=Path(record["kind_bin"]))


@dataclass(frozen=True)
class RegistryPush:
    """``docker push`` to ``registry`` (the nodes pull from it); pods name the pushed digest.

    A reference already under the registry is pushed as it is (the backend tags the
    project's image into its ``repository-uri``); any other is tagged
    ``<registry>/<its last path part>:<tag>`` first (the stack's images).
    """

    route: ClassVar[str] = "registry"
    mode: ClassVar[str] = "registry"
    kind_cluster: ClassVar[str | None] = None
    kind_bin: ClassVar[Path | None] = None

    registry: str
    auth: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    """Docker credentials for the push (``username``/``password``); never recorded."""
    client: Any = field(default=None, repr=False, compare=False)
    """The Docker SDK client to push with (None: one for this engine)."""

    def _target(self, ref: str) -> tuple[str, str, str]:
        """(``ref``'s repository, the repository to push, the tag)."""
        parsed = imagerefs.parse_ref(ref)
        repository = f"{parsed.domain}/{parsed.path}" if parsed.domain else parsed.path
        tag = parsed.tag or "latest"
        if not self.registry or repository.startswith(f"{self.registry}/"):
            return repository, repository, tag
        return repository, f"{self.registry}/{parsed.path.rsplit('/', 1)[-1]}", tag

    def deliver(self, ref: str, *, log: Log | None = None) -> DeliveredImage:
        client = self.client
        if client is None:
            from harness import dockercli

            client = dockercli.sdk_client(timeout=1800)
        repository, target, tag = self._target(ref)
        if target != repository:
            client.images.get(ref).tag(target, tag=tag)
        if log is not None:
            log(f"image: push {target}:{tag}")
        return push_to_registry(client, target, tag, self.auth)

    def backend_config(self, project: str) -> dict[str, str]:
        return {"image-delivery": "registry", "repository-uri": f"{self.registry}/{project}"}

    def to_record(self) -> dict[str, Any]:
        return {"route": self.route, "registry": self.registry}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RegistryPush:
        return cls(registry=str(record["registry"]))


@dataclass(frozen=True)
class NoDelivery:
    """The nodes use this Docker engine's images (Docker Desktop's Kubernetes, ``minikube docker-env``)."""

    route: ClassVar[str] = "none"
    mode: ClassVar[str] = "none"
    kind_cluster: ClassVar[str | None] = None
    kind_bin: ClassVar[Path | None] = None
    registry: ClassVar[str | None] = None

    def deliver(self, ref: str, *, log: Log | None = None) -> DeliveredImage:
        return DeliveredImage(ref=ref)

    def backend_config(self, project: str) -> dict[str, str]:
        return {"image-delivery": "none"}

    def to_record(self) -> dict[str, Any]:
        return {"route": self.route}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> NoDelivery:
        return cls()


ROUTES: dict[str, str] = {
    KindLoad.route: "harness.delivery.routes:KindLoad",
    RegistryPush.route: "harness.delivery.routes:RegistryPush",
    NoDelivery.route: "harness.delivery.routes:NoDelivery",
    "local-registry": "harness.registry.route:LocalRegistryPush",
}
"""A record's ``route`` -> its class (``module:Class``, imported when a record names it)."""


def route_from_record(record: Mapping[str, Any]) -> Route:
    """The route :meth:`Route.to_record` wrote."""
    target = ROUTES.get(str(record.get("route")))
    if target is None:
        raise ValueError(f"unknown image route {record.get('route')!r} (one of {', '.join(ROUTES)})")
    module, _, name = target.partition(":")
    route: Route = getattr(importlib.import_module(module), name).from_record(record)
    return route
