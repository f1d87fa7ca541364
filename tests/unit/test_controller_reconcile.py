"""Reconciliation against an in-memory API: idempotency, ownership, exactly-once effects."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from customjob_controller import contract, manifests, mlflow_rest, reconcile

NS = "team-a"
RUN = "0123456789abcdef0123456789abcdef"


class FakeApi:
    """Just enough API server: objects by name, resourceVersions, 409s."""

    def __init__(self, customjob: dict[str, Any]) -> None:
        self.customjob = customjob
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.creates = 0
        self.deleted: list[str] = []
        self.patches: list[tuple[Mapping[str, Any], str | None]] = []
        self.conflicts_to_inject = 0
        self.log_requests: list[str] = []

    def get_customjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.customjob)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.jobs.get(name))

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.creates += 1
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise reconcile.Conflict("AlreadyExists")
        job = copy.deepcopy(dict(body))
        job["metadata"]["uid"] = f"job-uid-{self.creates}"
        self.jobs[name] = job
        return job

    def delete_job(self, namespace: str, name: str) -> None:
        self.deleted.append(name)
        self.jobs.pop(name, None)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        key, _, value = label_selector.partition("=")
        return [p for p in self.pods if p["metadata"]["labels"].get(key) == value]

    def read_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str | None:
        self.log_requests.append(pod)
        return "Traceback\nRuntimeError: boom\n"

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            self.customjob["metadata"]["resourceVersion"] = str(int(self.customjob["metadata"]["resourceVersion"]) + 1)
            raise reconcile.Conflict("resourceVersion changed")
        if resource_version is not None:
            assert resource_version == self.customjob["metadata"]["resourceVersion"]
        self.patches.append((copy.deepcopy(dict(status)), resource_version))
        merged = dict(self.customjob.get("status") or {})
        for key, value in status.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        self.customjob["status"] = merged
        self.customjob["metadata"]["resourceVersion"] = str(int(self.customjob["metadata"]["resourceVersion"]) + 1)
        return self.customjob

    def add_pod(self, job_name: str, **status: Any) -> None:
        job = self.jobs[job_name]
        self.pods.append(
            {
                "metadata": {
                    "name": f"{job_name}-x{len(self.pods)}",
                    "creationTimestamp": f"2026-01-02T03:0{len(self.pods)}:00Z",
                    "labels": dict(job["spec"]["template"]["metadata"]["labels"]),
                    "ownerReferences": [{"kind": "Job", "uid": job["metadata"]["uid"], "controller": True}],
                },
                "spec": job["spec"]["template"]["spec"],
                "status": status,
            }
        )


def _customjob(uid: str = "cj-uid-1", mlflow: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": "trainer:1", "command": ["python3", "train.py"]}
    if mlflow:
        spec["mlflow"] = {"runId": RUN, "trackingUri": "http://mlflow:5000"}
    return {
        "apiVersion": "training.example.com/v1alpha1",
        "kind": "CustomJob",
        "metadata": {
            "name": "train-1",
            "namespace": NS,
            "uid": uid,
            "generation": 1,
            "resourceVersion": "10",
        },
        "spec": spec,
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.finalized: list[dict[str, Any]] = []

    def emit(self, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        assert obj["metadata"]["uid"]  # kopf needs a full object reference
        self.events.append((kind, reason, message))

    def finalize(self, uri: str, run_id: str, **kw: Any) -> mlflow_rest.Outcome:
        self.finalized.append({"uri": uri, "run_id": run_id, **kw})
        return mlflow_rest.Outcome("closed", "RUNNING")


@pytest.fixture
def world() -> tuple[FakeApi, Recorder, reconcile.Reconciler]:
    api, rec = FakeApi(_customjob()), Recorder()
    clock = lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # noqa: E731
    return api, rec, reconcile.Reconciler(api=api, emit=rec.emit, finalize_run=rec.finalize, clock=clock)


def test_create_then_restart_creates_exactly_one_job(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.customjob)
    r.ensure_job(api.customjob)  # on.resume after a restart
    r.ensure_job(_customjob())  # a stale body without status (kopf re-ran create)
    assert api.creates == 1
    assert list(api.jobs) == ["train-1"]
    assert api.customjob["status"]["phase"] == "Pending"
    assert api.customjob["status"]["jobName"] == "train-1"
    assert [e[1] for e in rec.events] == ["JobCreated"]
    assert api.patches[0][1] == "10"  # written with a resourceVersion precondition


def test_conflict_on_create_is_success_when_the_job_is_ours(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    api.jobs["train-1"] = manifests.build_job(api.customjob) | {}
    api.jobs["train-1"]["metadata"]["uid"] = "existing"
    original_get = api.get_job
    calls = {"n": 0}

    def racing_get(namespace: str, name: str) -> dict[str, Any] | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else original_get(namespace, name)  # created between get and create

    api.get_job = racing_get  # type: ignore[method-assign]
    r.ensure_job(api.customjob)
    assert api.creates == 1
    assert api.jobs["train-1"]["metadata"]["uid"] == "existing"


def test_job_of_a_deleted_namesake_is_not_adopted(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    api.jobs["train-1"] = manifests.build_job(_customjob(uid="old-uid"))
    with pytest.raises(reconcile.ForeignJob, match="old-uid"):
        r.ensure_job(api.customjob)
    assert api.patches == []


def test_terminal_customjob_never_gets_a_new_job(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    api.customjob["status"] = {"phase": "Succeeded", "jobName": "train-1"}  # Job already TTL-collected
    r.ensure_job(api.customjob)
    assert api.creates == 0
    assert api.patches == []


def test_job_deleted_mid_run_fails_instead_of_rerunning(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.customjob)
    api.jobs.clear()
    r.ensure_job(api.customjob)  # controller restarts
    assert api.creates == 1
    assert (api.customjob["status"]["phase"], api.customjob["status"]["reason"]) == ("Failed", "JobNotFound")
    assert len(rec.finalized) == 1
    assert rec.finalized[0]["succeeded"] is False


def test_image_pull_failure_fails_fast_deletes_job_and_closes_run_once(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.customjob)
    api.add_pod(
        "train-1",
        phase="Pending",
        containerStatuses=[
            {
                "name": "trainer",
                "state": {"waiting": {"reason": "ErrImageNeverPull", "message": 'image "trainer:1" not present'}},
            }
        ],
    )
    r.sync_status(NS, "train-1")  # pod event
    r.sync_status(NS, "train-1")  # job deletion event, duplicate event...
    st = api.customjob["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "ErrImageNeverPull")
    assert "not present" in st["message"]
    assert st["mlflowRunId"] == RUN
    assert api.deleted == ["train-1"]
    assert len(rec.finalized) == 1
    assert rec.finalized[0]["run_id"] == RUN
    assert rec.finalized[0]["reason"] == "ErrImageNeverPull"
    assert ("Warning", "ErrImageNeverPull") in [(k, reason) for k, reason, _ in rec.events]
    assert ("Warning", "MLflowRunClosed") in [(k, reason) for k, reason, _ in rec.events]


def test_failed_pod_log_tail_reaches_the_status(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    r.ensure_job(api.customjob)
    api.add_pod(
        "train-1",
        phase="Failed",
        containerStatuses=[{"name": "trainer", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
    )
    r.sync_status(NS, "train-1")
    assert api.log_requests == ["train-1-x0"]
    assert "RuntimeError: boom" in api.customjob["status"]["message"]
    assert api.deleted == []  # the Job finishes on its own


def test_success_path_and_no_rewrite_when_nothing_changed(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.customjob)
    api.add_pod("train-1", phase="Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}])
    r.sync_status(NS, "train-1")
    writes = len(api.patches)
    r.sync_status(NS, "train-1")
    assert len(api.patches) == writes  # idempotent: identical status is not re-sent
    api.jobs["train-1"]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    r.sync_status(NS, "train-1")
    assert api.customjob["status"]["phase"] == "Succeeded"
    assert rec.finalized[-1]["succeeded"] is True
    assert [reason for _, reason, _ in rec.events if reason in ("PodRunning", "Completed")] == [
        "PodRunning",
        "Completed",
    ]


def test_status_conflicts_are_retried_with_fresh_reads(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    r.ensure_job(api.customjob)
    api.add_pod("train-1", phase="Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}])
    api.conflicts_to_inject = 2
    r.sync_status(NS, "train-1")
    assert api.customjob["status"]["phase"] == "Running"


def test_no_mlflow_section_means_no_mlflow_calls() -> None:
    api, rec = FakeApi(_customjob(mlflow=False)), Recorder()
    r = reconcile.Reconciler(api=api, emit=rec.emit, finalize_run=rec.finalize)
    r.ensure_job(api.customjob)
    api.jobs["train-1"]["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    r.sync_status(NS, "train-1")
    assert api.customjob["status"]["reason"] == "DeadlineExceeded"
    assert rec.finalized == []


def test_spec_update_is_reported_as_event_and_condition(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.report_spec_update(api.customjob, ["image"])
    (patch, rv) = api.patches[-1]
    assert rv is None
    assert patch["conditions"][-1]["type"] == "SpecUpdateIgnored"
    assert rec.events[-1][:2] == ("Warning", "SpecUpdateIgnored")
    assert "image" in rec.events[-1][2]


def test_handlers_register_no_finalizer_timer_or_daemon() -> None:
    import kopf
    from customjob_controller import handlers

    registry = kopf.get_default_registry()
    changing = registry._changing.get_all_handlers()
    ids = {h.id.split("/")[0] for h in changing}  # field handlers are "<fn>/<field>"
    assert {"ensure_job", "spec_changed"} <= ids
    assert not any(h.requires_finalizer for h in changing)
    assert not registry._spawning.get_all_handlers()
    watching = registry._watching.get_all_handlers()
    assert sorted(h.id for h in watching) == ["owned_changed", "owned_changed"]  # jobs + pods
    assert handlers.owned_changed is not None
    assert contract.PREFIX == "training.example.com"


def test_rejected_job_fails_the_customjob_permanently(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world

    def refuse(namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        raise reconcile.Rejected('Job.batch "train-1" is invalid: spec.template.spec.containers[0].image: Required')

    api.create_job = refuse  # type: ignore[method-assign]
    r.ensure_job(api.customjob)
    st = api.customjob["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "JobRejected")
    assert "is invalid" in st["message"]
    assert rec.finalized[0]["succeeded"] is False
    r.ensure_job(api.customjob)  # kopf would not retry, but a resume must not flip it either
    assert api.customjob["status"]["reason"] == "JobRejected"
