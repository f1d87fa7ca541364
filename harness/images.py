"""Build the project's images (trainer, controller, tracking server) reproducibly.

Tags are content hashes of the build context plus the base image id, so an
unchanged image is never rebuilt, a changed one always is, and Kubernetes never
sees ``:latest`` (which would make it try to pull a kind-loaded image).
Builds go through the Docker SDK — the same client MLflow uses for projects.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from harness._errors import HarnessError

__all__ = ["BuiltImage", "build_image", "context_digest", "image_present"]


@dataclass(frozen=True)
class BuiltImage:
    """A local image: ``tag`` to reference it, ``id`` to pin it, ``seconds`` spent (0 = reused)."""

    tag: str
    id: str
    size_bytes: int
    seconds: float
    reused: bool


def _ignored(rel: str, patterns: list[str]) -> bool:
    # A minimal .dockerignore reading: later lines win, "!" re-includes.
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat[1:] if negate else pat
        if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel.split("/")[0], pat):
            ignored = not negate
    return ignored


def _context_files(context: Path) -> Iterator[Path]:
    ignore = context / ".dockerignore"
    patterns = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")] \
        if ignore.is_file() else []
    for path in sorted(context.rglob("*")):
        rel = path.relative_to(context).as_posix()
        if path.is_file() and "__pycache__" not in rel and (rel in ("Dockerfile", ".dockerignore")
                                                            or not _ignored(rel, patterns)):
            yield path


def context_digest(context: Path, *extra: str) -> str:
    """sha256 over the build context's files (names and bytes) and ``extra`` strings."""
    h = hashlib.sha256()
    for path in _context_files(context):
        h.update(path.relative_to(context).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()


def image_present(tag: str, client: docker.DockerClient | None = None) -> bool:
    client = client or docker.from_env()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_image(
    context: Path,
    repository: str,
    *,
    base_image: str,
    also_tag: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
    client: docker.DockerClient | None = None,
) -> BuiltImage:
    """Build ``context`` as ``<repository>:<content hash>`` FROM ``base_image``; reuse if present.

    ``also_tag`` adds names the image must also answer to (e.g. the
    ``docker_env.image`` an MLproject names).
    """
    client = client or docker.from_env(timeout=1800)
    try:
        base_id = client.images.get(base_image).id
    except docker.errors.ImageNotFound as exc:
        raise HarnessError(f"base image {base_image} is not in the local Docker; resolve it first "
                           "(python -m harness base-image)") from exc
    tag = f"{repository}:{context_digest(context, base_id)[:12]}"
    started = time.monotonic()
    reused = image_present(tag, client)
    if not reused:
        log(f"image: building {tag} from {context} (FROM {base_image})")
        try:
            client.images.build(
                path=str(context), tag=tag, buildargs={"BASE_IMAGE": base_image}, rm=True, forcerm=True,
                labels={"org.opencontainers.image.source": "mlflow-crd-harness", "harness.base": base_id},
            )
        except docker.errors.BuildError as exc:
            lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
            tail = "\n".join(ln for ln in lines if ln)[-4000:]
            raise HarnessError(f"docker build of {context} failed: {exc.msg}\n{tail}") from exc
    image = client.images.get(tag)
    for extra in also_tag:
        repo, _, t = extra.partition(":")
        image.tag(repo, t or "latest")
    seconds = 0.0 if reused else time.monotonic() - started
    return BuiltImage(tag=tag, id=str(image.id), size_bytes=int(image.attrs.get("Size", 0)),
                      seconds=seconds, reused=reused)
