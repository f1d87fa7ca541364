"""``docker push`` through the Docker SDK, reporting what moved, and the pod's reference by digest.

The pod references the pushed digest, so what runs is exactly what was built;
the layer report (sent versus already there) is the proof that a one-line
change moves one layer, not the image.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness._errors import DeliveryError

__all__ = ["DeliveredImage", "PushedLayers", "content_tag", "push_to_registry"]

_log = logging.getLogger("mlflow.projects.customjob")


@dataclass(frozen=True)
class DeliveredImage:
    """What the pod should run."""

    ref: str
    """Image reference for ``spec.image`` (``repo:tag`` or ``repo@sha256:...``)."""
    digest: str | None = None
    """Registry digest when pushed; None for kind/none delivery."""


def content_tag(repository: str, image_id: str) -> str:
    """``<repository>:<first 12 hex of the image id>``; same content, same tag.

    MLflow tags with the git sha (or nothing, i.e. ``latest``), which a dirty tree or a
    second run reuses for different content, and ``latest`` makes the kubelet pull
    instead of using the loaded copy.
    """
    hex_id = image_id.split(":", 1)[-1]
    return f"{repository}:{hex_id[:12]}"


def push_to_registry(
    docker_client: Any, repository: str, tag: str, auth: Mapping[str, Any] | None = None
) -> DeliveredImage:
    """``docker push repository:tag`` via the SDK; the result references the digest."""
    import docker.errors

    auth_config = {k: auth[k] for k in ("username", "password") if k in auth} if auth else None
    digest: str | None = None
    log: list[str] = []
    layers = PushedLayers()
    try:
        for line in docker_client.images.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config):
            if not isinstance(line, Mapping):
                continue
            layers.update(line)
            if line.get("error") or line.get("errorDetail"):
                detail = line.get("error") or line.get("errorDetail")
                raise DeliveryError(f"docker push {repository}:{tag} failed: {detail}\n" + "\n".join(log[-20:]))
            if line.get("status"):
                log.append(str(line["status"]))
            aux = line.get("aux")
            if isinstance(aux, Mapping) and aux.get("Digest"):
                digest = str(aux["Digest"])
        if digest is None:
            digest = str(docker_client.images.get_registry_data(f"{repository}:{tag}", auth_config=auth_config).id)
    except docker.errors.DockerException as exc:
        raise DeliveryError(f"docker push {repository}:{tag} failed: {exc}") from exc
    _log.info("image: pushed %s:%s: %s", repository, tag, layers.summary())
    return DeliveredImage(ref=f"{repository}@{digest}", digest=digest)


@dataclass
class PushedLayers:
    """What a ``docker push`` stream says of each layer: sent (with its size) or already in the registry.

    The proof that a one-line change moves one layer, not the image: the
    summary is logged with every push.
    """

    status: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def update(self, line: Mapping[str, Any]) -> None:
        layer, status = line.get("id"), str(line.get("status") or "")
        if not layer or not status or status.startswith(("The push refers", "latest", "sha256")):
            return
        detail = line.get("progressDetail")
        if isinstance(detail, Mapping) and isinstance(detail.get("total"), int):
            self.sizes[str(layer)] = max(self.sizes.get(str(layer), 0), int(detail["total"]))
        if status not in ("Preparing", "Waiting", "Pushing"):
            self.status[str(layer)] = status

    @property
    def sent(self) -> list[str]:
        return [layer for layer, st in self.status.items() if st == "Pushed"]

    @property
    def present(self) -> list[str]:
        return [layer for layer, st in self.status.items()
                if st == "Layer already exists" or st.startswith("Mounted from")]

    def summary(self) -> str:
        sent = sum(self.sizes.get(layer, 0) for layer in self.sent)
        return (f"{len(self.sent)}/{len(self.status)} layers sent ({sent / 1e6:.1f} MB), "
                f"{len(self.present)} already present")
