"""Pinned inputs of the offline kind node image.

Only the primary pins live here. Versions that Kubernetes itself dictates
(etcd, CoreDNS, pause) are deliberately absent: they are read from the built
kubeadm (``kubeadm config images list``) because patch releases move them, and
a hard-coded tag that drifts from kubeadm's makes the kubelet try to pull,
which fails on a machine without a registry.
"""

from __future__ import annotations

from harness.versions import (
    BUILT_RUNTIME,
    DEFAULT_MINOR,
    DEFAULT_RELEASE,
    RELEASES,
    ContainerRuntime,
    Release,
    cgroup_v1_verdict,
    release_for,
)

__all__ = [
    "BUILDER_REVISION",
    "BUILT_RUNTIME",
    "DEBIAN_SUITE",
    "DEFAULT_MINOR",
    "DEFAULT_RELEASE",
    "GO_BUILD_PARALLELISM",
    "KIND_VERSION",
    "KUBERNETES_VERSION",
    "NODE_IMAGE_REPO",
    "POD_SUBNET",
    "RELEASES",
    "ContainerRuntime",
    "Release",
    "cgroup_v1_verdict",
    "release_for",
    "staging_version",
]

#: Kubernetes release built from the Go module proxy by default (see :data:`RELEASES`).
KUBERNETES_VERSION = DEFAULT_RELEASE.kubernetes

#: kind CLI of the default release.
KIND_VERSION = DEFAULT_RELEASE.kind

#: Debian release for the node root filesystem and the kube-proxy base.
DEBIAN_SUITE = "bookworm"

#: Pod CIDR kind hands to kubeadm by default; our static CNI allocates the
#: node's /24 from it (single-node clusters only).
POD_SUBNET = "10.244.0.0/16"

#: Local repository of the final node image; the tag adds the k8s version and
#: a hash of every input, so two recipes never share a tag.
NODE_IMAGE_REPO = "local/kind-node-offline"

#: Bump when the build *procedure* changes in a way the hashed inputs do not
#: capture (e.g. a new trimming step), to invalidate every cached artefact.
BUILDER_REVISION = "1"

#: ``go build -p``: the CI machines have two cores and the k8s link steps need
#: 2-3 GiB each, so more parallelism only thrashes.
GO_BUILD_PARALLELISM = 2


def staging_version(kubernetes_version: str) -> str:
    """Return the published staging-module tag for a Kubernetes release.

    ``k8s.io/kubernetes`` requires its staging repos (``k8s.io/api``,
    ``k8s.io/client-go``...) at ``v0.0.0``; they are published as
    ``v0.<minor>.<patch>`` for release ``v1.<minor>.<patch>``.
    """
    parts = kubernetes_version.lstrip("v").split(".")
    if len(parts) != 3 or parts[0] != "1" or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a Kubernetes release version: {kubernetes_version!r}")
    return f"v0.{parts[1]}.{parts[2]}"
