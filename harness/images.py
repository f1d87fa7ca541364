"""Build the project's images (trainer, controller, tracking server) reproducibly.

Tags are content hashes of the build context plus the base image id, so an
unchanged image is never rebuilt, a changed one always is, and Kubernetes never
sees ``:latest`` (which would make it try to pull a kind-loaded image).
Builds go through the Docker SDK — the same client MLflow uses for projects.

A build in flight can be stopped (:func:`cancel_builds`): the Docker daemon
ends a build whose client hangs up, killing and removing the container of the
step it runs. An interrupted session does that for the builds its threads run
(a ``KeyboardInterrupt`` only reaches the main thread, and a build thread
would otherwise go on until its build is done); a build interrupted in the
calling thread hangs up by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils.build import exclude_paths

from harness import dockercli
from harness._errors import HarnessError
from harness.delivery import Route
from harness.settings import ImageSpec

LOCAL_REGISTRY_HOST = "localhost:5001"
"""The harness's own local registry (settings ``registry = "local"``), as host and nodes name it."""

__all__ = ["BuildCancelled", "BuiltImage", "build_image", "build_spec", "cancel_builds", "context_digest", "deliver"]


class BuildCancelled(HarnessError):
    """The build was stopped by :func:`cancel_builds` (the session is being interrupted)."""


@dataclass(eq=False)
class _InFlight:
    """One build's connection to the daemon, to hang up on cancel."""

    cancelled: bool = False
    sock: Any = field(default=None, repr=False)

    def response_hook(self, response: Any, *_args: Any, **_kwargs: Any) -> Any:
        """A requests response hook: the build's response arrives (headers read, body still streaming)."""
        request = getattr(response, "request", None)
        if request is not None and "/build" in str(getattr(request, "path_url", "")):
            self.sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if self.cancelled:
                self._hang_up()
        return response

    def cancel(self) -> None:
        self.cancelled = True
        self._hang_up()

    def _hang_up(self) -> None:
        # shutdown(), not close(): it also wakes the thread blocked reading the build's output.
        with contextlib.suppress(OSError, AttributeError):
            self.sock.shutdown(socket.SHUT_RDWR)


_IN_FLIGHT: set[_InFlight] = set()
_IN_FLIGHT_LOCK = threading.Lock()


def cancel_builds() -> int:
    """Stop every build this process has in flight (any thread); return how many were asked to stop.

    The daemon sees the client hang up, stops the build and removes the
    container of the step it was running; each :func:`build_image` call
    raises :class:`BuildCancelled`.
    """
    with _IN_FLIGHT_LOCK:
        builds = list(_IN_FLIGHT)
    for build in builds:
        build.cancel()
    return len(builds)


@dataclass(frozen=True)
class BuiltImage:
    """A local image: ``tag`` to reference it, ``id`` to pin it, ``seconds`` spent (0 = reused)."""

    tag: str
    id: str
    size_bytes: int
    seconds: float
    reused: bool

    def summary(self) -> str:
        """``repo:tag 472 MB (reused)``: what a phase line says about it."""
        return f"{self.tag} {self.size_bytes / 1e6:.0f} MB{' (reused)' if self.reused else ''}"


def _context_files(context: Path, dockerfile: str = "Dockerfile") -> list[Path]:
    """The files ``docker build`` sends, by Docker's own ``.dockerignore`` rules (the SDK's).

    A hand-written matcher gets ``*`` vs ``/`` and ``**`` wrong, and a file it
    wrongly ignores would let a stale image be reused after a change.
    """
    ignore = context / ".dockerignore"
    patterns = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")] \
        if ignore.is_file() else []
    rels = exclude_paths(str(context), patterns, dockerfile=dockerfile)
    return sorted(p for p in (context / r for r in rels) if p.is_file() and "__pycache__" not in p.parts)


def context_digest(context: Path, *extra: str, dockerfile: str = "Dockerfile") -> str:
    """sha256 over the build context's files (names and bytes) and ``extra`` strings."""
    h = hashlib.sha256()
    for path in _context_files(context, dockerfile):
        h.update(path.relative_to(context).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()


def build_image(
    context: Path,
    repository: str,
    *,
    base_image: str,
    also_tag: Sequence[str] = (),
    build_args: Mapping[str, str] | None = None,
    dockerfile: str | None = None,
    log: Callable[[str], None] = print,
    client: docker.DockerClient | None = None,
) -> BuiltImage:
    """Build ``context`` as ``<repository>:<content hash>`` FROM ``base_image``; reuse if present.

    ``also_tag`` adds names the image must also answer to (e.g. the
    ``docker_env.image`` an MLproject names).
    """
    client = client or dockercli.sdk_client(timeout=1800)
    try:
        base_id = client.images.get(base_image).id
    except docker.errors.ImageNotFound as exc:
        raise HarnessError(f"base image {base_image} is not in the local Docker; resolve it first "
                           "(python -m harness base-image)") from exc
    args = {"BASE_IMAGE": base_image, **(build_args or {})}
    extra = [base_id, *(f"{k}={v}" for k, v in sorted(args.items()))]
    tag = f"{repository}:{context_digest(context, *extra, dockerfile=dockerfile or 'Dockerfile')[:12]}"
    started = time.monotonic()
    reused = dockercli.image_exists(tag)
    if not reused:
        uses_base = "BASE_IMAGE" in (context / (dockerfile or "Dockerfile")).read_text(errors="replace")
        log(f"image: building {tag} from {context}" + (f" (FROM {base_image})" if uses_base else ""))
        build = _InFlight()
        hooks = client.api.hooks["response"]
        hooks.append(build.response_hook)
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.add(build)
        try:
            client.images.build(
                path=str(context), tag=tag, buildargs=args, rm=True, forcerm=True, dockerfile=dockerfile,
                labels={"org.opencontainers.image.source": "mlflow-crd-harness", "harness.base": base_id},
            )
        except docker.errors.BuildError as exc:
            if build.cancelled:
                raise BuildCancelled(f"docker build of {context} stopped (the session is interrupted)") from exc
            lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
            tail = "\n".join(ln for ln in lines if ln)[-4000:]
            raise HarnessError(f"docker build of {context} failed: {exc.msg}\n{tail}") from exc
        except Exception as exc:
            if build.cancelled:  # the hang-up surfaces as a broken stream
                raise BuildCancelled(f"docker build of {context} stopped (the session is interrupted)") from exc
            raise
        except BaseException:
            build.cancel()  # interrupted in this thread: hang up now, not when the process exits
            raise
        finally:
            with _IN_FLIGHT_LOCK:
                _IN_FLIGHT.discard(build)
            with contextlib.suppress(ValueError):
                hooks.remove(build.response_hook)
    image = client.images.get(tag)
    for name in also_tag:
        repo, _, t = name.partition(":")
        image.tag(repo, t or "latest")
    seconds = 0.0 if reused else time.monotonic() - started
    return BuiltImage(tag=tag, id=str(image.id), size_bytes=int(image.attrs.get("Size", 0)),
                      seconds=seconds, reused=reused)


def build_spec(spec: ImageSpec, *, base_image: str, log: Callable[[str], None] = print,
               pull_timeout: float = 120.0) -> BuiltImage:
    """Build one configured image (settings ``images``); a ``public`` one is pulled instead where it can be.

    A ``go`` image's context (its binary, built from the module proxy) is made
    first (:func:`harness.goimage.build_context`), then built like any other.
    """
    if spec.public is not None:
        started = time.monotonic()
        how, why = dockercli.obtain(spec.public, pull_timeout=pull_timeout)
        if how is not None:
            client = dockercli.sdk_client()
            image = client.images.get(spec.public)
            log(f"image: {spec.name}: using the published {spec.public} ({how})")
            return BuiltImage(tag=spec.public, id=str(image.id), size_bytes=int(image.attrs.get("Size", 0)),
                              seconds=0.0 if how == "present" else time.monotonic() - started, reused=how == "present")
        log(f"image: {spec.name}: {spec.public} cannot be pulled ({why}); building it")
    if spec.go is not None:
        from harness import goimage

        context = goimage.build_context(spec.go, log=log)
    else:
        assert spec.context is not None  # settings require one of context and go
        context = spec.context
    return build_image(context, spec.repository, base_image=base_image, also_tag=spec.also_tag,
                       build_args=spec.build_args, dockerfile=spec.dockerfile, log=log)


def deliver(ref: str, route: Route, *, log: Callable[[str], None] = print) -> str:
    """Get local image ``ref`` onto the cluster's nodes by ``route``; return the reference pods should use.

    ``kind``: ``kind load`` unless every node already has it, then verified on
    every node. A registry: pushed (only missing layers move; nothing if the
    harness's registry already holds it), referenced by digest. The same routes
    the ``customjob`` backend delivers projects by (:mod:`harness.delivery`).
    """
    return route.deliver(ref, log=log).ref
