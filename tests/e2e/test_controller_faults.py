"""Controller faults on the real cluster: each scenario breaks one thing and asserts on state.

State means API objects (the CustomJob's phase, reason and conditions, the
Job's UID and finalizers, Pods), the MLflow run's status, never log lines.
The workload is the controller's own image running ``python3 -c`` (non-root,
already on the node), so each scenario costs seconds and no image build; its
MLflow run is created by the test (tagged for its CustomJob, as the
customjob backend does: the controller acts only on such runs) and left open,
so closing it is the controller's job -- the path a trainer that closes its
own run never shows.

Runs in the e2e tier (kind), sharing its cluster; workers run these in
parallel with other tests, which is itself part of the point (the MLflow
freeze below stalls their MLflow calls for some seconds; they must cope).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness import _exec, contract
from harness._waiting import Probe, wait_for
from harness.images import LOCAL_REGISTRY_HOST
from harness.kubeapi import Kube
from harness.runs import ProjectRunner
from harness.tracking.incluster import MLFLOW_NAMESPACE
from harness.waits import wait_customjob
from harness.workloads import closing
from tests.support.registry import attached_registry

CONTROLLER_NS = "customjob-system"


def _controller_image(kube: Kube) -> str:
    dep = kube.apps.read_namespaced_deployment("customjob-controller", CONTROLLER_NS)
    return str(dep.spec.template.spec.containers[0].image)


def _open_run(launcher: ProjectRunner, owner: str) -> tuple[str, str]:
    """(experiment id, run id) of a RUNNING run nobody will close but the controller of CustomJob ``owner``.

    Tagged for that CustomJob before it exists, with the submitter's own function: the controller
    creates a Job for, and closes, only a run whose workload tag names its CustomJob.
    """
    mlflow = launcher.client
    experiment = mlflow.create_experiment(f"{launcher.namespace}-{uuid.uuid4().hex[:6]}")
    tag = closing.workload_tag({"kind": contract.KIND, "metadata": {"namespace": launcher.namespace, "name": owner}})
    return experiment, mlflow.create_run(experiment, tags={contract.TAG_WORKLOAD: tag}).info.run_id


def _customjob(launcher: ProjectRunner, name: str, script: str, *, image: str | None = None,
               run: tuple[str, str] | None = None, tracking_uri: str | None = None) -> dict[str, Any]:
    kube = launcher.stack.cluster.kube
    spec: dict[str, Any] = {"image": image or _controller_image(kube), "command": ["python3", "-c", script],
                            "imagePullPolicy": "IfNotPresent"}
    if run is not None:
        spec["mlflow"] = {"experimentId": run[0], "runId": run[1],
                          "trackingUri": tracking_uri or launcher.stack.pod_tracking_uri}
    body = {"apiVersion": contract.API_VERSION, "kind": contract.KIND,
            "metadata": {"name": name, "namespace": launcher.namespace}, "spec": spec}
    return dict(kube.custom.create_namespaced_custom_object(
        contract.GROUP, contract.VERSION, launcher.namespace, contract.PLURAL, body))


def _get(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(kube.get_custom(contract.GROUP, contract.VERSION, namespace, contract.PLURAL, name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _run_closed(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    obj = _get(kube, namespace, name) or {}
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == contract.CONDITION_RUN_CLOSED:
            return dict(cond)
    return None


def _wait_run_closed(kube: Kube, namespace: str, name: str, *, status: str, reason: str | None = None,
                     timeout: float = 120) -> dict[str, Any]:
    def probe() -> Probe[dict[str, Any]]:
        cond = _run_closed(kube, namespace, name)
        ok = cond is not None and cond["status"] == status and (reason is None or cond["reason"] == reason)
        return Probe(ok, f"{contract.CONDITION_RUN_CLOSED}: " + (
            f"{cond['status']}/{cond['reason']}" if cond else "absent"), cond)

    found = wait_for(probe, what=f"condition {contract.CONDITION_RUN_CLOSED}={status} on {name}", timeout=timeout)
    assert found is not None
    return found


def _run_status(launcher: ProjectRunner, run_id: str) -> str:
    return str(launcher.client.get_run(run_id).info.status)


def _wait_run_status(launcher: ProjectRunner, run_id: str, want: str, timeout: float = 120) -> None:
    def probe() -> Probe[None]:
        status = _run_status(launcher, run_id)
        return Probe(status == want, f"run {status}")

    wait_for(probe, what=f"MLflow run {run_id} to be {want}", timeout=timeout)


def _job_pods(kube: Kube, namespace: str, name: str, job_uid: str) -> list[Any]:
    pods = kube.core.list_namespaced_pod(namespace, label_selector=f"{contract.LABEL_CUSTOMJOB}={name}").items
    return [p for p in pods if any(ref.uid == job_uid for ref in p.metadata.owner_references or ())]


@contextmanager
def _disrupting(kube: Kube, what: str) -> Iterator[None]:
    """One disruption of the shared stack at a time per cluster (xdist workers share it).

    Freezing MLflow, restarting the controller and changing its environment each
    stall every CustomJob's closing for a while; a test that reads the order of
    a close and a grace period (the stuck-Pod budget) takes this too, so none
    of them runs inside another's outage (CI 24: MLflow frozen by a test beside
    it refused the budget's close, and the Pod's end closed the run instead).
    """
    import tempfile

    from harness.nodeimage.cache import build_lock

    with build_lock(Path(tempfile.gettempdir()), name=f"harness-e2e-disruption-{kube.kubeconfig.parent.name}.lock",
                    what=f"a disruption of the stack: {what}", timeout=600):
        yield


@contextmanager
def _mlflow_frozen(launcher: ProjectRunner) -> Iterator[None]:
    """SIGSTOP every process of the in-cluster MLflow server's pod (found by its pod UID in /proc/*/cgroup).

    A frozen server accepts connections and answers nothing: the controller's
    call times out, as with a server that is restarting or overloaded. Unlike
    a pod restart it keeps the server's data (an emptyDir sqlite). kind nodes
    are containers on this host, so their processes are this host's. The
    caller holds :func:`_disrupting` from before the workload it freezes MLflow
    for starts (a wait for the lock must not let that workload end first).
    """
    kube = launcher.stack.cluster.kube
    pods = kube.core.list_namespaced_pod(MLFLOW_NAMESPACE, label_selector="app.kubernetes.io/name=mlflow").items
    running = [p for p in pods if p.status.phase == "Running"]
    assert len(running) == 1, f"one running MLflow pod expected, found {[p.metadata.name for p in pods]}"
    uid = str(running[0].metadata.uid)
    pids = []
    for cgroup in Path("/proc").glob("[0-9]*/cgroup"):
        try:
            text = cgroup.read_text()
        except OSError:
            continue
        if uid in text or uid.replace("-", "_") in text:
            pids.append(int(cgroup.parent.name))
    assert pids, f"no host process in the cgroup of MLflow pod {uid} (not a kind cluster on this host?)"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_the_controller_closes_an_open_run_even_when_mlflow_is_down_as_the_job_ends(
        launcher: ProjectRunner) -> None:
    kube = launcher.stack.cluster.kube
    with _disrupting(kube, "MLflow frozen"):
        run = _open_run(launcher, "outage")
        _customjob(launcher, "outage", "import time; time.sleep(15)", run=run)
        wait_customjob(kube, launcher.namespace, "outage", timeout=120, phases=frozenset({contract.RUNNING}))
        with _mlflow_frozen(launcher):
            # The job ends while MLflow is frozen: the first close fails and is recorded, not lost.
            _wait_run_closed(kube, launcher.namespace, "outage", status="False", reason="MLflowUnreachable")
            assert kube.batch.read_namespaced_job("outage", launcher.namespace).metadata.finalizers == [
                contract.FINALIZER_OUTCOME], "the Job is held while its run is open"
        closed = _wait_run_closed(kube, launcher.namespace, "outage", status="True", timeout=180)
    assert closed["reason"] == "Closed", closed
    assert _run_status(launcher, run[1]) == "FINISHED"
    assert (_get(kube, launcher.namespace, "outage") or {})["status"]["phase"] == contract.SUCCEEDED
    job = kube.batch.read_namespaced_job("outage", launcher.namespace)
    assert contract.FINALIZER_OUTCOME not in (job.metadata.finalizers or ()), "released once closed"


def test_a_controller_restart_while_running_keeps_the_job_and_its_one_pod(launcher: ProjectRunner) -> None:
    kube = launcher.stack.cluster.kube
    with _disrupting(kube, "the controller restarted"):
        run = _open_run(launcher, "restart")
        _customjob(launcher, "restart", "import time; time.sleep(25)", run=run)
        wait_customjob(kube, launcher.namespace, "restart", timeout=120, phases=frozenset({contract.RUNNING}))
        job_uid = kube.batch.read_namespaced_job("restart", launcher.namespace).metadata.uid
        for pod in kube.core.list_namespaced_pod(CONTROLLER_NS).items:
            kube.core.delete_namespaced_pod(pod.metadata.name, CONTROLLER_NS, grace_period_seconds=0)
        kube.wait_deployment_available(CONTROLLER_NS, "customjob-controller", timeout=180)
    done = wait_customjob(kube, launcher.namespace, "restart", timeout=180)
    assert done["status"]["phase"] == contract.SUCCEEDED, done["status"]
    job = kube.batch.read_namespaced_job("restart", launcher.namespace)
    assert job.metadata.uid == job_uid, "the restarted controller adopted the Job, it did not re-create it"
    assert len(_job_pods(kube, launcher.namespace, "restart", job_uid)) == 1, "one pod: nothing ran twice"
    _wait_run_status(launcher, run[1], "FINISHED")


def test_a_customjob_deleted_mid_run_stops_its_pod_and_ends_its_run_killed(launcher: ProjectRunner) -> None:
    kube = launcher.stack.cluster.kube
    run = _open_run(launcher, "deleted")
    _customjob(launcher, "deleted", "import time; time.sleep(600)", run=run)
    wait_customjob(kube, launcher.namespace, "deleted", timeout=120, phases=frozenset({contract.RUNNING}))
    job_uid = kube.batch.read_namespaced_job("deleted", launcher.namespace).metadata.uid
    kube.custom.delete_namespaced_custom_object(contract.GROUP, contract.VERSION, launcher.namespace,
                                                contract.PLURAL, "deleted")
    _wait_run_status(launcher, run[1], "KILLED", timeout=180)
    assert "CustomJobDeleted" in launcher.client.get_run(run[1]).data.tags.get(contract.TAG_FAILURE_REASON, "")

    def gone() -> Probe[None]:
        jobs = kube.batch.list_namespaced_job(launcher.namespace).items
        pods = _job_pods(kube, launcher.namespace, "deleted", job_uid)
        return Probe(not jobs and not pods, f"{len(jobs)} jobs, {len(pods)} pods")

    wait_for(gone, what="the deleted CustomJob's Job and pod to be gone", timeout=120)


def test_a_foreign_job_of_the_same_name_fails_the_customjob_and_is_left_alone(launcher: ProjectRunner) -> None:
    kube = launcher.stack.cluster.kube
    theirs = client.V1Job(
        metadata=client.V1ObjectMeta(name="taken"),
        spec=client.V1JobSpec(suspend=True, template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image=_controller_image(kube))]))))
    uid = kube.batch.create_namespaced_job(launcher.namespace, theirs).metadata.uid
    _customjob(launcher, "taken", "print('never runs')")
    done = wait_customjob(kube, launcher.namespace, "taken", timeout=120)
    assert (done["status"]["phase"], done["status"]["reason"]) == (contract.FAILED, "JobNameTaken"), done["status"]
    assert "delete or rename that Job" in done["status"]["message"]
    job = kube.batch.read_namespaced_job("taken", launcher.namespace)
    assert job.metadata.uid == uid, "the user's Job was not replaced"
    assert not job.metadata.deletion_timestamp, "nor deleted"


def test_a_pod_refused_by_a_resource_quota_fails_with_the_quota_message(launcher: ProjectRunner) -> None:
    kube = launcher.stack.cluster.kube
    kube.core.create_namespaced_resource_quota(launcher.namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "0"})))
    _customjob(launcher, "refused", "print('never runs')")
    done = wait_customjob(kube, launcher.namespace, "refused", timeout=150)  # 30 s grace + rechecks
    status = done["status"]
    assert (status["phase"], status["reason"]) == (contract.FAILED, "FailedCreate"), status
    assert "exceeded quota: no-pods" in status["message"], status

    def job_gone() -> Probe[None]:
        jobs = [j.metadata.name for j in kube.batch.list_namespaced_job(launcher.namespace).items]
        return Probe(not jobs, f"jobs: {jobs}")

    wait_for(job_gone, what="the refused Job to be stopped", timeout=60)


def test_a_pull_error_that_clears_within_the_grace_still_succeeds(launcher: ProjectRunner) -> None:
    registry = attached_registry(launcher)
    kube = launcher.stack.cluster.kube
    suffix = uuid.uuid4().hex[:8]
    local = f"fault-late-{suffix}:1"
    image = f"{LOCAL_REGISTRY_HOST}/{local}"
    # The layers go up first under another name, so the "late" push below moves only a manifest (the
    # registry has the blobs). Pushing 250 MB after the first failure raced the kubelet's pull back-off
    # (10, 20, 40 s) against the 45 s grace on a loaded machine: the test then measured the machine.
    # The image is the controller's plus a label: its own image id. A node that pulls a second name for
    # the very image id kind loaded as customjob-controller:<tag> can lose that tag from the CRI's view
    # (containerd 2.4: ctr still lists it, the kubelet pulls it and fails), which failed the controller
    # tests running beside this one under -n 2.
    early = f"fault-layers-{suffix}:1"
    tags = [early, f"{LOCAL_REGISTRY_HOST}/{early}", local, image]
    try:
        _exec.run(["docker", "build", "-q", "-t", early, "-"], timeout=120,
                  input=f"FROM {_controller_image(kube)}\nLABEL harness.test=pull-grace-{suffix}\n")
        registry.push(early)
        _customjob(launcher, "late", "print('pulled after all')", image=image)

        def pull_failing() -> Probe[None]:
            reason = ((_get(kube, launcher.namespace, "late") or {}).get("status") or {}).get("reason")
            return Probe(reason in ("ErrImagePull", "ImagePullBackOff"), f"reason {reason}")

        wait_for(pull_failing, what="the first pull of a not-yet-pushed image to fail", timeout=90)
        _exec.run(["docker", "tag", early, local], timeout=60)
        registry.push(local)  # the registry "comes back": the kubelet's next retry pulls it
        done = wait_customjob(kube, launcher.namespace, "late", timeout=150)
    finally:  # the tags, and with the last one the labelled image (its layers are the controller's)
        _exec.run(["docker", "image", "rm", *tags], timeout=60, check=False)
    assert done["status"]["phase"] == contract.SUCCEEDED, done["status"]



def test_a_customjob_naming_another_customjobs_run_fails_and_leaves_that_run_alone(
        launcher: ProjectRunner) -> None:
    """The confused deputy (issue #24): creating a CustomJob must not let anyone end someone else's run."""
    kube = launcher.stack.cluster.kube
    theirs = _open_run(launcher, "theirs")
    ours = _open_run(launcher, "deputy")  # the deputy's own run, which it does not name
    _customjob(launcher, "theirs", "import time; time.sleep(45)", run=theirs)
    wait_customjob(kube, launcher.namespace, "theirs", timeout=120, phases=frozenset({contract.RUNNING}))
    before = {run_id: launcher.client.get_run(run_id) for _, run_id in (theirs, ours)}

    _customjob(launcher, "deputy", "print('never runs')", run=theirs)
    done = wait_customjob(kube, launcher.namespace, "deputy", timeout=120)
    status = done["status"]
    assert (status["phase"], status["reason"]) == (contract.FAILED, contract.REASON_RUN_NOT_OWNED), status
    assert f"belongs to CustomJob {launcher.namespace}/theirs, not to CustomJob {launcher.namespace}/deputy" \
        in status["message"], status
    assert f"{contract.TAG_WORKLOAD}='CustomJob {launcher.namespace}/deputy'" in status["message"], "names the fix"
    # finish() has run for the Failed deputy (its decision is recorded): only now is "untouched" a fact
    _wait_run_closed(kube, launcher.namespace, "deputy", status="False", reason=contract.REASON_RUN_NOT_OWNED)
    jobs = [j.metadata.name for j in kube.batch.list_namespaced_job(launcher.namespace).items]
    assert jobs == ["theirs"], f"no Job for the deputy: {jobs}"
    for run_id, was in before.items():
        now = launcher.client.get_run(run_id)
        assert now.info.status == "RUNNING", (run_id, now.info.status)
        assert now.info.end_time is None
        assert now.data.tags == was.data.tags, f"tags of run {run_id} changed"

    # Its owner still runs it to the end and closes it.
    ended = wait_customjob(kube, launcher.namespace, "theirs", timeout=180)
    assert ended["status"]["phase"] == contract.SUCCEEDED, ended["status"]
    _wait_run_status(launcher, theirs[1], "FINISHED")
    assert _run_status(launcher, ours[1]) == "RUNNING"


def test_a_customjob_refused_by_policy_fails_its_run_and_mlflow_run(launcher: ProjectRunner) -> None:
    """A tracking server the controller may not call: it cannot close the run, so the submitter does."""
    kube = launcher.stack.cluster.kube
    trainer = launcher.spec("trainer")
    elsewhere = "http://mlflow.not-allowed.invalid:5000"
    spec = dataclasses.replace(trainer, name="trainer-elsewhere",
                               backend_config={**trainer.backend_config, "tracking-uri": elsewhere})
    experiment, proc = launcher.mlflow_run("alpha=0.5", project=spec, check=False)
    assert proc.returncode != 0, "mlflow run reports the refusal"
    run_id = launcher.only_run_id(experiment)
    run = launcher.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert "TrackingUriNotAllowed" in run.data.tags[contract.TAG_FAILURE_REASON], run.data.tags
    assert elsewhere in run.data.tags[contract.TAG_FAILURE_REASON]
    assert run.data.tags[closing.CLOSED_BY_TAG] == "submitter"
    found = launcher.customjob(run_id)
    assert found is not None
    status = found["status"]
    assert (status["phase"], status["reason"]) == (contract.FAILED, "TrackingUriNotAllowed"), status
    assert kube.batch.list_namespaced_job(launcher.namespace).items == [], "nothing ran"


def test_a_customjob_deleted_with_cascade_orphan_strands_neither_its_job_nor_its_run(launcher: ProjectRunner) -> None:
    """``kubectl delete cjob NAME --cascade=orphan`` (issue #24): the Job loses its ownerReference, not its finalizer.

    Before, nothing released that finalizer: the Job could never be deleted
    (nor its namespace) and the run stayed RUNNING. The run is tagged with
    the CustomJob's uid as the backend tags it once the object exists, the
    case in which the orphaned Job alone no longer says whose run it is.
    """
    kube = launcher.stack.cluster.kube
    run = _open_run(launcher, "orphaned")
    created = _customjob(launcher, "orphaned", "import time; time.sleep(600)", run=run)
    launcher.client.set_tag(run[1], contract.TAG_WORKLOAD, closing.workload_tag(created))
    wait_customjob(kube, launcher.namespace, "orphaned", timeout=120, phases=frozenset({contract.RUNNING}))
    running = _get(kube, launcher.namespace, "orphaned") or {}
    assert not running["metadata"].get("finalizers"), "the resync timer puts no kopf finalizer on a CustomJob"
    job_uid = kube.batch.read_namespaced_job("orphaned", launcher.namespace).metadata.uid
    kube.custom.delete_namespaced_custom_object(contract.GROUP, contract.VERSION, launcher.namespace,
                                                contract.PLURAL, "orphaned",
                                                body=client.V1DeleteOptions(propagation_policy="Orphan"))

    def released() -> Probe[None]:
        try:
            job = kube.batch.read_namespaced_job("orphaned", launcher.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return Probe(True, "Job gone")
            raise
        finalizers = job.metadata.finalizers or []
        refs = [ref.kind for ref in job.metadata.owner_references or ()]
        return Probe(contract.FINALIZER_OUTCOME not in finalizers, f"finalizers {finalizers}, owners {refs}")

    wait_for(released, what="the orphaned Job to lose the controller's finalizer", timeout=120)
    assert _get(kube, launcher.namespace, "orphaned") is None, "the CustomJob is gone"
    with contextlib.suppress(ApiException):  # 404: the controller's stop already removed it
        kube.batch.delete_namespaced_job("orphaned", launcher.namespace, propagation_policy="Foreground")

    def gone() -> Probe[None]:
        jobs = [j.metadata.name for j in kube.batch.list_namespaced_job(launcher.namespace).items]
        pods = _job_pods(kube, launcher.namespace, "orphaned", job_uid)
        return Probe(not jobs and not pods, f"jobs {jobs}, {len(pods)} pods")

    wait_for(gone, what="the orphaned Job and its pod to be deleted", timeout=120)
    _wait_run_status(launcher, run[1], "KILLED", timeout=60)
    assert "CustomJobDeleted" in launcher.client.get_run(run[1]).data.tags.get(contract.TAG_FAILURE_REASON, "")


@contextmanager
def _status_writes_refused(kube: Kube, namespace: str, phase: str) -> Iterator[None]:
    """The API server refuses every status write that sets ``phase`` on a CustomJob of ``namespace``.

    A ValidatingAdmissionPolicy (CEL, no webhook server to run) bound to this
    namespace only, so tests beside it are untouched. It is in force once a
    dry-run write of that phase is refused, not merely once it exists.
    """
    admission = client.AdmissionregistrationV1Api(kube.api)
    name = f"harness-fault-{namespace}"
    admission.create_validating_admission_policy({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [contract.GROUP], "apiVersions": ["*"], "operations": ["UPDATE"],
                "resources": [f"{contract.PLURAL}/status"]}]},
            "validations": [{
                "expression": f"!has(object.status) || !has(object.status.phase) || object.status.phase != '{phase}'",
                "message": f"fault test: status writes that set phase {phase} are refused"}]}})
    try:
        admission.create_validating_admission_policy_binding({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}}})
        yield
    finally:
        with contextlib.suppress(ApiException):
            admission.delete_validating_admission_policy_binding(name)
        with contextlib.suppress(ApiException):
            admission.delete_validating_admission_policy(name)


def _refused(kube: Kube, namespace: str, name: str, phase: str) -> Probe[None]:
    """Whether a dry-run status write of ``phase`` on CustomJob ``name`` is refused (HTTP 422) now."""
    try:
        kube.custom.patch_namespaced_custom_object_status(
            contract.GROUP, contract.VERSION, namespace, contract.PLURAL, name, {"status": {"phase": phase}},
            dry_run="All")
    except ApiException as exc:
        return Probe(exc.status == 422, f"HTTP {exc.status}")
    return Probe(False, "admitted")


def test_a_refused_final_status_write_is_repaired_by_the_resync(launcher: ProjectRunner) -> None:
    """The API refuses the status write that ends the job (issue #24): kopf retries no event, the resync must.

    While the refusal lasts, the Job completes and every event it sends is
    lost (the write is refused); afterwards no event comes, so only the
    controller's periodic resync can write ``Succeeded`` and close the run.
    """
    kube = launcher.stack.cluster.kube
    ns = launcher.namespace
    run = _open_run(launcher, "refused-write")
    _customjob(launcher, "refused-write", "import time; time.sleep(15)", run=run)
    wait_customjob(kube, ns, "refused-write", timeout=120, phases=frozenset({contract.RUNNING}))
    with _status_writes_refused(kube, ns, contract.SUCCEEDED):
        wait_for(lambda: _refused(kube, ns, "refused-write", contract.SUCCEEDED),
                 what="the admission policy to refuse a Succeeded status write", timeout=60)

        def complete() -> Probe[None]:
            job = kube.batch.read_namespaced_job("refused-write", ns)
            conds = [c.type for c in job.status.conditions or () if c.status == "True"]
            return Probe("Complete" in conds, f"Job conditions {conds}")

        wait_for(complete, what="the Job to complete", timeout=120)
        # The Job's trailing events (pod counts, the finished Pod) arrive while writes are still refused.
        time.sleep(8)
        held = (_get(kube, ns, "refused-write") or {}).get("status") or {}
        assert held.get("phase") == contract.RUNNING, f"the refused write did not land: {held}"
        assert _run_status(launcher, run[1]) == "RUNNING", "nothing closed the run meanwhile"
    done = wait_customjob(kube, ns, "refused-write", timeout=120)  # resync every 30 s
    assert done["status"]["phase"] == contract.SUCCEEDED, done["status"]
    _wait_run_status(launcher, run[1], "FINISHED")
    closed = _wait_run_closed(kube, ns, "refused-write", status="True")
    assert closed["reason"] == "Closed", closed

    def released() -> Probe[None]:
        finalizers = kube.batch.read_namespaced_job("refused-write", ns).metadata.finalizers or []
        return Probe(contract.FINALIZER_OUTCOME not in finalizers, f"finalizers {finalizers}")

    wait_for(released, what="the Job to be released", timeout=60)


@contextmanager
def _controller_env(kube: Kube, values: dict[str, str]) -> Iterator[None]:
    """The controller runs with ``values`` in its environment (one rollout), and as shipped again afterwards.

    A variable the shipped Deployment lacks is removed again. Tests beside this one see the controller
    restart twice, as in :func:`test_a_controller_restart_while_running_keeps_the_job_and_its_one_pod`;
    they must cope.
    """
    with _disrupting(kube, "the controller's environment changed"):
        dep = kube.apps.read_namespaced_deployment("customjob-controller", CONTROLLER_NS)
        [container] = dep.spec.template.spec.containers
        shipped = {e.name: e.value for e in container.env or () if e.name in values}
        yield from _with_env(kube, container.name, values, shipped)


def _with_env(kube: Kube, container: str, values: dict[str, str], shipped: dict[str, str]) -> Iterator[None]:
    def set_to(env: list[dict[str, str]]) -> None:
        kube.apps.patch_namespaced_deployment("customjob-controller", CONTROLLER_NS, {"spec": {"template": {"spec": {
            "containers": [{"name": container, "env": env}]}}}})
        kube.wait_deployment_available(CONTROLLER_NS, "customjob-controller", timeout=180)

    set_to([{"name": k, "value": v} for k, v in values.items()])
    try:
        yield
    finally:
        set_to([{"name": k, "value": shipped[k]} if k in shipped else {"name": k, "$patch": "delete"}
                for k in values])


def test_pods_that_do_not_stop_are_waited_for_the_budget_then_the_run_is_closed(launcher: ProjectRunner) -> None:
    """A stopped Job's Pod that does not go (issue #24): the wait has its own budget and its end is recorded.

    The Pods ignore SIGTERM, so once stopped they run on for their 30 s grace
    period, as a Pod on a NotReady node runs on for good. With a 10 s budget
    (``CUSTOMJOB_POD_STOP_SECONDS``; 600 as shipped) the controller gives up
    on them while they still run, twice: for a Job deleted by hand (its
    CustomJob records ``PodsDidNotStop``) and for a Job whose CustomJob was
    deleted with ``--cascade=orphan`` (no CustomJob is left to hold a
    condition or a timer: the stopping Pod's own timer brings it back).

    "While they still run" is read from stamps, not from a look at the Pod
    after the run closed: a stopping Pod's ``deletionTimestamp`` is the end of
    its grace (the kubelet kills it then), so each run must have been closed
    before that instant, however late the test looks. The test holds the
    stack undisturbed (:func:`_disrupting`): with MLflow frozen by a test
    beside it, the budget's close is refused and the Pod's end closes the run.
    """
    kube = launcher.stack.cluster.kube
    ns = launcher.namespace
    ignore_sigterm = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    runs = {name: _open_run(launcher, name) for name in ("stuck", "stuck-orphan")}
    with _controller_env(kube, {"CUSTOMJOB_POD_STOP_SECONDS": "10"}):
        for name, run in runs.items():
            _customjob(launcher, name, ignore_sigterm, run=run)
        uids = {}
        for name in runs:
            wait_customjob(kube, ns, name, timeout=120, phases=frozenset({contract.RUNNING}))
            uids[name] = kube.batch.read_namespaced_job(name, ns).metadata.uid
        kube.batch.delete_namespaced_job("stuck", ns, propagation_policy="Foreground")  # `kubectl delete job`
        orphan = client.V1DeleteOptions(propagation_policy="Orphan")  # `kubectl delete cjob --cascade=orphan`
        kube.custom.delete_namespaced_custom_object(contract.GROUP, contract.VERSION, ns, contract.PLURAL,
                                                    "stuck-orphan", body=orphan)

        def gave_up() -> Probe[dict[str, Any]]:
            conds = ((_get(kube, ns, "stuck") or {}).get("status") or {}).get("conditions") or ()
            found = next((dict(c) for c in conds if c.get("type") == "PodsStopped"), None)
            return Probe(bool(found) and found.get("reason") == "PodsDidNotStop",
                         f"PodsStopped: {found.get('reason') if found else 'absent'}", found)

        def grace_end(name: str) -> dt.datetime:
            """When the Pod of ``name``'s Job, once stopping, is killed: read as soon as it is set."""
            def stopping() -> Probe[dt.datetime]:
                pods = _job_pods(kube, ns, name, uids[name])
                ends = [p.metadata.deletion_timestamp for p in pods if p.metadata.deletion_timestamp]
                return Probe(bool(ends), f"{len(pods)} pod(s), stopping: {len(ends)}", ends[0] if ends else None)

            found = wait_for(stopping, what=f"the Pod of {name} to be stopping", timeout=60, interval=0.5)
            assert found is not None
            return found

        def closed_in_grace(name: str, run_id: str, grace: dt.datetime) -> None:
            """The run was closed, and the Job released, before the Pod's grace ended: the budget ended the wait."""
            def released() -> Probe[None]:
                jobs = {j.metadata.name: j for j in kube.batch.list_namespaced_job(ns).items}
                held = name in jobs and contract.FINALIZER_OUTCOME in (jobs[name].metadata.finalizers or ())
                return Probe(not held, "held" if held else "released (or collected)")

            wait_for(released, what=f"Job {name} to be released", timeout=20, interval=0.5)
            ended = launcher.client.get_run(run_id).info.end_time
            assert ended is not None
            closed = dt.datetime.fromtimestamp(ended / 1000, tz=dt.UTC)
            assert closed < grace, f"the run of {name} closed at {closed:%T}, after its Pod's grace ended " \
                                   f"({grace:%T}): the Pod's end ended the wait, not the budget"

        graces = {name: grace_end(name) for name in runs}
        condition = wait_for(gave_up, what="the controller to give up waiting for the Pod", timeout=90)
        assert condition is not None
        assert condition["status"] == "False", condition
        _wait_run_status(launcher, runs["stuck"][1], "FAILED", timeout=60)
        closed_in_grace("stuck", runs["stuck"][1], graces["stuck"])
        assert "JobDeleted" in launcher.client.get_run(runs["stuck"][1]).data.tags.get(contract.TAG_FAILURE_REASON, "")
        events = kube.core.list_namespaced_event(ns, field_selector="involvedObject.name=stuck").items
        assert ("Warning", "PodsDidNotStop") in {(e.type, e.reason) for e in events}
        _wait_run_status(launcher, runs["stuck-orphan"][1], "KILLED", timeout=60)
        closed_in_grace("stuck-orphan", runs["stuck-orphan"][1], graces["stuck-orphan"])

    def gone() -> Probe[None]:
        jobs = [j.metadata.name for j in kube.batch.list_namespaced_job(ns).items]
        left = [name for name in runs if _job_pods(kube, ns, name, uids[name])]
        return Probe(not jobs and not left, f"jobs {jobs}, pods of {left}")

    wait_for(gone, what="the Jobs and their Pods to go once the Pods' grace period ends", timeout=120)


def test_a_secret_a_failing_job_printed_is_masked_in_its_status_events_and_run(launcher: ProjectRunner) -> None:
    """A crashed trainer's last lines go to status.message, an Event and the run's failure reason (issue #24):
    readers of those must not get a secret it printed. The line is copied, the secret is masked."""
    kube = launcher.stack.cluster.kube
    ns = launcher.namespace
    secret = f"s3cr3t-{uuid.uuid4().hex[:12]}"
    run = _open_run(launcher, "leaky")
    _customjob(launcher, "leaky", f"import sys; print('connecting with password={secret} to db'); sys.exit(3)",
               run=run)
    done = wait_customjob(kube, ns, "leaky", timeout=180)
    assert done["status"]["phase"] == contract.FAILED, done["status"]
    _wait_run_status(launcher, run[1], "FAILED")
    message = str(done["status"].get("message", ""))
    reason = str(launcher.client.get_run(run[1]).data.tags.get(contract.TAG_FAILURE_REASON, ""))
    events = [str(e.message or "") for e in kube.core.list_namespaced_event(
        ns, field_selector="involvedObject.name=leaky").items]
    copied = {"status.message": message, "failure reason tag": reason,
              **{f"event {i}": m for i, m in enumerate(events)}}
    assert any("connecting with password=" in text for text in copied.values()), copied
    assert [where for where, text in copied.items() if secret in text] == [], copied


_WITNESS = """
import http.server, json, os
target = os.environ.get("REDIRECT_TO")
class Witness(http.server.BaseHTTPRequestHandler):
    def _any(self):
        print(json.dumps({"path": self.path, "authorization": self.headers.get("Authorization")}), flush=True)
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target + self.path)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    do_GET = do_POST = _any
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Witness).serve_forever()
"""


def _witness(kube: Kube, namespace: str, name: str, redirect_to: str | None = None) -> str:
    """A loopback-style HTTP server as a Pod and Service in ``namespace`` that prints every request it gets
    (path and Authorization header) and answers 200, or 302 to ``redirect_to``; its in-cluster URL."""
    labels = {"app.kubernetes.io/name": name}
    kube.core.create_namespaced_pod(namespace, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{
            "name": "server", "image": _controller_image(kube), "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", _WITNESS],
            "env": [{"name": "REDIRECT_TO", "value": redirect_to}] if redirect_to else [],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}]}})
    kube.core.create_namespaced_service(namespace, {
        "metadata": {"name": name}, "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]}})
    return f"http://{name}.{namespace}.svc.cluster.local:8080"


def _requests_seen(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    """What witness ``name`` received, one record per request (its own output, parsed)."""
    import json

    text = kube.core.read_namespaced_pod_log(name, namespace, container="server")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _pod_ready(kube: Kube, namespace: str, name: str) -> Probe[None]:
    pod = kube.core.read_namespaced_pod(name, namespace)
    ready = [c.status for c in pod.status.conditions or () if c.type == "Ready"]
    return Probe(ready == ["True"], f"{pod.status.phase}, Ready {ready}")


def test_the_token_goes_only_to_the_listed_tracking_server_never_where_it_redirects(
        launcher: ProjectRunner) -> None:
    """The controller holds a tracking token (issue #24). A CustomJob names a tracking server the policy lists,
    which answers every call with a 302 to another server (an attacker's, in-cluster here). The listed server
    gets the token; the other gets nothing at all (no redirect is followed, with or without the token); the
    CustomJob waits as MLflowUnreachable and no Job is created for a run whose owner could not be read."""
    kube = launcher.stack.cluster.kube
    ns = launcher.namespace
    token = f"tok-{uuid.uuid4().hex}"
    attacker = _witness(kube, ns, "attacker")
    listed = _witness(kube, ns, "listed", redirect_to=attacker)
    for name in ("attacker", "listed"):
        wait_for(lambda name=name: _pod_ready(kube, ns, name), what=f"witness {name} to be ready", timeout=120)
    dep = kube.apps.read_namespaced_deployment("customjob-controller", CONTROLLER_NS)
    allowed = next(e.value for e in dep.spec.template.spec.containers[0].env
                   if e.name == "CUSTOMJOB_ALLOWED_TRACKING_URIS")
    with _controller_env(kube, {"CUSTOMJOB_ALLOWED_TRACKING_URIS": f"{allowed},{listed}",
                                "MLFLOW_TRACKING_TOKEN": token}):
        run_id = uuid.uuid4().hex
        _customjob(launcher, "redirected", "print('never runs')", run=("0", run_id), tracking_uri=listed)

        def asked() -> Probe[dict[str, Any]]:
            obj = _get(kube, ns, "redirected") or {}
            st = obj.get("status") or {}
            return Probe(st.get("reason") == "MLflowUnreachable" and bool(_requests_seen(kube, ns, "listed")),
                         f"status {st.get('phase')}/{st.get('reason')}", st)

        waiting = wait_for(asked, what="the controller to ask the listed server whose run it is", timeout=120)
    assert waiting is not None
    assert waiting["phase"] == contract.PENDING, waiting
    assert "redirect" in str(waiting.get("message", "")), waiting
    to_listed = _requests_seen(kube, ns, "listed")
    assert to_listed, "the listed server was asked"
    assert {r["authorization"] for r in to_listed} == {f"Bearer {token}"}, to_listed
    assert all(run_id in r["path"] for r in to_listed), to_listed
    assert _requests_seen(kube, ns, "attacker") == [], "a redirect was followed"
    assert kube.batch.list_namespaced_job(ns).items == [], "no Job for a run whose owner is unknown"
