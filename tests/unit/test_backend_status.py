"""The stub CustomJob's status -> MLflow run state (through the workload seam), and what wait()/cancel() do.

The API and the tracking store are replaced by small in-process fakes: what is
tested is the state machine (which status, which tag, when to stop), not I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from mlflow.entities import RunStatus

from harness import contract
from harness._errors import WaitTimeout
from harness.backend.errors import ClusterUnreachable
from harness.backend.submitted_run import CustomJobSubmittedRun
from harness.workloads import CUSTOMJOB, closing, state
from tests.unit.fakes import FakeClock


def cj(phase: str | None = None, **extra: Any) -> dict[str, Any]:
    st: dict[str, Any] = dict(extra)
    if phase is not None:
        st["phase"] = phase
    return {"metadata": {"name": "j"}, "status": st}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"metadata": {"name": "j"}}, RunStatus.SCHEDULED),
        (cj(), RunStatus.SCHEDULED),
        (cj("Pending"), RunStatus.SCHEDULED),
        (cj("Running"), RunStatus.RUNNING),
        (cj("Succeeded"), RunStatus.FINISHED),
        (cj("Failed"), RunStatus.FAILED),
        (cj("SomethingNew"), RunStatus.SCHEDULED),
        (cj(conditions=[{"type": "Complete", "status": "True"}]), RunStatus.FINISHED),
        (cj(conditions=[{"type": "Failed", "status": "True"}]), RunStatus.FAILED),
        (cj(conditions=[{"type": "Failed", "status": "False"}]), RunStatus.SCHEDULED),
        # a terminal rule decides before a running one (the stub writes its Failed condition and phase together)
        (cj("Running", conditions=[{"type": "Failed", "status": "True"}]), RunStatus.FAILED),
        (cj("Succeeded", conditions=[{"type": "Failed", "status": "True"}]), RunStatus.FINISHED),
    ],
)
def test_phase_mapping(obj: dict[str, Any], expected: int) -> None:
    assert state.run_state(CUSTOMJOB, obj) == RunStatus.to_string(expected)


def test_every_declared_phase_is_mapped_and_terminal_ones_are_terminal() -> None:
    for phase in contract.PHASES:
        mapped = state.run_state(CUSTOMJOB, cj(phase))
        assert state.is_terminal(mapped) is (phase in contract.TERMINAL_PHASES)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            cj("Failed", reason="BackoffLimitExceeded", message="pod exited 1"),
            "BackoffLimitExceeded: pod exited 1",
        ),
        (cj("Failed", message="OOMKilled"), "OOMKilled"),
        (
            cj(
                "Failed",
                conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}],
            ),
            "DeadlineExceeded: too slow",
        ),
        (cj("Failed"), "CustomJob failed without a status message"),
    ],
)
def test_failure_message(obj: dict[str, Any], message: str) -> None:
    assert state.failure_message(CUSTOMJOB, obj) == message


# --- fakes -----------------------------------------------------------------------------


@dataclass
class FakeJobs:
    """Serves a scripted sequence of CustomJob states; the last one repeats."""

    states: list[Any]
    namespace: str = "ns"
    deleted: list[str] = field(default_factory=list)
    reads: int = 0

    def get(self, name: str) -> dict[str, Any] | None:
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        if isinstance(state, Exception):
            raise state
        return cast(dict[str, Any] | None, state)

    def delete(self, name: str) -> bool:
        self.deleted.append(name)
        self.states = [None]
        self.reads = 0
        return True

    def wait_change(self, name: str, resource_version: str, timeout: float) -> bool:
        return False  # no watch: the run sleeps its (fake) interval


@dataclass
class _Info:
    status: str


@dataclass
class _Data:
    tags: dict[str, str]


@dataclass
class _Run:
    info: _Info
    data: _Data


@dataclass
class FakeRuns:
    run_status: str = "RUNNING"
    tags: dict[str, str] = field(default_factory=dict)
    terminated: list[str] = field(default_factory=list)

    def get_run(self, run_id: str) -> _Run:
        return _Run(_Info(self.run_status), _Data(dict(self.tags)))

    def set_terminated(self, run_id: str, status: str | None = None) -> None:
        assert status is not None
        self.terminated.append(status)
        self.run_status = status

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.tags[key] = str(value)



def submitted(jobs: FakeJobs, runs: FakeRuns, timeout: float = 60.0) -> tuple[CustomJobSubmittedRun, FakeClock]:
    clock = FakeClock()
    run = CustomJobSubmittedRun(
        run_id="r" * 32,
        job_name="j",
        jobs=jobs,
        runs=runs,
        kind=CUSTOMJOB,
        timeout_seconds=timeout,
        poll_seconds=5.0,
        clock=clock,
        sleep=clock.sleep,
    )
    return run, clock


def test_wait_success_marks_finished() -> None:
    jobs, runs = FakeJobs([cj(), cj("Running"), cj("Succeeded")]), FakeRuns()
    run, clock = submitted(jobs, runs)
    assert run.wait() is True
    assert runs.terminated == ["FINISHED"]
    assert contract.TAG_FAILURE_REASON not in runs.tags
    assert clock.now == 10.0


def test_wait_failure_marks_failed_with_reason() -> None:
    jobs = FakeJobs([cj("Running"), cj("Failed", reason="BackoffLimitExceeded", message="exit 1")])
    runs = FakeRuns()
    run, _ = submitted(jobs, runs)
    assert run.wait() is False
    assert runs.terminated == ["FAILED"]
    assert "BackoffLimitExceeded: exit 1" in runs.tags[contract.TAG_FAILURE_REASON]
    assert "ns/j" in runs.tags[contract.TAG_FAILURE_REASON]


def test_wait_does_not_overwrite_a_run_the_controller_already_ended() -> None:
    jobs, runs = FakeJobs([cj("Succeeded")]), FakeRuns(run_status="FINISHED")
    run, _ = submitted(jobs, runs)
    assert run.wait() is True
    assert runs.terminated == []


def test_wait_keeps_an_existing_failure_reason() -> None:
    jobs = FakeJobs([cj("Failed", message="from status")])
    runs = FakeRuns(run_status="FAILED", tags={contract.TAG_FAILURE_REASON: "from controller"})
    run, _ = submitted(jobs, runs)
    assert run.wait() is False
    assert runs.tags[contract.TAG_FAILURE_REASON] == "from controller"
    assert runs.terminated == []


def test_job_deleted_behind_our_back_is_a_failure() -> None:
    jobs, runs = FakeJobs([cj("Running"), None]), FakeRuns()
    run, _ = submitted(jobs, runs)
    assert run.wait() is False
    assert runs.terminated == ["FAILED"]
    assert "deleted before it finished" in runs.tags[contract.TAG_FAILURE_REASON]


def test_transient_api_errors_are_retried() -> None:
    jobs = FakeJobs([ClusterUnreachable("blip"), cj("Running"), cj("Succeeded")])
    runs = FakeRuns()
    run, _ = submitted(jobs, runs)
    assert run.wait() is True


def test_wait_timeout_deletes_the_job_and_fails_the_run_with_history() -> None:
    jobs, runs = FakeJobs([cj("Pending"), cj("Running")]), FakeRuns()
    run, clock = submitted(jobs, runs, timeout=30.0)
    assert run.wait() is False
    assert jobs.deleted == ["j"]
    assert runs.terminated == ["FAILED"]
    reason = runs.tags[contract.TAG_FAILURE_REASON]
    assert "timed out after 30 s" in reason
    assert "phase=Pending" in reason
    assert "phase=Running" in reason
    assert 30.0 <= clock.now <= 35.0


def test_get_status_returns_strings() -> None:
    for phase, expected in [
        ("Pending", "SCHEDULED"),
        ("Running", "RUNNING"),
        ("Succeeded", "FINISHED"),
        ("Failed", "FAILED"),
    ]:
        run, _ = submitted(FakeJobs([cj(phase)]), FakeRuns())
        assert run.get_status() == expected
    gone, _ = submitted(FakeJobs([None]), FakeRuns())
    assert gone.get_status() == "FAILED"


def test_cancel_deletes_waits_and_marks_killed() -> None:
    jobs, runs = FakeJobs([cj("Running")]), FakeRuns()
    run, _ = submitted(jobs, runs)
    run.cancel()
    assert jobs.deleted == ["j"]
    assert runs.terminated == ["KILLED"]
    assert run.get_status() == "KILLED"


def test_cancel_times_out_if_the_job_never_goes_away() -> None:
    class Stuck(FakeJobs):
        def delete(self, name: str) -> bool:
            self.deleted.append(name)
            return True

    jobs, runs = Stuck([cj("Running")]), FakeRuns()
    run, _ = submitted(jobs, runs)
    with pytest.raises(WaitTimeout, match="to be deleted"):
        run.cancel()
    assert runs.terminated == ["KILLED"], "a cancelled run is never left RUNNING, even when the delete hangs"


def test_a_failed_stub_job_gives_its_controller_time_to_close_the_run() -> None:
    """The stub's controller closes failed runs with its own reason; the submitter only falls back."""
    class ControllerCloses(FakeRuns):
        reads = 0

        def get_run(self, run_id: str) -> _Run:
            self.reads += 1
            if self.reads == 3:  # the controller ends it while wait() gives it its turn
                self.run_status, self.tags[contract.TAG_FAILURE_REASON] = "FAILED", "from the controller"
            return super().get_run(run_id)

    runs = ControllerCloses()
    run, clock = submitted(FakeJobs([cj("Failed", message="exit 1")]), runs)
    assert run.wait() is False
    assert runs.terminated == []
    assert runs.tags[contract.TAG_FAILURE_REASON] == "from the controller"
    assert clock.now < 30.0


def test_an_object_gone_after_its_run_finished_is_a_success() -> None:
    run, _ = submitted(FakeJobs([cj("Running"), None]), FakeRuns(run_status="FINISHED"))
    assert run.wait() is True


def test_close_run_reports_whether_it_ended_the_run() -> None:
    runs = FakeRuns()
    tag = contract.TAG_FAILURE_REASON
    assert closing.close_run(runs, "r", "FAILED", "why", failure_tag=tag) is True
    assert closing.close_run(runs, "r", "FINISHED", failure_tag=tag) is False
    assert runs.terminated == ["FAILED"]
    assert runs.tags[tag] == "why"
    assert runs.tags[closing.CLOSED_BY_TAG] == "submitter"
