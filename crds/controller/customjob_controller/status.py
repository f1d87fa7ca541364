"""Job + Pods -> CustomJob status. Pure: the clock and the log tail are inputs.

The point of this module is to say *why* a job is where it is, as early as
the cluster knows it, instead of echoing the Job's coarse conditions:

* Pod waiting reasons that never heal on their own (image name invalid,
  ``imagePullPolicy: Never`` with a missing image, bad container config such
  as a missing Secret or a root image under ``runAsNonRoot``) fail the
  CustomJob at the first Pod status update, with the kubelet's own message.
  Pull errors (``ErrImagePull``/``ImagePullBackOff``) may heal -- a registry
  restarting, an image pushed a moment late -- so they fail only once they
  outlast the pull grace. A Job refused its Pod (``FailedCreate``: a
  ResourceQuota, a LimitRange, an admission webhook) fails once the refusal
  outlasts the create grace, with the refusal's message. The Job would
  otherwise sit Pending forever (or until ``activeDeadlineSeconds``). Such
  verdicts are marked ``preempts_job`` so the caller deletes the stuck Job.
* A Job deleted before it finished (by hand, or its namespace going) is a
  failure of its own (``JobDeleted``), decided while the controller's
  finaliser still holds the Job.
* A failed Pod is explained by its container's termination: ``OOMKilled``,
  or a non-zero exit code plus the last log lines (the kubelet's termination
  message from ``FallbackToLogsOnError``, or a tail the caller fetched).
* Job-level reasons (``DeadlineExceeded``, ``BackoffLimitExceeded``) are used
  when no Pod explains more, and ``FailureTarget`` counts as failed so we do
  not wait for the Job controller to finish terminating Pods.

Status is monotonic: once ``Succeeded`` or ``Failed`` it is never rewritten.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from customjob_controller import contract
from customjob_controller.redact import redact

PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})
"""Container waiting reasons that fail the job only after the pull grace."""
FATAL_WAITING_REASONS = frozenset(
    {
        *PULL_REASONS,
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
    }
)
"""Container waiting reasons treated as final (pull errors after the grace; see the module docstring)."""
FAILED_CREATE = "FailedCreate"
"""The Job controller's Event reason when the API server refuses it a Pod."""
RECHECK_REASONS = frozenset({"JobCreated", FAILED_CREATE, *PULL_REASONS})
"""Pending reasons that can end by the clock alone (no further watch event): the caller re-checks them."""
PREEMPTING_REASONS = FATAL_WAITING_REASONS | {FAILED_CREATE}
"""Failure reasons decided before the Job's own conditions: the stuck Job is deleted."""

MAX_MESSAGE = 4000
"""Status messages are cut to this many characters (kept from the end for logs)."""

_REASON_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Where a CustomJob is and why."""

    phase: str
    reason: str
    message: str
    preempts_job: bool = False
    """True when the controller decided failure before the Job did (delete it)."""


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the controller saw of the cluster for one CustomJob."""

    job: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]] = ()
    log_tail: str | None = None
    """Last log lines of :func:`pod_needing_log_tail`'s pod, if it was fetched."""
    job_expected: bool = False
    """The Job was created earlier (``status.jobName`` is set), so absence means deletion."""
    job_events: Sequence[Mapping[str, Any]] = ()
    """Warning Events of the Job (read when it has no Pod): why the Job controller was refused one."""
    now: datetime | None = None
    """The observation's time; with the graces below it decides when a healing error becomes final."""
    image_pull_grace: float = 0.0
    pod_create_grace: float = 0.0


def is_terminal(status: Mapping[str, Any] | None) -> bool:
    """True once the CustomJob reached Succeeded or Failed."""
    return bool(status) and (status or {}).get("phase") in contract.TERMINAL_PHASES


def _trainer(statuses: Sequence[Mapping[str, Any]] | None) -> Mapping[str, Any] | None:
    for cs in statuses or ():
        if cs.get("name") == contract.CONTAINER_NAME:
            return cs
    return statuses[0] if statuses else None


def _newest_first(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    def key(pod: Mapping[str, Any]) -> tuple[str, str]:
        meta = pod.get("metadata") or {}
        return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))

    return sorted(pods, key=key, reverse=True)


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name") or "?")


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    cs = _trainer((pod.get("status") or {}).get("containerStatuses"))
    if not cs:
        return None
    state = cs.get("state") or {}
    last = cs.get("lastState") or {}
    return state.get("terminated") or last.get("terminated")


def _failed_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out = []
    for pod in _newest_first(pods):
        term = _terminated(pod)
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Failed" or (term is not None and term.get("exitCode", 0) != 0):
            out.append(pod)
    return out


def pod_needing_log_tail(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Name of the newest failed Pod whose status carries no log lines, if any.

    The caller fetches that Pod's log tail and passes it in :class:`Observation`.
    """
    failed = _failed_pods(pods)
    if not failed:
        return None
    term = _terminated(failed[0])
    if term is not None and (term.get("message") or "").strip():
        return None
    if term is None:
        return None
    return _pod_name(failed[0])


def _tail(text: str, limit: int = MAX_MESSAGE) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def _memory_limit(pod: Mapping[str, Any]) -> str | None:
    for c in (pod.get("spec") or {}).get("containers") or ():
        if c.get("name") == contract.CONTAINER_NAME:
            return ((c.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def explain_failed_pod(pod: Mapping[str, Any], log_tail: str | None = None) -> Verdict:
    """Why did this Pod fail? (Phase is always Failed; the caller decides finality.)"""
    name = _pod_name(pod)
    pstatus = pod.get("status") or {}
    term = _terminated(pod)
    if term is None:
        reason = pstatus.get("reason") or "PodFailed"
        message = pstatus.get("message") or f"pod {name} failed without a container status"
        return Verdict(contract.FAILED, _safe_reason(reason, "PodFailed"), f"pod {name}: {message}")
    code = term.get("exitCode")
    # The last lines go to status, Events and the run's tag, readable by more people than the pod's log:
    # what looks like a secret is masked on the way.
    lines = redact((term.get("message") or "").strip() or (log_tail or "").strip())
    if term.get("reason") == "OOMKilled":
        limit = _memory_limit(pod)
        message = f"container {contract.CONTAINER_NAME} in pod {name} was OOM-killed (exit code {code})"
        if limit:
            message += f"; memory limit {limit}"
        if lines:
            message += f"; last log lines:\n{lines}"
        return Verdict(contract.FAILED, "OOMKilled", message)
    if term.get("reason") in ("StartError", "ContainerCannotRun"):
        detail = term.get("message") or "the container could not be started"
        return Verdict(
            contract.FAILED,
            "StartError",
            f"container {contract.CONTAINER_NAME} in pod {name} could not start: {detail}",
        )
    message = f"container {contract.CONTAINER_NAME} in pod {name} exited with code {code}"
    if lines:
        message += f"; last log lines:\n{lines}"
    return Verdict(contract.FAILED, "NonZeroExitCode", message)


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _age(obj: Mapping[str, Any], now: datetime | None) -> float | None:
    """Seconds since ``obj`` was created, or None when unknown."""
    born = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if born is None or now is None:
        return None
    return (now - born).total_seconds()


def _outlasted(obj: Mapping[str, Any], now: datetime | None, grace: float) -> tuple[bool, float]:
    """(grace used up, seconds left). Unknown age counts as used up: never wait on a guess."""
    if grace <= 0:
        return True, 0.0
    age = _age(obj, now)
    if age is None:
        return True, 0.0
    return age >= grace, max(0.0, grace - age)


def _refusal(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest FailedCreate Warning of a Job, if any."""
    refusals = [e for e in events if e.get("reason") == FAILED_CREATE]
    if not refusals:
        return None

    def key(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or "")

    return sorted(refusals, key=key)[-1]


def _safe_reason(reason: str, fallback: str) -> str:
    return reason if _REASON_RE.match(reason) else fallback


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conds = (job.get("status") or {}).get("conditions") or ()
    return {c.get("type", ""): c for c in conds if c.get("status") == "True"}


def _waiting(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    pstatus = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in pstatus.get(key) or ():
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                return {**waiting, "container": cs.get("name")}
    return None


def _unschedulable(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return dict(cond)
    return None


def classify(obs: Observation) -> Verdict:
    """Decide phase/reason/message from one observation (no history needed)."""
    job = obs.job
    if job is None:
        if obs.job_expected:
            return Verdict(
                contract.FAILED,
                "JobNotFound",
                "the Job was deleted before its outcome was recorded "
                "(deleted by hand, or collected by its TTL while the controller was down)",
            )
        return Verdict(contract.PENDING, "JobNotCreated", "waiting for the Job to be created")

    pods = _newest_first(obs.pods)
    true = _true_conditions(job)
    done = true.get("Complete") or true.get("SuccessCriteriaMet")
    if done is not None:
        return Verdict(contract.SUCCEEDED, "Completed", done.get("message") or "the training container exited 0")
    if (job.get("metadata") or {}).get("deletionTimestamp") and not (true.get("Failed") or true.get("FailureTarget")):
        return Verdict(
            contract.FAILED,
            "JobDeleted",
            f"the Job {_pod_name(job)} was deleted before it finished (by hand, or with its namespace)",
        )

    failed = true.get("Failed") or true.get("FailureTarget")
    failed_pods = _failed_pods(pods)
    if failed is not None:
        job_reason = _safe_reason(failed.get("reason") or "Failed", "Failed")
        job_message = failed.get("message") or "the Job failed"
        if job_reason == "DeadlineExceeded" or not failed_pods:
            return Verdict(contract.FAILED, job_reason, job_message)
        pod_verdict = explain_failed_pod(failed_pods[0], obs.log_tail)
        return dataclasses.replace(pod_verdict, message=f"{pod_verdict.message}\n({job_reason}: {job_message})")

    for pod in pods:
        waiting = _waiting(pod)
        if waiting and waiting["reason"] in FATAL_WAITING_REASONS:
            detail = (f"container {waiting.get('container')} in pod {_pod_name(pod)}: "
                      f"{waiting.get('message') or waiting['reason']}")
            if waiting["reason"] in PULL_REASONS:
                final, left = _outlasted(pod, obs.now, obs.image_pull_grace)
                if not final:
                    return Verdict(contract.PENDING, waiting["reason"],
                                   f"{detail} (the kubelet retries; the job fails if this lasts {left:.0f} s more)")
                if obs.image_pull_grace > 0:
                    detail += f" (for longer than the {obs.image_pull_grace:g} s pull grace)"
            return Verdict(contract.FAILED, waiting["reason"], detail, preempts_job=True)

    if not pods:
        refusal = _refusal(obs.job_events)
        if refusal is not None:
            final, left = _outlasted(job, obs.now, obs.pod_create_grace)
            detail = f"the Job controller could not create a pod: {refusal.get('message') or FAILED_CREATE}"
            if not final:
                return Verdict(contract.PENDING, FAILED_CREATE,
                               f"{detail} (it retries; the job fails if this lasts {left:.0f} s more)")
            return Verdict(contract.FAILED, FAILED_CREATE, detail, preempts_job=True)

    backoff_limit = int((job.get("spec") or {}).get("backoffLimit", contract.DEFAULT_BACKOFF_LIMIT))
    if failed_pods and len(failed_pods) > backoff_limit:
        # Retries are used up; the Job's own Failed condition is only seconds away.
        return explain_failed_pod(failed_pods[0], obs.log_tail)

    retry_note = ""
    if failed_pods:
        prior = explain_failed_pod(failed_pods[0], obs.log_tail)
        retry_note = f" (attempt {len(failed_pods)} of {backoff_limit + 1} failed: {prior.reason})"

    for pod in pods:
        if (pod.get("status") or {}).get("phase") == "Running":
            return Verdict(contract.RUNNING, "PodRunning", f"pod {_pod_name(pod)} is running{retry_note}")

    for pod in pods:
        # Its pod exited 0 a moment before the Job says Complete (the Job controller first removes the pod's
        # tracking finalizer): still Running, not back to Pending.
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            return Verdict(contract.RUNNING, "PodSucceeded",
                           f"pod {_pod_name(pod)} exited 0; waiting for Job {_pod_name(job)} to complete{retry_note}")

    for pod in pods:
        if (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            continue
        waiting = _waiting(pod)
        if waiting:
            return Verdict(
                contract.PENDING,
                _safe_reason(waiting["reason"], "PodPending"),
                f"pod {_pod_name(pod)}: {waiting.get('message') or waiting['reason']}{retry_note}",
            )
        unsched = _unschedulable(pod)
        if unsched:
            return Verdict(
                contract.PENDING,
                _safe_reason(unsched.get("reason") or "Unschedulable", "Unschedulable"),
                f"pod {_pod_name(pod)}: {unsched.get('message') or 'not scheduled yet'}{retry_note}",
            )
        return Verdict(contract.PENDING, "PodPending", f"pod {_pod_name(pod)} is pending{retry_note}")

    return Verdict(contract.PENDING, "JobCreated", f"job {_pod_name(job)} created, waiting for its pod{retry_note}")


def _condition(
    ctype: str,
    is_true: bool,
    verdict: Verdict,
    previous: Mapping[str, Mapping[str, Any]],
    generation: int | None,
    now: str,
) -> dict[str, Any]:
    status = "True" if is_true else "False"
    old = previous.get(ctype)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    cond: dict[str, Any] = {
        "type": ctype,
        "status": status,
        "reason": verdict.reason,
        "message": verdict.message,
        "lastTransitionTime": since or now,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def rfc3339(moment: datetime) -> str:
    """Kubernetes' timestamp format (UTC, second precision, trailing Z)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


MANAGED_CONDITIONS = ("JobCreated", "Running", "Complete", "Failed")


def build_status(
    verdict: Verdict,
    *,
    job: Mapping[str, Any] | None,
    previous: Mapping[str, Any] | None,
    generation: int | None,
    run_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Turn a verdict into the full status object, keeping transition times.

    Conditions this module does not manage (e.g. ``SpecUpdateIgnored``) are
    carried over unchanged.
    """
    previous = previous or {}
    stamp = rfc3339(now)
    message = _tail(verdict.message)
    shown = dataclasses.replace(verdict, message=message)
    old_conditions = {c.get("type", ""): c for c in previous.get("conditions") or ()}
    conditions = [
        _condition(
            "JobCreated",
            job is not None or verdict.reason == "JobNotFound",
            shown,
            old_conditions,
            generation,
            stamp,
        ),
        _condition("Running", verdict.phase == contract.RUNNING, shown, old_conditions, generation, stamp),
        _condition("Complete", verdict.phase == contract.SUCCEEDED, shown, old_conditions, generation, stamp),
        _condition("Failed", verdict.phase == contract.FAILED, shown, old_conditions, generation, stamp),
    ]
    conditions += [dict(c) for t, c in old_conditions.items() if t not in MANAGED_CONDITIONS]

    status: dict[str, Any] = {
        "phase": verdict.phase,
        "reason": verdict.reason,
        "message": message,
        "conditions": conditions,
    }
    if job is not None:
        status["jobName"] = (job.get("metadata") or {}).get("name")
    elif previous.get("jobName"):
        status["jobName"] = previous["jobName"]
    if run_id:
        status["mlflowRunId"] = run_id
    if generation is not None:
        status["observedGeneration"] = generation
    job_status = (job or {}).get("status") or {}
    start = previous.get("startTime") or job_status.get("startTime")
    if start:
        status["startTime"] = start
    if verdict.phase in contract.TERMINAL_PHASES:
        status["completionTime"] = previous.get("completionTime") or job_status.get("completionTime") or stamp
    return status


def derive(
    obs: Observation,
    *,
    previous: Mapping[str, Any] | None,
    generation: int | None,
    run_id: str | None,
    now: datetime,
) -> tuple[dict[str, Any], Verdict | None]:
    """New status plus the verdict behind it; ``(previous, None)`` once terminal."""
    if is_terminal(previous):
        return dict(previous or {}), None
    verdict = classify(obs)
    return build_status(verdict, job=obs.job, previous=previous, generation=generation, run_id=run_id, now=now), verdict
