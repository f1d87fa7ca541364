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
  for :data:`DURATION` s, so the next session deletes them;
* which stack every session runs: its Lease carries the digest of its rendered
  stack (:data:`DIGEST_ANNOTATION`). Sessions that share a cluster share one
  controller and one tracking server, so a session whose stack differs from a
  live session's is refused before it applies anything (:meth:`SessionLease.claim_stack`):
  its apply would replace the other's namespaced objects under its running tests.

The last session out also deletes the Leases' namespace, when the harness made
it (labelled) and no live Lease is left in it; a session starting while it is
being deleted waits until it is gone and makes it again.

Test namespaces carry their session's id in the label
:data:`harness.clusters.SESSION_LABEL`.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness._errors import HarnessError
from harness._waiting import Probe, wait_for
from harness.kubeapi import Kube

__all__ = [
    "CHECKING",
    "DIGEST_ANNOTATION",
    "DURATION",
    "NAMESPACE",
    "PENDING",
    "REFUSED",
    "RENEW",
    "RUNNING",
    "STATE_ANNOTATION",
    "Peer",
    "SessionLease",
    "StackMismatch",
    "StackVerdict",
    "held",
    "lease_namespace_kept",
    "peers",
    "stack_verdict",
]

NAMESPACE = "mlflow-crd-harness-sessions"
"""Where the Leases live: created when absent, labelled as the harness's; the last session out deletes it."""
DURATION = 120
"""Seconds a Lease counts as alive after its last renewal."""
RENEW = 30.0
"""Seconds between renewals."""
_GRACE = 600.0
"""Seconds a namespace must exist before it can be reaped as a dead session's (a session starting up, or one
whose Lease write failed once, is not reaped under it)."""
_NAMESPACE_GONE_WAIT = 120.0
"""Seconds a starting session waits for the Leases' namespace to finish being deleted (an empty namespace goes in
seconds; longer means something holds it, and the error says what was seen)."""
_CLAIM_WAIT = DURATION + RENEW
"""Seconds a session waits for another that is comparing its stack at the same moment to decide (it takes one
list and one write). One killed while comparing is waited out: its Lease expires within this time."""

DIGEST_ANNOTATION = "mlflow-crd-harness/stack-digest"
"""Annotation of a session's Lease: the digest of the stack it runs (or is about to), once rendered."""
STATE_ANNOTATION = "mlflow-crd-harness/stack-state"
"""Annotation of a session's Lease: where it is in comparing its stack with the others' (the values below).
A Lease without it was written by a harness that does not compare stacks."""
PENDING = "pending"
"""The session has not rendered its stack yet: nothing to compare."""
CHECKING = "checking"
"""The session named its digest and compares it with the live sessions' (it has applied nothing yet)."""
RUNNING = "running"
"""The session's stack is the cluster's: it applied it or is about to."""
REFUSED = "refused"
"""The session's stack differs from a live session's: it stops without applying anything."""
_STATES = frozenset({PENDING, CHECKING, RUNNING, REFUSED})


class StackMismatch(HarnessError):
    """Another live session on the shared cluster runs a different stack; nothing of this one was applied."""


_HELD: dict[int, SessionLease] = {}
"""The Lease this process holds on each cluster connection, by ``id()`` of its :class:`Kube` (the Lease keeps that
object alive while it is listed). The stack finds it here, next to the cluster it deploys to."""
_HELD_LOCK = threading.Lock()


def held(kube: Kube) -> SessionLease | None:
    """This process's running session Lease on the cluster ``kube`` reaches, if it holds one.

    The existing provider starts the Lease and the stack is deployed later, with
    only the cluster in hand; the Lease is found by the very :class:`Kube` the
    provider made for that cluster.
    """
    with _HELD_LOCK:
        return _HELD.get(id(kube))


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


@dataclass(frozen=True)
class Peer:
    """A live session on the cluster, as its Lease shows it."""

    session: str
    holder: str
    """The Lease's ``holderIdentity``: ``host/session`` of the machine that runs it."""
    digest: str | None
    """Digest of the stack it runs or is about to run; None before it rendered it (or an older harness)."""
    state: str | None
    """:data:`STATE_ANNOTATION`; None: an older harness that does not compare stacks."""
    since: dt.datetime | None = None
    """When its Lease was created (the API server's clock): who came first, when two compare at once."""

    def order(self) -> tuple[dt.datetime, str]:
        return (self.since or dt.datetime.max.replace(tzinfo=dt.UTC), self.session)

    def describe(self) -> str:
        return f"session {self.session} (holder {self.holder or 'unknown'})"


def peers(leases: Iterable[Any], now: dt.datetime) -> list[Peer]:
    """The live sessions among ``leases`` (V1Lease), this one included while it runs."""
    found = []
    for lease in leases:
        name = lease.metadata.name
        if not name.startswith("session-") or not _alive(lease, now):
            continue
        notes = lease.metadata.annotations or {}
        since = lease.metadata.creation_timestamp
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        found.append(Peer(session=name.removeprefix("session-"), holder=str(lease.spec.holder_identity or ""),
                          digest=notes.get(DIGEST_ANNOTATION) or None, state=notes.get(STATE_ANNOTATION),
                          since=since))
    return found


@dataclass(frozen=True)
class StackVerdict:
    """What a session about to apply its stack does, given the live sessions' stacks."""

    action: Literal["proceed", "wait", "refuse"]
    against: tuple[Peer, ...] = ()
    """refuse: the sessions whose different stack wins; wait: the ones still comparing theirs."""
    unaware: tuple[Peer, ...] = ()
    """Live sessions of an older harness (no :data:`STATE_ANNOTATION`): their stack cannot be compared."""


def stack_verdict(session: str, digest: str, live: Iterable[Peer]) -> StackVerdict:
    """Whether ``session``, whose Lease already names ``digest`` (state :data:`CHECKING`), may apply its stack.

    Each session names its digest *before* it compares, so of two sessions with
    different stacks the later one to compare always sees the other: at most
    one of them proceeds.

    * a live session :data:`RUNNING` another stack: refuse (it is the cluster's);
    * none comparing another stack either: proceed;
    * some still comparing another stack (:data:`CHECKING`, the same moment):
      when a running session already runs ours, wait for them (they will see it
      and refuse); otherwise the one whose Lease came first wins: refuse if one
      of them came before us, else wait until they have refused.
    """
    everyone = list(live)
    others = [p for p in everyone if p.session != session]
    me = next((p for p in everyone if p.session == session), Peer(session, "", digest, CHECKING))
    unaware = tuple(p for p in others if p.state not in _STATES)
    differ = [p for p in others if p.state in (CHECKING, RUNNING) and p.digest != digest]
    running = tuple(p for p in differ if p.state == RUNNING)
    if running:
        return StackVerdict("refuse", running, unaware)
    if not differ:
        return StackVerdict("proceed", (), unaware)
    if any(p.state == RUNNING and p.digest == digest for p in others):
        return StackVerdict("wait", tuple(differ), unaware)
    first = tuple(p for p in differ if p.order() < me.order())
    if first:
        return StackVerdict("refuse", first, unaware)
    return StackVerdict("wait", tuple(differ), unaware)


def lease_namespace_kept(labels: Mapping[str, str] | None, ours: Mapping[str, str], leases: Iterable[Any],
                         now: dt.datetime) -> str | None:
    """Why the Leases' namespace must stay after this session's Lease is gone; None: the last session out deletes it.

    ``labels``: the namespace's (None: it is absent); ``ours``: the labels the
    harness gives it when it creates it; ``leases``: what is left in it. A
    Lease that has not been renewed for its duration is a session that is gone
    (every other rule reads it so too) and goes with the namespace.
    """
    if labels is None:
        return "it is gone already"
    if not ours or any(labels.get(k) != v for k, v in ours.items()):
        return "the harness did not create it (it lacks the harness's label)"
    left = list(leases)
    foreign = sorted(x.metadata.name for x in left if not x.metadata.name.startswith("session-"))
    if foreign:
        return f"it holds Leases that are not the harness's sessions: {', '.join(foreign)}"
    alive = sorted(x.metadata.name for x in left if x.metadata.name.startswith("session-") and _alive(x, now))
    if alive:
        return f"other sessions still hold Leases in it: {', '.join(alive)}"
    return None


@dataclass
class SessionLease:
    """This session's Lease on cluster ``kube``; :meth:`start` it after attaching, :meth:`end` it last."""

    kube: Kube
    session: str
    log: Callable[[str], None] = print
    labels: dict[str, str] = field(default_factory=dict)
    """Labels for the Leases' namespace when this session creates it (the harness's managed-by label); the last
    session out deletes the namespace only when it carries them."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _annotations: dict[str, str] = field(default_factory=lambda: {STATE_ANNOTATION: PENDING}, repr=False)
    _write: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """One writer of this Lease at a time: the renewal thread may re-create it while the session annotates it."""

    @property
    def name(self) -> str:
        return f"session-{self.session}"

    @property
    def holder(self) -> str:
        return f"{socket.gethostname()}/{self.session}"

    @property
    def _api(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.kube.api)

    def start(self) -> None:
        """Create this session's Lease and keep it renewed until :meth:`end`."""
        self._create()
        self._thread = threading.Thread(target=self._renew, name=f"harness-lease-{self.session}", daemon=True)
        self._thread.start()
        with _HELD_LOCK:
            _HELD[id(self.kube)] = self

    def _body(self) -> client.V1Lease:
        now = _now()
        return client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=NAMESPACE, labels=self.labels,
                                         annotations=dict(self._annotations)),
            spec=client.V1LeaseSpec(holder_identity=self.holder, lease_duration_seconds=DURATION,
                                    acquire_time=now, renew_time=now),
        )

    def _namespace_terminating(self) -> bool:
        """Whether the Leases' namespace is being deleted (the last session out deleted it a moment ago)."""
        try:
            ns = self.kube.core.read_namespace(NAMESPACE)
        except ApiException:
            return False  # absent (the next attempt makes it) or not readable (the create's own error stands)
        return ns.metadata.deletion_timestamp is not None or (ns.status is not None
                                                              and ns.status.phase == "Terminating")

    def _create(self) -> None:
        """Create the Lease (and its namespace when absent), waiting out a namespace that is being deleted.

        The last session out deletes the namespace; a session starting at that
        moment finds it still there but refusing new objects (the API server
        answers 403 Forbidden or 409), or creates its Lease just before the
        deletion reaches it (it would go with the namespace). Either way it waits
        until the namespace is gone, makes it again and creates its Lease there.
        """
        def attempt() -> Probe[None]:
            self.kube.ensure_namespace(NAMESPACE, labels=self.labels)
            try:
                self._api.create_namespaced_lease(NAMESPACE, self._body())
            except ApiException as exc:
                if exc.status == 404:
                    return Probe(False, f"namespace {NAMESPACE} is gone; making it again")
                if exc.status not in (403, 409):
                    raise
                if self._namespace_terminating():
                    return Probe(False, f"namespace {NAMESPACE} is being deleted (the last session out removes it)")
                if exc.status == 403:
                    raise  # not allowed to hold a Lease: the provider says what to grant
                # 409 in a live namespace: this session's own Lease (a renewal re-creating it); take it over.
                body = self._body()
                self._api.patch_namespaced_lease(self.name, NAMESPACE, {
                    "metadata": {"annotations": body.metadata.annotations},
                    "spec": {"holderIdentity": body.spec.holder_identity, "renewTime": _now().isoformat()}})
                return Probe(True, "held (it was there already)")
            if self._namespace_terminating():
                return Probe(False, f"namespace {NAMESPACE} began to be deleted as the Lease was created")
            return Probe(True, "held")

        with self._write:
            wait_for(attempt, what=f"namespace {NAMESPACE}, being deleted, to be gone (to hold Lease {self.name})",
                     timeout=_NAMESPACE_GONE_WAIT, interval=1.0,
                     hint=f"something holds namespace {NAMESPACE} in Terminating: `kubectl get namespace "
                          f"{NAMESPACE} -o yaml` shows its conditions (a finalizer, an unavailable API service); "
                          "fix that, or delete the namespace's leftovers by hand")

    def _renew(self) -> None:
        while not self._stop.wait(RENEW):
            try:
                with self._write:
                    self._api.patch_namespaced_lease(self.name, NAMESPACE,
                                                     {"spec": {"renewTime": _now().isoformat()}})
            except ApiException as exc:
                if exc.status == 404 and not self._stop.is_set():
                    # Gone with its namespace (the last session out deleted it as this one started): make both again.
                    self.log(f"session lease: {NAMESPACE}/{self.name} was gone; creating it again")
                    self._recreate()
                else:
                    self.log(f"session lease: could not renew {NAMESPACE}/{self.name}: HTTP {exc.status}: "
                             f"{exc.reason}")
            except Exception as exc:  # a blip: the next renewal may work; DURATION covers three missed ones
                self.log(f"session lease: could not renew {NAMESPACE}/{self.name}: {type(exc).__name__}: {exc}")

    def _recreate(self) -> None:
        try:
            self._create()
        except Exception as exc:  # the next renewal tries again
            self.log(f"session lease: could not create {NAMESPACE}/{self.name} again: {type(exc).__name__}: {exc}")

    def _annotate(self, **notes: str) -> None:
        """Write ``notes`` into this Lease's annotations (and keep them for a re-created Lease)."""
        self._annotations.update(notes)
        try:
            with self._write:
                self._api.patch_namespaced_lease(self.name, NAMESPACE, {"metadata": {"annotations": notes}})
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._create()  # gone with its namespace a moment ago: made again, with every annotation

    def claim_stack(self, digest: str, *, timeout: float = _CLAIM_WAIT) -> None:
        """Before the stack is applied: name its ``digest`` on this Lease; refuse if a live session runs another.

        Raises :class:`StackMismatch` (nothing applied) naming each session whose
        stack differs, the machine it runs on and its digest. Sessions of an
        older harness record no digest: a warning line each, not a refusal. No
        Lease held (the cluster refused it): nothing to compare, the start said so.
        """
        if self._thread is None:
            return
        self._annotate(**{DIGEST_ANNOTATION: digest, STATE_ANNOTATION: CHECKING})
        warned: set[str] = set()

        def probe() -> Probe[None]:
            verdict = stack_verdict(self.session, digest, peers(self._list(), _now()))
            for p in verdict.unaware:
                if p.session not in warned:
                    warned.add(p.session)
                    self.log(f"session lease: warning: {p.describe()} runs a harness that does not record its "
                             f"stack's digest: not compared with this session's ({digest}); if its stack differs, "
                             "this session's apply replaces its namespaced objects. Upgrade the harness there")
            if verdict.action == "refuse":
                raise StackMismatch(
                    f"another session on this cluster runs a different stack; this session's (stack digest "
                    f"{digest}) would re-apply the shared controller and tracking server over theirs, so nothing "
                    "was applied:\n  " + "\n  ".join(
                        f"{p.describe()} {'runs' if p.state == RUNNING else 'came first with'} stack digest {p.digest}"
                        for p in verdict.against)
                    + "\nFix: run the same stack as that session (the same commit and the same settings stack, "
                    "images and tracking), use another cluster (settings kubeconfig/context), or wait for that "
                    f"session to end (its Lease {NAMESPACE}/session-<id> is deleted at its end, or expires "
                    f"{DURATION} s after its last renewal)")
            if verdict.action == "wait":
                return Probe(False, "waiting for " + ", ".join(f"{p.describe()} (stack digest {p.digest}) to decide"
                                                               for p in verdict.against))
            return Probe(True, "no live session runs another stack")

        try:
            wait_for(probe, what=f"the sessions comparing their stacks with this one's (digest {digest}) to decide",
                     timeout=timeout, interval=1.0,
                     hint=f"a session that compares for minutes hangs: its Lease in {NAMESPACE} expires "
                          f"{DURATION} s after its last renewal; then start this session again")
        except BaseException:
            self._withdraw()
            raise
        self._annotate(**{STATE_ANNOTATION: RUNNING})

    def _withdraw(self) -> None:
        """Refused: say so on the Lease at once, so a session comparing at this moment does not wait for this one."""
        try:
            self._annotate(**{STATE_ANNOTATION: REFUSED})
        except Exception as exc:  # the Lease is deleted at the session's end anyway
            self.log(f"session lease: could not mark {NAMESPACE}/{self.name} refused: {type(exc).__name__}: {exc}")

    def _list(self) -> list[Any]:
        try:
            return list(self._api.list_namespaced_lease(NAMESPACE).items)
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise

    def end(self) -> None:
        """Stop renewing, delete this session's Lease (absent already: fine), then its namespace if it was the last."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        else:
            return  # never held (start failed or was not called)
        with _HELD_LOCK:
            if _HELD.get(id(self.kube)) is self:
                del _HELD[id(self.kube)]
        try:
            self._api.delete_namespaced_lease(self.name, NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
        self._remove_namespace_if_last()

    def _remove_namespace_if_last(self) -> None:
        """Delete the Leases' namespace when :func:`lease_namespace_kept` finds no reason to keep it.

        The delete names the namespace's uid: one that another session deleted
        and made again in the meantime is not this one's to delete. A session
        that creates its Lease while the namespace goes makes both again
        (:meth:`_create`, and its renewal). Failing here never fails the session.
        """
        try:
            ns = self.kube.core.read_namespace(NAMESPACE)
            if ns.metadata.deletion_timestamp is not None:
                return
            why = lease_namespace_kept(ns.metadata.labels or {}, self.labels, self._list(), _now())
            if why is not None:
                return
            self.log(f"session lease: deleting namespace {NAMESPACE}: this was the last session on the cluster")
            self.kube.core.delete_namespace(NAMESPACE, body=client.V1DeleteOptions(
                propagation_policy="Background", preconditions=client.V1Preconditions(uid=ns.metadata.uid)))
        except ApiException as exc:
            if exc.status in (404, 409):  # gone already, or made again by a session starting now
                return
            self.log(f"session lease: could not remove namespace {NAMESPACE} after the last Lease in it (HTTP "
                     f"{exc.status} {exc.reason}); grant get and delete on namespaces, or `kubectl delete namespace "
                     f"{NAMESPACE}` once no session uses the cluster")

    def alive_sessions(self) -> set[str]:
        """Ids of the sessions whose Lease is alive now, this one included while it runs."""
        return {p.session for p in peers(self._list(), _now())}

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
