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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness._errors import ConfigError, HarnessError
from harness.clusters import MANAGED_BY, MANAGED_BY_LABEL, SESSION_LABEL, Cluster, ProviderContext
from harness.delivery import RegistryPush, Route
from harness.findings import Finding
from harness.kubeapi import Kube
from harness.options import Settings
from harness.sessionlease import NAMESPACE as LEASE_NAMESPACE
from harness.sessionlease import SessionLease

if TYPE_CHECKING:
    from harness.registry import LocalRegistry
    from harness.timing import Phases

__all__ = ["ExistingProvider", "check_existing_cluster"]


@dataclass
class ExistingProvider(ProviderContext):
    """Reach the cluster of ``kubeconfig``/``context``; finish leaves the cluster itself alone."""

    provider_name: ClassVar[str] = "existing"
    deletes_clusters: ClassVar[bool] = False
    wires_registries: ClassVar[bool] = False

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

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        c, sources = settings.cluster, settings.sources
        if c.kubeconfig is None:
            raise ConfigError("cluster = existing needs a kubeconfig (kubeconfig key, --harness-kubeconfig or "
                              "HARNESS_KUBECONFIG); the harness never reads ~/.kube/config")
        if settings.build.registry is None:
            raise ConfigError("cluster = existing needs a registry the cluster pulls from (registry key, "
                              "--harness-registry or HARNESS_REGISTRY): 'local' or host[:port]")
        if not c.kubeconfig.is_file():
            raise ConfigError(f"kubeconfig {c.kubeconfig} ({sources['kubeconfig']}) does not exist; give the "
                              "kubeconfig file of the cluster (kind: kind get kubeconfig --name NAME > FILE)")
        if c.extended_resources is not None:
            raise ConfigError(f"extended-resources ({sources['extended-resources']}) patch kind nodes; the harness "
                              "never changes the nodes of an existing cluster: drop the setting there")

    @classmethod
    def lock_key(cls, settings: Settings) -> tuple[str, bool]:
        """Per kubeconfig context; the cluster's Leases see the sessions of other machines, so no Docker needed."""
        return f"existing-{settings.cluster.context or 'current'}", True

    @classmethod
    def keep_by_default(cls, settings: Settings) -> bool:
        """An existing cluster is never deleted; "kept" means its harness namespaces stay, which auto does not."""
        return False

    @classmethod
    def preflight(cls, settings: Settings) -> list[Finding]:
        return [check_existing_cluster(settings)]

    @classmethod
    def logs_exporter(cls, settings: Settings, cluster: Cluster) -> None:
        """None: the nodes of a cluster that is not the harness's are not its to read."""
        return None

    @classmethod
    def from_settings(cls, settings: Settings, *, kubectl_bin: Path, log: Callable[[str], None], phases: Phases,
                      preload: Callable[[Route], None] | None, session: str) -> ExistingProvider:
        """Nothing is created, so nothing runs beside a creation (``preload`` is not used)."""
        del phases, preload
        assert settings.cluster.kubeconfig is not None  # check_settings refused it at load
        assert settings.build.registry is not None
        return cls(kubeconfig=settings.cluster.kubeconfig, kubectl_bin=kubectl_bin, registry=settings.build.registry,
                   context=settings.cluster.context, log=log, session=session)

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
        return Cluster(name=name, provider=self.provider_name, kube=kube, created=False,
                       images=RegistryPush(registry=self.registry), fingerprint=fingerprint,
                       mlflow_host_port=None, shared=True)

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

    def attach_registry(self, cluster: Cluster, registry: LocalRegistry) -> Cluster:
        """The cluster already pulls from the registry it was given (``registry = local``: the harness's, whose
        address images are then pushed to and named by); nothing is changed on the cluster."""
        return replace(cluster, images=registry.route())

    def describe(self, cluster: Cluster, settings: Settings) -> dict[str, Any]:
        """Nothing beyond the server version: the cluster's nodes and tools are not the harness's."""
        return {}

    def finish(self, cluster: Cluster, *, keep: bool) -> str:
        """Nothing to undo at cluster level (namespaces are the stack's and the tests'); the Lease ends.

        Ending it also deletes the Leases' namespace when this session was the last
        one in it and the harness made it (:meth:`harness.sessionlease.SessionLease.end`).
        """
        if self.lease is not None:
            self.lease.end()
            self.lease = None
        return "left as found"


def check_existing_cluster(settings: Settings) -> Finding:
    """The existing cluster's kubeconfig has the context, and its API server answers."""
    import yaml

    kubeconfig, context = settings.cluster.kubeconfig, settings.cluster.context
    if kubeconfig is None:  # check_settings refuses it at load; a preflight may run on unchecked settings
        return Finding("cluster", "fail", "no kubeconfig given", "set kubeconfig (cluster = existing needs one)")
    try:
        data = yaml.safe_load(kubeconfig.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return Finding("cluster", "fail", f"kubeconfig {kubeconfig}: {exc}", "give a readable kubeconfig file")
    contexts = [str(c.get("name")) for c in data.get("contexts") or [] if isinstance(c, dict)]
    chosen = context or data.get("current-context")
    if chosen not in contexts:
        return Finding("cluster", "fail", f"context {chosen!r} is not in {kubeconfig} (it has: {', '.join(contexts)})",
                       "set context to one of them")
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(kubeconfig), context=context, persist_config=False)
        version = client.VersionApi(api).get_code(_request_timeout=(5, 10)).git_version
    except Exception as exc:
        return Finding("cluster", "fail", f"context {chosen!r}: the API server does not answer: {exc}"[:300],
                       "check that the cluster runs and the kubeconfig's server address is reachable from here")
    return Finding("cluster", "ok", f"context {chosen!r}: Kubernetes {version}")
