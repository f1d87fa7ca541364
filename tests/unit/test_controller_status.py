"""Job + Pods -> CustomJob status: every surfaced failure reason, and invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from customjob_controller import contract, status
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import crd_validation as crdv

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RUN_ID = "0123456789abcdef0123456789abcdef"


def job(*conditions: tuple[str, str, str], backoff_limit: int = 0, **status_fields: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "train-1", "uid": "job-uid"},
        "spec": {"backoffLimit": backoff_limit},
        "status": {
            "conditions": [{"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conditions],
            **status_fields,
        },
    }


def pod(
    name: str = "train-1-abcde",
    phase: str = "Pending",
    created: str = "2026-01-02T03:04:05Z",
    *,
    state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    memory_limit: str | None = None,
    **status_fields: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "trainer"}
    if memory_limit:
        container["resources"] = {"limits": {"memory": memory_limit}}
    pstatus: dict[str, Any] = {"phase": phase, **status_fields}
    if state is not None:
        pstatus["containerStatuses"] = [{"name": "trainer", "state": state}]
    if conditions is not None:
        pstatus["conditions"] = conditions
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"containers": [container]},
        "status": pstatus,
    }


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def terminated(code: int, reason: str = "Error", message: str = "") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "message": message}}


def classify(j: dict[str, Any] | None, *pods: dict[str, Any], **kw: Any) -> status.Verdict:
    return status.classify(status.Observation(job=j, pods=pods, **kw))


# --- fast, final failures from Pod waiting reasons ------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
    ],
)
def test_unrecoverable_waiting_reasons_fail_at_once_with_kubelet_message(reason: str) -> None:
    kubelet = f'Back-off pulling image "trainer:nope": {reason}'
    verdict = classify(job(), pod(state=waiting(reason, kubelet)))
    assert verdict.phase == contract.FAILED
    assert verdict.reason == reason
    assert kubelet in verdict.message
    assert "train-1-abcde" in verdict.message
    assert verdict.preempts_job  # the caller deletes the Job, which would wait forever


def test_a_pod_that_exited_0_before_its_job_says_complete_keeps_the_job_running() -> None:
    """Seen on the real API (a status write refused, then re-derived in that window): it went back to Pending."""
    verdict = classify(job(), pod(phase="Succeeded", state=terminated(0, "Completed")))
    assert (verdict.phase, verdict.reason) == (contract.RUNNING, "PodSucceeded")
    assert "waiting for Job" in verdict.message
    assert classify(job(("Complete", "True", "")), pod(phase="Succeeded")).phase == contract.SUCCEEDED


@pytest.mark.parametrize("reason", sorted(status.PULL_REASONS))
def test_a_pull_error_fails_only_once_it_outlasts_the_grace(reason: str) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    p = pod(state=waiting(reason, "dial tcp: connection refused"))
    early = classify(job(), p, now=created + timedelta(seconds=20), image_pull_grace=60)
    assert (early.phase, early.reason, early.preempts_job) == (contract.PENDING, reason, False)
    assert "40 s more" in early.message
    late = classify(job(), p, now=created + timedelta(seconds=61), image_pull_grace=60)
    assert (late.phase, late.reason, late.preempts_job) == (contract.FAILED, reason, True)
    assert "60 s pull grace" in late.message
    never = classify(job(), pod(state=waiting("ErrImageNeverPull")), now=created, image_pull_grace=60)
    assert never.phase == contract.FAILED, "a missing image under pullPolicy Never cannot heal: no grace"


def test_a_deleted_unfinished_job_is_a_failure_of_its_own() -> None:
    j = job()
    j["metadata"]["deletionTimestamp"] = "2026-01-02T03:05:00Z"
    assert classify(j, pod(phase="Running", state={"running": {}})).reason == "JobDeleted"
    j["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert classify(j).phase == contract.SUCCEEDED, "a TTL-collected Job that completed still succeeded"


def test_transient_waiting_reasons_stay_pending_with_detail() -> None:
    verdict = classify(job(), pod(state=waiting("ContainerCreating")))
    assert (verdict.phase, verdict.reason) == (contract.PENDING, "ContainerCreating")


def test_unschedulable_pod_is_pending_with_scheduler_message() -> None:
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes: Insufficient memory",
    }
    verdict = classify(job(), pod(conditions=[cond]))
    assert (verdict.phase, verdict.reason) == (contract.PENDING, "Unschedulable")
    assert "Insufficient memory" in verdict.message


# --- failures explained by the container ------------------------------------------------


def test_oom_killed_names_the_memory_limit() -> None:
    failed = pod(phase="Failed", state=terminated(137, "OOMKilled"), memory_limit="64Mi")
    verdict = classify(job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")), failed)
    assert (verdict.phase, verdict.reason) == (contract.FAILED, "OOMKilled")
    assert "64Mi" in verdict.message
    assert "BackoffLimitExceeded" in verdict.message


def test_non_zero_exit_carries_the_termination_message_log_lines() -> None:
    failed = pod(phase="Failed", state=terminated(3, message="Traceback...\nValueError: alpha must be > 0"))
    verdict = classify(job(), failed)  # before the Job's own Failed condition
    assert (verdict.phase, verdict.reason) == (contract.FAILED, "NonZeroExitCode")
    assert "exited with code 3" in verdict.message
    assert "alpha must be > 0" in verdict.message
    assert not verdict.preempts_job


def test_a_printed_secret_never_reaches_the_status_message() -> None:
    """status.message feeds Events and the run's failure tag: readable by more people than the pod's log."""
    failed = pod(phase="Failed", state=terminated(1, message="connecting with password=hunter2\nboom"))
    verdict = classify(job(), failed)
    assert "hunter2" not in verdict.message
    assert "password=***" in verdict.message
    assert "boom" in verdict.message


def test_log_tail_is_requested_only_when_the_status_has_no_lines() -> None:
    silent = pod(phase="Failed", state=terminated(1))
    assert status.pod_needing_log_tail([silent]) == "train-1-abcde"
    talkative = pod(phase="Failed", state=terminated(1, message="boom"))
    assert status.pod_needing_log_tail([talkative]) is None
    assert status.pod_needing_log_tail([pod(phase="Running", state={"running": {}})]) is None
    verdict = classify(job(), silent, log_tail="line 1\nKeyError: 'x'\n")
    assert "KeyError: 'x'" in verdict.message


def test_start_error_is_reported_as_such() -> None:
    failed = pod(phase="Failed", state=terminated(128, "StartError", 'exec: "trian.py": executable file not found'))
    verdict = classify(job(), failed)
    assert verdict.reason == "StartError"
    assert "executable file not found" in verdict.message


def test_deadline_exceeded_comes_from_the_job() -> None:
    verdict = classify(
        job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")),
        pod(phase="Failed", state=terminated(143)),
    )
    assert (verdict.phase, verdict.reason) == (contract.FAILED, "DeadlineExceeded")
    assert "longer than specified deadline" in verdict.message


def test_backoff_limit_exceeded_without_pods_uses_the_job_reason() -> None:
    verdict = classify(job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")))
    assert (verdict.phase, verdict.reason) == (contract.FAILED, "BackoffLimitExceeded")


def test_failure_target_counts_as_failed() -> None:
    verdict = classify(
        job(("FailureTarget", "BackoffLimitExceeded", "limit")), pod(phase="Failed", state=terminated(2))
    )
    assert verdict.phase == contract.FAILED
    assert verdict.reason == "NonZeroExitCode"


def test_failed_attempt_with_retries_left_is_not_final() -> None:
    first = pod("train-1-aaaaa", "Failed", "2026-01-02T03:04:05Z", state=terminated(1, message="flaky"))
    second = pod("train-1-bbbbb", "Running", "2026-01-02T03:05:05Z", state={"running": {}})
    verdict = classify(job(backoff_limit=2), first, second)
    assert verdict.phase == contract.RUNNING
    assert "attempt 1 of 3 failed: NonZeroExitCode" in verdict.message


def test_evicted_pod_without_container_status() -> None:
    evicted = pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory.")
    verdict = classify(job(), evicted)
    assert (verdict.phase, verdict.reason) == (contract.FAILED, "Evicted")


# --- the happy path --------------------------------------------------------------------------


def test_pending_running_succeeded_sequence_keeps_transition_times() -> None:
    prev: dict[str, Any] | None = None
    seen = []
    steps = [
        (None, ()),
        (job(), ()),
        (job(), (pod(state=waiting("ContainerCreating")),)),
        (job(startTime="2026-01-02T03:04:06Z"), (pod(phase="Running", state={"running": {}}),)),
        (
            job(
                ("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
                startTime="2026-01-02T03:04:06Z",
                completionTime="2026-01-02T03:09:00Z",
            ),
            (pod(phase="Succeeded", state=terminated(0, "Completed")),),
        ),
    ]
    for i, (j, pods) in enumerate(steps):
        new, verdict = status.derive(
            status.Observation(job=j, pods=pods),
            previous=prev,
            generation=1,
            run_id=RUN_ID,
            now=T0 + timedelta(minutes=i),
        )
        assert verdict is not None
        seen.append(new["phase"])
        assert crdv.schema_errors({**crdv.customjob({"image": "t:1", "command": ["x"]}), "status": new}) == []
        prev = new
    assert seen == ["Pending", "Pending", "Pending", "Running", "Succeeded"]
    assert prev is not None
    assert prev["startTime"] == "2026-01-02T03:04:06Z"
    assert prev["completionTime"] == "2026-01-02T03:09:00Z"
    assert prev["mlflowRunId"] == RUN_ID
    assert prev["jobName"] == "train-1"
    conds = {c["type"]: c for c in prev["conditions"]}
    assert conds["Complete"]["status"] == "True"
    assert conds["Complete"]["lastTransitionTime"] == "2026-01-02T03:08:05Z"
    assert conds["JobCreated"]["lastTransitionTime"] == "2026-01-02T03:05:05Z"  # unchanged since step 1
    assert conds["Running"]["status"] == "False"


def test_terminal_status_is_never_rewritten() -> None:
    done = {"phase": "Failed", "reason": "OOMKilled", "message": "x", "conditions": []}
    new, verdict = status.derive(
        status.Observation(job=job(("Complete", "", ""))), previous=done, generation=1, run_id=None, now=T0
    )
    assert verdict is None
    assert new == done


def test_job_that_vanished_after_creation_is_a_failure_not_a_new_run() -> None:
    verdict = classify(None, job_expected=True)
    assert (verdict.phase, verdict.reason) == (contract.FAILED, "JobNotFound")
    assert classify(None).phase == contract.PENDING


def test_foreign_conditions_are_preserved() -> None:
    prev = {
        "conditions": [
            {
                "type": "SpecUpdateIgnored",
                "status": "True",
                "reason": "SpecImmutable",
                "message": "m",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    }
    new, _ = status.derive(status.Observation(job=job()), previous=prev, generation=2, run_id=None, now=T0)
    assert any(c["type"] == "SpecUpdateIgnored" for c in new["conditions"])


def test_long_messages_keep_their_end() -> None:
    lines = "\n".join(f"line {i}" for i in range(5000))
    failed = pod(phase="Failed", state=terminated(1, message=lines))
    new, _ = status.derive(
        status.Observation(job=job(), pods=[failed]), previous=None, generation=1, run_id=None, now=T0
    )
    assert len(new["message"]) <= status.MAX_MESSAGE
    assert new["message"].endswith("line 4999")


# --- property: any observation gives a status the CRD accepts -----------------------------------

_reasons = st.sampled_from(
    [
        "ErrImagePull",
        "ImagePullBackOff",
        "ContainerCreating",
        "CreateContainerConfigError",
        "weird reason!",
        "",
    ]
)
_states = st.one_of(
    st.builds(waiting, _reasons, st.text(max_size=50)),
    st.builds(
        terminated,
        st.integers(0, 255),
        st.sampled_from(["Error", "OOMKilled", "Completed", "StartError"]),
        st.text(max_size=200),
    ),
    st.just({"running": {}}),
)
_pods = st.builds(
    pod,
    name=st.from_regex(r"train-1-[a-z0-9]{5}", fullmatch=True),
    phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]),
    created=st.sampled_from(["2026-01-02T03:04:05Z", "2026-01-02T03:05:05Z"]),
    state=st.one_of(st.none(), _states),
)
_jobs = st.one_of(
    st.none(),
    st.builds(
        lambda conds, limit: job(*conds, backoff_limit=limit),
        st.lists(
            st.tuples(
                st.sampled_from(["Complete", "Failed", "FailureTarget", "Suspended"]),
                st.sampled_from(["BackoffLimitExceeded", "DeadlineExceeded", "", "bad reason"]),
                st.text(max_size=40),
            ),
            max_size=2,
        ),
        st.integers(0, 3),
    ),
)


@settings(max_examples=150, deadline=None)
@given(_jobs, st.lists(_pods, max_size=4), st.booleans(), st.one_of(st.none(), st.text(max_size=100)))
def test_any_observation_yields_a_schema_valid_status(
    j: dict[str, Any] | None, pods: list[dict[str, Any]], expected: bool, tail: str | None
) -> None:
    obs = status.Observation(job=j, pods=pods, log_tail=tail, job_expected=expected)
    new, verdict = status.derive(obs, previous=None, generation=3, run_id=RUN_ID, now=T0)
    assert verdict is not None
    obj = {**crdv.customjob({"image": "t:1", "command": ["x"]}), "status": new}
    assert crdv.schema_errors(obj) == []
    assert new["phase"] in (contract.PENDING, contract.RUNNING, contract.SUCCEEDED, contract.FAILED)
    if new["phase"] in contract.TERMINAL_PHASES:
        assert new["completionTime"]
    assert verdict.preempts_job <= (new["phase"] == contract.FAILED)
