"""Sessions on a shared cluster, as the cluster itself sees them: one Lease per session, renewed while it runs.

The session lock (:mod:`harness.sessionlock`) is an ``flock`` on this machine:
it cannot see a session on another machine that uses the same ``existing``
cluster. So each session on such a cluster also holds a ``coordination.k8s.io``
Lease named after its session id, in a namespace of the harness's own, renewed
every :data:`RENEW` s while the session runs. From the Leases any session can
tell, across machines:

* whether another session still uses the shared stack (controller, tracking
  server): the last one out removes it, the others leave it in place;
* which of the harness's namespaces belong to a session that is gone (killed,
  its machine lost): their session's Lease is absent or has not been renewed
  for :data:`DURATION` s, so the next session deletes them.

Test namespaces carry their session's id in the label
:data:`harness.clusters.SESSION_LABEL`.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.kubeapi import Kube

__all__ = ["DURATION", "NAMESPACE", "RENEW", "SessionLease"]

NAMESPACE = "mlflow-crd-harness-sessions"
"""Where the Leases live (created when absent, labelled as the harness's; never deleted: it is shared)."""
DURATION = 120
"""Seconds a Lease counts as alive after its last renewal."""
RENEW = 30.0
"""Seconds between renewals."""
_GRACE = 600.0
"""Seconds a namespace must exist before it can be reaped as a dead session's (a session starting up, or one
whose Lease write failed once, is not reaped under it)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _alive(lease: Any, now: dt.datetime) -> bool:
    spec = lease.spec
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None:
        return False
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=dt.UTC)
    return (now - renewed).total_seconds() < (spec.lease_duration_seconds or DURATION)


@dataclass
class SessionLease:
    """This session's Lease on cluster ``kube``; :meth:`start` it after attaching, :meth:`end` it last."""

    kube: Kube
    session: str
    log: Callable[[str], None] = print
    labels: dict[str, str] = field(default_factory=dict)
    """Labels for the Leases' namespace when this session creates it (the harness's managed-by label)."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"session-{self.session}"

    @property
    def _api(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.kube.api)

    def start(self) -> None:
        """Create this session's Lease and keep it renewed until :meth:`end`."""
        self.kube.ensure_namespace(NAMESPACE, labels=self.labels)
        now = _now()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=NAMESPACE, labels=self.labels),
            spec=client.V1LeaseSpec(holder_identity=f"{socket.gethostname()}/{self.session}",
                                    lease_duration_seconds=DURATION, acquire_time=now, renew_time=now),
        )
        self._api.create_namespaced_lease(NAMESPACE, body)
        self._thread = threading.Thread(target=self._renew, name=f"harness-lease-{self.session}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(RENEW):
            try:
                self._api.patch_namespaced_lease(self.name, NAMESPACE, {"spec": {"renewTime": _now().isoformat()}})
            except Exception as exc:  # a blip: the next renewal may work; DURATION covers three missed ones
                self.log(f"session lease: could not renew {NAMESPACE}/{self.name}: {type(exc).__name__}: {exc}")

    def end(self) -> None:
        """Stop renewing and delete this session's Lease (absent already: fine)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        else:
            return  # never held (start failed or was not called)
        try:
            self._api.delete_namespaced_lease(self.name, NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def alive_sessions(self) -> set[str]:
        """Ids of the sessions whose Lease is alive now, this one included while it runs."""
        try:
            leases = self._api.list_namespaced_lease(NAMESPACE).items
        except ApiException as exc:
            if exc.status == 404:
                return set()
            raise
        now = _now()
        return {lease.metadata.name.removeprefix("session-") for lease in leases
                if lease.metadata.name.startswith("session-") and _alive(lease, now)}

    def others(self) -> set[str]:
        """Other sessions using this cluster now."""
        return self.alive_sessions() - {self.session}

    def dead_namespaces(self, namespaces: Iterable[Any], label: str) -> list[str]:
        """Names of ``namespaces`` (V1Namespace) whose ``label`` names a session without a live Lease.

        Only namespaces older than a grace period, and not Terminating already.
        """
        alive = self.alive_sessions() | {self.session}
        now = _now()
        dead = []
        for ns in namespaces:
            owner = (ns.metadata.labels or {}).get(label)
            created = ns.metadata.creation_timestamp
            if not owner or owner in alive or (ns.status and ns.status.phase == "Terminating"):
                continue
            if created is not None and (now - created).total_seconds() < _GRACE:
                continue
            dead.append(ns.metadata.name)
        return sorted(dead)
