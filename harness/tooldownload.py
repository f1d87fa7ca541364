"""Pinned kind and kubectl, downloaded and checked against their published sha256, on machines that can.

Machines that reach the upstream release sites get the pinned binaries in
seconds instead of compiling them for minutes; registry-less machines (no
route to them) keep building from Go modules. Like kind-action, each binary is
verified against the checksum file published next to it; a mismatch or a
server that does not answer in time leaves nothing installed and says why.
Downloads go to the cache directory, never onto PATH.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness import hostenv
from harness._errors import HarnessError

__all__ = ["DownloadError", "ToolRelease", "download_verified", "host_platform", "kind_release", "kubectl_release"]

KIND_BASE = "https://kind.sigs.k8s.io/dl"
KUBECTL_BASE = "https://dl.k8s.io/release"
KIND_BASE_ENV = hostenv.KIND_DOWNLOAD_BASE
KUBECTL_BASE_ENV = hostenv.KUBECTL_DOWNLOAD_BASE
"""Mirrors of the two release sites, read when a release is asked for (never at import: a test or a
session that sets them after the harness is imported is obeyed)."""


class DownloadError(HarnessError):
    """A pinned tool could not be downloaded or did not match its checksum."""


@dataclass(frozen=True)
class ToolRelease:
    """Where one pinned binary and its checksum file live, and where it goes in the cache."""

    name: str
    version: str
    url: str
    checksum_url: str

    def cache_path(self, cache_dir: Path) -> Path:
        return cache_dir / "bin" / f"{self.name}-{self.version}-{self.url.rsplit('/', 1)[-1]}"


def host_platform(system: str | None = None, machine: str | None = None) -> tuple[str, str]:
    """(os, arch) as release file names spell them: ``linux``/``darwin``, ``amd64``/``arm64``."""
    sysname = (system or platform.system()).lower()
    arch = (machine or platform.machine()).lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "amd64": "amd64"}.get(arch, arch)
    if sysname not in ("linux", "darwin") or arch not in ("amd64", "arm64"):
        raise DownloadError(f"no pinned {sysname}/{arch} binaries; install kind and kubectl yourself and pass "
                            "kind-bin / kubectl-bin")
    return sysname, arch


def kind_release(version: str, os_arch: tuple[str, str], base: str | None = None) -> ToolRelease:
    base = base or hostenv.get(KIND_BASE_ENV) or KIND_BASE
    url = f"{base}/{version}/kind-{os_arch[0]}-{os_arch[1]}"
    return ToolRelease("kind", version, url, f"{url}.sha256sum")


def kubectl_release(version: str, os_arch: tuple[str, str], base: str | None = None) -> ToolRelease:
    base = base or hostenv.get(KUBECTL_BASE_ENV) or KUBECTL_BASE
    url = f"{base}/{version}/bin/{os_arch[0]}/{os_arch[1]}/kubectl"
    return ToolRelease("kubectl", version, url, f"{url}.sha256")


def _fetch(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - pinned https release URLs
            return bytes(resp.read())
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DownloadError(f"cannot download {url}: {type(exc).__name__}: {exc}") from exc


def download_verified(release: ToolRelease, cache_dir: Path, *, timeout: float = 60.0) -> Path:
    """The verified, executable binary in the cache (downloaded once); raises :class:`DownloadError`."""
    dest = release.cache_path(cache_dir)
    if dest.is_file() and os.access(dest, os.X_OK):
        return dest
    expected = _fetch(release.checksum_url, timeout).decode(errors="replace").split()
    if not expected or len(expected[0]) != 64:
        raise DownloadError(f"{release.checksum_url} holds no sha256: {' '.join(expected)[:80]!r}")
    data = _fetch(release.url, timeout)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected[0].lower():
        raise DownloadError(f"{release.url}: sha256 {actual} does not match the published {expected[0]}; "
                            "nothing was installed (a proxy rewriting downloads? try again, or pass kind-bin)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o755)  # noqa: S103 - an executable in our own cache dir
    os.replace(tmp.name, dest)
    return dest
