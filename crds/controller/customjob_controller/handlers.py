"""kopf wiring for the CustomJob controller: ``kopf run -m customjob_controller.handlers``.

Design constraints (kopf 1.45 behaviour, checked in its source):

* **No finalizers.** No ``kopf.daemon``/``kopf.timer``/non-optional
  ``on.delete``: each adds kopf's finalizer, and then deleting a CustomJob (or
  its namespace) hangs whenever the controller is down. Cleanup is the
  garbage collector's job, through the Job's ownerReference.
* **Handlers return None**, so kopf never writes ``status.<handler>`` (the
  strict status schema would prune it and kopf would log inconsistencies).
* **Progress and diff-base live in annotations** under ``training.example.com``.
* **Level-triggered.** ``on.create`` and ``on.resume`` share one idempotent
  handler (a crash between creating the Job and kopf's bookkeeping re-runs it;
  the fixed Job name turns the second create into a 409). Watch events on Jobs
  and Pods -- filtered server-side by the owner label -- re-derive the status,
  and at start-up kopf replays every existing Job/Pod (``type=None``), which is
  the resync after a restart. No timer is needed for stuck states: a stuck Pod
  still changes status (back-off, scheduling) and every change is an event.
* Sync handlers run in kopf's thread pool; :mod:`.reconcile` makes concurrent
  runs for one CustomJob safe with resourceVersion preconditions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from kubernetes import config as kube_config

from customjob_controller import contract, kube, reconcile, status
from customjob_controller.policy import Policy, PolicyError

_reconciler: reconcile.Reconciler | None = None

RECHECK_SECONDS = 5.0
RECHECK_ATTEMPTS = 720
"""``recheck`` gives up after an hour of a reason that should end within the graces."""


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
               retries=reconcile.FINISH_ATTEMPTS)
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


def _plain(body: kopf.Body) -> dict[str, Any]:
    """kopf bodies are live views; reconcile wants an immutable snapshot."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.metadata),
        "spec": dict(body.spec),
        "status": dict(body.status),
    }
