"""The registry's container image: the public ``registry`` image, or one we build from Go modules.

Registry-less machines cannot pull ``registry:2``, but they can reach the Go
module proxy, so the fallback is our own ~30-line ``main``
(``files/main.go``) over ``github.com/google/go-containerregistry/pkg/registry``,
compiled static and packed with ``docker import`` into an image holding only
that binary, a passwd entry for its non-root user and its data directory.
Nothing is pulled, no Dockerfile base is needed, and the result is tagged by a
hash of every input, so a warm machine finds it with one ``docker image
inspect``.
"""

from __future__ import annotations

import functools
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

from harness import _exec, dockercli, hostenv
from harness._errors import HarnessError, PreflightError
from harness.cachedir import cache_dir
from harness.imagesource import Choice, Mode, choose
from harness.nodeimage import cache
from harness.nodeimage.gobuild import GoToolchain, wrapper_module

__all__ = [
    "CONTAINER_PORT",
    "DATA_DIR",
    "GGCR_MODULE",
    "GGCR_VERSION",
    "GO_MEMORY_LIMIT",
    "IMAGE_ENV",
    "LOCAL_REPOSITORY",
    "MODE_ENV",
    "PUBLIC_IMAGE",
    "RUN_UID",
    "binary_key",
    "ensure_registry_image",
    "image_key",
    "import_changes",
    "local_image_tag",
    "main_source",
    "passwd_text",
    "rootfs_tar",
]

Log = Callable[[str], None]

#: The public image kind's local-registry guide uses, pinned by tag.
PUBLIC_IMAGE = "registry:2.8.3"

#: The registry library behind our fallback image, and the version we pin.
GGCR_MODULE = "github.com/google/go-containerregistry"
GGCR_VERSION = "v0.22.1"

LOCAL_REPOSITORY = "local/harness-registry"
#: Blobs are kept here (under ``blobs/``); a Docker volume, so they outlive the container's writable layer.
DATA_DIR = "/var/lib/registry"
#: The uid/gid the registry runs as: not root, and not a uid a host account is likely to have.
RUN_UID = 65532
#: Soft Go heap limit inside our image (``GOMEMLIMIT``); see :func:`import_changes`.
GO_MEMORY_LIMIT = "128MiB"
#: Port inside the container; both images listen here.
CONTAINER_PORT = 5000

#: Force an image (``HARNESS_REGISTRY_IMAGE``) or a source (``HARNESS_REGISTRY_IMAGE_MODE``).
IMAGE_ENV = hostenv.REGISTRY_IMAGE
MODE_ENV = hostenv.REGISTRY_IMAGE_MODE

#: Bump when the image layout (tarball entries, import changes) changes without the inputs changing.
_LAYOUT_REVISION = 1
_MAIN_GO = Path(__file__).parent / "files" / "main.go"
_BUILD_TIMEOUT = 900.0  # s; cold compile is ~1 min on 2 busy cores, module download included


def main_source() -> str:
    """Our registry ``main`` (part of every cache key)."""
    return _MAIN_GO.read_text()


def binary_key(go_version: str, source: str) -> str:
    """Cache key of the compiled binary: library version, Go version, our source."""
    return cache.input_key({"what": "harness-registry-binary", "module": GGCR_MODULE,
                            "version": GGCR_VERSION, "go": go_version, "main": source})


def import_changes() -> list[str]:
    """The Dockerfile instructions ``docker import`` applies to the binary-only root."""
    return [
        'ENTRYPOINT ["/registry"]',
        f"USER {RUN_UID}:{RUN_UID}",
        f"EXPOSE {CONTAINER_PORT}/tcp",
        f"ENV REGISTRY_DATA={DATA_DIR}",
        # The library buffers each layer upload in memory; a soft heap limit makes the Go runtime
        # hand that memory back after the push (measured: RSS 82 MB instead of 373 MB after a
        # 148 MB push) while still letting a large upload exceed it.
        f"ENV GOMEMLIMIT={GO_MEMORY_LIMIT}",
        f"VOLUME {DATA_DIR}",
        f"WORKDIR {DATA_DIR}",
        f"LABEL org.opencontainers.image.title=harness-registry "
        f"io.mlflow-crd-harness.registry.source={GGCR_MODULE}@{GGCR_VERSION}",
    ]


def image_key(go_version: str, source: str) -> str:
    """Cache key (and tag suffix) of the image: the binary's key plus the image layout."""
    return cache.input_key({"what": "harness-registry-image", "binary": binary_key(go_version, source),
                            "layout": _LAYOUT_REVISION, "changes": import_changes(), "uid": RUN_UID})


def local_image_tag(go_version: str, source: str) -> str:
    """``local/harness-registry:<library version>-<hash of inputs>``."""
    return f"{LOCAL_REPOSITORY}:{GGCR_VERSION}-{image_key(go_version, source)}"


def ensure_registry_image(
    log: Log = print,
    *,
    mode: Mode | None = None,
    override: str | None = None,
    pull_timeout: float = 30.0,
) -> str:
    """Return a local image that runs a registry on port 5000, building one only if needed.

    ``auto`` (the default, or ``$HARNESS_REGISTRY_IMAGE_MODE``) prefers what
    is already here, so a warm call never touches the network: the public
    image if present, else our built image if present, else a pull of the
    public image, else a build. ``public`` only pulls; ``local`` only builds.
    ``override`` (or ``$HARNESS_REGISTRY_IMAGE``) names an image to use as is.
    The rules are the ones every pinned image shares (:func:`harness.imagesource.choose`);
    what is already here is this image's ``already_local`` step.
    """
    pull_error = ""

    @functools.cache
    def go() -> tuple[GoToolchain | None, str]:
        try:
            return GoToolchain.discover(cache_dir()), ""
        except PreflightError as exc:
            return None, str(exc)

    @functools.cache  # asked by already_local and again by build: one docker inspect, one log line
    def built_earlier() -> str | None:
        found, _ = go()
        if found is None:
            return None
        tag = local_image_tag(found.version, main_source())
        if not dockercli.image_exists(tag):
            return None
        log(f"registry image: {tag} (built earlier)")
        return tag

    def already_local() -> Choice | None:
        if dockercli.image_exists(PUBLIC_IMAGE):
            return Choice(PUBLIC_IMAGE, "public", "present")
        tag = built_earlier()
        return Choice(tag, "local", "built earlier") if tag else None

    def obtain(ref: str) -> tuple[str | None, str]:
        nonlocal pull_error
        how, pull_error = dockercli.obtain(ref, pull_timeout=pull_timeout)
        return how, pull_error

    def build() -> str:
        tag = built_earlier()
        if tag is not None:
            return tag
        found, go_problem = go()
        if found is None:
            raise PreflightError(f"no registry image: {PUBLIC_IMAGE} cannot be pulled ({pull_error or 'not tried'}) "
                                 f"and it cannot be built: {go_problem}")
        return _build_image(found, log)

    def check_override(ref: str) -> None:
        if not dockercli.image_exists(ref):
            raise PreflightError(f"registry image {ref!r} (from --registry-image / ${IMAGE_ENV}) "
                                 f"is not in the local Docker engine; `docker pull {ref}` or unset it")

    choice = choose(
        what="registry image", mode=mode or hostenv.get(MODE_ENV), override=override or hostenv.get(IMAGE_ENV),
        public=PUBLIC_IMAGE, obtain_public=obtain, build_local=build, log=log,
        fix=f"use {MODE_ENV}=local to build the registry from Go modules instead",
        local_reason="built from Go modules", override_reason="override", mode_setting=f"${MODE_ENV}",
        check_override=check_override, already_local=already_local,
    )
    if choice.source != "local":  # a local image was announced where it was found or built
        log(f"registry image: {choice.image} ({choice.reason})")
    return choice.image


def _build_image(go: GoToolchain, log: Log) -> str:
    """Build (or, after waiting for a parallel builder, find) the local image."""
    source = main_source()
    tag = local_image_tag(go.version, source)
    root = cache_dir("registry")
    with cache.build_lock(root, what=f"registry image {tag}", log=log):
        if dockercli.image_exists(tag):  # a parallel worker finished it while we waited
            return tag
        binary = _build_binary(go, root, source, log)
        tarball = root / "work" / f"rootfs-{image_key(go.version, source)}.tar"
        tarball.parent.mkdir(parents=True, exist_ok=True)
        try:
            tarball.write_bytes(rootfs_tar(binary))
            argv: list[str] = ["docker", "import"]
            for change in import_changes():
                argv += ["--change", change]
            argv += ["--message", f"harness registry: {GGCR_MODULE}@{GGCR_VERSION}", str(tarball), tag]
            _exec.run(argv, timeout=300)
        finally:
            tarball.unlink(missing_ok=True)
    if not dockercli.image_exists(tag):
        raise HarnessError(f"docker import reported success but {tag} is not there; "
                           f"re-run, or check `docker images {LOCAL_REPOSITORY}`")
    log(f"registry image: {tag} (built)")
    return tag


def _build_binary(go: GoToolchain, root: Path, source: str, log: Log) -> Path:
    """Compile our ``main`` against the pinned library in a throw-away module; cached by inputs."""
    final = root / "bin" / f"registry-{GGCR_VERSION}-{binary_key(go.version, source)}"
    if (final / "registry").is_file():
        log(f"registry binary: cached in {final}")
        return final / "registry"
    work = root / "work" / f"module-{GGCR_VERSION}"
    log(f"registry binary: compiling {GGCR_MODULE}@{GGCR_VERSION} with {go.version}")
    wrapper_module(go, work, "harness-registry", {"main.go": source})
    go.run("get", f"{GGCR_MODULE}@{GGCR_VERSION}", cwd=work)
    go.run("mod", "tidy", cwd=work)
    with cache.publish_dir(final) as tmp:
        go.run("build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "registry"), ".", cwd=work)
    return final / "registry"


def rootfs_tar(binary: Path) -> bytes:
    """The image's whole filesystem: the binary, passwd/group for :data:`RUN_UID`, the data dir.

    Fixed mtimes and ownership make the tarball depend only on the binary.
    ``/tmp`` exists because Go's ``os.TempDir`` falls back to it.
    """
    buf = io.BytesIO()

    def add(name: str, *, mode: int, data: bytes | None = None, uid: int = 0) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, 0
        if data is None:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add("etc", mode=0o755)
        add("etc/passwd", mode=0o644, data=passwd_text().encode())
        add("etc/group", mode=0o644, data=f"root:x:0:\nregistry:x:{RUN_UID}:\n".encode())
        add("tmp", mode=0o1777)
        add("var", mode=0o755)
        add("var/lib", mode=0o755)
        add(DATA_DIR.lstrip("/"), mode=0o755, uid=RUN_UID)
        add("registry", mode=0o755, data=binary.read_bytes())
    return buf.getvalue()


def passwd_text() -> str:
    """``/etc/passwd``: root plus the registry user (so ``docker exec`` and logs show a name)."""
    return ("root:x:0:0:root:/root:/sbin/nologin\n"
            f"registry:x:{RUN_UID}:{RUN_UID}:harness registry:{DATA_DIR}:/sbin/nologin\n")
