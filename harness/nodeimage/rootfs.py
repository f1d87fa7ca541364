"""Debian root filesystems made with debootstrap, cached as tarballs.

Two trees are built: the node root (systemd + containerd + runc + CNI
plugins + iptables: everything kind's node needs besides Kubernetes) and a
small "net base" for the kube-proxy image, which shells out to iptables,
ipset and conntrack. Packages come only from the host's configured Debian
mirror, the one source every CI machine of ours can reach.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import _exec
from harness._errors import PreflightError
from harness.debian import debian_mirror
from harness.nodeimage import cache, versions

__all__ = [
    "NET_BASE_PACKAGES",
    "NODE_PACKAGES",
    "NODE_PACKAGES_BUILT_RUNTIME",
    "build_rootfs_tarball",
    "tarball_key",
]

Log = Callable[[str], None]

#: Node packages. containerd 1.6 / runc 1.1 / CNI plugins 1.1 from bookworm
#: are old but speak CRI v1 and cgroup v1, which is all 1.34 needs.
NODE_PACKAGES: tuple[str, ...] = (
    "bash",
    "ca-certificates",
    "conntrack",
    "containerd",
    "containernetworking-plugins",
    "dbus",
    "ebtables",
    "ethtool",
    "iproute2",
    "ipset",
    "iptables",
    "kmod",
    "mount",
    "nftables",
    "procps",
    "runc",
    "socat",
    "systemd",
    "systemd-sysv",
    "util-linux",
)

#: Node packages when containerd and runc are compiled from Go modules
#: (Kubernetes >= 1.35): Debian's containerd 1.6 / runc 1.1 are left out so
#: that only one runtime is on the node. runc is linked statically.
NODE_PACKAGES_BUILT_RUNTIME: tuple[str, ...] = tuple(p for p in NODE_PACKAGES if p not in ("containerd", "runc"))

#: kube-proxy image base: its iptables/ipset/conntrack calls, nothing else.
NET_BASE_PACKAGES: tuple[str, ...] = (
    "conntrack",
    "ipset",
    "iptables",
    "kmod",
    "nftables",
)

#: Paths removed after debootstrap: caches and docs nobody reads in a node.
_TRIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/debconf/templates.dat-old",
    "var/log",
)



def rootfs_key(name: str, packages: Sequence[str], mirror: str) -> str:
    """Cache key of one root filesystem: its package set, suite and mirror."""
    return cache.input_key(
        {
            "what": f"rootfs-{name}",
            "suite": versions.DEBIAN_SUITE,
            "packages": sorted(packages),
            "mirror": mirror,
            "trim": list(_TRIM),
            "rev": versions.BUILDER_REVISION,
        }
    )


def build_rootfs_tarball(cache_dir: Path, name: str, packages: Sequence[str], log: Log) -> Path:
    """debootstrap a minbase tree with ``packages``, trim it, return a cached ``.tar``."""
    mirror = debian_mirror()
    key = rootfs_key(name, packages, mirror)
    final = cache_dir / "rootfs" / f"{name}-{versions.DEBIAN_SUITE}-{key}"
    tarball = final / "rootfs.tar"
    if tarball.is_file():
        log(f"rootfs {name}: cached {tarball}")
        return tarball
    debootstrap = _exec.which("debootstrap", "/usr/sbin", "/sbin")
    if debootstrap is None:
        raise PreflightError("debootstrap is missing: apt-get install -y debootstrap")
    log(f"rootfs {name}: debootstrap {versions.DEBIAN_SUITE} from {mirror} (~1 min)")
    with cache.publish_dir(final) as tmp:
        tree = tmp / "tree"
        _exec.run(
            [
                debootstrap,
                "--variant=minbase",
                "--components=main",
                f"--include={','.join(sorted(packages))}",
                versions.DEBIAN_SUITE,
                tree,
                mirror,
            ],
            timeout=1800,
        )
        _trim(tree)
        _exec.run(["tar", "--numeric-owner", "--xattrs", "-C", tree, "-cf", tmp / "rootfs.tar", "."])
        shutil.rmtree(tree)
    return tarball


def tarball_key(tarball: Path) -> str:
    """The input key a cached rootfs tarball was stored under (its directory suffix)."""
    return tarball.parent.name.rsplit("-", 1)[-1]


def _trim(tree: Path) -> None:
    for rel in _TRIM:
        target = tree / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    # Recreate what apt and journald expect to exist.
    for rel in ("var/cache/apt/archives/partial", "var/lib/apt/lists/partial", "var/log/journal"):
        (tree / rel).mkdir(parents=True, exist_ok=True)
