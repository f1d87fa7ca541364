"""Which kind, kubectl and node image the e2e tier uses, chosen the same way everywhere.

Internet users get the pinned public node image (by digest: a tag alone can
point at an image built for another kind release) and the kind on their PATH.
Machines with no container registry cannot pull it; there the registry-less
node image is built from Debian packages and Go modules (:mod:`harness.nodeimage`),
as are kind and kubectl when they are not installed. One code path, the one every
pinned image shares (:func:`harness.imagesource.choose`); the mode
(``auto``/``public``/``local``) or an explicit image overrides the choice.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from harness import _exec, dockercli, tooldownload
from harness._errors import HarnessError
from harness.imagesource import Choice, Mode, choose
from harness.versions import DEFAULT_RELEASE, Release, cgroup_v1_verdict, release_for

__all__ = ["PUBLIC_KIND_VERSION", "PUBLIC_NODE_IMAGE", "cached_tool", "host_is_cgroup_v1", "kubectl_skew_ok",
           "parse_version", "registry_less", "resolve_kind", "resolve_kubectl", "resolve_node_image"]

DOWNLOAD_TIMEOUT = 20.0
"""Seconds per download request: a registry-less machine learns fast that the release site is out of reach."""

#: kind release and its pre-built node image of the default minor, pinned by digest
#: (the one version table: :data:`harness.nodeimage.versions.RELEASES`).
PUBLIC_KIND_VERSION = DEFAULT_RELEASE.kind
PUBLIC_NODE_IMAGE = DEFAULT_RELEASE.public_node_image


def registry_less(choice: Choice) -> bool:
    """Whether the chosen node image is our registry-less build (chosen as such, or named by an override):
    it has only what we put in."""
    from harness.nodeimage.versions import NODE_IMAGE_REPO

    return choice.source == "local" or choice.image.startswith(NODE_IMAGE_REPO)


def resolve_node_image(
    *, mode: Mode = "auto", override: str | None = None, pull_timeout: float = 300,
    log: Callable[[str], None] = print, kubernetes_version: str | Release | None = None,
) -> Choice:
    """Pick the kind node image; build the registry-less one when the public one is out of reach
    (:func:`harness.imagesource.choose`).

    On a cgroup v1 host, a minor whose published image cannot run there (1.35+:
    its kubelet exits) is never pulled: ``auto`` builds the registry-less one,
    ``public`` fails saying why.
    """
    row = release_for(kubernetes_version)

    def obtain(ref: str) -> tuple[str | None, str]:
        return dockercli.obtain(ref, pull_timeout=pull_timeout)

    def check_override(ref: str) -> None:
        how, why = obtain(ref)
        if how is None:
            raise HarnessError(f"node image {ref} is neither local nor pullable: {why}")

    def build() -> str:
        from harness import nodeimage

        return nodeimage.ensure_node_image(kubernetes_version=row.minor, log=log)

    unusable = None
    if not override and host_is_cgroup_v1():
        runs, why_not = cgroup_v1_verdict(row, public=True)
        unusable = None if runs else f"cannot run on this cgroup v1 host: {why_not}"
    return choose(
        what="node image", mode=mode, override=override, public=row.public_node_image,
        obtain_public=obtain, build_local=build, log=log,
        fix="--node-image-mode local builds a registry-less node image, or --node-image IMAGE names one",
        local_reason="built from Debian packages + Go modules",
        override_reason="--node-image given", mode_setting="node-image-mode",
        check_override=check_override, public_unusable=unusable,
    )


def host_is_cgroup_v1() -> bool:
    """True on a Linux host with the legacy/hybrid cgroup hierarchy (no cgroup2 root)."""
    root = Path("/sys/fs/cgroup")
    return root.is_dir() and not (root / "cgroup.controllers").exists()


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first ``vMAJOR.MINOR.PATCH`` in a tool's version output (``kind v0.30.0 go1.24``, kubectl JSON)."""
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def kubectl_skew_ok(client: tuple[int, int, int] | None, server_minor: int) -> bool:
    """kubectl is supported within one minor of the API server."""
    return client is not None and client[0] == 1 and abs(client[1] - server_minor) <= 1


def _show(version: tuple[int, int, int] | None) -> str:
    return "v{}.{}.{}".format(*version) if version else "of unknown version"


def _version_of(binary: Path, *args: str) -> str:
    proc = _exec.run([binary, *args], check=False, timeout=30)
    return (proc.stdout or "") + (proc.stderr or "") if proc.returncode == 0 else ""


def _download(release_of: Callable[[tuple[str, str]], tooldownload.ToolRelease],
              log: Callable[[str], None]) -> Path | None:
    """The pinned binary downloaded and checksum-verified, or None where the release site is out of reach."""
    from harness.cachedir import cache_dir

    try:
        release = release_of(tooldownload.host_platform())
        path = tooldownload.download_verified(release, cache_dir(), timeout=DOWNLOAD_TIMEOUT)
    except tooldownload.DownloadError as exc:
        log(f"tools: {exc}; building it from Go modules instead")
        return None
    log(f"tools: {release.name} {release.version} downloaded and sha256-verified: {path}")
    return path


def cached_tool(name: str, kubernetes_version: str | Release | None = None) -> Path | None:
    """The pinned ``kind`` or ``kubectl`` already on this machine (downloaded or built), without fetching anything."""
    from harness import nodeimage
    from harness.cachedir import cache_dir

    row = release_for(kubernetes_version)
    version = row.kind if name == "kind" else row.kubernetes
    try:
        make = tooldownload.kind_release if name == "kind" else tooldownload.kubectl_release
        downloaded = make(version, tooldownload.host_platform()).cache_path(cache_dir())
    except tooldownload.DownloadError:
        downloaded = None
    if downloaded is not None and downloaded.is_file():
        return downloaded
    try:
        return nodeimage.built_tool(name, kubernetes_version=row.minor)
    except HarnessError:  # no Go here: nothing was built either
        return None


def resolve_kind(override: str | Path | None = None, *, log: Callable[[str], None] = print,
                 kubernetes_version: str | Release | None = None) -> Path:
    """``kind-bin``, else ``kind`` on PATH if it is the pinned version, else the pinned kind (downloaded or built)."""
    from harness import nodeimage

    row = release_for(kubernetes_version)
    KIND_VERSION = row.kind

    if override:
        found = parse_version(_version_of(Path(override), "version"))
        if found is None or f"v{found[0]}.{found[1]}.{found[2]}" != KIND_VERSION:
            log(f"tools: kind-bin {override} is {_show(found)}, not the pinned {KIND_VERSION}; "
                "using it as asked (node images and kind versions must match)")
        return Path(override)
    on_path = shutil.which("kind")
    if on_path:
        found = parse_version(_version_of(Path(on_path), "version"))
        if found is not None and f"v{found[0]}.{found[1]}.{found[2]}" == KIND_VERSION:
            return Path(on_path)
        log(f"tools: kind on PATH ({on_path}) is {_show(found)}, not the pinned {KIND_VERSION}; "
            "using the pinned one")
    cached = cached_tool("kind", row)
    if cached is not None:
        return cached
    downloaded = _download(lambda osa: tooldownload.kind_release(KIND_VERSION, osa), log)
    return downloaded or nodeimage.ensure_kind_binary(kubernetes_version=row.minor, log=log)


def resolve_kubectl(override: str | Path | None = None, *, log: Callable[[str], None] = print,
                    kubernetes_version: str | Release | None = None) -> Path:
    """``kubectl-bin``, else ``kubectl`` on PATH within one minor of the cluster, else the pinned one."""
    from harness import nodeimage

    row = release_for(kubernetes_version)
    KUBERNETES_VERSION = row.kubernetes

    server_minor = int(KUBERNETES_VERSION.split(".")[1])
    if override:
        found = parse_version(_version_of(Path(override), "version", "--client", "-o", "json"))
        if not kubectl_skew_ok(found, server_minor):
            log(f"tools: kubectl-bin {override} is {_show(found)}, outside ±1 minor of the "
                f"server (1.{server_minor}); using it as asked")
        return Path(override)
    on_path = shutil.which("kubectl")
    if on_path:
        found = parse_version(_version_of(Path(on_path), "version", "--client", "-o", "json"))
        if kubectl_skew_ok(found, server_minor):
            return Path(on_path)
        log(f"tools: kubectl on PATH ({on_path}) is {_show(found)}, outside ±1 minor of the "
            f"server (1.{server_minor}); using the pinned {KUBERNETES_VERSION}")
    cached = cached_tool("kubectl", row)
    if cached is not None:
        return cached
    downloaded = _download(lambda osa: tooldownload.kubectl_release(KUBERNETES_VERSION, osa), log)
    return downloaded or nodeimage.ensure_kubectl_binary(kubernetes_version=row.minor, log=log)
