"""E2E: the trainer through workload kinds other than the stub's, on the real cluster.

* a team's own CRD (``examples/trainingrun``), defined in the settings only;
* a plain ``batch/v1`` Job (the ``job`` preset: MLflow's kubernetes backend semantics; the Job
  controller knows nothing of MLflow, so the submitter closes the run from the Job's conditions);
* MLflow's own kubernetes example config and Job template, as MLflow ships them;
* the stub CustomJob's runs carry their pods' logs too.

Each asserts the run's end, who closed it, its params/metrics/model, and the pods' logs on the run.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from harness import assert_run, assert_workload
from harness.evidence import collect_bundle
from harness.kubeapi import Kube
from harness.runs import ProjectRun, mlflow_run, only_run_id
from harness.settings import Settings
from harness.stack import Stack
from harness.workloads import CUSTOMJOB, JOB, PRESETS, closing
from harness.workloads.api import WorkloadClient
from tests.support.trainer import TRAINER_DIR, check_trained_run, load_wine_rows

SAMPLE = load_wine_rows(TRAINER_DIR / "wine-quality.csv")
PARAMS = {"alpha": "0.5", "l1_ratio": "0.1"}
MLFLOW_EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "mlflow-kubernetes-example"


def _log_text(run: ProjectRun) -> str:
    """Every attached log file of the run, concatenated (downloaded through the tracking server)."""
    import mlflow.artifacts

    out = []
    for path in run.logs:
        local = mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path=path,
                                                   tracking_uri=run.tracking_uri)
        out.append(Path(local).read_text())
    return "\n".join(out)


def test_trainer_runs_as_a_plain_batch_job(project_run: Callable[..., ProjectRun], e2e_kube: Kube,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    run = project_run("trainer-job", alpha=0.5)
    assert (run.kind, run.status, run.workload_state) == ("job", "FINISHED", "FINISHED"), run.output[-3000:]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
    check_trained_run(run.client, run.run_id, params=PARAMS, sample=SAMPLE)
    facts = assert_run(run, logs=True)
    assert run.closed_by == "workload", "the trainer's own `with mlflow.start_run()` ended a successful run"
    job = assert_workload(e2e_kube, JOB, run.namespace, run.name, status="FINISHED", run_id=run.run_id)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "wine-quality"  # MLflow's semantics: the container is named after the project
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_RUN_ID"] == run.run_id  # the identity travels as env: a Job's controller knows no MLflow
    pod = e2e_kube.core.list_namespaced_pod(run.namespace, label_selector=f"batch.kubernetes.io/job-name={run.name}")
    (pod_name,) = [p.metadata.name for p in pod.items]
    assert facts.logs == (f"logs/{pod_name}/wine-quality.txt",)
    assert "ElasticNet(alpha=0.5" in _log_text(run)
    assert facts.tags[closing.WORKLOAD_TAG].startswith(f"Job {run.namespace}/{run.name} uid=")


def test_a_failing_job_ends_failed_closed_by_the_submitter_with_the_pods_reason(
    project_run: Callable[..., ProjectRun], e2e_kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = project_run("trainer-job", alpha=-1)  # a float MLflow accepts; train.py exits 1 before start_run
    assert (run.status, run.workload_state, run.closed_by) == ("FAILED", "FAILED", "submitter"), run.output[-3000:]
    assert "failed" in run.output  # `mlflow run` waited for the Job and exited non-zero
    tags = run.client.get_run(run.run_id).data.tags
    reason = tags[JOB.failure_tag]
    assert f"Job {run.namespace}/{run.name}" in reason
    assert "first failure:" in reason, reason
    assert "exit 1" in reason, reason
    assert "alpha must be in" in reason, reason  # the pod's last output, so the run says why
    assert tags[closing.CLOSED_BY_TAG] == "submitter"
    assert run.logs
    assert "alpha must be in" in _log_text(run)

    bundle = collect_bundle(tmp_path_factory.mktemp("bundle"), e2e_kube, namespaces=[run.namespace])
    ns = bundle / run.namespace
    assert "alpha must be in" in "".join(p.read_text() for p in (ns / "logs").glob("*.log"))
    ownership = (ns / "ownership.txt").read_text()
    assert f"Job {run.name} FAILED" in ownership, ownership
    assert "first failure:" in ownership, ownership
    assert "exit 1" in ownership, ownership
    assert run.name in (ns / "jobs.yaml").read_text()


def test_mlflows_own_kubernetes_example_runs_unchanged(e2e_stack: Stack, tmp_path: Path) -> None:
    """MLflow's examples/docker kubernetes_config.json and Job template, through --backend customjob.

    Only what this machine forces changes: the context (the harness's kind cluster, whose private
    kubeconfig is given by KUBECONFIG, as MLflow's backend reads it) and the tracking URI pods use
    (KUBE_MLFLOW_TRACKING_URI, MLflow's own override). No kind-cluster, kind-binary or namespace key:
    the cluster comes from the context's name, kind from the harness's cache, the namespace from the template.
    """
    kube = e2e_stack.cluster.kube
    context = kube.context or yaml.safe_load(Path(kube.kubeconfig).read_text())["current-context"]
    config = json.loads((MLFLOW_EXAMPLE / "kubernetes_config.json").read_text())
    config["kube-context"] = context
    (tmp_path / "examples" / "docker").mkdir(parents=True)
    shutil.copy(MLFLOW_EXAMPLE / "kubernetes_job_template.yaml", tmp_path / "examples" / "docker")
    (tmp_path / "kubernetes_config.json").write_text(json.dumps(config, indent=2))
    assert set(config) == {"kube-context", "kube-job-template-path", "repository-uri"}
    # The project is the trainer with one line of its own. MLflow's example delivers by kind load; a session
    # delivering through a registry (the e2e tier's) has the trainer's identical image pulled by digest on the
    # same node, and containerd's CRI then drops the kind-loaded tag of an image with the same id (the pod went
    # to ErrImagePull for docker.io/username/...; docs/limits.md).
    project = tmp_path / "wine-quality"
    shutil.copytree(TRAINER_DIR, project)
    with (project / "train.py").open("a") as fh:
        fh.write("\n# MLflow's kubernetes example: an image of its own\n")

    experiment = f"mlflow-example-{uuid.uuid4().hex[:8]}"
    proc = mlflow_run(project, "--backend", "customjob", "--backend-config", "kubernetes_config.json",
                      "--experiment-name", experiment, "-P", "alpha=0.5", tracking_uri=e2e_stack.tracking_uri,
                      cwd=tmp_path, extra_env={"KUBECONFIG": str(kube.kubeconfig),
                                               "KUBE_MLFLOW_TRACKING_URI": e2e_stack.pod_tracking_uri})
    client = MlflowClient(e2e_stack.tracking_uri)
    run_id = only_run_id(client, experiment)
    jobs = WorkloadClient.of(kube.api, JOB, "mlflow")  # the template's namespace
    try:
        assert client.get_run(run_id).info.status == "FINISHED", proc.stdout[-3000:] + proc.stderr[-3000:]
        check_trained_run(client, run_id, params=PARAMS, sample=SAMPLE)
        job = jobs.for_run(run_id)
        assert job is not None
        assert job["metadata"]["name"] == f"wine-quality-{run_id[:8]}"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith("username/mlflow-kubernetes-example:")  # repository-uri, never pushed
        assert container["resources"] == {"limits": {"memory": "512Mi"}, "requests": {"memory": "256Mi"}}
        assert assert_workload(kube, JOB, "mlflow", job["metadata"]["name"], run_id=run_id)
        assert assert_run(run_id, client=client, logs=True).logs
    finally:
        found = jobs.for_run(run_id)
        if found is not None:
            jobs.delete(found["metadata"]["name"])


def test_the_stub_customjobs_run_carries_its_logs_and_is_closed_by_its_owner(
    project_run: Callable[..., ProjectRun], e2e_kube: Kube
) -> None:
    run = project_run("trainer", alpha=0.5)
    assert (run.kind, run.status, run.closed_by) == ("customjob", "FINISHED", "workload")
    assert assert_run(run, logs=True).logs == run.logs
    assert any(path.endswith("/trainer.txt") for path in run.logs), run.logs
    assert_workload(e2e_kube, CUSTOMJOB, run.namespace, run.name, run_id=run.run_id)
    # The kubectl lines of docs/controller.md, on the real API server: the short name is the CustomJob's.
    listed = e2e_kube.kubectl("get", "cjob", "-n", run.namespace, "-o", "name").stdout.split()
    assert listed == [f"customjob.training.example.com/{run.name}"]
    e2e_kube.kubectl("wait", "--for=condition=Complete", f"cjob/{run.name}", "-n", run.namespace, "--timeout=30s")


def test_a_teams_own_crd_defined_only_in_the_settings_runs_the_trainer(
    project_run: Callable[..., ProjectRun], harness_settings: Settings, e2e_kube: Kube,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """examples/trainingrun: another group, a controller that writes only conditions, a settings table."""
    (kind,) = [k for k in harness_settings.workloads if k.name == "trainingrun"]
    assert kind.name not in PRESETS
    run = project_run("trainer-trainingrun", alpha=0.5)
    assert (run.kind, run.status, run.workload_state, run.closed_by) == (
        "trainingrun", "FINISHED", "FINISHED", "workload"), run.output[-3000:]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
    check_trained_run(run.client, run.run_id, params=PARAMS, sample=SAMPLE)
    obj = assert_workload(e2e_kube, kind, run.namespace, run.name, run_id=run.run_id)
    assert "phase" not in obj["status"]  # conditions only
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]} == {"Started": "True", "Done": "True"}
    assert assert_run(run, logs=True).logs == (f"logs/{run.name}-{_pod_suffix(e2e_kube, run)}/runner.txt",)


def test_a_failing_run_of_a_teams_own_crd_ends_failed_with_the_pods_reason(
    project_run: Callable[..., ProjectRun],
) -> None:
    run = project_run("trainer-trainingrun", alpha=-1)
    assert (run.status, run.workload_state, run.closed_by) == ("FAILED", "FAILED", "submitter"), run.output[-3000:]
    reason = run.client.get_run(run.run_id).data.tags["mlflow-crd-harness/failure-reason"]
    assert f"TrainingRun {run.namespace}/{run.name}: BackoffLimitExceeded" in reason, reason
    assert "alpha must be in" in reason, reason
    assert "alpha must be in" in _log_text(run)


def _pod_suffix(kube: Kube, run: ProjectRun) -> str:
    (pod,) = kube.core.list_namespaced_pod(run.namespace, label_selector=f"ml.platform.example/run={run.name}").items
    return str(pod.metadata.name).removeprefix(f"{run.name}-")
