"""``CustomJobSubmittedRun``: follow a submitted workload and end its MLflow run.

Who ends the MLflow run:

* ``mlflow.projects.run(..., backend="customjob")`` is synchronous by default:
  MLflow calls :meth:`CustomJobSubmittedRun.wait`, which follows the object
  until its kind's status rules say it ended (or ``timeout-seconds`` pass),
  attaches its pods' logs to the run and ends the run unless someone did.
* ``mlflow run --backend customjob`` is asynchronous for plugins: MLflow never
  calls ``wait()``. For a kind whose controller closes runs (the stub's), the
  backend returns once the controller took the object
  (:meth:`CustomJobSubmittedRun.wait_admitted`, seconds) and the controller
  ends the run when the job ends. One the controller refuses before it runs
  (a policy, such as a tracking server it may not call) it cannot close, so
  the backend does, FAILED with the refusal, and ``mlflow run`` exits 1.
  For every other kind (a Job, a PyTorchJob: their controllers know nothing
  of MLflow) the backend calls ``wait()`` itself before returning, so no run is
  left RUNNING (backend config ``wait``).

Either way the first writer wins and the second sees a terminal run and does
nothing, so the parties cannot fight (:mod:`harness.workloads.closing`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from mlflow.projects.submitted_run import SubmittedRun

from harness._errors import WaitTimeout
from harness._waiting import Probe, wait_for
from harness.backend.errors import CustomJobBackendError
from harness.workloads import closing, state
from harness.workloads.api import WorkloadClient, pause_until_changed
from harness.workloads.kind import WorkloadKind

__all__ = ["CustomJobSubmittedRun", "JobStore", "mark_failed"]

# Under "mlflow." because MLflow configures only its own logger tree: this way
# `mlflow run` prints our "=== ... ===" progress lines like its own backends do.
_log = logging.getLogger("mlflow.projects.customjob")

CANCEL_TIMEOUT = 120.0
"""Seconds ``cancel()`` waits for the object to disappear after the delete."""
CONTROLLER_GRACE = 30.0
"""Seconds ``wait()`` leaves an MLflow-aware controller (the stub's) to close a failed run with its reason."""
ADMISSION_TIMEOUT = 60.0
"""Seconds :meth:`CustomJobSubmittedRun.wait_admitted` waits for a controller's first status (about one normally)."""


class JobStore(Protocol):
    """What the run needs from the API: see :class:`harness.backend.kube.Workloads`."""

    @property
    def namespace(self) -> str: ...

    def get(self, name: str) -> dict[str, Any] | None: ...

    def delete(self, name: str) -> bool: ...

    def wait_change(self, name: str, resource_version: str, timeout: float) -> bool: ...


def mark_failed(runs: closing.RunStore, run_id: str, reason: str, *, failure_tag: str, end: str = "FAILED") -> None:
    """Tag ``reason`` and end the run ``end`` (FAILED/KILLED); never raises (used on error paths)."""
    try:
        closing.close_run(runs, run_id, end, reason, failure_tag=failure_tag)
    except Exception:
        _log.exception("could not mark MLflow run %s %s (reason: %s)", run_id, end, reason)


class CustomJobSubmittedRun(SubmittedRun):
    """One workload object that carries one MLflow run; not thread-safe (as MLflow's contract)."""

    def __init__(
        self,
        *,
        run_id: str,
        job_name: str,
        jobs: JobStore,
        runs: closing.RunStore,
        kind: WorkloadKind,
        pods: WorkloadClient | None = None,
        timeout_seconds: float = 3600.0,
        poll_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self._run_id = run_id
        self.job_name = job_name
        self.kind = kind
        self._jobs = jobs
        self._runs = runs
        self._pods = pods
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
        return f"{self.kind.kind} {self.namespace}/{self.job_name}"

    def _current(self) -> tuple[str, dict[str, Any] | None]:
        obj = self._jobs.get(self.job_name)
        return state.run_state(self.kind, obj, cancelled=self._cancelled), obj

    def get_status(self) -> str:
        """The run's state as MLflow's string (``RUNNING``, ``FINISHED``...)."""
        return self._current()[0]

    def wait(self) -> bool:
        """Block until the object ended; attach its logs, end the MLflow run; True if it succeeded.

        Transient API errors are retried until the deadline. On timeout the
        object is deleted (so nothing keeps running for a run we report as
        FAILED) and :class:`~harness._errors.WaitTimeout` is recorded as the reason.
        """
        last: list[dict[str, Any] | None] = [None]

        def probe() -> Probe[tuple[str, dict[str, Any] | None]]:
            current, obj = self._current()
            last[0] = obj
            return Probe(state.is_terminal(current), state.describe(self.kind, obj), (current, obj))

        try:
            # Woken by a watch on the object (the controller's status write), not a poll later.
            ended = wait_for(probe, what=f"{self._where()} (MLflow run {self.run_id}) to finish",
                             timeout=self._timeout, interval=self._poll, transient=(CustomJobBackendError,),
                             hint=f"raise 'timeout-seconds' in the backend config, or check `kubectl describe "
                             f"{self.kind.kind.lower()}.{self.kind.group} -n {self.namespace} {self.job_name}`",
                             clock=self._clock, sleep=lambda seconds: self._pause(last[0], seconds))
        except WaitTimeout as exc:
            timeout = exc
        else:
            assert ended is not None
            return self._finish(*ended)
        _log.error("%s", timeout)
        try:
            self._jobs.delete(self.job_name)
        except Exception:
            _log.exception("could not delete %s after the wait timed out", self._where())
        mark_failed(self._runs, self.run_id, str(timeout), failure_tag=self.kind.failure_tag)
        return False

    def wait_admitted(self, timeout: float | None = None) -> bool:
        """Until the object's controller accepted or refused it; False if it failed, the run then closed FAILED.

        For a kind whose controller closes runs, ``mlflow run`` does not follow
        the job. But a controller that refuses the object before anything runs
        cannot always close the run: the stub's will not call a tracking
        server its policy does not allow (``TrackingUriNotAllowed``). So the
        submitter waits, bounded, for the first status: accepted (any
        non-failed status) returns True; failed closes the run FAILED with the
        object's reason at once (first writer wins, so a controller that
        closes it too cannot conflict) and returns False. Without a status
        after ``timeout`` s (default :data:`ADMISSION_TIMEOUT`) the run is left
        to the controller (a warning says so).
        """
        timeout = ADMISSION_TIMEOUT if timeout is None else timeout

        last: list[dict[str, Any] | None] = [None]

        def probe() -> Probe[tuple[str, dict[str, Any] | None]]:
            current, obj = self._current()
            last[0] = obj
            taken = current != "SCHEDULED" or bool((obj or {}).get("status"))
            return Probe(taken, state.describe(self.kind, obj), (current, obj))

        try:
            # Woken by a watch the moment the controller writes its first status (about 0.1 s), not a poll later.
            seen = wait_for(probe, what=f"the {self.kind.kind} controller to accept or refuse {self._where()}",
                            timeout=timeout, interval=min(self._poll, 1.0), transient=(CustomJobBackendError,),
                            clock=self._clock, sleep=lambda seconds: self._pause(last[0], seconds))
        except WaitTimeout as exc:
            _log.warning("%s; the controller closes run %s once it takes the object", exc, self.run_id)
            return True
        assert seen is not None
        current, obj = seen
        if current not in ("FAILED", "KILLED"):
            return True
        return self._finish(current, obj, controller_grace=False)

    def _pause(self, obj: dict[str, Any] | None, seconds: float) -> None:
        """Until the object changes (a watch) or ``seconds`` pass; a plain sleep if it cannot watch."""
        pause_until_changed(self._jobs.wait_change, self.job_name, obj, seconds, self._sleep)

    def _finish(self, end: str, obj: dict[str, Any] | None, *, controller_grace: bool = True) -> bool:
        if obj is not None and self._pods is not None:
            attached = closing.attach_logs(self._runs, self.run_id, self._pods, obj)
            if attached:
                _log.info("=== Attached %d log file(s) of %s to run %s (artifacts: logs/) ===",
                          attached, self._where(), self.run_id)
        if obj is None and not self._cancelled and self._run_status() == "FINISHED":
            # Gone after it succeeded (a TTL of 0, someone cleaning up): the run's own record stands.
            return True
        if end == "FINISHED":
            closing.close_run(self._runs, self.run_id, "FINISHED", failure_tag=self.kind.failure_tag)
            return True
        reason = f"{self._where()} failed"
        try:
            if obj is None:
                reason = (f"{self._where()} was deleted by cancel()" if self._cancelled
                          else f"{self._where()} was deleted before it finished")
            elif self._pods is not None:
                reason = closing.explain_failure(self._pods, obj)
            else:
                reason = f"{self._where()}: {state.failure_message(self.kind, obj)}"
            if self.kind.closes_run == "controller" and not self._cancelled and controller_grace:
                self._give_the_controller_its_turn()
        finally:  # whatever went wrong above, the run is not left open
            closing.close_run(self._runs, self.run_id, end, reason, failure_tag=self.kind.failure_tag)
        _log.error("=== %s ===", reason.splitlines()[0])
        return False

    def _run_status(self) -> str:
        try:
            return str(self._runs.get_run(self.run_id).info.status)
        except Exception:
            return "UNKNOWN"

    def _give_the_controller_its_turn(self) -> None:
        """An MLflow-aware controller closes a failed run with its own reason: wait for that, bounded."""
        def closed() -> Probe[None]:
            status = self._run_status()
            return Probe(status in state.TERMINAL, f"MLflow run {status}")

        with contextlib.suppress(WaitTimeout):  # the grace ran out: the submitter closes it
            wait_for(closed, what=f"the {self.kind.kind} controller to close run {self.run_id}",
                     timeout=CONTROLLER_GRACE, interval=min(self._poll, 1.0), clock=self._clock, sleep=self._sleep)

    def cancel(self) -> None:
        """Delete the object (background propagation), wait until it is gone, mark the run KILLED.

        The run is marked KILLED even when the delete or the wait fails (the error is raised after).
        """
        self._cancelled = True
        try:
            self._jobs.delete(self.job_name)

            def gone() -> Probe[None]:
                obj = self._jobs.get(self.job_name)
                return Probe(obj is None, "gone" if obj is None else state.describe(self.kind, obj))

            wait_for(gone, what=f"{self._where()} to be deleted", timeout=CANCEL_TIMEOUT,
                     interval=min(self._poll, 1.0), hint="a finalizer may be blocking deletion; check "
                     "metadata.finalizers", clock=self._clock, sleep=self._sleep)
        finally:
            mark_failed(self._runs, self.run_id, f"{self._where()} was cancelled", failure_tag=self.kind.failure_tag,
                        end="KILLED")
