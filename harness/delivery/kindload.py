"""``kind load`` that is proven: every node of the cluster must list the image afterwards.

``kind load docker-image`` has been seen to exit 0 without the image landing
(kind issues #3795, #4028); a missing image then shows up minutes later as
``ErrImagePull``. So the load falls back to ``docker save --platform | kind
load image-archive`` and ends with ``ctr -n k8s.io images ls -q`` on each node.
Nothing moves when every node already holds the (content-tagged) image.
Used by the harness's test bed and by the ``customjob`` MLflow backend alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from harness import _exec, imagerefs
from harness._errors import CommandError, DeliveryError

__all__ = [
    "KIND_LOAD_TIMEOUT",
    "image_on_node",
    "kind_load",
    "kind_load_archive",
    "kind_nodes",
    "load_verified",
    "missing_on_kind_nodes",
    "normalize_ref",
    "verify_on_kind_nodes",
]

_log = logging.getLogger("mlflow.projects.customjob")

KIND_LOAD_TIMEOUT = 900.0
"""Seconds for ``kind load``: a 1 GB image on a slow disk takes minutes."""
PROBE_TIMEOUT = 60.0


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
        raise DeliveryError(f"loading image {ref!r} into kind cluster {cluster!r} failed: {exc}") from exc



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
        raise DeliveryError(f"loading image {ref!r} into kind cluster {cluster!r} failed, also as an "
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
    except DeliveryError as exc:
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
        raise DeliveryError(f"listing nodes of kind cluster {cluster!r} failed: {exc}") from exc
    nodes = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    if not nodes:
        raise DeliveryError(f"kind cluster {cluster!r} has no nodes; create it first, or check the name against "
                            f"`{kind_binary} get clusters` (the backend's 'kind-cluster' key)")
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
            raise DeliveryError(f"listing images on kind node {node!r} failed: {exc}") from exc
        if not image_on_node(out.stdout, ref):
            missing.append(node)
    return missing


def verify_on_kind_nodes(nodes: Sequence[str], ref: str) -> None:
    """Raise unless every node's containerd (namespace k8s.io) lists ``ref``."""
    missing = missing_on_kind_nodes(nodes, ref)
    if missing:
        raise DeliveryError(
            f"image {normalize_ref(ref)!r} is not on kind node(s) {', '.join(missing)} after "
            f"`kind load docker-image`; retry, or `docker save {ref} | "
            f"kind load image-archive /dev/stdin`"
        )
