"""E2E tier: the trainer runs on kind through a CustomJob, and what it logged is really there.

Real kind cluster, real API server validation, the kopf controller in-cluster,
a real MLflow server in-cluster, MLflow's own CLI with the customjob backend.
"""

from __future__ import annotations

import copy
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from mlflow.tracking import MlflowClient

from harness import _exec, assert_customjob, assert_run, contract
from harness.evidence import collect_bundle
from harness.images import LOCAL_REGISTRY_HOST
from harness.kubeapi import Kube
from harness.runs import ProjectRun, ProjectRunner, mlflow_run, only_run_id
from harness.settings import ProjectSpec
from harness.tracking import LocalTrackingServer
from harness.waits import wait_customjob, wait_for_customjob, wait_run_terminal
from tests.support.registry import attached_registry
from tests.support.trainer import TRAINER_DIR, check_trained_run, load_wine_rows

SAMPLE = load_wine_rows(TRAINER_DIR / "wine-quality.csv")
PARAMS = {"alpha": "0.5", "l1_ratio": "0.1"}


def _cj(launcher: ProjectRunner) -> tuple[str, str, str, str]:
    """(group, version, namespace, plural) of CustomJobs in this test's namespace."""
    return contract.GROUP, contract.VERSION, launcher.namespace, contract.PLURAL


def _job_for(launcher: ProjectRunner, run_id: str, timeout: float = 120) -> dict[str, Any]:
    return wait_for_customjob(launcher.stack.cluster.kube, launcher.namespace, run_id, timeout=timeout)


def test_project_run_and_public_assertions(project_run: Callable[..., ProjectRun], e2e_kube: Kube) -> None:
    """What a user writes: run the configured project, assert on the run and its CustomJob."""
    run = project_run("trainer", alpha=0.25)
    facts = assert_run(run, params={"alpha": "0.25", "l1_ratio": "0.1"},
                       metrics={"rmse": (0.3, 1.5), "r2": (-0.5, 1.0)}, model_predicts=SAMPLE)
    assert len(facts.predictions) == len(SAMPLE)
    assert facts.model_id is not None
    assert_customjob(e2e_kube, run.namespace, run.customjob["metadata"]["name"], run_id=run.run_id)
    with pytest.raises(AssertionError, match=r"metric rmse=.* is outside \[0.0, 0.01\]"):
        assert_run(run, metrics={"rmse": (0.0, 0.01)})


def test_trainer_runs_through_customjob(launcher: ProjectRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    experiment, _ = launcher.mlflow_run("alpha=0.5")
    run_id = launcher.only_run_id(experiment)
    kube = launcher.stack.cluster.kube

    cj = _job_for(launcher, run_id)
    name = cj["metadata"]["name"]
    done = wait_customjob(kube, launcher.namespace, name, timeout=launcher.job_timeout)
    status = done["status"]
    assert status["phase"] == contract.SUCCEEDED, status
    assert status["mlflowRunId"] == run_id
    assert done["spec"]["mlflow"]["runId"] == run_id
    jobs = kube.batch.list_namespaced_job(launcher.namespace, label_selector=f"{contract.LABEL_CUSTOMJOB}={name}")
    assert [j.metadata.name for j in jobs.items] == [status["jobName"]]
    owner = jobs.items[0].metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("CustomJob", name, True)

    assert wait_run_terminal(launcher.client, run_id, timeout=120) == "FINISHED"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", launcher.stack.tracking_uri)
    trained = check_trained_run(launcher.client, run_id, params=PARAMS, sample=SAMPLE)
    assert trained.tags["mlflow.project.backend"] == "customjob"
    assert trained.tags["mlflow.source.type"] == "PROJECT"
    assert trained.tags["mlflow.project.entryPoint"] == "main"
    assert trained.tags["mlflow.docker.image.uri"] == done["spec"]["image"]


def test_customjob_and_local_docker_log_identical_metrics(
    project_run: Callable[..., ProjectRun], local_tracking_server: LocalTrackingServer, tmp_path: Path
) -> None:
    """Deterministic training: the same params through a CustomJob and MLflow's local docker backend.

    The local run logs to a server on this host that its container reaches without host networking.
    """
    trained = project_run("trainer", alpha=0.5)
    assert trained.status == "FINISHED", trained.output[-3000:]
    local_exp = f"local-twin-{uuid.uuid4().hex[:8]}"
    mlflow_run(TRAINER_DIR, "-P", "alpha=0.5", "--build-image", *local_tracking_server.docker_args,
               "--experiment-name", local_exp, tracking_uri=local_tracking_server.uri, cwd=tmp_path, timeout=900)
    local_client = MlflowClient(tracking_uri=local_tracking_server.uri)
    local = local_client.get_run(only_run_id(local_client, local_exp))
    assert local.info.status == "FINISHED"
    assert local.data.metrics == trained.client.get_run(trained.run_id).data.metrics
    assert local.data.metrics.keys() >= {"rmse", "r2", "mae"}


def test_invalid_spec_is_rejected_by_the_api_server(launcher: ProjectRunner) -> None:
    kube = launcher.stack.cluster.kube
    good = {
        "apiVersion": contract.API_VERSION, "kind": contract.KIND,
        "metadata": {"name": "probe", "namespace": launcher.namespace},
        "spec": {"image": "busybox:1", "command": ["true"]},
    }
    kube.custom.create_namespaced_custom_object(*_cj(launcher),
                                                good, dry_run="All")  # the valid twin is accepted
    bad = copy.deepcopy(good)
    bad["spec"] = {"image": "busybox:1", "backoffLimit": 99}
    with pytest.raises(ApiException) as info:
        kube.custom.create_namespaced_custom_object(*_cj(launcher), bad)
    assert info.value.status == 422
    body = str(info.value.body)
    assert "spec.command" in body, body
    assert "Required value" in body, body
    assert "spec.backoffLimit" in body, body


def test_the_api_server_agrees_with_the_local_validator_on_every_admission_case(launcher: ProjectRunner) -> None:
    """The unit tier's admission cases, replayed against the real API server (server-side dry run)."""
    from tests.support.crd_strategies import ADMISSION_CASES, ADMISSION_VALID_CASES

    kube = launcher.stack.cluster.kube

    def admitted(spec: dict[str, Any]) -> str | None:
        body = {"apiVersion": contract.API_VERSION, "kind": contract.KIND,
                "metadata": {"name": "probe", "namespace": launcher.namespace}, "spec": spec}
        try:  # Strict, as the backend creates them: unknown fields are refused, not pruned
            kube.custom.create_namespaced_custom_object(*_cj(launcher), body, dry_run="All",
                                                        field_validation="Strict")
        except ApiException as exc:
            if exc.status not in (400, 422):  # 400: strict decoding; other codes mean a broken test bed
                raise
            return str(exc.body)
        return None

    wrongly_admitted = [name for name, spec in ADMISSION_CASES.items() if admitted(spec) is None]
    wrongly_refused = {name: why for name, spec in ADMISSION_VALID_CASES.items() if (why := admitted(spec))}
    assert len(ADMISSION_CASES) > 50
    assert wrongly_admitted == [], f"the API server admitted: {wrongly_admitted}"
    assert wrongly_refused == {}, f"the API server refused valid specs: {wrongly_refused}"


def test_spec_is_immutable_once_created(launcher: ProjectRunner) -> None:
    kube = launcher.stack.cluster.kube
    body = {
        "apiVersion": contract.API_VERSION, "kind": contract.KIND,
        "metadata": {"name": "immutable", "namespace": launcher.namespace},
        "spec": {"image": "does-not-matter.invalid/x:1", "command": ["true"], "imagePullPolicy": "Never"},
    }
    kube.custom.create_namespaced_custom_object(*_cj(launcher), body)
    with pytest.raises(ApiException) as info:
        kube.custom.patch_namespaced_custom_object(*_cj(launcher),
                                                   "immutable", {"spec": {"image": "other.invalid/y:2"}})
    assert info.value.status == 422
    assert "immutable" in str(info.value.body).lower(), info.value.body


def test_an_unpullable_image_fails_after_the_pull_grace_with_the_pull_error(launcher: ProjectRunner) -> None:
    kube = launcher.stack.cluster.kube
    body = {
        "apiVersion": contract.API_VERSION, "kind": contract.KIND,
        "metadata": {"name": "no-such-image", "namespace": launcher.namespace},
        "spec": {"image": "registry.invalid/mlflow/no-such-image:1", "command": ["python", "train.py"],
                 "imagePullPolicy": "IfNotPresent"},
    }
    kube.custom.create_namespaced_custom_object(*_cj(launcher), body)
    done = wait_customjob(kube, launcher.namespace, "no-such-image", timeout=150)  # 45 s grace + a recheck
    status = done["status"]
    assert status["phase"] == contract.FAILED
    text = f"{status.get('reason')} {status.get('message')}"
    assert "ImagePull" in text or "ErrImage" in text, status
    assert "registry.invalid/mlflow/no-such-image:1" in text, status


def test_training_error_fails_the_run_with_the_pod_log(
    launcher: ProjectRunner, tmp_path_factory: pytest.TempPathFactory
) -> None:
    experiment, _ = launcher.mlflow_run("alpha=-1")  # a float MLflow accepts; train.py rejects it
    run_id = launcher.only_run_id(experiment)
    kube = launcher.stack.cluster.kube
    name = _job_for(launcher, run_id)["metadata"]["name"]
    done = wait_customjob(kube, launcher.namespace, name, timeout=launcher.job_timeout)
    assert done["status"]["phase"] == contract.FAILED
    assert "alpha must be in" in done["status"].get("message", ""), done["status"]
    assert wait_run_terminal(launcher.client, run_id, timeout=120) == "FAILED"
    run = launcher.client.get_run(run_id)
    assert "alpha must be in" in run.data.tags.get(contract.TAG_FAILURE_REASON, ""), run.data.tags

    bundle = collect_bundle(tmp_path_factory.mktemp("bundle"), kube, namespaces=[launcher.namespace])
    logs = "".join(p.read_text() for p in (bundle / launcher.namespace / "logs").glob("*.log"))
    assert "alpha must be in" in logs
    assert (bundle / launcher.namespace / "customjobs.yaml").read_text().count(name) >= 1
    assert "system" in {p.name for p in bundle.iterdir()}


def test_bad_params_fail_before_any_cluster_work(launcher: ProjectRunner) -> None:
    _experiment, proc = launcher.mlflow_run("alpha=not-a-number", check=False)
    assert proc.returncode != 0
    assert "alpha" in proc.stdout + proc.stderr
    items = launcher.stack.cluster.kube.custom.list_namespaced_custom_object(
        *_cj(launcher))["items"]
    assert items == []


def test_the_backend_alone_runs_the_project(launcher: ProjectRunner) -> None:
    """A venv with only `pip install mlflow-crd-harness` (no extras) submits through a CustomJob end to end."""
    from tests.support.venvs import FORBIDDEN, backend_only_venv, installed

    bin_dir = backend_only_venv()
    present = installed(bin_dir)
    assert "mlflow-crd-harness" in present
    assert "mlflow-skinny" in present
    assert not present & set(FORBIDDEN), f"the backend install pulled {sorted(present & set(FORBIDDEN))}"
    spec = launcher.spec("trainer")
    experiment = f"{launcher.namespace}-alone"
    _exec.run([bin_dir / "mlflow", "run", spec.path, "--backend", "customjob", "--backend-config",
               launcher.backend_config(spec), "--experiment-name", experiment, "-P", "alpha=0.5"],
              extra_env={"MLFLOW_TRACKING_URI": launcher.stack.tracking_uri}, cwd=launcher.workdir, timeout=1200)
    run_id = launcher.only_run_id(experiment)
    name = _job_for(launcher, run_id)["metadata"]["name"]
    done = wait_customjob(launcher.stack.cluster.kube, launcher.namespace, name, timeout=launcher.job_timeout)
    assert done["status"]["phase"] == contract.SUCCEEDED, done["status"]
    assert wait_run_terminal(launcher.client, run_id, timeout=120) == "FINISHED"


def test_a_one_line_change_to_train_py_moves_one_layer(launcher: ProjectRunner, tmp_path: Path) -> None:
    """Registry delivery, digest-pinned: the re-run of a project changed by one line pushes only the code layer.

    On a kind cluster the test wires the harness's local registry in itself (as
    ``registry = local`` would), so it runs whichever way the session delivers.
    """
    registry = attached_registry(launcher)
    project = tmp_path / "wine-quality"
    shutil.copytree(TRAINER_DIR, project)
    spec = ProjectSpec(name="wine-quality-oneline", path=project, template=launcher.spec("trainer").template,
                       backend_config={"image-delivery": "registry",
                                       "repository-uri": f"{LOCAL_REGISTRY_HOST}/wine-quality-oneline"})
    refs = []
    # The first run is a copy with its own content: an image identical to the trainer's would share its
    # image id, and containerd 2.4's CRI then drops the kind-loaded tag of the trainer when the registry copy
    # is pulled (seen here: a parallel trainer test's pod found its loaded image gone).
    changes = ("\n# a copy of the trainer: an image of its own\n",
               "\n# one more line: only the project layer differs\n")
    for change in changes:
        with (project / "train.py").open("a") as fh:
            fh.write(change)
        run = launcher.run(spec, alpha=0.5)
        assert run.status == "FINISHED", run.output[-3000:]
        refs.append(run.customjob["spec"]["image"])
    first, second = (registry.layer_digests(ref) for ref in refs)
    assert all("@sha256:" in ref for ref in refs), refs  # pods run what was pushed, pinned by digest
    assert refs[0] != refs[1]
    assert len(first) == len(second)
    changed = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
    assert changed == [len(first) - 1], f"layers that differ: {changed} of {len(first)}"
