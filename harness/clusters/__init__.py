"""Cluster providers: where the tests run.

Two providers behind one small seam, each a context manager that hands out a
ready :class:`Cluster` and, on the way out, undoes only what it did:

* ``kind`` (:class:`~harness.clusters.kind.KindProvider`): creates a kind
  cluster or reuses one of its own whose fingerprint matches; deletes it
  afterwards unless kept. Images reach the nodes by ``kind load`` (verified).
* ``existing`` (:class:`~harness.clusters.existing.ExistingProvider`): a
  cluster given by kubeconfig and context (shared staging, a cluster made by
  hand). It is never created or deleted; the harness only works in namespaces
  it labels as its own, and images go through a registry the cluster pulls from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # the dataclasses name it; importing the kubernetes client waits until a cluster exists
    from harness.kubeapi import Kube

__all__ = ["MANAGED_BY_LABEL", "SESSION_LABEL", "Cluster", "ClusterProvider", "ImageRoute"]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
"""Label (value ``mlflow-crd-harness``) on every namespace the harness creates."""
MANAGED_BY = "mlflow-crd-harness"
SESSION_LABEL = "mlflow-crd-harness/session"
"""Label naming the session that created a namespace (for reaping and for the existing provider)."""


@dataclass(frozen=True)
class ImageRoute:
    """How an image built on this host reaches the cluster's nodes."""

    mode: Literal["kind", "registry"]
    kind_cluster: str | None = None
    kind_bin: Path | None = None
    registry: str | None = None
    """``host[:port]`` the host pushes to and the nodes pull from (mode ``registry``)."""


@dataclass(frozen=True)
class Cluster:
    """A ready cluster: how to reach it, how images get there, whether this session created it."""

    name: str
    provider: Literal["kind", "existing"]
    kube: Kube
    created: bool
    images: ImageRoute
    fingerprint: str
    mlflow_host_port: int | None
    """Host port mapped to the in-cluster MLflow NodePort (kind); None: use a port-forward."""
    node_image: str | None = None

    def export_logs(self, dest: Path) -> None:
        """Node logs for an evidence bundle (``kind export logs``; nothing for existing clusters)."""
        if self.provider == "kind" and self.images.kind_bin is not None:
            from harness.clusters.kind_cli import KindCluster

            KindCluster(self.name, self.images.kind_bin, self.kube.kubeconfig.parent).export_logs(dest)


class ClusterProvider(Protocol):
    """Start gives a ready cluster; ``finish`` undoes what ``start`` did (delete, unless kept)."""

    def start(self) -> Cluster: ...

    def others(self) -> set[str]:
        """Ids of other sessions using the cluster now: the shared stack stays while there are any."""
        ...

    def finish(self, cluster: Cluster, *, keep: bool) -> None: ...
