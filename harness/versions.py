"""The one version table: per Kubernetes minor, what the harness builds, runs and pins.

The code reads it from here (``harness.toolchain``, ``harness.nodeimage``);
each row says which Kubernetes patch the registry-less builder
compiles from the Go module proxy, which kind CLI goes with the minor, kind's
published node image for it (by digest), which kubeadm config API kind writes,
whether the kubelet needs ``failCgroupV1: false`` on cgroup v1 hosts and which
container runtime the registry-less node carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BUILT_RUNTIME",
    "DEFAULT_MINOR",
    "DEFAULT_RELEASE",
    "RELEASES",
    "ContainerRuntime",
    "Release",
    "cgroup_v1_verdict",
    "release_for",
]


@dataclass(frozen=True)
class ContainerRuntime:
    """containerd + runc compiled from Go modules and carried by the node instead of Debian's.

    Debian bookworm ships containerd 1.6.20 / runc 1.1.5; kind >= v0.31 and the
    kubelet from 1.35 on expect containerd 2.x (config ``version = 3``, the
    ``RuntimeConfig`` CRI call), so those nodes get these instead.
    """

    containerd: str
    runc: str
    #: ``-tags`` for runc: seccomp needs cgo + libseccomp-dev on the build host.
    runc_tags: tuple[str, ...] = ("seccomp", "urfave_cli_no_docs")


#: The runtime compiled for every minor that needs containerd 2.x.
BUILT_RUNTIME = ContainerRuntime(containerd="v2.4.2", runc="v1.5.3")


@dataclass(frozen=True)
class Release:
    """Everything the harness pins for one Kubernetes minor (the one version table).

    * ``kubernetes``: the patch release compiled from the Go module proxy for the
      registry-less node image (the proxy serves only some patches);
    * ``kind``: the kind CLI used with this minor (node images and kind move together);
    * ``public_node_image``: kind's published node image for the minor, by digest
      (from that kind release's notes);
    * ``kubeadm_api``: the kubeadm config API kind writes for this minor
      (kind v0.33: v1beta3 below 1.36, v1beta4 from 1.36);
    * ``fail_cgroup_v1_off``: the kubelet refuses cgroup v1 unless its config
      sets ``failCgroupV1: false`` (default true from 1.35, k/k#134298);
    * ``runtime``: ``None`` = Debian's containerd 1.6 in the node; else the
      containerd/runc compiled from Go modules.
    """

    minor: str
    kubernetes: str
    kind: str
    public_node_image: str
    kubeadm_api: str
    fail_cgroup_v1_off: bool
    runtime: ContainerRuntime | None

    @property
    def minor_number(self) -> int:
        """``1.35`` -> 35."""
        return int(self.minor.split(".")[1])


#: The version table. The default is the oldest *supported* minor, 1.35 (1.34's
#: support window closed in late October 2026): most clusters platform teams run
#: are a minor or two behind the newest. 1.34 stays in the table for clusters
#: still on it (kind v0.30.0, Debian's containerd 1.6, one node only).
RELEASES: dict[str, Release] = {
    "1.34": Release(
        minor="1.34", kubernetes="v1.34.4", kind="v0.30.0",
        public_node_image="kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a",
        kubeadm_api="v1beta3", fail_cgroup_v1_off=False, runtime=None,
    ),
    "1.35": Release(
        minor="1.35", kubernetes="v1.35.4", kind="v0.33.0",
        public_node_image="kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0",
        kubeadm_api="v1beta3", fail_cgroup_v1_off=True, runtime=BUILT_RUNTIME,
    ),
    "1.36": Release(
        minor="1.36", kubernetes="v1.36.3", kind="v0.33.0",
        public_node_image="kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed",
        kubeadm_api="v1beta4", fail_cgroup_v1_off=True, runtime=BUILT_RUNTIME,
    ),
    "1.37": Release(
        minor="1.37", kubernetes="v1.37.2", kind="v0.33.0",
        public_node_image="kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5",
        kubeadm_api="v1beta4", fail_cgroup_v1_off=True, runtime=BUILT_RUNTIME,
    ),
}

DEFAULT_MINOR = "1.35"
DEFAULT_RELEASE = RELEASES[DEFAULT_MINOR]

def release_for(version: str | Release | None = None) -> Release:
    """The table row for ``1.35``, ``v1.35`` or ``v1.35.4`` (``None``: the default); a row is its own row.

    A full patch version must be the one the table builds: the Go proxy
    serves only some patches, and a silently different patch would be a lie.
    The harness looks the row up once, at settings load (``settings.cluster.release``),
    and hands the row on; the string forms serve the command lines and tests.
    """
    if isinstance(version, Release):
        return version
    if version is None or version == "":
        return DEFAULT_RELEASE
    m = re.fullmatch(r"v?(1)\.(\d+)(?:\.(\d+))?", version.strip())
    if not m:
        raise ValueError(f"not a Kubernetes version: {version!r} (use e.g. 1.35 or v1.35.4)")
    minor = f"1.{int(m.group(2))}"
    row = RELEASES.get(minor)
    if row is None:
        raise ValueError(f"Kubernetes {minor} is not in the version table (have: {', '.join(sorted(RELEASES))})")
    if m.group(3) is not None and row.kubernetes != f"v{minor}.{int(m.group(3))}":
        raise ValueError(f"Kubernetes {version}: the table builds {row.kubernetes} for {minor}")
    return row


def cgroup_v1_verdict(row: Release, *, public: bool) -> tuple[bool, str]:
    """Whether ``row`` can run on a cgroup v1 host, and why (for the doctor and errors)."""
    if row.minor_number >= 38:
        return False, (f"Kubernetes {row.minor} removes cgroup v1 support from the kubelet (KEP-5573)")
    if public and row.fail_cgroup_v1_off:
        return False, (f"kind's published {row.minor} node image does not set failCgroupV1: false, so its "
                       "kubelet exits on cgroup v1 (kubeadm times out waiting for it); use the registry-less "
                       "build (--harness-node-image-mode local), which does")
    if row.fail_cgroup_v1_off:
        return True, (f"Kubernetes {row.minor} on cgroup v1 only with failCgroupV1: false (the registry-less "
                      "node sets it in a kubelet drop-in); cgroup v1 is deprecated in the kubelet and containerd 2")
    return True, f"Kubernetes {row.minor} runs on cgroup v1 without patches"
