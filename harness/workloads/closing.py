"""End the MLflow run from its workload's end, and keep the workload's logs with the run.

Most controllers know nothing of MLflow: a Job or a PyTorchJob ends and its
run would stay RUNNING. The submitter (the backend's ``wait()``, the harness's
run driver, a cancel or an interrupt) therefore closes the run from the
workload's terminal state, with the reason its pods give. Closing is
idempotent and first-writer-wins: a run the training code or an MLflow-aware
controller (the stub) already ended is left as it is, so the parties cannot
fight. Whoever closes it records that in :data:`CLOSED_BY_TAG`.

The pods' logs (every replica, every container, init containers and previous
attempts too) are attached to the run as ``logs/<pod>/<container>.txt``, on
success and on failure (mlflow#3097 asks for exactly this), so a finished run
carries its own evidence after the cluster is gone.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from harness.workloads import pods as pod_facts
from harness.workloads import state
from harness.workloads.api import WorkloadClient
from harness.workloads.redact import redact

__all__ = [
    "CLOSED_BY_TAG",
    "LOGS_ARTIFACT_DIR",
    "LOGS_TAG",
    "WORKLOAD_TAG",
    "RunStore",
    "artifact_files",
    "attach_logs",
    "close_run",
    "explain_failure",
    "workload_tag",
]

_log = logging.getLogger("mlflow.projects.customjob")

CLOSED_BY_TAG = "mlflow-crd-harness/closed-by"
"""MLflow tag naming who ended the run when the harness's side did (``submitter``)."""
LOGS_TAG = "mlflow-crd-harness/logs"
"""MLflow tag: how many log files were attached under :data:`LOGS_ARTIFACT_DIR`."""
WORKLOAD_TAG = "mlflow-crd-harness/workload"
"""MLflow tag: the one object the run belongs to (see :func:`workload_tag` for the format).

The submitter writes it *before* it creates the object, because an
MLflow-aware controller (the stub's) creates a Job for, and closes, only a run
whose tag names its object: a run without it, or naming another object, is
refused (``RunNotOwned``) and left as it is. The controller carries the same
key as ``TAG_WORKLOAD`` in its contract; a unit test keeps them equal.
"""
LOGS_ARTIFACT_DIR = "logs"
_MAX_TAG = 5000
"""MLflow tag values are limited (8000 chars in 3.x); keep the reason well below."""


class RunStore(Protocol):
    """The subset of ``mlflow.MlflowClient`` used here."""

    def get_run(self, run_id: str) -> Any: ...

    def set_terminated(self, run_id: str, status: str | None = None) -> None: ...

    def set_tag(self, run_id: str, key: str, value: Any) -> Any: ...

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None: ...

    def list_artifacts(self, run_id: str, path: str | None = None) -> Any: ...


def workload_tag(obj: Mapping[str, Any]) -> str:
    """``<Kind> <namespace>/<name>``, plus `` uid=<uid>`` once the API server gave the object one.

    Single spaces, and no part can contain one (a kind is a CamelCase word,
    namespace and name are DNS names, a uid a UUID), so it splits back
    unambiguously: ``CustomJob team-a/train-1 uid=6f1c...``. Written without
    the uid before the object exists, then again with it.
    """
    meta = obj.get("metadata") or {}
    tag = f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"
    return f"{tag} uid={meta['uid']}" if meta.get("uid") else tag


def close_run(runs: RunStore, run_id: str, end: str, reason: str | None = None, *, failure_tag: str,
              closed_by: str = "submitter") -> bool:
    """End the run as ``end`` (FINISHED/FAILED/KILLED) unless it already ended; True if this call ended it.

    The failure reason is tagged even if the run already ended FAILED (the
    trainer may have ended it without saying why), but never overwrites a
    reason someone else recorded.
    """
    if end not in state.TERMINAL:
        raise ValueError(f"not a terminal MLflow run state: {end!r}")
    run = runs.get_run(run_id)
    already = str(run.info.status) in state.TERMINAL
    if reason is not None and end in ("FAILED", "KILLED"):
        tags = getattr(run.data, "tags", {}) or {}
        if failure_tag not in tags:
            runs.set_tag(run_id, failure_tag, reason[:_MAX_TAG])
    if already:
        return False
    runs.set_tag(run_id, CLOSED_BY_TAG, closed_by)
    runs.set_terminated(run_id, end)
    return True


def explain_failure(client: WorkloadClient, obj: Mapping[str, Any] | None) -> str:
    """Why the workload failed: its status, then the first failed container and its last log lines."""
    kind = client.kind
    if obj is None:
        return f"{kind.kind} was deleted before it finished"
    name = obj["metadata"]["name"]
    parts = [f"{kind.kind} {client.namespace}/{name}: {state.failure_message(kind, obj)}"]
    try:
        found = client.pods(obj)
    except Exception as exc:  # the reason must never be lost to a failed read
        return f"{parts[0]} (pods unreadable: {type(exc).__name__}: {exc})"
    first = pod_facts.first_failure(found)
    if first is not None:
        parts.append(f"first failure: {first.describe()}")
        detail = first.message
        if not detail:
            pod = next(p for p in found if p.metadata.name == first.pod)
            try:
                detail = next((pod_facts.log_tail(text) for c, previous, text in client.logs(pod)
                               if c == first.container and previous == first.previous), "")
            except Exception as exc:  # a log read that fails must not cost the run its reason
                detail = f"(its log could not be read: {type(exc).__name__}: {exc})"
        if detail:  # into a run tag, readable by the run's readers: what looks like a secret is masked
            parts.append(f"its last output:\n{redact(detail)}")
    else:
        parts.extend(pod_facts.stuck(found))
    return "\n".join(parts)


def attach_logs(runs: RunStore, run_id: str, client: WorkloadClient, obj: Mapping[str, Any]) -> int:
    """Every log of the workload's pods under ``logs/<pod>/<container>[.previous].txt``; the count attached.

    Idempotent: a run that already carries them (:data:`LOGS_TAG`) is left alone.
    Never raises: missing logs must not turn a finished run into an error.
    """
    try:
        if LOGS_TAG in (getattr(runs.get_run(run_id).data, "tags", {}) or {}):
            return 0
        found = client.pods(obj)
        with tempfile.TemporaryDirectory(prefix="harness-logs-") as tmp:
            count = 0
            for pod in found:
                for container, previous, text in client.logs(pod):
                    target = Path(tmp) / str(pod.metadata.name) / f"{container}{'.previous' if previous else ''}.txt"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
                    count += 1
            if count:
                runs.log_artifacts(run_id, tmp, LOGS_ARTIFACT_DIR)
        runs.set_tag(run_id, LOGS_TAG, str(count))
        return count
    except Exception as exc:
        _log.warning("could not attach the pods' logs to run %s: %s: %s", run_id, type(exc).__name__, exc)
        return 0


def artifact_files(runs: RunStore, run_id: str, root: str = LOGS_ARTIFACT_DIR) -> list[str]:
    """Every artifact file under ``root`` of the run, recursively (``logs/<pod>/<container>.txt``)."""
    out: list[str] = []
    pending = [root]
    while pending:
        for item in runs.list_artifacts(run_id, pending.pop()):
            (pending if item.is_dir else out).append(item.path)
    return sorted(out)
