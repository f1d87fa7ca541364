"""Level-triggered reconciliation of one CustomJob, against a small API protocol.

Every entry point re-reads the world and converges; nothing depends on which
event woke it up, so a restarted controller, a duplicated watch event or two
handler threads racing on one CustomJob all end in the same state:

* :func:`ensure_job` creates the Job under its fixed name. A 409 is success
  when the existing Job is ours (owner UID matches); a Job left by a deleted
  namesake is waited out (its garbage collection is in flight), never adopted.
  Before that, the MLflow run ``spec.mlflow.runId`` names must be this
  CustomJob's (its ``mlflow-crd-harness/workload`` tag, see
  :func:`.mlflow_rest.ownership_problem`): the controller calls MLflow with
  its own identity, so a CustomJob must not be able to make it fail or kill
  another team's run. One that is not fails ``RunNotOwned``, no Job is made
  and the run is never written to; the closing paths check again.
* :func:`sync_status` recomputes the status from the Job and its Pods and
  writes it with the read ``resourceVersion`` as a precondition. Only the
  writer that wins a phase transition posts its Event.
* A status write that meets a conflict re-reads and tries again for up to
  :data:`STATUS_WRITE_SECONDS` (not a few times): under contention the
  last event of a Job must still reach the status.
* :func:`finish` runs the terminal side effects -- stop a stuck Job and wait
  for its Pods to go, close the MLflow run, release the Job's finaliser --
  and is *retried* by its caller (a kopf field handler on ``status.phase``)
  until they all worked: an MLflow outage at the moment a job ends delays
  the close, it does not lose it. Each wait has its own clock, kept in a
  condition so it survives restarts: Pods that do not stop (a NotReady node)
  are waited for ``CUSTOMJOB_POD_STOP_SECONDS`` (``PodsStopped``), then the run is
  closed and the Job released all the same; an unreachable tracking server
  is retried for :data:`CLOSE_SECONDS` (``MLflowRunClosed``). Progress is
  recorded in those conditions, so retries and restarts do each step once.
* A Job we hold whose CustomJob is gone -- deleted mid-run, being deleted,
  or deleted with ``--cascade=orphan`` (the garbage collector then removes
  the Job's ownerReference but not our finaliser) -- is stopped, its run
  closed ``KILLED`` (or as the Job ended) from the Job's own labels and
  annotations, and then released (:func:`sync_status` does this on the
  Job's and its Pods' watch events, :func:`release_orphan` on the
  CustomJob's own deletion events).

The kopf wiring lives in :mod:`.handlers`; the real API in :mod:`.kube`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from customjob_controller import contract, manifests, mlflow_rest, status
from customjob_controller.policy import Policy

LOG = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
STATUS_WRITE_SECONDS = 30.0
"""How long a status write that keeps meeting conflicts is retried (fresh read each time) before giving up;
the next event or the periodic resync tries again."""
FOREIGN_JOB_ATTEMPTS = 18
"""Retries (10 s apart) for a deleted namesake's Job to be collected before ``JobNameTaken``."""
CLOSE_SECONDS = 35 * 60.0
"""How long closing the run is retried while the tracking server fails (5 s doubling to 60 s) before giving up."""
POD_STOP_SECONDS = Policy.pod_stop_seconds
"""The default of how long :meth:`Reconciler.finish` waits for a stopped Job's Pods to go (a NotReady node keeps
them) before it records ``PodsDidNotStop``, closes the run and releases the Job all the same; the Deployment sets
it (``CUSTOMJOB_POD_STOP_SECONDS``, :attr:`.Policy.pod_stop_seconds`)."""
FINISH_ATTEMPTS = 1000
"""kopf's retry cap for :meth:`Reconciler.finish`: only a safety net. The waits inside are bounded by time
(:data:`POD_STOP_SECONDS` at :data:`POD_WAIT_DELAY`, then :data:`CLOSE_SECONDS`), not by this count, so a long
wait for Pods cannot use up the attempts closing the run needs."""
POD_WAIT_DELAY = 2.0
CONDITION_PODS_STOPPED = "PodsStopped"
"""CustomJob condition: whether the Pods of the Job the controller stopped are gone (``PodsDidNotStop``: not in
:data:`POD_STOP_SECONDS`, and the run was closed anyway)."""
REASON_PODS_DID_NOT_STOP = "PodsDidNotStop"


class Conflict(Exception):
    """HTTP 409: the object exists already, or the resourceVersion moved on."""


class ForeignJob(Exception):
    """A Job with our name exists but belongs to another (deleted) CustomJob."""


class Rejected(Exception):
    """The Job manifest was refused (client-side model or HTTP 400/422): permanent."""


class RetryLater(Exception):
    """A step of :meth:`Reconciler.finish` or :meth:`Reconciler.ensure_job` must be tried again after ``delay`` s."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class Api(Protocol):
    """The handful of API calls the controller makes (see :mod:`.kube`)."""

    def get_customjob(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_job(self, namespace: str, name: str, *, foreground: bool = False) -> None: ...
    def release_job(self, namespace: str, name: str, finalizer: str) -> None: ...
    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...
    def list_job_events(self, namespace: str, job_uid: str) -> list[dict[str, Any]]: ...
    def read_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str | None: ...
    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]: ...


Emit = Callable[[Mapping[str, Any], str, str, str], None]
"""``emit(customjob, type, reason, message)``: post a Kubernetes Event."""
Finalizer = Callable[..., mlflow_rest.Outcome]
OwnerCheck = Callable[..., mlflow_rest.Outcome]
"""``check(uri, run_id, *, owner, with_token)``: see :func:`.mlflow_rest.check_owner`."""


def _now() -> datetime:
    return datetime.now(UTC)


def _later(delay: float, fn: Callable[[], None]) -> None:
    """Call ``fn`` in ``delay`` s on a daemon thread (in memory: a restarted controller's replay re-checks)."""
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()


@dataclasses.dataclass
class Reconciler:
    """Binds the API, the event sink, the MLflow calls (ownership check, finaliser) and the clock."""

    api: Api
    emit: Emit
    finalize_run: Finalizer = mlflow_rest.finalize_run
    check_owner: OwnerCheck = mlflow_rest.check_owner
    clock: Callable[[], datetime] = _now
    policy: Policy = dataclasses.field(default_factory=Policy)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    """The status write's conflict back-off (seams for tests)."""
    later: Callable[[float, Callable[[], None]], None] = _later
    """Schedules a re-check of an orphaned Job whose Pods have not stopped (a seam for tests)."""
    _rechecks: set[str] = dataclasses.field(default_factory=set, repr=False)
    """Job uids with a re-check scheduled (one each)."""
    _owners: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    """Job uid -> its CustomJob's uid, as last seen: an orphaned Job (``--cascade=orphan``) has lost its
    ownerReference, and the run's tag may name that uid. In memory only (see :meth:`_release_orphan`)."""

    # -- Job creation -----------------------------------------------------

    def ensure_job(self, customjob: Mapping[str, Any], attempt: int = 0) -> None:
        """Create the Job if it is absent, then sync the status.

        Raises :class:`ForeignJob` (retry later) while a deleted namesake's
        Job is still being collected; after :data:`FOREIGN_JOB_ATTEMPTS`, or
        at once for a Job no CustomJob owns, the CustomJob fails
        ``JobNameTaken``. A spec the policy refuses fails before any Job, and
        so does one naming an MLflow run that is not this CustomJob's
        (``RunNotOwned``); :class:`RetryLater` while the tracking server
        cannot tell.
        """
        meta = customjob["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        current = customjob.get("status") or {}
        if status.is_terminal(current):
            return
        job_name = manifests.job_name(name)
        refusal = self.policy.refusal(customjob.get("spec") or {})
        if refusal is not None and not current.get("jobName"):
            self._sync_with_retries(namespace, name, status.Verdict(contract.FAILED, *refusal))
            return
        existing = self.api.get_job(namespace, job_name)
        if existing is None and not current.get("jobName"):
            not_owned = self._run_not_owned(customjob, attempt)
            if not_owned is not None:
                self._sync_with_retries(
                    namespace, name, status.Verdict(contract.FAILED, contract.REASON_RUN_NOT_OWNED, not_owned))
                return
            body = manifests.build_job(customjob)
            try:
                self.api.create_job(namespace, body)
                self.emit(customjob, "Normal", "JobCreated", f"created Job {job_name}")
            except Conflict:
                existing = self.api.get_job(namespace, job_name)
            except Rejected as exc:
                verdict = status.Verdict(contract.FAILED, "JobRejected", f"the Job was refused: {exc}")
                self._sync_with_retries(namespace, name, verdict)
                return
        if existing is not None and not _owned_by(existing, meta.get("uid")):
            owner = _controller_ref(existing)
            if _is_customjob_ref(owner) and attempt < FOREIGN_JOB_ATTEMPTS:
                raise ForeignJob(
                    f"Job {namespace}/{job_name} belongs to a deleted CustomJob of the same name (uid "
                    f"{owner.get('uid')}); waiting for it to be garbage-collected"
                )
            if not owner and _held(existing) and attempt < FOREIGN_JOB_ATTEMPTS:
                self._release_orphan(namespace, name, customjob)
                raise ForeignJob(
                    f"Job {namespace}/{job_name} was orphaned by a deleted CustomJob of the same name "
                    "(--cascade=orphan); waiting for it to be stopped and let go"
                )
            whose = f"{owner.get('kind')} {owner.get('name')} (uid {owner.get('uid')})" if owner else "nothing"
            verdict = status.Verdict(
                contract.FAILED,
                "JobNameTaken",
                f"a Job named {job_name} already exists in {namespace} and is not this CustomJob's (it is owned by "
                f"{whose}); delete or rename that Job, or create the CustomJob under another name",
            )
            self._sync_with_retries(namespace, name, verdict)
            return
        self.sync_status(namespace, name)

    def _run_not_owned(self, customjob: Mapping[str, Any], attempt: int) -> str | None:
        """Why ``spec.mlflow.runId`` is not this CustomJob's run (None: it is, or there is none).

        Called only with a tracking URI the policy allows (refused specs stop
        earlier). A server that does not answer is waited for (status Pending
        ``MLflowUnreachable``, :class:`RetryLater`): no Job starts for a run
        that may be someone else's.
        """
        mlflow = (customjob.get("spec") or {}).get("mlflow") or {}
        run_id, uri = mlflow.get("runId"), mlflow.get("trackingUri")
        if not run_id or not uri:
            return None
        seen = self.check_owner(uri, run_id, owner=_owner(customjob), with_token=self.policy.listed(uri))
        if seen.action == "owned":
            return None
        if seen.action == "not-owned":
            return seen.detail
        meta = customjob["metadata"]
        waiting = status.Verdict(contract.PENDING, "MLflowUnreachable",
                                 f"waiting for the tracking server to show whose run {run_id} is (before the Job "
                                 f"is created): {seen.detail}")
        self._sync_with_retries(meta["namespace"], meta["name"], waiting)
        raise RetryLater(f"MLflow at {uri} unreachable: {seen.detail}", min(5.0 * 2**attempt, 60.0))

    # -- Status -----------------------------------------------------------

    def sync_status(self, namespace: str, name: str) -> None:
        """Re-derive and write the status; stop and release a Job whose CustomJob is gone."""
        customjob = self._sync_with_retries(namespace, name, None)
        self._release_orphan(namespace, name, customjob)

    def resync(self, namespace: str, name: str) -> None:
        """The periodic resync (a kopf timer): :meth:`sync_status` for a CustomJob whose Job was created.

        Repairs what a lost watch event or a failed event handler left
        behind (kopf retries neither). Before its Job exists a CustomJob
        belongs to :meth:`ensure_job` and its own retries (a Pending reason
        such as ``MLflowUnreachable`` must not be overwritten); once terminal,
        to :meth:`finish`.
        """
        current = (self.api.get_customjob(namespace, name) or {}).get("status") or {}
        if current.get("jobName") and not status.is_terminal(current):
            self.sync_status(namespace, name)

    def release_orphan(self, namespace: str, name: str, uid: str | None) -> None:
        """The CustomJob ``uid`` is being deleted or gone (its own watch event): let its Job go.

        As :meth:`sync_status` does on the Job's events; this event also knows
        the uid, which an orphaned Job no longer says (the run's tag may name it).
        """
        self._release_orphan(namespace, name, self.api.get_customjob(namespace, name), gone_uid=uid)

    def recheck(self, namespace: str, name: str) -> str | None:
        """Sync again; the reason if it is still one only the clock can end (the caller retries), else None."""
        self.sync_status(namespace, name)
        current = (self.api.get_customjob(namespace, name) or {}).get("status") or {}
        if current.get("phase") == contract.PENDING and current.get("reason") in status.RECHECK_REASONS:
            return f"still {current.get('reason')}: {current.get('message')}"
        return None

    def _sync_with_retries(
        self, namespace: str, name: str, forced: status.Verdict | None
    ) -> dict[str, Any] | None:
        """Sync until the status is written (or needs no write): conflicts are retried for a time, not a count.

        Each conflict means someone else wrote first; the next attempt re-reads
        and re-derives. A short, growing pause spreads out writers racing on
        one object. After :data:`STATUS_WRITE_SECONDS` it gives up; the next
        watch event or the periodic resync (see :mod:`.handlers`) tries again.
        """
        deadline = self.monotonic() + STATUS_WRITE_SECONDS
        conflicts = 0
        while True:
            customjob = self.api.get_customjob(namespace, name)
            if customjob is None:
                return None
            try:
                self._sync_once(customjob, forced)
                return customjob
            except Conflict:
                conflicts += 1
                LOG.debug("status of %s/%s changed underneath us; re-reading", namespace, name)
            if self.monotonic() >= deadline:
                LOG.warning("gave up writing the status of %s/%s after %d conflicts in %.0f s", namespace, name,
                            conflicts, STATUS_WRITE_SECONDS)
                return customjob
            self.sleep(min(0.05 * conflicts, 1.0))

    def _observe(self, customjob: Mapping[str, Any]) -> status.Observation:
        meta = customjob["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        previous = customjob.get("status") or {}
        job = self.api.get_job(namespace, manifests.job_name(name))
        if job is not None and not _owned_by(job, meta.get("uid")):
            job = None
        pods: Sequence[dict[str, Any]] = ()
        if job is not None:
            job_uid = (job.get("metadata") or {}).get("uid")
            if job_uid and meta.get("uid"):
                self._owners[str(job_uid)] = str(meta["uid"])
            pods = [
                p
                for p in self.api.list_pods(namespace, f"{contract.LABEL_CUSTOMJOB}={name}")
                if job_uid is None or _owned_by(p, job_uid)
            ]
        log_tail = None
        needing = status.pod_needing_log_tail(pods)
        if needing:
            log_tail = self.api.read_log_tail(namespace, needing, contract.CONTAINER_NAME, LOG_TAIL_LINES)
        events: Sequence[dict[str, Any]] = ()
        job_uid = ((job or {}).get("metadata") or {}).get("uid")
        if job is not None and not pods and job_uid:
            events = self.api.list_job_events(namespace, job_uid)
        return status.Observation(
            job=job,
            pods=pods,
            log_tail=log_tail,
            job_expected=bool(previous.get("jobName")),
            job_events=events,
            now=self.clock(),
            image_pull_grace=self.policy.image_pull_grace,
            pod_create_grace=self.policy.pod_create_grace,
        )

    def _sync_once(self, customjob: Mapping[str, Any], forced: status.Verdict | None = None) -> None:
        meta = customjob["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        previous = customjob.get("status") or {}
        if status.is_terminal(previous):
            return
        spec = customjob.get("spec") or {}
        run_id = (spec.get("mlflow") or {}).get("runId")
        new: dict[str, Any]
        verdict: status.Verdict | None
        if forced is not None:
            verdict = forced
            new = status.build_status(
                forced,
                job=None,
                previous=previous,
                generation=meta.get("generation"),
                run_id=run_id,
                now=self.clock(),
            )
        else:
            new, verdict = status.derive(
                self._observe(customjob),
                previous=previous,
                generation=meta.get("generation"),
                run_id=run_id,
                now=self.clock(),
            )
        if verdict is None or _same(new, previous):
            return
        self.api.patch_status(namespace, name, _merge_patch(previous, new), meta.get("resourceVersion"))
        if new.get("phase") != previous.get("phase"):
            self._on_phase_change(customjob, verdict)

    def _on_phase_change(self, customjob: Mapping[str, Any], verdict: status.Verdict) -> None:
        if verdict.phase == contract.PENDING:
            return  # "JobCreated" was already announced by ensure_job
        kind = "Warning" if verdict.phase == contract.FAILED else "Normal"
        self.emit(customjob, kind, verdict.reason, verdict.message[-1000:])

    # -- Terminal side effects ----------------------------------------------

    def finish(self, customjob: Mapping[str, Any], attempt: int = 0) -> None:
        """Stop a stuck Job, close the MLflow run, release the Job; raise :class:`RetryLater` to be called again.

        Idempotent: each step checks the world first, and the run's closing is
        recorded in the ``MLflowRunClosed`` condition. Waiting for the Pods of
        a stopped Job is bounded by :data:`POD_STOP_SECONDS` from the first
        wait (the ``PodsStopped`` condition's transition time), separately
        from closing the run: Pods on a node that stopped answering never go,
        and the run must still be closed and the Job released.
        """
        meta = customjob["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        fresh = self.api.get_customjob(namespace, name)
        if fresh is None or (fresh.get("metadata") or {}).get("uid") != meta.get("uid"):
            return  # deleted meanwhile: its Job is an orphan now (see sync_status)
        current = fresh.get("status") or {}
        if not status.is_terminal(current):
            return
        job = self.api.get_job(namespace, manifests.job_name(name))
        if job is not None and not _owned_by(job, meta.get("uid")):
            job = None  # someone else's Job (JobNameTaken): never touched
        if job is not None and not _job_finished(job):
            stopping = current.get("reason") in status.PREEMPTING_REASONS or _deleting(job)
            if stopping:
                self._stop(namespace, job)
                self._wait_for_pods(fresh, job)
        self._close_run(fresh, attempt)
        if job is not None:
            self._release(namespace, job)

    def _wait_for_pods(self, customjob: Mapping[str, Any], job: Mapping[str, Any]) -> None:
        """Raise :class:`RetryLater` while the stopped Job's Pods run, for at most :data:`POD_STOP_SECONDS`.

        The trainer may still log while its Pod runs, so the run is closed
        only after; but a Pod on a NotReady node is never confirmed gone, and
        then the outcome is recorded (``PodsStopped`` False ``PodsDidNotStop``
        and a Warning Event) and the caller goes on to close the run.
        """
        meta = customjob["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        live = self._live_pods(namespace, name, job)
        previous = _condition(customjob.get("status") or {}, CONDITION_PODS_STOPPED)
        if not live:
            if previous is not None and previous.get("status") == "False" \
                    and previous.get("reason") != REASON_PODS_DID_NOT_STOP:
                self._set_condition(customjob, True, "Stopped", f"the Pods of Job {_name(job)} are gone",
                                    ctype=CONDITION_PODS_STOPPED)
            return
        if previous is not None and previous.get("reason") == REASON_PODS_DID_NOT_STOP:
            return  # already given up on them
        pods = ", ".join(sorted(_name(p) for p in live))
        since = _parse_time(previous.get("lastTransitionTime")) if previous and previous.get("status") == "False" \
            else None
        waited = (self.clock() - since).total_seconds() if since else 0.0
        budget = self.policy.pod_stop_seconds
        if waited < budget:
            if previous is None or previous.get("status") != "False":
                self._set_condition(customjob, False, "Waiting",
                                    f"waiting up to {budget:.0f} s for Pods {pods} of the stopped Job "
                                    f"{_name(job)} to stop", ctype=CONDITION_PODS_STOPPED)
            raise RetryLater(f"waiting for the pods of Job {_name(job)} to stop", POD_WAIT_DELAY)
        message = (f"Pods {pods} of the stopped Job {_name(job)} did not stop within {budget:.0f} s (is "
                   "their node NotReady?); the run is closed and the Job released all the same; delete the Pods "
                   "by hand once the node is gone or back")
        self._set_condition(customjob, False, REASON_PODS_DID_NOT_STOP, message, ctype=CONDITION_PODS_STOPPED)
        self.emit(customjob, "Warning", REASON_PODS_DID_NOT_STOP, message)

    def _close_run(self, customjob: Mapping[str, Any], attempt: int) -> None:
        spec = customjob.get("spec") or {}
        mlflow = spec.get("mlflow") or {}
        current = customjob.get("status") or {}
        run_id, uri = mlflow.get("runId"), mlflow.get("trackingUri")
        if not run_id or not uri:
            return
        previous = _condition(current, contract.CONDITION_RUN_CLOSED)
        if previous is not None and (previous.get("status") == "True"
                                     or previous.get("reason") in ("GaveUp", contract.REASON_RUN_NOT_OWNED)):
            return
        succeeded = current.get("phase") == contract.SUCCEEDED
        if not self.policy.tracking_uri_allowed(uri):
            self._set_condition(customjob, False, "TrackingUriNotAllowed", f"not calling {uri}: not allowed")
            return
        if current.get("reason") == contract.REASON_RUN_NOT_OWNED:  # refused before its Job: nothing to ask
            self._set_condition(customjob, False, contract.REASON_RUN_NOT_OWNED,
                                f"MLflow run {run_id} is not this CustomJob's; it was left as it is")
            return
        outcome = self.finalize_run(
            uri,
            run_id,
            status="FINISHED" if succeeded else "FAILED",
            reason=str(current.get("reason") or ""),
            message=str(current.get("message") or ""),
            end_time_ms=int(self.clock().timestamp() * 1000),
            owner=_owner(customjob),
            with_token=self.policy.listed(uri),
        )
        if outcome.action == "not-owned":  # its tag changed since the Job was created: still not ours to close
            self._set_condition(customjob, False, contract.REASON_RUN_NOT_OWNED, outcome.detail)
            self.emit(customjob, "Warning", contract.REASON_RUN_NOT_OWNED, outcome.detail)
            return
        if outcome.action == "error":
            failing = previous is not None and previous.get("reason") == "MLflowUnreachable"
            since = _parse_time(previous.get("lastTransitionTime")) if failing and previous else None
            waited = max((self.clock() - since).total_seconds(), 0.0) if since else 0.0
            if waited >= CLOSE_SECONDS:
                message = f"gave up closing run {run_id} after {waited:.0f} s: {outcome.detail}"
                self._set_condition(customjob, False, "GaveUp", message)
                self.emit(customjob, "Warning", "MLflowRunNotClosed", message)
                return
            if not failing:
                self.emit(customjob, "Warning", "MLflowUnreachable", f"could not close run {run_id}: {outcome.detail}")
            self._set_condition(customjob, False, "MLflowUnreachable",
                                f"could not close run {run_id} yet (attempt {attempt + 1}, failing for {waited:.0f} "
                                f"s): {outcome.detail}")
            # 5 s, then about doubling up to 60 s: the delay follows the time already failed, not kopf's retry
            # count, which waits for Pods also raise.
            raise RetryLater(f"MLflow at {uri} unreachable: {outcome.detail}", min(max(5.0, waited), 60.0))
        target = "FINISHED" if succeeded else "FAILED"
        if outcome.action == "closed":
            message = f"MLflow run {run_id} was {outcome.run_status}; marked it {target}"
            self.emit(customjob, "Warning" if not succeeded else "Normal", "MLflowRunClosed", message)
            self._set_condition(customjob, True, "Closed", message)
        else:
            self._set_condition(customjob, True, "AlreadyTerminal",
                                f"MLflow run {run_id} was already {outcome.run_status}")

    def _set_condition(self, customjob: Mapping[str, Any], is_true: bool, reason: str, message: str,
                       ctype: str = contract.CONDITION_RUN_CLOSED) -> None:
        meta = customjob["metadata"]
        fresh = self.api.get_customjob(meta["namespace"], meta["name"]) or customjob
        current = fresh.get("status") or {}
        old = _condition(current, ctype)
        flag = "True" if is_true else "False"
        since = old.get("lastTransitionTime") if old and old.get("status") == flag else None
        cond = {
            "type": ctype,
            "status": flag,
            "reason": reason,
            "message": message[-status.MAX_MESSAGE:],
            "lastTransitionTime": since or status.rfc3339(self.clock()),
        }
        if meta.get("generation") is not None:
            cond["observedGeneration"] = meta["generation"]
        others = [c for c in current.get("conditions") or () if c.get("type") != ctype]
        self.api.patch_status(meta["namespace"], meta["name"], {"conditions": [*others, cond]}, None)

    def _stop(self, namespace: str, job: Mapping[str, Any]) -> None:
        """Delete the Job in the foreground: the API keeps it until its Pods are gone."""
        if "foregroundDeletion" not in ((job.get("metadata") or {}).get("finalizers") or ()):
            self.api.delete_job(namespace, _name(job), foreground=True)

    def _live_pods(self, namespace: str, name: str, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        job_uid = (job.get("metadata") or {}).get("uid")
        return [
            p
            for p in self.api.list_pods(namespace, f"{contract.LABEL_CUSTOMJOB}={name}")
            if _owned_by(p, job_uid) and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]

    def _release(self, namespace: str, job: Mapping[str, Any]) -> None:
        if contract.FINALIZER_OUTCOME in ((job.get("metadata") or {}).get("finalizers") or ()):
            self.api.release_job(namespace, _name(job), contract.FINALIZER_OUTCOME)

    def _release_orphan(self, namespace: str, name: str, customjob: Mapping[str, Any] | None,
                        gone_uid: str | None = None) -> None:
        """A Job we hold whose CustomJob is gone: stop it, close its run KILLED (or as it ended), release it.

        "We hold" is our finaliser; "gone" is: the CustomJob does not exist,
        is being deleted, or is not the Job's controller. That covers a Job
        orphaned by ``kubectl delete --cascade=orphan``: the garbage collector
        removed its ownerReference (so nothing would ever delete it) but not
        our finaliser and label, so it is still ours to let go.

        The run is closed only if its tag names that CustomJob: the owner is
        the Job's controller reference, or for an orphaned Job the name in its
        label with the uid from the CustomJob's deletion event, the CustomJob
        being deleted, or what this process saw before (a tag that carries a
        uid needs it). Otherwise the run is left as it is and the Job is
        released all the same.
        """
        job = self.api.get_job(namespace, manifests.job_name(name))
        if job is None or contract.FINALIZER_OUTCOME not in ((job.get("metadata") or {}).get("finalizers") or ()):
            return
        job_uid = str((job.get("metadata") or {}).get("uid") or "")
        cj_meta = (customjob or {}).get("metadata") or {}
        deleting = customjob is None or bool(cj_meta.get("deletionTimestamp"))
        ref = _controller_ref(job)
        if ref:
            if not _is_customjob_ref(ref):
                return  # not a Job this controller made
            if not deleting and ref.get("uid") == cj_meta.get("uid"):
                return  # ours and alive: finish() releases it
            owner_name, owner_uid = str(ref.get("name") or name), _controller_uid(job)
            deleting = True  # its controller is gone (a deleted namesake's Job) or going
        else:  # orphaned: no ownerReference left (--cascade=orphan, or removed by hand)
            if job_uid and job_uid not in self._owners and customjob is not None and deleting:
                self._owners[job_uid] = str(cj_meta.get("uid"))
            owner_name, owner_uid = name, gone_uid or self._owners.get(job_uid)
        true = {c.get("type") for c in (job.get("status") or {}).get("conditions") or () if c.get("status") == "True"}
        if not true & {"Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"}:
            self._stop(namespace, job)
            live = self._live_pods(namespace, name, job)
            since = _parse_time((job.get("metadata") or {}).get("deletionTimestamp"))
            waited = max(0.0, (self.clock() - since).total_seconds()) if live and since else 0.0
            if live and waited < self.policy.pod_stop_seconds:
                if gone_uid and job_uid:
                    self._owners[job_uid] = gone_uid  # the Pods' deletion events come back without it
                # Their deletion events bring us back; Pods on a NotReady node send none (and kopf stops timers
                # on objects being deleted), so a re-check is due when the budget is spent.
                self._recheck_later(job_uid, self.policy.pod_stop_seconds - waited + 1.0, namespace, name)
                return
            if live:  # a NotReady node keeps them: the same budget as finish() gives a CustomJob's Pods
                LOG.warning("Pods %s of Job %s/%s (its CustomJob is gone) did not stop within %.0f s of its deletion; "
                            "closing the run and releasing the Job all the same", sorted(_name(p) for p in live),
                            namespace, _name(job), self.policy.pod_stop_seconds)
        target = "FINISHED" if true & {"Complete", "SuccessCriteriaMet"} else "FAILED" if true else "KILLED"
        reason = "CustomJobDeleted" if deleting else "JobOrphaned"
        why = "was deleted" if deleting else "no longer owns it (its ownerReference was removed)"
        labels = (job.get("metadata") or {}).get("labels") or {}
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        run_id, uri = labels.get(contract.LABEL_RUN_ID), annotations.get(contract.ANNOTATION_TRACKING_URI)
        if run_id and uri and self.policy.tracking_uri_allowed(uri):
            outcome = self.finalize_run(
                uri,
                run_id,
                status=target,
                reason=reason,
                message=f"CustomJob {namespace}/{owner_name} {why} before its Job finished",
                end_time_ms=int(self.clock().timestamp() * 1000),
                owner=mlflow_rest.Owner(contract.KIND, namespace, owner_name, owner_uid),
                with_token=self.policy.listed(uri),
            )
            if outcome.action == "not-owned":
                LOG.warning("Job %s/%s of a deleted CustomJob: run %s left as it is: %s", namespace, name, run_id,
                            outcome.detail)
            elif outcome.action == "error":
                LOG.warning("Job %s/%s: could not close run %s (%s); kept until a later event or restart",
                            namespace, name, run_id, outcome.detail)
                if gone_uid and job_uid:
                    self._owners[job_uid] = gone_uid
                return
            else:
                LOG.info("Job %s/%s of a deleted CustomJob: run %s %s (was %s)", namespace, name, run_id,
                         target if outcome.action == "closed" else "left", outcome.run_status)
        self.api.release_job(namespace, _name(job), contract.FINALIZER_OUTCOME)
        self._owners.pop(job_uid, None)

    def _recheck_later(self, job_uid: str, delay: float, namespace: str, name: str) -> None:
        if not job_uid or job_uid in self._rechecks:
            return
        self._rechecks.add(job_uid)

        def recheck() -> None:
            self._rechecks.discard(job_uid)
            try:
                self.sync_status(namespace, name)
            except Exception:  # a later event or the restart's replay tries again
                LOG.exception("re-checking the stopped Job %s/%s failed", namespace, name)

        self.later(delay, recheck)

    # -- Spec updates -----------------------------------------------------

    def report_spec_update(self, customjob: Mapping[str, Any], changed: Sequence[str]) -> None:
        """Record that a spec change was ignored (the CRD normally refuses it)."""
        meta = customjob["metadata"]
        fields = ", ".join(changed) or "spec"
        message = f"spec changes are ignored once a CustomJob exists (changed: {fields})"
        self.emit(customjob, "Warning", "SpecUpdateIgnored", message)
        previous = customjob.get("status") or {}
        conditions = [c for c in previous.get("conditions") or () if c.get("type") != "SpecUpdateIgnored"]
        conditions.append(
            {
                "type": "SpecUpdateIgnored",
                "status": "True",
                "reason": "SpecImmutable",
                "message": message,
                "lastTransitionTime": status.rfc3339(self.clock()),
                "observedGeneration": meta.get("generation"),
            }
        )
        self.api.patch_status(meta["namespace"], meta["name"], {"conditions": conditions}, None)


def _owner(customjob: Mapping[str, Any]) -> mlflow_rest.Owner:
    """The CustomJob as the run's ``mlflow-crd-harness/workload`` tag must name it."""
    meta = customjob.get("metadata") or {}
    return mlflow_rest.Owner(contract.KIND, str(meta.get("namespace")), str(meta.get("name")), meta.get("uid"))


def _controller_ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("uid"):
            return dict(ref)
    return {}


def _controller_uid(obj: Mapping[str, Any]) -> str | None:
    uid = _controller_ref(obj).get("uid")
    return str(uid) if uid else None


def _is_customjob_ref(ref: Mapping[str, Any]) -> bool:
    return ref.get("kind") == contract.KIND and str(ref.get("apiVersion", "")).startswith(contract.GROUP + "/")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def _held(job: Mapping[str, Any]) -> bool:
    """The Job carries our finaliser: this controller made it and has not let it go yet."""
    return contract.FINALIZER_OUTCOME in ((job.get("metadata") or {}).get("finalizers") or ())


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _job_finished(job: Mapping[str, Any]) -> bool:
    conds = (job.get("status") or {}).get("conditions") or ()
    done = {"Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"}
    return any(c.get("type") in done and c.get("status") == "True" for c in conds)


def _parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as written by :func:`.status.rfc3339` (None if absent or unreadable)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _condition(st: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for cond in st.get("conditions") or ():
        if cond.get("type") == ctype:
            return cond
    return None


def _owned_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    return uid is not None and _controller_uid(obj) == uid


_VOLATILE = ("lastTransitionTime",)


def _same(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Equal apart from condition timestamps (avoid write loops)."""

    def strip(st: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(st)
        out["conditions"] = [{k: v for k, v in c.items() if k not in _VOLATILE} for c in st.get("conditions") or ()]
        return out

    return strip(new) == strip(old)


def _merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch turning ``old`` into ``new`` (absent keys become null)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    patch.update(new)
    return patch
