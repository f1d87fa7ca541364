"""Getting the image MLflow built onto the cluster's nodes.

Three modes, chosen by ``image-delivery``:

* ``kind``: ``kind load docker-image`` into every node, then *verify* with
  ``ctr -n k8s.io images ls -q`` on each node, because ``kind load`` has been
  seen to exit 0 without the image landing (kind issues #3795, #4028), and a
  missing image otherwise shows up minutes later as ``ErrImagePull``.
* ``registry``: ``docker push`` through the docker SDK; the pod references the
  pushed digest, so what runs is exactly what was built.
* ``none``: the nodes share the submitter's docker daemon (docker-desktop,
  ``minikube docker-env``); nothing to do.

Before delivery the image gets a content-addressed tag ``<repo>:<image id[:12]>``.
MLflow tags with the git sha (or nothing, i.e. ``latest``), which a dirty tree
or a second run reuses for different content, and ``latest`` makes the kubelet
pull instead of using the loaded copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import _exec, imagerefs
from harness._errors import CommandError
from harness.backend.errors import ImageDeliveryError

__all__ = [
    "DeliveredImage",
    "PushedLayers",
    "content_tag",
    "image_on_node",
    "kind_load",
    "kind_load_archive",
    "kind_nodes",
    "load_verified",
    "missing_on_kind_nodes",
    "normalize_ref",
    "push_to_registry",
    "verify_on_kind_nodes",
]

_log = logging.getLogger("mlflow.projects.customjob")

KIND_LOAD_TIMEOUT = 900.0
"""Seconds for ``kind load``: a 1 GB image on a slow disk takes minutes."""
PROBE_TIMEOUT = 60.0


@dataclass(frozen=True)
class DeliveredImage:
    """What the pod should run."""

    ref: str
    """Image reference for ``spec.image`` (``repo:tag`` or ``repo@sha256:...``)."""
    digest: str | None = None
    """Registry digest when pushed; None for kind/none delivery."""


def content_tag(repository: str, image_id: str) -> str:
    """``<repository>:<first 12 hex of the image id>``; same content, same tag."""
    hex_id = image_id.split(":", 1)[-1]
    return f"{repository}:{hex_id[:12]}"


def normalize_ref(ref: str) -> str:
    """Spell ``ref`` the way containerd lists it (``docker.io/library/x:latest``)."""
    return imagerefs.containerd_name(ref)


def image_on_node(ctr_listing: str, ref: str) -> bool:
    """True if ``ctr images ls -q`` output lists ``ref`` (normalised) on a line."""
    wanted = normalize_ref(ref)
    return any(line.strip() == wanted for line in ctr_listing.splitlines())


def kind_load(kind_binary: str, cluster: str, ref: str) -> None:
    """``kind load docker-image <ref> --name <cluster>``; failures carry kind's output."""
    try:
        _exec.run(
            [kind_binary, "load", "docker-image", ref, "--name", cluster],
            timeout=KIND_LOAD_TIMEOUT,
        )
    except CommandError as exc:
        raise ImageDeliveryError(f"loading image {ref!r} into kind cluster {cluster!r} failed: {exc}") from exc



def kind_load_archive(kind_binary: str, cluster: str, ref: str) -> None:
    """``docker save --platform <node platform> ref`` to a file, then ``kind load image-archive``.

    The workaround for ``kind load docker-image`` under Docker's containerd
    image store (kind #3795: "content digest ... not found"), where a
    multi-platform image cannot be exported whole.
    """
    import tempfile

    try:
        plat = _exec.run(["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", ref],
                         timeout=PROBE_TIMEOUT).stdout.strip()
        with tempfile.TemporaryDirectory(prefix="kind-load-") as tmp:
            archive = f"{tmp}/image.tar"
            _exec.run(["docker", "image", "save", "--platform", plat, "-o", archive, ref], timeout=KIND_LOAD_TIMEOUT)
            _exec.run([kind_binary, "load", "image-archive", archive, "--name", cluster], timeout=KIND_LOAD_TIMEOUT)
    except CommandError as exc:
        raise ImageDeliveryError(f"loading image {ref!r} into kind cluster {cluster!r} failed, also as an "
                                 f"archive: {exc}") from exc


def load_verified(kind_binary: str, cluster: str, ref: str, log: Callable[[str], None] | None = None) -> None:
    """``kind load`` with the archive fallback, then proof that every node lists ``ref``.

    Nothing moves when every node already holds ``ref`` (content-addressed tags:
    same tag, same bytes), which makes a warm re-run free.
    """
    nodes = kind_nodes(kind_binary, cluster)
    if not missing_on_kind_nodes(nodes, ref):
        return
    (log or _log.info)(f"image: kind load {ref} into {cluster}")
    try:
        kind_load(kind_binary, cluster, ref)
        missing = missing_on_kind_nodes(nodes, ref)
    except ImageDeliveryError as exc:
        missing, why = nodes, " ".join(str(exc).split())[:400]
    else:
        why = f"not on node(s) {', '.join(missing)} after kind load docker-image"
    if missing:
        (log or _log.warning)(f"image {ref}: {why}; retrying as docker save --platform | kind load image-archive")
        kind_load_archive(kind_binary, cluster, ref)
    verify_on_kind_nodes(nodes, ref)


def kind_nodes(kind_binary: str, cluster: str) -> list[str]:
    """Node container names of a kind cluster (``kind get nodes``)."""
    try:
        out = _exec.run([kind_binary, "get", "nodes", "--name", cluster], timeout=PROBE_TIMEOUT)
    except CommandError as exc:
        raise ImageDeliveryError(f"listing nodes of kind cluster {cluster!r} failed: {exc}") from exc
    nodes = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    if not nodes:
        raise ImageDeliveryError(
            f"kind cluster {cluster!r} has no nodes; check 'kind-cluster' against `kind get clusters`"
        )
    return nodes


def missing_on_kind_nodes(nodes: Sequence[str], ref: str) -> list[str]:
    """The nodes whose containerd (namespace k8s.io) does not list ``ref``."""
    missing: list[str] = []
    for node in nodes:
        try:
            out = _exec.run(
                ["docker", "exec", node, "ctr", "-n", "k8s.io", "images", "ls", "-q"],
                timeout=PROBE_TIMEOUT,
            )
        except CommandError as exc:
            raise ImageDeliveryError(f"listing images on kind node {node!r} failed: {exc}") from exc
        if not image_on_node(out.stdout, ref):
            missing.append(node)
    return missing


def verify_on_kind_nodes(nodes: Sequence[str], ref: str) -> None:
    """Raise unless every node's containerd (namespace k8s.io) lists ``ref``."""
    missing = missing_on_kind_nodes(nodes, ref)
    if missing:
        raise ImageDeliveryError(
            f"image {normalize_ref(ref)!r} is not on kind node(s) {', '.join(missing)} after "
            f"`kind load docker-image`; retry, or `docker save {ref} | "
            f"kind load image-archive /dev/stdin`"
        )


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
                raise ImageDeliveryError(f"docker push {repository}:{tag} failed: {detail}\n" + "\n".join(log[-20:]))
            if line.get("status"):
                log.append(str(line["status"]))
            aux = line.get("aux")
            if isinstance(aux, Mapping) and aux.get("Digest"):
                digest = str(aux["Digest"])
        if digest is None:
            digest = str(docker_client.images.get_registry_data(f"{repository}:{tag}", auth_config=auth_config).id)
    except docker.errors.DockerException as exc:
        raise ImageDeliveryError(f"docker push {repository}:{tag} failed: {exc}") from exc
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
