"""Level-triggered reconciliation of one CustomJob, against a small API protocol.

Every entry point re-reads the world and converges; nothing depends on which
event woke it up, so a restarted controller, a duplicated watch event or two
handler threads racing on one CustomJob all end in the same state:

* :func:`ensure_job` creates the Job under its fixed name. A 409 is success
  when the existing Job is ours (owner UID matches); a Job left by a deleted
  namesake is waited out (its garbage collection is in flight), never adopted.
* :func:`sync_status` recomputes the status from the Job and its Pods and
  writes it with the read ``resourceVersion`` as a precondition. Only the
  writer that wins the transition to a terminal phase runs the side effects
  (Event, deleting a stuck Job, closing the MLflow run), so they happen once.

The kopf wiring lives in :mod:`.handlers`; the real API in :mod:`.kube`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from customjob_controller import contract, manifests, mlflow_rest, status

LOG = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
STATUS_WRITE_ATTEMPTS = 4


class Conflict(Exception):
    """HTTP 409: the object exists already, or the resourceVersion moved on."""


class ForeignJob(Exception):
    """A Job with our name exists but belongs to another (deleted) CustomJob."""


class Rejected(Exception):
    """The Job manifest was refused (client-side model or HTTP 400/422): permanent."""


class Api(Protocol):
    """The handful of API calls the controller makes (see :mod:`.kube`)."""

    def get_customjob(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_job(self, namespace: str, name: str) -> None: ...
    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...
    def read_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str | None: ...
    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]: ...


Emit = Callable[[Mapping[str, Any], str, str, str], None]
"""``emit(customjob, type, reason, message)``: post a Kubernetes Event."""
Finalizer = Callable[..., mlflow_rest.Outcome]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class Reconciler:
    """Binds the API, the event sink, the MLflow finaliser and the clock."""

    api: Api
    emit: Emit
    finalize_run: Finalizer = mlflow_rest.finalize_run
    clock: Callable[[], datetime] = _now

    # -- Job creation -----------------------------------------------------

    def ensure_job(self, customjob: Mapping[str, Any]) -> None:
        """Create the Job if it is absent, then sync the status.

        Raises :class:`ForeignJob` (retry later) when a namesake's Job is
        still being garbage-collected.
        """
        meta = customjob["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        current = customjob.get("status") or {}
        if status.is_terminal(current):
            return
        job_name = manifests.job_name(name)
        existing = self.api.get_job(namespace, job_name)
        if existing is None and not current.get("jobName"):
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
            raise ForeignJob(
                f"Job {namespace}/{job_name} belongs to another CustomJob (uid "
                f"{_controller_uid(existing)}); waiting for it to be garbage-collected"
            )
        self.sync_status(namespace, name)

    # -- Status -----------------------------------------------------------

    def sync_status(self, namespace: str, name: str) -> None:
        """Re-derive and write the status; run terminal side effects once."""
        self._sync_with_retries(namespace, name, None)

    def _sync_with_retries(self, namespace: str, name: str, forced: status.Verdict | None) -> None:
        for _ in range(STATUS_WRITE_ATTEMPTS):
            customjob = self.api.get_customjob(namespace, name)
            if customjob is None:
                return
            try:
                self._sync_once(customjob, forced)
                return
            except Conflict:
                LOG.debug("status of %s/%s changed underneath us; re-reading", namespace, name)
        LOG.warning("gave up writing the status of %s/%s after %d conflicts", namespace, name, STATUS_WRITE_ATTEMPTS)

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
            pods = [
                p
                for p in self.api.list_pods(namespace, f"{contract.LABEL_CUSTOMJOB}={name}")
                if job_uid is None or _owned_by(p, job_uid)
            ]
        log_tail = None
        needing = status.pod_needing_log_tail(pods)
        if needing:
            log_tail = self.api.read_log_tail(namespace, needing, contract.CONTAINER_NAME, LOG_TAIL_LINES)
        return status.Observation(job=job, pods=pods, log_tail=log_tail, job_expected=bool(previous.get("jobName")))

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
        meta = customjob["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if verdict.phase == contract.PENDING:
            return  # "JobCreated" was already announced by ensure_job
        kind = "Warning" if verdict.phase == contract.FAILED else "Normal"
        self.emit(customjob, kind, verdict.reason, verdict.message[-1000:])
        if verdict.phase not in contract.TERMINAL_PHASES:
            return
        if verdict.preempts_job:
            # The Pod would retry the pull (or config) forever; stop it.
            self.api.delete_job(namespace, manifests.job_name(name))
        mlflow = (customjob.get("spec") or {}).get("mlflow") or {}
        if mlflow.get("runId") and mlflow.get("trackingUri"):
            outcome = self.finalize_run(
                mlflow["trackingUri"],
                mlflow["runId"],
                succeeded=verdict.phase == contract.SUCCEEDED,
                reason=verdict.reason,
                message=verdict.message,
                end_time_ms=int(self.clock().timestamp() * 1000),
            )
            if outcome.action == "closed":
                self.emit(
                    customjob,
                    kind,
                    "MLflowRunClosed",
                    f"MLflow run {mlflow['runId']} was {outcome.run_status}; marked it "
                    f"{'FINISHED' if verdict.phase == contract.SUCCEEDED else 'FAILED'}",
                )
            elif outcome.action == "error":
                self.emit(customjob, "Warning", "MLflowUnreachable", f"could not close run: {outcome.detail}")

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


def _controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
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
