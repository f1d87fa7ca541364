"""Reconciliation against an in-memory API: idempotency, ownership, exactly-once effects."""

from __future__ import annotations

import copy
import io
import urllib.error
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import pytest
from customjob_controller import contract, manifests, mlflow_rest, reconcile
from customjob_controller.policy import Policy, PolicyError

from tests.unit.fakes import FakeClock

NS = "team-a"
RUN = "0123456789abcdef0123456789abcdef"
URI = "http://mlflow.mlflow.svc.cluster.local:5000"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OURS = f"CustomJob {NS}/train-1"
"""The run's workload tag as the submitter writes it before the CustomJob exists."""


class FakeApi:
    """Just enough API server: objects by name, resourceVersions and 409s, finalizers, foreground deletion."""

    def __init__(self, customjob: dict[str, Any]) -> None:
        self.customjob: dict[str, Any] | None = customjob
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.job_events: dict[str, list[dict[str, Any]]] = {}
        self.creates = 0
        self.deleted: list[str] = []
        self.released: list[str] = []
        self.patches: list[tuple[Mapping[str, Any], str | None]] = []
        self.conflicts_to_inject = 0
        self.log_requests: list[str] = []
        self.gc_pods_on_foreground_delete = True
        self.patch_errors_to_inject = 0

    @property
    def cj(self) -> dict[str, Any]:
        assert self.customjob is not None
        return self.customjob

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

    def delete_job(self, namespace: str, name: str, *, foreground: bool = False) -> None:
        self.deleted.append(name)
        job = self.jobs.get(name)
        if job is None:
            return
        meta = job["metadata"]
        meta.setdefault("deletionTimestamp", "2026-01-02T03:05:00Z")
        if foreground and self.gc_pods_on_foreground_delete:
            self.pods = [p for p in self.pods if p["metadata"]["ownerReferences"][0]["uid"] != meta["uid"]]
        self._collect(name)

    def release_job(self, namespace: str, name: str, finalizer: str) -> None:
        job = self.jobs.get(name)
        if job is None:
            return
        self.released.append(name)
        job["metadata"]["finalizers"] = [f for f in job["metadata"].get("finalizers") or [] if f != finalizer]
        self._collect(name)

    def _collect(self, name: str) -> None:
        meta = self.jobs[name]["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self.jobs[name]

    def list_job_events(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.job_events.get(job_uid, []))

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        key, _, value = label_selector.partition("=")
        return [p for p in self.pods if p["metadata"]["labels"].get(key) == value]

    def read_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str | None:
        self.log_requests.append(pod)
        return "Traceback\nRuntimeError: boom\n"

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        cj = self.cj
        if self.patch_errors_to_inject:
            self.patch_errors_to_inject -= 1
            raise RuntimeError("500 Internal Server Error: etcdserver: request timed out")
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            cj["metadata"]["resourceVersion"] = str(int(cj["metadata"]["resourceVersion"]) + 1)
        if resource_version is not None and resource_version != cj["metadata"]["resourceVersion"]:
            raise reconcile.Conflict("the object has been modified; please apply your changes to the latest version")
        self.patches.append((copy.deepcopy(dict(status)), resource_version))
        merged = dict(cj.get("status") or {})
        for key, value in status.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        cj["status"] = merged
        cj["metadata"]["resourceVersion"] = str(int(cj["metadata"]["resourceVersion"]) + 1)
        return cj

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
        spec["mlflow"] = {"runId": RUN, "trackingUri": URI}
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


class FakeTracking:
    """A tracking server's runs/get, runs/update and runs/set-tag over in-memory runs (mlflow_rest's sender seam).

    The controller's real :mod:`.mlflow_rest` code runs against it, so the
    ownership decisions under test are the shipped ones; ``writes`` is every
    request that would have changed a run.
    """

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {RUN: {"status": "RUNNING", "tags": {contract.TAG_WORKLOAD: OURS}}}
        self.down = False
        self.reads: list[str] = []
        self.writes: list[mlflow_rest.Request] = []

    def __call__(self, request: mlflow_rest.Request, timeout: float) -> Mapping[str, Any]:
        if self.down:
            raise urllib.error.URLError("connection refused")
        path, _, query = request.url.partition("?")
        if path.endswith("/runs/get"):
            run_id = urllib.parse.parse_qs(query)["run_id"][0]
            self.reads.append(run_id)
            run = self.runs.get(run_id)
            if run is None:
                body = io.BytesIO(b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run not found"}')
                raise urllib.error.HTTPError(request.url, 404, "NOT FOUND", Message(), body)
            tags = [{"key": k, "value": v} for k, v in run["tags"].items()]
            return {"run": {"info": {"run_id": run_id, "status": run["status"]}, "data": {"tags": tags}}}
        assert request.body is not None
        self.writes.append(request)
        run = self.runs[request.body["run_id"]]
        if path.endswith("/runs/update"):
            run["status"] = request.body["status"]
        else:
            run["tags"][request.body["key"]] = request.body["value"]
        return {}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.finalized: list[dict[str, Any]] = []
        self.outages = 0
        self.tracking = FakeTracking()

    def emit(self, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        assert obj["metadata"]["uid"]  # kopf needs a full object reference
        self.events.append((kind, reason, message))

    def finalize(self, uri: str, run_id: str, **kw: Any) -> mlflow_rest.Outcome:
        self.finalized.append({"uri": uri, "run_id": run_id, **kw})
        if self.outages:
            self.outages -= 1
            return mlflow_rest.Outcome("error", None, "connection refused")
        return mlflow_rest.finalize_run(uri, run_id, sender=self.tracking, **kw)

    def check(self, uri: str, run_id: str, **kw: Any) -> mlflow_rest.Outcome:
        return mlflow_rest.check_owner(uri, run_id, sender=self.tracking, **kw)

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def _reconciler(api: FakeApi, rec: Recorder, **kw: Any) -> reconcile.Reconciler:
    kw.setdefault("clock", lambda: NOW)
    monotonic = FakeClock()
    kw.setdefault("monotonic", monotonic)
    kw.setdefault("sleep", monotonic.sleep)
    return reconcile.Reconciler(api=api, emit=rec.emit, finalize_run=rec.finalize, check_owner=rec.check, **kw)


@pytest.fixture
def world() -> tuple[FakeApi, Recorder, reconcile.Reconciler]:
    api, rec = FakeApi(_customjob()), Recorder()
    return api, rec, _reconciler(api, rec)


def test_create_then_restart_creates_exactly_one_job(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.cj)
    r.ensure_job(api.cj)  # on.resume after a restart
    r.ensure_job(_customjob())  # a stale body without status (kopf re-ran create)
    assert api.creates == 1
    assert list(api.jobs) == ["train-1"]
    assert api.cj["status"]["phase"] == "Pending"
    assert api.cj["status"]["jobName"] == "train-1"
    assert [e[1] for e in rec.events] == ["JobCreated"]
    assert api.patches[0][1] == "10"  # written with a resourceVersion precondition


def test_conflict_on_create_is_success_when_the_job_is_ours(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    api.jobs["train-1"] = manifests.build_job(api.cj) | {}
    api.jobs["train-1"]["metadata"]["uid"] = "existing"
    original_get = api.get_job
    calls = {"n": 0}

    def racing_get(namespace: str, name: str) -> dict[str, Any] | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else original_get(namespace, name)  # created between get and create

    api.get_job = racing_get  # type: ignore[method-assign]
    r.ensure_job(api.cj)
    assert api.creates == 1
    assert api.jobs["train-1"]["metadata"]["uid"] == "existing"


def test_job_of_a_deleted_namesake_is_waited_for_then_refused(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    api.jobs["train-1"] = manifests.build_job(_customjob(uid="old-uid"))
    with pytest.raises(reconcile.ForeignJob, match="old-uid"):
        r.ensure_job(api.cj)
    assert api.patches == []
    r.ensure_job(api.cj, attempt=reconcile.FOREIGN_JOB_ATTEMPTS)  # kopf's retry counter ran out
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "JobNameTaken")
    assert "old-uid" in st["message"]
    assert "another name" in st["message"]
    r.finish(api.cj)
    assert api.deleted == [], "never touches a Job it does not own"
    assert api.released == []
    assert api.jobs["train-1"]["metadata"]["finalizers"] == [contract.FINALIZER_OUTCOME]


def test_a_foreign_job_of_the_same_name_fails_at_once_with_the_reason(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    api.jobs["train-1"] = {"metadata": {"name": "train-1", "uid": "theirs"}, "spec": {}}  # a user's own Job
    r.ensure_job(api.cj)
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "JobNameTaken")
    assert "owned by nothing" in st["message"]
    assert api.creates == 0
    assert ("Warning", "JobNameTaken") in [(k, reason) for k, reason, _ in rec.events]


def test_terminal_customjob_never_gets_a_new_job(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    api.cj["status"] = {"phase": "Succeeded", "jobName": "train-1"}  # Job already TTL-collected
    r.ensure_job(api.cj)
    assert api.creates == 0
    assert api.patches == []


def test_job_deleted_mid_run_fails_instead_of_rerunning(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.cj)
    api.jobs.clear()  # gone for good, finalizer and all (force-removed)
    r.ensure_job(api.cj)  # controller restarts
    assert api.creates == 1
    assert (api.cj["status"]["phase"], api.cj["status"]["reason"]) == ("Failed", "JobNotFound")
    r.finish(api.cj)
    assert len(rec.finalized) == 1
    assert rec.finalized[0]["status"] == "FAILED"


def test_image_pull_failure_fails_fast_deletes_job_and_closes_run_once(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.cj)
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
    r.sync_status(NS, "train-1")  # duplicate event...
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "ErrImageNeverPull")
    assert "not present" in st["message"]
    assert st["mlflowRunId"] == RUN
    r.finish(api.cj)  # the status.phase field handler
    r.finish(api.cj)  # ... retried or replayed: nothing happens twice
    assert api.deleted == ["train-1"]
    assert "train-1" not in api.jobs, "the stuck Job was stopped, then released"
    assert len(rec.finalized) == 1
    assert rec.finalized[0]["run_id"] == RUN
    assert rec.finalized[0]["reason"] == "ErrImageNeverPull"
    assert ("Warning", "ErrImageNeverPull") in [(k, reason) for k, reason, _ in rec.events]
    assert ("Warning", "MLflowRunClosed") in [(k, reason) for k, reason, _ in rec.events]


def test_failed_pod_log_tail_reaches_the_status(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    r.ensure_job(api.cj)
    api.add_pod(
        "train-1",
        phase="Failed",
        containerStatuses=[{"name": "trainer", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
    )
    r.sync_status(NS, "train-1")
    assert api.log_requests == ["train-1-x0"]
    assert "RuntimeError: boom" in api.cj["status"]["message"]
    assert api.deleted == []  # the Job finishes on its own


def test_success_path_and_no_rewrite_when_nothing_changed(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.cj)
    api.add_pod("train-1", phase="Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}])
    r.sync_status(NS, "train-1")
    writes = len(api.patches)
    r.sync_status(NS, "train-1")
    assert len(api.patches) == writes  # idempotent: identical status is not re-sent
    api.jobs["train-1"]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    r.sync_status(NS, "train-1")
    assert api.cj["status"]["phase"] == "Succeeded"
    assert rec.finalized == [], "closing the run is finish()'s job, retried on its own"
    r.finish(api.cj)
    assert rec.finalized[-1]["status"] == "FINISHED"
    assert api.jobs["train-1"]["metadata"]["finalizers"] == [], "released once the outcome is recorded"
    assert api.deleted == [], "a finished Job is left to its TTL"
    closed = [c for c in api.cj["status"]["conditions"] if c["type"] == contract.CONDITION_RUN_CLOSED]
    assert [(c["status"], c["reason"]) for c in closed] == [("True", "Closed")]
    assert [reason for _, reason, _ in rec.events if reason in ("PodRunning", "Completed")] == [
        "PodRunning",
        "Completed",
    ]


def test_status_conflicts_are_retried_with_fresh_reads(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    r.ensure_job(api.cj)
    api.add_pod("train-1", phase="Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}])
    api.conflicts_to_inject = 2
    r.sync_status(NS, "train-1")
    assert api.cj["status"]["phase"] == "Running"


def test_no_mlflow_section_means_no_mlflow_calls() -> None:
    api, rec = FakeApi(_customjob(mlflow=False)), Recorder()
    r = _reconciler(api, rec)
    r.ensure_job(api.cj)
    api.jobs["train-1"]["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    r.sync_status(NS, "train-1")
    r.finish(api.cj)
    assert api.cj["status"]["reason"] == "DeadlineExceeded"
    assert rec.finalized == []
    assert api.jobs["train-1"]["metadata"]["finalizers"] == []


def test_spec_update_is_reported_as_event_and_condition(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.report_spec_update(api.cj, ["image"])
    (patch, rv) = api.patches[-1]
    assert rv is None
    assert patch["conditions"][-1]["type"] == "SpecUpdateIgnored"
    assert rec.events[-1][:2] == ("Warning", "SpecUpdateIgnored")
    assert "image" in rec.events[-1][2]


def test_handlers_register_no_finalizer_and_one_resync_timer_without_one() -> None:
    """Deleting a CustomJob must not wait for the controller: no handler, the timer included, needs kopf's finalizer."""
    import kopf
    from customjob_controller import handlers
    from kopf._core.intents import handlers as kopf_handlers

    registry = kopf.get_default_registry()
    changing = registry._changing.get_all_handlers()
    ids = {h.id.split("/")[0] for h in changing}  # field handlers are "<fn>/<field>"
    assert {"ensure_job", "spec_changed", "finish", "recheck"} <= ids
    fields = {h.id.split("/")[0]: h.field for h in changing}
    assert fields["finish"] == ("status", "phase")
    assert fields["recheck"] == ("status", "reason")
    assert not any(h.requires_finalizer for h in changing)
    spawning = registry._spawning.get_all_handlers()
    assert [(type(h), h.id, h.interval, h.requires_finalizer) for h in spawning] == [
        (kopf_handlers.TimerHandler, "resync", handlers.RESYNC_SECONDS, False)]
    assert not any(isinstance(h, kopf_handlers.DaemonHandler) for h in spawning)
    watching = registry._watching.get_all_handlers()
    assert sorted(h.id for h in watching) == ["customjob_gone", "owned_changed", "owned_changed"]  # + jobs, pods
    assert handlers.owned_changed is not None
    assert contract.PREFIX == "training.example.com"


def test_the_resync_timer_runs_while_the_customjob_exists_and_is_not_terminal() -> None:
    """kopf stops a timer whose filter turns False: on a terminal phase, and on the DELETED event's mark."""
    import kopf
    from customjob_controller import handlers

    memo = kopf.Memo()
    assert handlers._resync_wanted(status={}, memo=memo)
    assert handlers._resync_wanted(status={"phase": "Running"}, memo=memo)
    assert not handlers._resync_wanted(status={"phase": "Succeeded"}, memo=memo)
    assert not handlers._resync_wanted(status={"phase": "Failed"}, memo=memo)
    memo[handlers.GONE] = True
    assert not handlers._resync_wanted(status={"phase": "Running"}, memo=memo)


def test_rejected_job_fails_the_customjob_permanently(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world

    def refuse(namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        raise reconcile.Rejected('Job.batch "train-1" is invalid: spec.template.spec.containers[0].image: Required')

    api.create_job = refuse  # type: ignore[method-assign]
    r.ensure_job(api.cj)
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "JobRejected")
    assert "is invalid" in st["message"]
    r.finish(api.cj)
    assert rec.finalized[0]["status"] == "FAILED"
    r.ensure_job(api.cj)  # kopf would not retry, but a resume must not flip it either
    assert api.cj["status"]["reason"] == "JobRejected"


def _complete(api: FakeApi) -> None:
    api.jobs["train-1"]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}


def _succeeded(api: FakeApi, r: reconcile.Reconciler) -> None:
    """Job created, completed, and its Succeeded status written (the run not closed yet)."""
    r.ensure_job(api.cj)
    _complete(api)
    r.sync_status(NS, "train-1")


def _running(api: FakeApi, r: reconcile.Reconciler) -> None:
    r.ensure_job(api.cj)
    api.add_pod("train-1", phase="Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}])
    r.sync_status(NS, "train-1")


def _run_closed(api: FakeApi) -> list[tuple[str, str]]:
    return [(c["status"], c["reason"]) for c in api.cj["status"]["conditions"]
            if c["type"] == contract.CONDITION_RUN_CLOSED]


def test_an_mlflow_outage_when_the_job_ends_delays_the_close_and_never_loses_it() -> None:
    api, rec = FakeApi(_customjob()), Recorder()
    clock = {"now": NOW}
    r = _reconciler(api, rec, clock=lambda: clock["now"])
    _succeeded(api, r)
    rec.outages = 3
    delays = []
    for attempt in range(3):
        with pytest.raises(reconcile.RetryLater) as retry:
            r.finish(api.cj, attempt=attempt)
        delays.append(retry.value.delay)
        clock["now"] += timedelta(seconds=retry.value.delay)
        assert _run_closed(api) == [("False", "MLflowUnreachable")]
        assert api.jobs["train-1"]["metadata"]["finalizers"], "the Job is held while the run is open"
    assert delays == [5.0, 5.0, 10.0], "5 s, then the time already failed (doubling), up to 60 s"
    r.finish(api.cj, attempt=3)
    assert _run_closed(api) == [("True", "Closed")]
    assert [f["status"] for f in rec.finalized] == ["FINISHED"] * 4
    assert rec.reasons().count("MLflowUnreachable") == 1, "one warning per outage, not per retry"
    assert api.jobs["train-1"]["metadata"]["finalizers"] == []
    r.finish(api.cj, attempt=4)  # a replay after the close
    assert len(rec.finalized) == 4


def test_closing_gives_up_after_its_own_time_budget_and_lets_the_job_go() -> None:
    """The close is bounded by time since its first failure, not by kopf's retry count (which Pod waits also use)."""
    api, rec = FakeApi(_customjob()), Recorder()
    clock = {"now": NOW}
    r = _reconciler(api, rec, clock=lambda: clock["now"])
    _succeeded(api, r)
    rec.outages = 3
    with pytest.raises(reconcile.RetryLater):
        r.finish(api.cj, attempt=900)  # a high count alone gives up nothing
    clock["now"] += timedelta(seconds=reconcile.CLOSE_SECONDS - 1)
    with pytest.raises(reconcile.RetryLater):
        r.finish(api.cj, attempt=901)
    clock["now"] += timedelta(seconds=1)
    r.finish(api.cj, attempt=902)
    assert _run_closed(api) == [("False", "GaveUp")]
    assert "MLflowRunNotClosed" in rec.reasons()
    assert api.jobs["train-1"]["metadata"]["finalizers"] == []


def test_a_customjob_deleted_mid_run_ends_its_run_killed_after_the_pods_stop(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    _running(api, r)
    api.customjob = None  # deleted; the garbage collector now deletes the Job, which our finalizer holds
    api.jobs["train-1"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:06:00Z"
    api.gc_pods_on_foreground_delete = False
    r.sync_status(NS, "train-1")  # the Job's watch event
    assert api.deleted == ["train-1"], "stopped in the foreground: the API keeps the Job until its pods are gone"
    assert rec.finalized == [], "not closed while the trainer may still log"
    api.pods.clear()  # the pods are gone
    r.sync_status(NS, "train-1")  # the last pod's DELETED event
    assert [(f["status"], f["reason"]) for f in rec.finalized] == [("KILLED", "CustomJobDeleted")]
    assert rec.finalized[0]["uri"] == URI
    assert rec.finalized[0]["run_id"] == RUN
    assert "train-1" not in api.jobs, "released, so the collector could finish"


def test_a_job_collected_by_its_ttl_while_the_controller_was_down_still_succeeds(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    _running(api, r)
    # controller down: the Job completes, its TTL passes, the TTL controller deletes it (foreground)
    _complete(api)
    api.delete_job(NS, "train-1", foreground=True)
    assert "train-1" in api.jobs, "the finalizer keeps the Job and its final status"
    r.ensure_job(api.cj)  # on.resume after the restart
    assert (api.cj["status"]["phase"], api.cj["status"]["reason"]) == ("Succeeded", "Completed")
    r.finish(api.cj)
    assert rec.finalized[-1]["status"] == "FINISHED"
    assert "train-1" not in api.jobs


def test_a_job_deleted_by_hand_mid_run_fails_and_is_stopped_before_the_run_is_closed(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    r.ensure_job(api.cj)
    api.add_pod("train-1", phase="Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}])
    api.jobs["train-1"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:06:00Z"  # kubectl delete job
    r.sync_status(NS, "train-1")
    assert (api.cj["status"]["phase"], api.cj["status"]["reason"]) == ("Failed", "JobDeleted")
    api.gc_pods_on_foreground_delete = False
    with pytest.raises(reconcile.RetryLater, match="pods"):
        r.finish(api.cj)
    assert rec.finalized == []
    api.pods.clear()
    r.finish(api.cj, attempt=1)
    assert rec.finalized[-1]["status"] == "FAILED"
    assert "train-1" not in api.jobs


def test_a_tracking_uri_outside_the_allowlist_fails_before_any_job_and_is_never_called() -> None:
    cj = _customjob()
    cj["spec"]["mlflow"]["trackingUri"] = "http://169.254.169.254:80"
    api, rec = FakeApi(cj), Recorder()
    r = _reconciler(api, rec)
    r.ensure_job(api.cj)
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "TrackingUriNotAllowed")
    assert "CUSTOMJOB_ALLOWED_TRACKING_URIS" in st["message"]
    assert api.creates == 0
    r.finish(api.cj)
    assert rec.finalized == []
    assert rec.tracking.reads == [], "not even asked whose the run is: the policy comes first"


def test_a_pod_refused_by_a_quota_fails_once_the_refusal_outlasts_the_grace() -> None:
    api, rec = FakeApi(_customjob()), Recorder()
    clock = {"now": NOW}
    r = _reconciler(api, rec, clock=lambda: clock["now"], policy=Policy(pod_create_grace=30))
    r.ensure_job(api.cj)
    job = api.jobs["train-1"]
    job["metadata"]["creationTimestamp"] = "2026-01-02T03:04:00Z"
    api.job_events[job["metadata"]["uid"]] = [{
        "reason": "FailedCreate", "type": "Warning", "lastTimestamp": "2026-01-02T03:04:01Z",
        "message": 'Error creating: pods "train-1-x" is forbidden: exceeded quota: q, requested: pods=1, used: '
                   'pods=1, limited: pods=1'}]
    assert r.recheck(NS, "train-1") is not None, "within the grace: still pending, check again"
    assert (api.cj["status"]["phase"], api.cj["status"]["reason"]) == ("Pending", "FailedCreate")
    clock["now"] = datetime(2026, 1, 2, 3, 4, 31, tzinfo=UTC)
    assert r.recheck(NS, "train-1") is None
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "FailedCreate")
    assert "exceeded quota: q" in st["message"]
    r.finish(api.cj)
    assert api.deleted == ["train-1"], "the Job would retry forever; it is stopped"


def test_policy_is_read_from_the_environment_and_bad_values_stop_the_start() -> None:
    p = Policy.from_env({
        "CUSTOMJOB_ALLOWED_TRACKING_URIS": "http://mlflow.mlflow.svc.cluster.local:5000, https://mlflow.*.example.com",
        "CUSTOMJOB_ALLOWED_SERVICE_ACCOUNTS": "trainer",
        "CUSTOMJOB_IMAGE_PULL_GRACE_SECONDS": "15",
        "CUSTOMJOB_POD_STOP_SECONDS": "20",
    })
    assert p.listed("http://mlflow.mlflow.svc.cluster.local:5000/")
    assert p.listed("https://mlflow.team-a.example.com/prefix")
    assert not p.listed("https://mlflow.a.b.example.com"), "* is one DNS label"
    assert not p.listed("http://mlflow.mlflow.svc.cluster.local:5001")
    assert not p.listed("http://user:pw@mlflow.mlflow.svc.cluster.local:5000")
    assert p.image_pull_grace == 15
    assert p.pod_create_grace == 30
    assert p.pod_stop_seconds == 20
    assert Policy.from_env({}).pod_stop_seconds == reconcile.POD_STOP_SECONDS == 600
    assert p.refusal({"serviceAccountName": "admin", "image": "x", "command": ["y"]}) is not None
    assert p.refusal({"serviceAccountName": "trainer", "image": "x", "command": ["y"]}) is None
    anything = Policy.from_env({"CUSTOMJOB_ALLOWED_TRACKING_URIS": "*"})
    assert anything.tracking_uri_allowed("http://elsewhere:1")
    assert not anything.listed("http://elsewhere:1")
    secrets = Policy.from_env({"CUSTOMJOB_ALLOWED_SECRETS": "mlflow-token"})
    env = [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "db-password", "key": "k"}}}]
    assert secrets.refusal({"env": env}) == (
        "SecretNotAllowed", "spec.env[0].valueFrom.secretKeyRef.name 'db-password' is not allowed here (allowed: "
        "mlflow-token); have the cluster admin add it to CUSTOMJOB_ALLOWED_SECRETS")
    for bad in ({"CUSTOMJOB_ALLOWED_TRACKING_URIS": "mlflow:5000"},
                {"CUSTOMJOB_IMAGE_PULL_GRACE_SECONDS": "soon"},
                {"CUSTOMJOB_POD_CREATE_GRACE_SECONDS": "-1"},
                {"CUSTOMJOB_POD_STOP_SECONDS": "forever"}):
        with pytest.raises(PolicyError, match=next(iter(bad))):
            Policy.from_env(bad)


@pytest.mark.parametrize("uri", [
    "http://mlflow.mlflow.svc.cluster.local:5000/../tenant-app",
    "http://mlflow.mlflow.svc.cluster.local:5000/%2e%2e/tenant-app",
    "http://mlflow.mlflow.svc.cluster.local:5000/./x",
    "http://mlflow.mlflow.svc.cluster.local:5000/?next=http://evil",
    "http://mlflow.mlflow.svc.cluster.local:5000/#frag",
])
def test_tracking_uris_with_dot_segments_queries_or_fragments_are_not_allowed(uri: str) -> None:
    policy = Policy()
    assert policy.tracking_uri_allowed("http://mlflow.mlflow.svc.cluster.local:5000")
    assert not policy.tracking_uri_allowed(uri)
    assert not policy.listed(uri), "no token for it either"


# -- Whose run: a CustomJob acts only on the MLflow run tagged for it (issue #24, the confused deputy) --------------


def _untouched(rec: Recorder, tags: Mapping[str, str]) -> None:
    run = rec.tracking.runs[RUN]
    assert rec.tracking.writes == [], "nothing was written to a run that is not this CustomJob's"
    assert run["status"] == "RUNNING"
    assert run["tags"] == tags


@pytest.mark.parametrize(("tags", "names"), [
    ({contract.TAG_WORKLOAD: "CustomJob team-b/theirs uid=b-1"}, "belongs to CustomJob team-b/theirs"),
    ({contract.TAG_WORKLOAD: "CustomJob team-b/train-1"}, "belongs to CustomJob team-b/train-1"),
    ({contract.TAG_WORKLOAD: f"Job {NS}/train-1 uid=j-1"}, f"belongs to Job {NS}/train-1"),
    ({contract.TAG_WORKLOAD: f"{OURS} uid=old-uid"}, "an earlier CustomJob team-a/train-1 (uid old-uid)"),
    ({}, "has no mlflow-crd-harness/workload tag"),
    ({contract.TAG_WORKLOAD: "train-1, please"}, "not '<Kind> <namespace>/<name>[ uid=<uid>]'"),
], ids=["another CustomJob", "a namesake in another namespace", "another kind", "a deleted namesake",
        "no tag", "a malformed tag"])
def test_a_run_that_is_not_this_customjobs_fails_it_run_not_owned_before_any_job_and_is_left_untouched(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler], tags: dict[str, str], names: str,
) -> None:
    api, rec, r = world
    rec.tracking.runs[RUN]["tags"] = dict(tags)
    r.ensure_job(api.cj)
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", contract.REASON_RUN_NOT_OWNED)
    assert names in st["message"]
    assert f"{contract.TAG_WORKLOAD}='{OURS}'" in st["message"], "the message says the fix"
    assert "please" not in st["message"], "a tag value read from someone else's run is not echoed"
    assert api.creates == 0
    assert api.jobs == {}
    assert ("Warning", contract.REASON_RUN_NOT_OWNED) in [(k, reason) for k, reason, _ in rec.events]
    r.finish(api.cj)  # the status.phase handler: a Failed CustomJob normally closes its run FAILED
    r.finish(api.cj, attempt=1)
    r.ensure_job(api.cj)  # a resume
    _untouched(rec, tags)
    assert rec.finalized == [], "not even asked to close"
    assert _run_closed(api) == [("False", contract.REASON_RUN_NOT_OWNED)]
    assert api.creates == 0


def test_a_run_that_does_not_exist_fails_the_customjob_at_once(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    api.cj["spec"]["mlflow"]["runId"] = "f" * 32
    r.ensure_job(api.cj)
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", contract.REASON_RUN_NOT_OWNED)
    assert f"{'f' * 32} does not exist at {URI}" in st["message"]
    assert api.creates == 0


@pytest.mark.parametrize("tag", [OURS, f"{OURS} uid=cj-uid-1"], ids=["before creation", "with the uid"])
def test_a_run_tagged_for_this_customjob_runs_and_is_closed_normally(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler], tag: str,
) -> None:
    api, rec, r = world
    rec.tracking.runs[RUN]["tags"] = {contract.TAG_WORKLOAD: tag}
    r.ensure_job(api.cj)
    assert api.creates == 1
    assert api.cj["status"]["phase"] == "Pending"
    api.jobs["train-1"]["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                                     "message": "too slow"}]}
    r.sync_status(NS, "train-1")
    r.finish(api.cj)
    run = rec.tracking.runs[RUN]
    assert run["status"] == "FAILED"
    assert run["tags"][contract.TAG_FAILURE_REASON] == "DeadlineExceeded: too slow"
    assert _run_closed(api) == [("True", "Closed")]


def test_no_job_starts_while_the_tracking_server_cannot_say_whose_the_run_is(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    rec.tracking.down = True
    delays = []
    for attempt in range(2):
        with pytest.raises(reconcile.RetryLater, match="unreachable") as retry:
            r.ensure_job(api.cj, attempt=attempt)
        delays.append(retry.value.delay)
    assert delays == [5.0, 10.0]
    assert api.creates == 0
    st = api.cj["status"]
    assert (st["phase"], st["reason"]) == ("Pending", "MLflowUnreachable")
    assert "connection refused" in st["message"]
    rec.tracking.down = False
    r.ensure_job(api.cj, attempt=2)
    assert api.creates == 1
    assert (api.cj["status"]["phase"], api.cj["status"]["reason"]) == ("Pending", "JobCreated")


def test_a_run_retagged_for_another_object_while_the_job_ran_is_not_closed(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    _succeeded(api, r)
    theirs = {contract.TAG_WORKLOAD: "CustomJob team-b/theirs"}
    rec.tracking.runs[RUN]["tags"] = dict(theirs)
    r.finish(api.cj)
    _untouched(rec, theirs)
    assert _run_closed(api) == [("False", contract.REASON_RUN_NOT_OWNED)]
    assert "belongs to CustomJob team-b/theirs" in rec.events[-1][2]
    assert api.jobs["train-1"]["metadata"]["finalizers"] == [], "the Job is released all the same: no retry"
    r.finish(api.cj, attempt=1)  # a replay asks nobody again
    assert len(rec.finalized) == 1


def test_the_run_of_an_orphaned_job_that_names_another_object_is_left_untouched(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    _running(api, r)
    theirs = {contract.TAG_WORKLOAD: "CustomJob team-b/theirs uid=b-1"}
    rec.tracking.runs[RUN]["tags"] = dict(theirs)
    api.customjob = None  # deleted mid-run
    api.jobs["train-1"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:06:00Z"
    r.sync_status(NS, "train-1")  # stops the Job, its pods go (foreground)
    r.sync_status(NS, "train-1")
    assert [f["owner"] for f in rec.finalized] == [mlflow_rest.Owner("CustomJob", NS, "train-1", "cj-uid-1")]
    _untouched(rec, theirs)
    assert "train-1" not in api.jobs, "released: a run that is not ours must not hold the Job forever"


def test_the_run_of_an_orphaned_job_is_closed_killed_when_it_is_that_customjobs(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    _running(api, r)
    rec.tracking.runs[RUN]["tags"] = {contract.TAG_WORKLOAD: f"{OURS} uid=cj-uid-1"}
    api.customjob = None
    api.jobs["train-1"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:06:00Z"
    r.sync_status(NS, "train-1")
    assert rec.tracking.runs[RUN]["status"] == "KILLED"
    assert "CustomJobDeleted" in rec.tracking.runs[RUN]["tags"][contract.TAG_FAILURE_REASON]


# -- The controller never loses or strands an outcome (issue #24, item 3) ---------------------------------------------


def _orphan(api: FakeApi) -> None:
    """``kubectl delete customjob --cascade=orphan``: the collector strips the Job's ownerReference, keeps the rest."""
    api.customjob = None
    del api.jobs["train-1"]["metadata"]["ownerReferences"]


def test_a_job_orphaned_by_cascade_orphan_is_stopped_its_run_killed_and_it_is_let_go(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    """Without an ownerReference nothing would delete the Job, and our finalizer would hold it (and its namespace)."""
    api, rec, r = world
    _running(api, r)
    _orphan(api)
    assert api.jobs["train-1"]["metadata"]["finalizers"] == [contract.FINALIZER_OUTCOME]
    r.sync_status(NS, "train-1")  # the Job's MODIFIED event (its ownerReference went)
    assert api.deleted == ["train-1"], "stopped: the trainer must not run on unowned"
    assert [(f["status"], f["reason"]) for f in rec.finalized] == [("KILLED", "CustomJobDeleted")]
    assert rec.tracking.runs[RUN]["status"] == "KILLED"
    assert "train-1" not in api.jobs, "released, so the stopped Job could go"


def test_an_orphaned_jobs_run_tagged_with_the_uid_is_closed_from_the_deletion_event_or_memory(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    """The backend's tag carries the uid, which the orphaned Job lost; the CustomJob's DELETED event still has it."""
    api, rec, r = world
    rec.tracking.runs[RUN]["tags"] = {contract.TAG_WORKLOAD: f"{OURS} uid=cj-uid-1"}
    _running(api, r)
    _orphan(api)
    api.gc_pods_on_foreground_delete = False
    r.release_orphan(NS, "train-1", "cj-uid-1")  # the CustomJob's DELETED event
    assert rec.finalized == [], "not closed while the trainer may still log"
    api.pods.clear()
    r.sync_status(NS, "train-1")  # the last Pod's DELETED event: no uid on it, remembered from the event
    assert [f["owner"] for f in rec.finalized] == [mlflow_rest.Owner("CustomJob", NS, "train-1", "cj-uid-1")]
    assert rec.tracking.runs[RUN]["status"] == "KILLED"
    assert "train-1" not in api.jobs


def test_an_orphaned_jobs_pods_that_never_stop_are_waited_for_the_budget_from_its_deletion() -> None:
    """A NotReady node keeps the orphan's Pods: no CustomJob holds a condition; the Job's deletion starts the clock.

    No event comes from such Pods (and kopf stops timers on objects being deleted), so the controller
    schedules its own re-check for when the budget ends.
    """
    api, rec = FakeApi(_customjob()), Recorder()
    clock = {"now": NOW}
    scheduled: list[tuple[float, Callable[[], None]]] = []
    r = _reconciler(api, rec, clock=lambda: clock["now"], policy=Policy(pod_stop_seconds=60),
                    later=lambda delay, fn: scheduled.append((delay, fn)))
    _running(api, r)
    _orphan(api)
    api.gc_pods_on_foreground_delete = False
    clock["now"] = datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC)
    r.sync_status(NS, "train-1")  # the Job's MODIFIED event: stopped (deletionTimestamp 03:05:00)
    r.sync_status(NS, "train-1")  # the Pod's deletion event
    assert api.deleted == ["train-1", "train-1"]
    assert [delay for delay, _ in scheduled] == [61.0], "one re-check, when the budget is spent"
    clock["now"] = datetime(2026, 1, 2, 3, 5, 59, tzinfo=UTC)
    r.sync_status(NS, "train-1")
    assert rec.finalized == [], "within the budget: the trainer may still log"
    assert "train-1" in api.jobs
    clock["now"] = datetime(2026, 1, 2, 3, 6, 1, tzinfo=UTC)
    scheduled[0][1]()
    assert [(f["status"], f["reason"]) for f in rec.finalized] == [("KILLED", "CustomJobDeleted")]
    assert api.released == ["train-1"]
    assert "train-1" not in api.jobs, "released, so the API deletes it (its Pods go with the node)"


def test_a_customjob_being_deleted_counts_as_gone(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    """``--cascade=orphan`` first marks the CustomJob deleting (the orphan finalizer), with the Job still owned."""
    api, rec, r = world
    rec.tracking.runs[RUN]["tags"] = {contract.TAG_WORKLOAD: f"{OURS} uid=cj-uid-1"}
    _running(api, r)
    api.cj["metadata"]["deletionTimestamp"] = "2026-01-02T03:06:00Z"
    api.cj["metadata"]["finalizers"] = ["orphan"]
    r.release_orphan(NS, "train-1", "cj-uid-1")  # its MODIFIED event
    assert rec.tracking.runs[RUN]["status"] == "KILLED"
    assert "train-1" not in api.jobs


def test_an_orphaned_job_whose_run_cannot_be_shown_its_customjobs_is_let_go_and_the_run_left(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    """A restarted controller never saw the uid the run's tag names: the run is not touched, the Job still released."""
    api, rec, r = world
    tags = {contract.TAG_WORKLOAD: f"{OURS} uid=cj-uid-1"}
    rec.tracking.runs[RUN]["tags"] = dict(tags)
    _running(api, r)
    _orphan(api)
    restarted = _reconciler(api, rec)
    restarted.sync_status(NS, "train-1")  # kopf's replay of the Job at start-up
    _untouched(rec, tags)
    assert "train-1" not in api.jobs


def test_a_namesake_created_while_an_orphaned_job_is_held_waits_for_it(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    _running(api, r)
    _orphan(api)
    api.gc_pods_on_foreground_delete = False  # its pod takes a while to stop
    api.customjob = _customjob(uid="cj-uid-2")
    with pytest.raises(reconcile.ForeignJob, match="orphaned"):
        r.ensure_job(api.cj)
    assert api.creates == 1
    assert api.deleted == ["train-1"], "and the orphan was stopped meanwhile"


def test_pods_that_never_stop_are_waited_for_by_time_then_the_run_is_closed_and_the_job_released() -> None:
    """A NotReady node keeps the Pods forever; kopf's retry count must not decide, and the outcome must not strand."""
    api, rec = FakeApi(_customjob()), Recorder()
    clock = {"now": NOW}
    r = _reconciler(api, rec, clock=lambda: clock["now"])
    _running(api, r)
    api.jobs["train-1"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:06:00Z"  # kubectl delete job
    r.sync_status(NS, "train-1")
    assert (api.cj["status"]["phase"], api.cj["status"]["reason"]) == ("Failed", "JobDeleted")
    api.gc_pods_on_foreground_delete = False
    for attempt in range(0, 300, 30):  # far past the old 40-attempt budget, within the time budget
        with pytest.raises(reconcile.RetryLater, match="pods"):
            r.finish(api.cj, attempt=attempt)
        clock["now"] += timedelta(seconds=reconcile.POD_STOP_SECONDS / 10 - 1)
    assert rec.finalized == []
    pods_stopped = [c for c in api.cj["status"]["conditions"] if c["type"] == reconcile.CONDITION_PODS_STOPPED]
    assert [(c["status"], c["reason"]) for c in pods_stopped] == [("False", "Waiting")]
    clock["now"] += timedelta(seconds=10)
    r.finish(api.cj, attempt=301)
    pods_stopped = [c for c in api.cj["status"]["conditions"] if c["type"] == reconcile.CONDITION_PODS_STOPPED]
    assert [(c["status"], c["reason"]) for c in pods_stopped] == [("False", reconcile.REASON_PODS_DID_NOT_STOP)]
    assert ("Warning", reconcile.REASON_PODS_DID_NOT_STOP) in [(k, reason) for k, reason, _ in rec.events]
    assert rec.tracking.runs[RUN]["status"] == "FAILED"
    assert _run_closed(api) == [("True", "Closed")]
    assert "train-1" not in api.jobs, "our finalizer released (the API deletes the Job once its Pods go)"
    r.finish(api.cj, attempt=302)  # a replay changes nothing
    assert len(rec.finalized) == 1


def test_the_pod_stop_budget_is_the_deployments_setting() -> None:
    """``CUSTOMJOB_POD_STOP_SECONDS``: the e2e fault test runs the real wait with a budget of seconds."""
    api, rec = FakeApi(_customjob()), Recorder()
    clock = {"now": NOW}
    r = _reconciler(api, rec, clock=lambda: clock["now"], policy=Policy(pod_stop_seconds=8))
    _running(api, r)
    api.jobs["train-1"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:06:00Z"
    r.sync_status(NS, "train-1")
    api.gc_pods_on_foreground_delete = False
    with pytest.raises(reconcile.RetryLater, match="pods"):
        r.finish(api.cj)
    waiting = [c for c in api.cj["status"]["conditions"] if c["type"] == reconcile.CONDITION_PODS_STOPPED]
    assert "waiting up to 8 s" in waiting[0]["message"]
    clock["now"] += timedelta(seconds=9)
    r.finish(api.cj, attempt=1)
    pods_stopped = [c for c in api.cj["status"]["conditions"] if c["type"] == reconcile.CONDITION_PODS_STOPPED]
    assert [(c["status"], c["reason"]) for c in pods_stopped] == [("False", reconcile.REASON_PODS_DID_NOT_STOP)]
    assert "within 8 s" in pods_stopped[0]["message"]
    assert rec.tracking.runs[RUN]["status"] == "FAILED"


def test_pods_that_stop_within_the_budget_are_recorded_stopped() -> None:
    api, rec = FakeApi(_customjob()), Recorder()
    r = _reconciler(api, rec)
    _running(api, r)
    api.jobs["train-1"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:06:00Z"
    r.sync_status(NS, "train-1")
    api.gc_pods_on_foreground_delete = False
    with pytest.raises(reconcile.RetryLater):
        r.finish(api.cj)
    api.pods.clear()
    r.finish(api.cj, attempt=1)
    pods_stopped = [c for c in api.cj["status"]["conditions"] if c["type"] == reconcile.CONDITION_PODS_STOPPED]
    assert [(c["status"], c["reason"]) for c in pods_stopped] == [("True", "Stopped")]
    assert rec.tracking.runs[RUN]["status"] == "FAILED"


def test_an_event_whose_sync_failed_is_repaired_by_the_periodic_resync(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    """kopf does not retry an ``on.event`` handler: a failed last Job event must not leave the CustomJob Running."""
    api, _, r = world
    _running(api, r)
    _complete(api)
    api.patch_errors_to_inject = 1
    with pytest.raises(RuntimeError, match="500"):
        r.sync_status(NS, "train-1")  # the Job's final event: kopf logs it and moves on
    assert api.cj["status"]["phase"] == "Running"
    r.resync(NS, "train-1")  # the timer, some seconds later
    assert (api.cj["status"]["phase"], api.cj["status"]["reason"]) == ("Succeeded", "Completed")


def test_the_resync_leaves_a_customjob_without_a_job_to_ensure_job(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, rec, r = world
    rec.tracking.down = True
    with pytest.raises(reconcile.RetryLater):
        r.ensure_job(api.cj)
    writes = len(api.patches)
    r.resync(NS, "train-1")
    assert len(api.patches) == writes
    assert api.cj["status"]["reason"] == "MLflowUnreachable", "not overwritten with JobNotCreated"


def test_ten_conflicts_in_a_row_still_end_with_the_status_written(
    world: tuple[FakeApi, Recorder, reconcile.Reconciler],
) -> None:
    api, _, r = world
    r.ensure_job(api.cj)
    api.add_pod("train-1", phase="Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}])
    api.conflicts_to_inject = 10
    r.sync_status(NS, "train-1")
    assert api.conflicts_to_inject == 0
    assert api.cj["status"]["phase"] == "Running"


def test_conflicts_without_end_give_up_after_the_time_budget() -> None:
    """Bounded by time, so a handler thread is never pinned; the next event or resync tries again."""
    api, rec = FakeApi(_customjob()), Recorder()
    monotonic = FakeClock()
    r = _reconciler(api, rec, monotonic=monotonic, sleep=monotonic.sleep)
    r.ensure_job(api.cj)
    api.add_pod("train-1", phase="Running", containerStatuses=[{"name": "trainer", "state": {"running": {}}}])
    api.conflicts_to_inject = 10**6
    r.sync_status(NS, "train-1")
    assert reconcile.STATUS_WRITE_SECONDS <= monotonic.now < reconcile.STATUS_WRITE_SECONDS + 2
    assert api.cj["status"]["phase"] == "Pending"
    api.conflicts_to_inject = 0
    r.resync(NS, "train-1")
    assert api.cj["status"]["phase"] == "Running"
