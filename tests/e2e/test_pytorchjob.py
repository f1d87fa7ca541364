"""E2E on Kubeflow's real training-operator (v1.8.1, built here from its Go module): the trainer as a PyTorchJob.

The operator knows nothing of MLflow: the run's identity reaches every replica
as env, the trainer logs from rank 0 only, and the submitter ends the run from
the job's Succeeded/Failed condition with every replica's logs attached.

Needs the stack preset ``kubeflow-training-operator`` (``tox -e matrix`` deploys
it, on a two-node cluster whose worker advertises ``nvidia.com/gpu: 1``); the
other tiers deselect the ``kubeflow`` marker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from harness import assert_run, assert_workload
from harness.evidence import collect_bundle
from harness.kubeapi import Kube
from harness.runs import ProjectRun, ProjectRunner
from harness.workloads import PYTORCHJOB, closing
from tests.support.trainer import TRAINER_DIR, check_trained_run, load_wine_rows

pytestmark = [pytest.mark.e2e, pytest.mark.kubeflow]

SAMPLE = load_wine_rows(TRAINER_DIR / "wine-quality.csv")
PARAMS = {"alpha": "0.5", "l1_ratio": "0.1"}
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


def _pods(kube: Kube, run: ProjectRun) -> dict[str, object]:
    """The job's pods by replica (``master/0``, ``worker/0``)."""
    found = kube.core.list_namespaced_pod(run.namespace, label_selector=PYTORCHJOB.pod_selector(run.name)).items
    labels = ("training.kubeflow.org/replica-type", "training.kubeflow.org/replica-index")
    return {f"{p.metadata.labels[labels[0]]}/{p.metadata.labels[labels[1]]}": p for p in found}


def test_trainer_runs_as_a_pytorchjob_master(project_run: Callable[..., ProjectRun], e2e_kube: Kube,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run = project_run("trainer-pytorch", alpha=0.5)
    assert (run.kind, run.status, run.workload_state, run.closed_by) == (
        "pytorchjob", "FINISHED", "FINISHED", "workload"), run.output[-3000:]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
    check_trained_run(run.client, run.run_id, params=PARAMS, sample=SAMPLE)
    assert_workload(e2e_kube, PYTORCHJOB, run.namespace, run.name, status="FINISHED", run_id=run.run_id)
    conditions = {c["type"]: c["status"] for c in run.workload["status"]["conditions"]}
    assert conditions["Succeeded"] == "True", conditions  # the operator's own verdict
    assert set(_pods(e2e_kube, run)) == {"master/0"}
    assert assert_run(run, logs=True).logs == (f"logs/{run.name}-master-0/pytorch.txt",)


def test_master_and_worker_through_mlflow_run_log_once_and_keep_every_replicas_logs(
    launcher: ProjectRunner, e2e_kube: Kube
) -> None:
    """``mlflow run --backend customjob`` itself: it waits for the PyTorchJob, ends the run, attaches the logs."""
    experiment, proc = launcher.mlflow_run("alpha=0.5", project="trainer-pytorch-workers")
    run_id = launcher.only_run_id(experiment)
    client = launcher.client
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", proc.stdout[-3000:] + proc.stderr[-3000:]  # no wait by the test: the CLI did
    job = launcher.workloads(PYTORCHJOB).for_run(run_id)
    assert job is not None
    name = job["metadata"]["name"]
    facts = assert_run(run_id, client=client, params=PARAMS, logs=True)
    assert sorted(facts.logs) == sorted([f"logs/{name}-master-0/pytorch.txt", f"logs/{name}-worker-0/pytorch.txt",
                                         f"logs/{name}-worker-0/init-pytorch.txt"]), facts.logs
    assert len(client.search_logged_models(experiment_ids=[run.info.experiment_id])) == 1, "rank 0 logs alone"
    found = e2e_kube.core.list_namespaced_pod(launcher.namespace, label_selector=PYTORCHJOB.pod_selector(name)).items
    assert {p.status.phase for p in found} == {"Succeeded"}
    worker = next(p for p in found if p.metadata.name.endswith("-worker-0"))
    env = {e.name: e.value for e in worker.spec.containers[0].env}
    assert (env["RANK"], env["WORLD_SIZE"], env["MLFLOW_RUN_ID"]) == ("1", "2", run_id)
    import mlflow.artifacts

    worker_log = Path(mlflow.artifacts.download_artifacts(run_id=run_id, tracking_uri=launcher.stack.tracking_uri,
                                                          artifact_path=f"logs/{name}-worker-0/pytorch.txt"))
    assert "replica rank 1 of 2: trained" in worker_log.read_text()


def test_a_failing_pytorchjob_ends_failed_with_every_replicas_evidence(
    project_run: Callable[..., ProjectRun], e2e_kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = project_run("trainer-pytorch-workers", alpha=-1)
    assert (run.status, run.workload_state, run.closed_by) == ("FAILED", "FAILED", "submitter"), run.output[-3000:]
    tags = run.client.get_run(run.run_id).data.tags
    reason = tags[PYTORCHJOB.failure_tag]
    assert f"PyTorchJob {run.namespace}/{run.name}" in reason, reason
    assert "first failure:" in reason, reason
    assert "alpha must be in" in reason, reason
    assert tags[closing.CLOSED_BY_TAG] == "submitter"
    assert {p.rsplit("/", 2)[1] for p in run.logs} >= {f"{run.name}-master-0", f"{run.name}-worker-0"}, run.logs

    bundle = collect_bundle(tmp_path_factory.mktemp("bundle"), e2e_kube, namespaces=[run.namespace])
    ns = bundle / run.namespace
    ownership = (ns / "ownership.txt").read_text()
    assert f"PyTorchJob {run.name} FAILED" in ownership, ownership
    for replica in ("master/0", "worker/0"):
        assert f"(replica {replica}," in ownership, ownership
    assert "first failure:" in ownership, ownership
    logs = {p.name: p.read_text() for p in (ns / "logs").glob("*.log")}
    for replica in ("master-0", "worker-0"):
        assert "alpha must be in" in logs[f"{run.name}-{replica}.pytorch.log"]
    assert run.name in (ns / "pytorchjobs.yaml").read_text()


@pytest.mark.multinode
def test_a_worker_asking_for_a_gpu_runs_on_the_node_that_advertises_one(
    launcher: ProjectRunner, e2e_kube: Kube, tmp_path: Path
) -> None:
    """extended-resources = { worker = { "nvidia.com/gpu" = 1 } }: scheduling of a GPU job, tested without a GPU."""
    nodes = e2e_kube.core.list_node().items
    gpu_nodes = [n.metadata.name for n in nodes if (n.status.allocatable or {}).get("nvidia.com/gpu") == "1"]
    assert gpu_nodes, "run with extended-resources = { worker = { \"nvidia.com/gpu\" = 1 } } and workers >= 1"
    assert all(CONTROL_PLANE_LABEL not in (n.metadata.labels or {}) for n in nodes
               if n.metadata.name in gpu_nodes)

    base = launcher.spec("trainer-pytorch-workers")
    template = yaml.safe_load(base.template.read_text())
    worker = template["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    worker["resources"]["limits"]["nvidia.com/gpu"] = 1  # extended resources: limits only (requests follow)
    path = tmp_path / "pytorchjob-gpu.yaml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    run = launcher.run(dataclasses.replace(base, name="trainer-pytorch-gpu", template=path), alpha=0.5)
    assert (run.status, run.workload_state) == ("FINISHED", "FINISHED"), run.output[-3000:]
    pods = _pods(e2e_kube, run)
    assert pods["worker/0"].spec.node_name in gpu_nodes, {k: p.spec.node_name for k, p in pods.items()}
    requests = pods["worker/0"].spec.containers[0].resources.requests
    assert requests["nvidia.com/gpu"] == "1", requests
