"""The image route through a registry container on this Docker engine (the harness's, or a user's).

Like :class:`harness.delivery.RegistryPush`, with what a registry on loopback
allows: its API is read first, and an image it already holds (same config
digest) is not pushed at all; a push logs the layers and bytes it sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.delivery import DeliveredImage, RegistryPush
from harness.registry import wiring

__all__ = ["LocalRegistryPush"]


@dataclass(frozen=True)
class LocalRegistryPush(RegistryPush):
    """Push to the registry container published on loopback ``registry`` (``localhost:PORT``)."""

    route: ClassVar[str] = "local-registry"

    def deliver(self, ref: str, *, log: Callable[[str], None] | None = None) -> DeliveredImage:
        from harness.registry.local import LocalRegistry

        port = wiring.loopback_port(self.registry)
        if port is None:
            raise ValueError(f"{self.registry!r} is not a loopback registry address (localhost:PORT)")
        report = LocalRegistry(image="", host_port=port, log=log or print).push_with_report(ref)
        return DeliveredImage(ref=report.digest_ref, digest=report.digest_ref.rsplit("@", 1)[-1])

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LocalRegistryPush:
        return cls(registry=str(record["registry"]))
