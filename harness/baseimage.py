"""Choose, and when needed build, the Python base image that our images start FROM.

Internet users get the public pinned image (``PUBLIC_PYTHON_BASE``). Machines
with no container registry cannot pull it, so we bootstrap an equivalent image
from the host's Debian mirror (debootstrap + ``docker import``), with the host
CA bundle trusted so ``pip`` inside builds can reach PyPI through TLS-inspecting
proxies. Both paths hand the result to ``docker build --build-arg BASE_IMAGE``,
so the Dockerfiles are the same everywhere.

Selection (first that applies; the rules every pinned image shares, :func:`harness.imagesource.choose`):

1. ``HARNESS_BASE_IMAGE`` / ``--base-image``: use exactly that image.
2. mode ``public`` / ``local`` (``HARNESS_BASE_MODE`` / ``--base-mode``) forces a path.
3. mode ``auto``: the public image if it is present or can be pulled, else local.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import _exec, debian, dockercli
from harness._errors import HarnessError
from harness.cachedir import cache_dir
from harness.imagesource import Choice, Mode, choose

__all__ = [
    "LOCAL_PACKAGES",
    "PUBLIC_PYTHON_BASE",
    "build_local_python_base",
    "local_base_tag",
    "resolve_base_image",
]

#: What internet users build FROM, pinned by digest: a tag moves with every Debian
#: point release and rebuild, a digest is the same bytes on every machine (the run
#: manifest records it). Debian bookworm's python3 is 3.11 too, so the
#: registry-less image runs the same interpreter minor version.
PUBLIC_PYTHON_BASE = "python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b"

SUITE = "bookworm"
#: Packages of the local base: an interpreter that can make venvs and talk TLS, ``python`` and ``pip`` on
#: PATH as in the public ``python:3.11-slim`` image (a user's ``RUN pip install ...`` works on both).
#: Nothing else: the images add their own dependencies with pip.
LOCAL_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates", "libgomp1")

#: Bump when the build recipe changes in a way the inputs below do not capture.
_RECIPE = "3"

_ENV = {
    "LANG": "C.UTF-8",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    # pip and requests ignore the system store by default (certifi): point them at it.
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
    "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
}


def local_base_tag(ca_bundle: Path | None = None) -> str:
    """Tag of the local base, keyed by everything that shapes its content."""
    h = hashlib.sha256()
    h.update(f"{_RECIPE}|{SUITE}|{','.join(LOCAL_PACKAGES)}".encode())
    bundle = ca_bundle if ca_bundle is not None else debian.host_ca_bundle()
    if bundle is not None:
        h.update(bundle.read_bytes())
    return f"local/python-base:3.11-{SUITE}-{h.hexdigest()[:10]}"


def resolve_base_image(
    *,
    mode: Mode | None = None,
    override: str | None = None,
    pull_timeout: float = 120.0,
    log: Callable[[str], None] = print,
) -> Choice:
    """Pick the base image (building the local one if needed) and say why (:func:`harness.imagesource.choose`).

    ``mode`` and ``override`` are the settings' ``base-mode`` and ``base-image`` (already resolved from the
    command line, the environment, the project's file or a replayed manifest, in that order of precedence):
    nothing is read from the environment here, so a replay is not overridden behind the settings' back.
    """
    return choose(
        what="base image", mode=mode, override=override, public=PUBLIC_PYTHON_BASE,
        obtain_public=lambda ref: dockercli.obtain(ref, pull_timeout=pull_timeout),
        build_local=lambda: build_local_python_base(log=log), log=log,
        fix="use --base-mode local (build from the Debian mirror) or --base-image IMAGE",
        local_reason="built from the Debian mirror (registry-less)",
        override_reason="base-image given", mode_setting="base-mode",
    )


def build_local_python_base(*, force: bool = False, log: Callable[[str], None] = print) -> str:
    """Build (or reuse) the registry-less Python base image; return its tag.

    Requires root and ``debootstrap``; takes about a minute cold. The image is
    reused whenever its tag (a hash of its inputs) is already in Docker.
    """
    tag = local_base_tag()
    if not force and dockercli.image_exists(tag):
        return tag
    from harness.nodeimage.cache import build_lock

    # One builder per machine (xdist workers of the docker tier, parallel CI jobs): the second waits, then
    # finds the image, instead of running a second debootstrap beside the first.
    with build_lock(cache_dir(), name=".python-base.lock", what=f"the registry-less base image {tag}", log=log):
        if not force and dockercli.image_exists(tag):
            return tag
        return _build_local_python_base(tag, log=log)


def _build_local_python_base(tag: str, *, log: Callable[[str], None]) -> str:
    if shutil.which("debootstrap") is None:
        raise HarnessError(
            "debootstrap is not installed: run scripts/docker-up.sh (it installs it) or apt-get install debootstrap"
        )
    if os.geteuid() != 0:
        raise HarnessError("building the registry-less base image needs root (debootstrap); "
                           "or pass --base-image with an image you can use")
    mirror = debian.debian_mirror()
    started = time.monotonic()
    log(f"base image: debootstrap {SUITE} from {mirror} -> {tag}")
    work = Path(tempfile.mkdtemp(prefix="pybase-", dir=cache_dir("tmp")))
    try:
        root = work / "rootfs"
        _exec.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(LOCAL_PACKAGES)}", SUITE, root, mirror],
            timeout=1800,
        )
        _trim(root)
        bundle = debian.host_ca_bundle()
        if bundle is not None:
            shutil.copyfile(bundle, root / "etc/ssl/certs/ca-certificates.crt")
        tarball = work / "rootfs.tar"
        _exec.run(["tar", "-C", root, "--numeric-owner", "-cf", tarball, "."], timeout=600)
        changes = [f"ENV {k}={v}" for k, v in _ENV.items()] + ['CMD ["python3"]']
        argv: list[str] = ["docker", "import"]
        for c in changes:
            argv += ["--change", c]
        _exec.run([*argv, str(tarball), tag], timeout=600)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"base image: built {tag} in {time.monotonic() - started:.0f} s")
    return tag


def _trim(root: Path) -> None:
    """Drop what an image never needs (apt lists and caches, docs, man pages, locales), and PEP 668's marker.

    Debian marks its Python "externally managed", so ``pip install`` outside a
    venv is refused; the public ``python`` images are not marked, and a
    project's Dockerfile written for them must build here too.
    """
    for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for rel in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/info", "usr/share/locale", "var/log"):
        target = root / rel
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir(parents=True)
