"""The ``existing`` cluster provider: a cluster the harness did not make and never deletes.

For the day one kind node is not enough (GPUs, real storage, quota, a shared
staging cluster): the same tests run against a kubeconfig and context the
user names. The harness never reads ``~/.kube/config`` for this, never
creates or deletes the cluster, and confines itself to namespaces it labels
as its own (:data:`~harness.clusters.MANAGED_BY_LABEL`); the stack refuses to
apply into a namespace that exists without that label. Images go through a
registry the cluster pulls from (setting ``registry``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness._errors import HarnessError
from harness.clusters import MANAGED_BY, MANAGED_BY_LABEL, SESSION_LABEL, Cluster, ImageRoute
from harness.kubeapi import Kube
from harness.sessionlease import NAMESPACE as LEASE_NAMESPACE
from harness.sessionlease import SessionLease

__all__ = ["ExistingProvider"]


@dataclass
class ExistingProvider:
    """Reach the cluster of ``kubeconfig``/``context``; finish leaves the cluster itself alone."""

    kubeconfig: Path
    kubectl_bin: Path
    registry: str
    context: str | None = None
    log: Callable[[str], None] = print
    session: str = ""
    """This session's id: its Lease on the cluster (:mod:`harness.sessionlease`) and its namespaces' label. The
    stack finds that Lease by the cluster's connection (:func:`harness.sessionlease.held`) to name its digest there
    before applying, so a session whose stack differs from a live one's is refused."""
    lease: SessionLease | None = field(default=None, init=False, repr=False)

    def start(self) -> Cluster:
        if not self.kubeconfig.is_file():
            raise HarnessError(f"kubeconfig {self.kubeconfig} does not exist (setting kubeconfig)")
        try:
            kube = Kube(self.kubeconfig, self.kubectl_bin, context=self.context)
            git = str(client.VersionApi(kube.api).get_code().git_version)
        except Exception as exc:  # a bad kubeconfig, an unknown context, no route, 401: all mean "cannot reach"
            where = f"context {self.context!r}" if self.context else "the current context"
            raise HarnessError(f"cannot reach the existing cluster ({where} of {self.kubeconfig}): "
                               f"{type(exc).__name__}: {exc}") from exc
        name = self.context or "existing"
        self.log(f"cluster: using existing cluster {name} (Kubernetes {git}); it is never created or deleted here")
        if self.session:
            self._join(kube)
        fingerprint = hashlib.sha256(f"{self.kubeconfig}|{self.context}|{git}".encode()).hexdigest()[:16]
        return Cluster(name=name, provider="existing", kube=kube, created=False,
                       images=ImageRoute("registry", registry=self.registry), fingerprint=fingerprint,
                       mlflow_host_port=None)

    def _join(self, kube: Kube) -> None:
        """Hold this session's Lease, then delete the namespaces of sessions whose Lease is gone."""
        self.lease = SessionLease(kube, self.session, log=self.log, labels={MANAGED_BY_LABEL: MANAGED_BY})
        try:
            self.lease.start()
        except ApiException as exc:
            if exc.status != 403:
                raise
            self.log(f"cluster: may not hold a session Lease in {LEASE_NAMESPACE} (HTTP 403): other sessions cannot "
                     "see this one, so one that ends first may remove the shared stack under it, and its stack is not "
                     "compared with theirs. Grant get/list/create/patch/delete on leases.coordination.k8s.io in "
                     f"{LEASE_NAMESPACE} to share the cluster safely")
        ours = kube.core.list_namespace(label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY},{SESSION_LABEL}").items
        for name in self.lease.dead_namespaces(ours, SESSION_LABEL):
            self.log(f"cluster: deleting namespace {name}: its session is gone (no live Lease in "
                     f"{LEASE_NAMESPACE})")
            kube.delete_namespace(name)

    def others(self) -> set[str]:
        """Ids of the other sessions using this cluster now (their Leases are alive)."""
        return self.lease.others() if self.lease is not None else set()

    def finish(self, cluster: Cluster, *, keep: bool) -> None:
        """Nothing to undo at cluster level (namespaces are the stack's and the tests'); the Lease ends.

        Ending it also deletes the Leases' namespace when this session was the last
        one in it and the harness made it (:meth:`harness.sessionlease.SessionLease.end`).
        """
        if self.lease is not None:
            self.lease.end()
            self.lease = None
