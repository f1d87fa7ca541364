"""``CustomJobSubmittedRun``: follow a submitted CustomJob and end its MLflow run.

Who ends the MLflow run:

* ``mlflow.projects.run(..., backend="customjob")`` is synchronous by default:
  MLflow calls :meth:`CustomJobSubmittedRun.wait`, which watches the CustomJob
  until it is terminal (or ``timeout-seconds`` pass) and sets the run
  FINISHED/FAILED itself if nobody has yet.
* ``mlflow run --backend customjob`` is asynchronous for plugins: MLflow never
  calls ``wait()``. The controller, which watches the Job, marks the run
  terminal when the job ends (it has ``spec.mlflow.runId`` and
  ``spec.mlflow.trackingUri``), so no run is left RUNNING.

Either way the first writer wins and the second sees a terminal run and does
nothing, so the two paths cannot fight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from mlflow.entities import RunStatus
from mlflow.projects.submitted_run import SubmittedRun

from harness import contract
from harness._errors import WaitTimeout
from harness.backend import status as cj_status
from harness.backend.errors import CustomJobBackendError

__all__ = ["CustomJobSubmittedRun", "JobStore", "RunStore", "mark_failed", "mark_terminal"]

# Under "mlflow." because MLflow configures only its own logger tree: this way
# `mlflow run` prints our "=== ... ===" progress lines like its own backends do.
_log = logging.getLogger("mlflow.projects.customjob")

_MAX_TAG = 5000
"""MLflow tag values are limited (8000 chars in 3.x); keep the reason well below."""
CANCEL_TIMEOUT = 120.0
"""Seconds ``cancel()`` waits for the CustomJob to disappear after the delete."""


class JobStore(Protocol):
    """What the run needs from the API: see :class:`harness.backend.kube.CustomJobs`."""

    @property
    def namespace(self) -> str: ...

    def get(self, name: str) -> dict[str, Any] | None: ...

    def delete(self, name: str) -> bool: ...

    def wait_change(self, name: str, resource_version: str, timeout: float) -> bool: ...


class RunStore(Protocol):
    """The subset of ``mlflow.MlflowClient`` used here."""

    def get_run(self, run_id: str) -> Any: ...

    def set_terminated(self, run_id: str, status: str | None = None) -> None: ...

    def set_tag(self, run_id: str, key: str, value: Any) -> Any: ...


def mark_terminal(runs: RunStore, run_id: str, status: int, reason: str | None = None) -> bool:
    """End the run with ``status`` unless it already ended; True if this call ended it.

    The failure reason is tagged even if the run already ended FAILED (the
    trainer may have marked it without saying why), but never overwrites a
    reason someone else recorded.
    """
    run = runs.get_run(run_id)
    already = RunStatus.is_terminated(RunStatus.from_string(run.info.status))
    if reason is not None and status in (RunStatus.FAILED, RunStatus.KILLED):
        tags = getattr(run.data, "tags", {}) or {}
        if contract.TAG_FAILURE_REASON not in tags:
            runs.set_tag(run_id, contract.TAG_FAILURE_REASON, reason[:_MAX_TAG])
    if already:
        return False
    runs.set_terminated(run_id, RunStatus.to_string(status))
    return True


def mark_failed(runs: RunStore, run_id: str, reason: str) -> None:
    """Tag ``reason`` and set the run FAILED; never raises (used on error paths)."""
    try:
        mark_terminal(runs, run_id, RunStatus.FAILED, reason)
    except Exception:
        _log.exception("could not mark MLflow run %s FAILED (reason: %s)", run_id, reason)


class CustomJobSubmittedRun(SubmittedRun):
    """A CustomJob that carries one MLflow run; not thread-safe (as MLflow's contract)."""

    def __init__(
        self,
        *,
        run_id: str,
        job_name: str,
        jobs: JobStore,
        runs: RunStore,
        timeout_seconds: float = 3600.0,
        poll_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self._run_id = run_id
        self.job_name = job_name
        self._jobs = jobs
        self._runs = runs
        self._timeout = timeout_seconds
        self._poll = poll_seconds
        self._clock = clock
        self._sleep = sleep
        self._cancelled = False

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def namespace(self) -> str:
        return self._jobs.namespace

    def _where(self) -> str:
        return f"CustomJob {self.namespace}/{self.job_name}"

    def _current(self) -> tuple[int, dict[str, Any] | None]:
        obj = self._jobs.get(self.job_name)
        if obj is None:
            return (RunStatus.KILLED if self._cancelled else RunStatus.FAILED), None
        return cj_status.run_status(obj), obj

    def get_status(self) -> str:
        """The run's state as MLflow's string (``RUNNING``, ``FINISHED``...)."""
        return RunStatus.to_string(self._current()[0])

    def wait(self) -> bool:
        """Block until the CustomJob is terminal; end the MLflow run; True if it succeeded.

        Transient API errors are retried until the deadline. On timeout the
        CustomJob is deleted (so nothing keeps running for a run we report as
        FAILED) and :class:`~harness._errors.WaitTimeout` is recorded as the reason.
        """
        deadline = self._clock() + self._timeout
        history: list[str] = []
        while True:
            try:
                state, obj = self._current()
            except CustomJobBackendError as exc:
                state, obj = RunStatus.SCHEDULED, None
                _record(history, f"API error: {exc}")
            else:
                _record(history, cj_status.describe(obj) if obj else "<deleted>")
            if RunStatus.is_terminated(state):
                return self._finish(state, obj)
            if self._clock() >= deadline:
                break
            self._pause(obj, min(self._poll, max(deadline - self._clock(), 0.0)))
        timeout = WaitTimeout(
            f"{self._where()} (MLflow run {self.run_id}) to finish",
            self._timeout,
            history,
            hint="raise 'timeout-seconds' in the backend config, or check "
            f"`kubectl describe {contract.SINGULAR} -n {self.namespace} {self.job_name}`",
        )
        _log.error("%s", timeout)
        try:
            self._jobs.delete(self.job_name)
        except Exception:
            _log.exception("could not delete %s after the wait timed out", self._where())
        mark_failed(self._runs, self.run_id, str(timeout))
        return False

    def _pause(self, obj: dict[str, Any] | None, seconds: float) -> None:
        """Until the CustomJob changes (a watch) or ``seconds`` pass; a plain sleep if it cannot watch."""
        version = ((obj or {}).get("metadata") or {}).get("resourceVersion")
        if version is None or not self._jobs.wait_change(self.job_name, str(version), seconds):
            self._sleep(seconds)

    def _finish(self, state: int, obj: dict[str, Any] | None) -> bool:
        if state == RunStatus.FINISHED:
            mark_terminal(self._runs, self.run_id, RunStatus.FINISHED)
            return True
        if obj is None:
            reason = (
                f"{self._where()} was deleted by cancel()"
                if self._cancelled
                else f"{self._where()} was deleted before it finished"
            )
        else:
            reason = f"{self._where()}: {cj_status.failure_message(obj)}"
        mark_terminal(self._runs, self.run_id, state, reason)
        return False

    def cancel(self) -> None:
        """Delete the CustomJob (background propagation), wait until it is gone, mark KILLED."""
        self._cancelled = True
        self._jobs.delete(self.job_name)
        deadline = self._clock() + CANCEL_TIMEOUT
        history: list[str] = []
        while True:
            obj = self._jobs.get(self.job_name)
            if obj is None:
                break
            _record(history, cj_status.describe(obj))
            if self._clock() >= deadline:
                raise WaitTimeout(
                    f"{self._where()} to be deleted",
                    CANCEL_TIMEOUT,
                    history,
                    hint="a finalizer may be blocking deletion; check metadata.finalizers",
                )
            self._sleep(min(self._poll, 1.0))
        mark_terminal(self._runs, self.run_id, RunStatus.KILLED, f"{self._where()} was cancelled")


def _record(history: list[str], line: str) -> None:
    """Append ``line`` unless it repeats the previous one (keeps timeout reports short)."""
    if not history or history[-1] != line:
        history.append(line)
