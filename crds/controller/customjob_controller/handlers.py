"""kopf wiring for the CustomJob controller: ``kopf run -m customjob_controller.handlers``.

Design constraints (kopf 1.45 behaviour, checked in its source):

* **No finalizers on CustomJobs.** No ``kopf.daemon``/non-optional
  ``on.delete``: each adds kopf's finalizer, and then deleting a CustomJob (or
  its namespace) hangs whenever the controller is down. Cleanup is the
  garbage collector's job, through the Job's ownerReference; a Job that lost
  it (``--cascade=orphan``) is let go by :func:`customjob_gone`, on the
  CustomJob's own deletion events.
* **One timer, without its finalizer.** kopf never retries an ``on.event``
  handler and its watch never re-lists, so one failed API call on a Job's
  last event (or a status write that kept meeting conflicts) would leave a
  CustomJob Running until its Job's TTL. :func:`resync` re-runs the same sync
  every :data:`RESYNC_SECONDS` while a CustomJob is not terminal. kopf gives
  every timer its finalizer (so that it can stop the timer before the object
  goes); this one is registered without it (:func:`_register_resync`), and is
  stopped instead by its filter: :func:`customjob_gone` marks the object's
  kopf memo on its ``DELETED`` event, which kopf handles before it re-matches
  timers in the same cycle, and a terminal phase stops it too.
* **Handlers return None**, so kopf never writes ``status.<handler>`` (the
  strict status schema would prune it and kopf would log inconsistencies).
* **Progress and diff-base live in annotations** under ``training.example.com``.
* **Level-triggered.** ``on.create`` and ``on.resume`` share one idempotent
  handler (a crash between creating the Job and kopf's bookkeeping re-runs it;
  the fixed Job name turns the second create into a 409). Watch events on Jobs
  and Pods -- filtered server-side by the owner label -- re-derive the status,
  and at start-up kopf replays every existing Job/Pod (``type=None``), which is
  the resync after a restart; :func:`resync` covers events lost or failed
  while running.
* Sync handlers run in kopf's thread pool; :mod:`.reconcile` makes concurrent
  runs for one CustomJob safe with resourceVersion preconditions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from kopf._core.intents import handlers as kopf_handlers
from kubernetes import config as kube_config

from customjob_controller import contract, kube, reconcile, status
from customjob_controller.policy import Policy, PolicyError

_reconciler: reconcile.Reconciler | None = None

RECHECK_SECONDS = 5.0
RECHECK_ATTEMPTS = 720
"""``recheck`` gives up after an hour of a reason that should end within the graces."""
RESYNC_SECONDS = 30.0
"""How often a CustomJob that is not terminal is synced even without a watch event."""
GONE = "customjob_gone"
"""Key in an object's kopf memo: its ``DELETED`` event was seen (stops its resync timer)."""


def _emit(customjob: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    body = kopf.Body(cast(kopf.RawBody, dict(customjob)))
    if kind == "Warning":
        kopf.warn(body, reason=reason, message=message)
    else:
        kopf.info(body, reason=reason, message=message)


def _get() -> reconcile.Reconciler:
    if _reconciler is None:  # pragma: no cover - startup always runs first
        raise kopf.TemporaryError("controller not initialised yet", delay=5)
    return _reconciler


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    """Pin kopf's bookkeeping, narrow the watches, and connect the API client."""
    global _reconciler
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=contract.PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=contract.PREFIX, key="last-handled-configuration"
    )
    # Server-side filters: only our Jobs/Pods ever reach the controller.
    settings.watching.label_selectors["batch", "v1", "jobs"] = contract.LABEL_CUSTOMJOB
    settings.watching.label_selectors["v1", "pods"] = contract.LABEL_CUSTOMJOB
    # Long-lived watches can die silently; bound them so kopf reconnects.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.posting.reporting_component = contract.MANAGED_BY
    # Bound to typed names: the kubernetes package's config loaders are untyped.
    load_incluster: Callable[[], None] = kube_config.load_incluster_config
    load_kubeconfig: Callable[[], None] = kube_config.load_kube_config
    try:
        load_incluster()
    except kube_config.ConfigException:
        load_kubeconfig()
        logger.info("not in a cluster; using the local kubeconfig")
    try:
        policy = Policy.from_env(os.environ)
    except PolicyError as exc:
        raise kopf.PermanentError(f"refusing to start: {exc}") from exc
    logger.info(policy.describe())
    _reconciler = reconcile.Reconciler(api=kube.KubeApi(), emit=_emit, policy=policy)


@kopf.on.resume(contract.GROUP, contract.VERSION, contract.PLURAL)
@kopf.on.create(contract.GROUP, contract.VERSION, contract.PLURAL, backoff=5)
def ensure_job(body: kopf.Body, retry: int, **_: Any) -> None:
    """Create the Job if absent (idempotent) and publish the first status."""
    try:
        _get().ensure_job(_plain(body), attempt=retry)
    except reconcile.ForeignJob as exc:
        raise kopf.TemporaryError(str(exc), delay=10) from exc
    except reconcile.RetryLater as exc:  # the tracking server could not say whose the run is yet
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


def _is_terminal(value: Any, **_: Any) -> bool:
    return value in contract.TERMINAL_PHASES


def _is_recheckable(value: Any, **_: Any) -> bool:
    return value in status.RECHECK_REASONS


@kopf.on.field(contract.GROUP, contract.VERSION, contract.PLURAL, field="status.phase", new=_is_terminal,
               retries=reconcile.FINISH_ATTEMPTS)  # a safety net: finish() bounds its waits by time
def finish(body: kopf.Body, retry: int, **_: Any) -> None:
    """Terminal side effects, retried until done (see :meth:`reconcile.Reconciler.finish`)."""
    try:
        _get().finish(_plain(body), attempt=retry)
    except reconcile.RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    except reconcile.Conflict as exc:
        raise kopf.TemporaryError(f"the Job changed underneath us: {exc}", delay=1) from exc


@kopf.on.field(contract.GROUP, contract.VERSION, contract.PLURAL, field="status.reason", new=_is_recheckable,
               retries=RECHECK_ATTEMPTS)
def recheck(body: kopf.Body, **_: Any) -> None:
    """Re-derive the status every few seconds while only the clock can change it."""
    meta = body.metadata
    still = _get().recheck(str(meta.namespace), str(meta.name))
    if still:
        raise kopf.TemporaryError(still, delay=RECHECK_SECONDS)


@kopf.on.update(contract.GROUP, contract.VERSION, contract.PLURAL, field="spec")
def spec_changed(body: kopf.Body, diff: kopf.Diff, **_: Any) -> None:
    """Spec edits cannot reach a running Job; say so instead of acting.

    The CRD's ``self == oldSelf`` rule refuses them at admission, so this only
    fires if that rule was removed or bypassed (e.g. an older CRD).
    """
    changed = sorted({".".join(str(p) for p in d[1]) for d in diff})
    _get().report_spec_update(_plain(body), changed)


@kopf.on.event("batch", "v1", "jobs", labels={contract.LABEL_CUSTOMJOB: kopf.PRESENT})
@kopf.on.event("v1", "pods", labels={contract.LABEL_CUSTOMJOB: kopf.PRESENT})
def owned_changed(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A Job or Pod of some CustomJob changed: re-derive that CustomJob's status."""
    owner = labels.get(contract.LABEL_CUSTOMJOB)
    if namespace and owner:
        _get().sync_status(namespace, owner)


@kopf.on.event(contract.GROUP, contract.VERSION, contract.PLURAL)
def customjob_gone(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A CustomJob is being deleted, or is gone: stop its resync timer and let its Job go.

    Needed for ``kubectl delete --cascade=orphan``: the garbage collector then
    strips the Job's ownerReference, so no Job event says whose it was; this
    event still carries the CustomJob's uid, which its run's tag may name.
    """
    meta = body.metadata
    if type == "DELETED":
        memo[GONE] = True
    elif not meta.get("deletionTimestamp"):
        return
    if meta.namespace and meta.name:
        _get().release_orphan(str(meta.namespace), str(meta.name), meta.uid)


def _resync_wanted(status: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> bool:
    """The timer runs while the CustomJob exists and is not terminal (kopf stops it when this turns False)."""
    return not memo.get(GONE) and status.get("phase") not in contract.TERMINAL_PHASES


def resync(meta: kopf.Meta, **_: Any) -> None:
    """Sync the status even without an event (see the module docstring); a no-op before the Job exists."""
    _get().resync(str(meta.namespace), str(meta.name))


def _register_resync(registry: kopf.OperatorRegistry | None = None) -> None:
    """``@kopf.timer(..., interval=RESYNC_SECONDS)`` for :func:`resync`, minus the finalizer kopf gives timers.

    The finalizer only lets kopf stop a timer before its object goes; here
    :func:`_resync_wanted` stops it (a deleted object's memo is marked), and
    the handler does nothing for an object that is gone. A finalizer would
    make deleting a running CustomJob hang whenever the controller is down.
    """
    real = registry if registry is not None else kopf.get_default_registry()
    kopf.timer(contract.GROUP, contract.VERSION, contract.PLURAL, interval=RESYNC_SECONDS,
               initial_delay=RESYNC_SECONDS, when=_resync_wanted, registry=real)(resync)
    spawning = real._spawning
    spawning._handlers[:] = [
        dataclasses.replace(h, requires_finalizer=False)
        if isinstance(h, kopf_handlers.TimerHandler) and h.fn is resync else h
        for h in spawning._handlers
    ]


_register_resync()


def _plain(body: kopf.Body) -> dict[str, Any]:
    """kopf bodies are live views; reconcile wants an immutable snapshot."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.metadata),
        "spec": dict(body.spec),
        "status": dict(body.status),
    }
