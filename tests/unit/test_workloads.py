"""Unit tier: workload kinds as data: paths, definitions and their errors, status rules, rendering per kind."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness.backend.config import BackendConfig
from harness.workloads import (
    CUSTOMJOB,
    JOB,
    PRESETS,
    PYTORCHJOB,
    DefinitionError,
    WorkloadKind,
    paths,
    presets,
    render,
    state,
)

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_EXAMPLE = ROOT / "tests" / "data" / "mlflow-kubernetes-example"
RUN_ID = "0123456789abcdef0123456789abcdef"

# A team's own CRD, in another group, with a controller that writes only conditions.
TRAININGRUN = {
    "name": "trainingrun",
    "api-version": "ml.platform.example/v1beta1",
    "kind": "TrainingRun",
    "containers": "spec.runner",
    "succeeded": ["condition=Done"],
    "failed": ["condition=Done=False"],
    "running": ["condition=Started"],
    "pods": "ml.platform.example/run={name}",
}


def run_values(**overrides: Any) -> render.RunValues:
    values: dict[str, Any] = {
        "job_name": "wine-quality-01234567", "namespace": "team", "image": "wine-quality:0123456789ab",
        "argv": ["python", "train.py", "--alpha", "0.5"], "run_id": RUN_ID, "experiment_id": "7",
        "tracking_uri": "http://mlflow.mlflow.svc.cluster.local:5000", "project_name": "wine-quality",
        "env": {"FROM_MLPROJECT": "yes"}, "labels": {"mlflow-crd-harness/run-id": RUN_ID},
    }
    values.update(overrides)
    placeholders = {"project_name": values["project_name"], "entry_point": "main", "image": values["image"],
                    "run_id": RUN_ID, "experiment_id": "7", "tracking_uri": values["tracking_uri"],
                    "namespace": values["namespace"], "job_name": values["job_name"], "params.alpha": "0.5"}
    return render.RunValues(placeholders=placeholders, **values)


# -- paths -------------------------------------------------------------------------------------------


TREE = {"spec": {"pytorchReplicaSpecs": {
    "Master": {"template": {"spec": {"containers": [{"name": "side"}, {"name": "pytorch", "image": "m"}]}}},
    "Worker": {"template": {"spec": {"containers": [{"name": "pytorch", "image": "w"}]}}},
}}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("spec.pytorchReplicaSpecs.*.template.spec.containers[name=pytorch]",
         ["spec.pytorchReplicaSpecs.Master.template.spec.containers[1]",
          "spec.pytorchReplicaSpecs.Worker.template.spec.containers[0]"]),
        ("spec.pytorchReplicaSpecs.Master.template.spec.containers[0]",
         ["spec.pytorchReplicaSpecs.Master.template.spec.containers[0]"]),
        ("spec.pytorchReplicaSpecs.Worker.template.spec.containers[*]",
         ["spec.pytorchReplicaSpecs.Worker.template.spec.containers[0]"]),
        (".spec.nothing", []),
    ],
)
def test_paths_find_every_match_with_its_concrete_path(path: str, expected: list[str]) -> None:
    assert [where for where, _ in paths.find(TREE, paths.parse(path))] == expected


@pytest.mark.parametrize("bad", ["", "spec..x", "spec[", "spec[x]", "spec.a b", "spec.[0]"])
def test_bad_paths_say_where(bad: str) -> None:
    with pytest.raises(paths.PathError):
        paths.parse(bad)


# -- definitions -------------------------------------------------------------------------------------


def test_presets_round_trip_through_the_definition_vocabulary() -> None:
    for kind in PRESETS.values():
        assert WorkloadKind.from_mapping(kind.to_mapping()) == kind
    assert set(PRESETS) == {"customjob", "job", "pytorchjob"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": None}, "'kind' is required"),
        ({"api-version": "v1"}, "core-group kinds"),
        ({"api-version": "Not/Valid"}, "must look like 'group/version'"),
        ({"kind": "trainingRun"}, "CamelCase"),
        ({"containers": "spec..runner"}, "'containers'.*empty segment"),
        ({"succeeded": ["phase=Done"]}, r"not a status rule; write 'condition=<Type>'"),
        ({"failed": None}, "'failed' is required"),
        ({"pods": "ml.platform.example/run"}, r"must contain \{name\}"),
        ({"closes-run": "nobody"}, "'closes-run' must be one of controller, submitter"),
        ({"identity": {"field": "spec.*"}}, "no wildcards"),
        ({"identity": "envs"}, "'identity' must be \"env\""),
        ({"succeded": ["condition=Done"]}, "unknown key 'succeded'; did you mean 'succeeded'"),
        ({"run-label": "Bad Label"}, "not a valid label key"),
        ({"identity": {"field": "spec.list[0].mlflow"}}, "plain keys"),
        ({"failure-tag": "why failed?"}, "not an MLflow tag key"),
    ],
)
def test_bad_definitions_name_the_key_and_the_fix(change: dict[str, Any], message: str) -> None:
    raw = {k: v for k, v in {**TRAININGRUN, **change}.items() if v is not None}
    with pytest.raises(DefinitionError, match=message):
        WorkloadKind.from_mapping(raw, where="workloads[0]")


def test_a_user_kind_and_the_presets_resolve_by_name_and_by_template() -> None:
    mine = WorkloadKind.from_mapping(TRAININGRUN)
    assert presets.resolve("trainingrun", [mine]) is mine
    assert presets.resolve("job", [mine]) is JOB
    assert presets.for_template({"apiVersion": "ml.platform.example/v1beta1", "kind": "TrainingRun"}, [mine]) is mine
    assert presets.for_template({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob"}) is PYTORCHJOB
    with pytest.raises(DefinitionError, match="neither a preset nor defined"):
        presets.resolve("tfjob", [mine])
    with pytest.raises(DefinitionError, match="no workload definition covers"):
        presets.for_template({"apiVersion": "kubeflow.org/v1", "kind": "TFJob"})


# -- status rules ------------------------------------------------------------------------------------


def conds(*pairs: tuple[str, str], **status: Any) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": t, "status": s, "reason": f"{t}Reason", "message": f"{t} msg"}
                                      for t, s in pairs], **status}}


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        (JOB, {"status": {}}, "SCHEDULED"),
        (JOB, {"status": {"active": 1}}, "RUNNING"),
        (JOB, conds(("SuccessCriteriaMet", "True"), ("Complete", "True")), "FINISHED"),
        (JOB, conds(("FailureTarget", "True"), ("Failed", "True")), "FAILED"),
        (PYTORCHJOB, conds(("Created", "True")), "SCHEDULED"),
        (PYTORCHJOB, conds(("Created", "True"), ("Running", "True")), "RUNNING"),
        (PYTORCHJOB, conds(("Created", "True"), ("Running", "False"), ("Succeeded", "True")), "FINISHED"),
        (PYTORCHJOB, conds(("Created", "True"), ("Running", "False"), ("Failed", "True")), "FAILED"),
        (WorkloadKind.from_mapping(TRAININGRUN), conds(("Started", "True"), ("Done", "False")), "FAILED"),
        (WorkloadKind.from_mapping(TRAININGRUN), conds(("Started", "True"), ("Done", "True")), "FINISHED"),
        (CUSTOMJOB, {"status": {"phase": "Succeeded", "conditions": [{"type": "Failed", "status": "True"}]}},
         "FINISHED"),  # a terminal phase decides before terminal conditions
        (WorkloadKind.from_mapping({**TRAININGRUN, "running": ["jsonpath={.status.startTime}"]}),
         {"status": {"startTime": "t", **conds(("Done", "False"))["status"]}}, "FAILED"),  # failed beats running
    ],
)
def test_status_rules_map_to_mlflow_states(kind: WorkloadKind, obj: dict[str, Any], expected: str) -> None:
    assert state.run_state(kind, obj) == expected


def test_gone_objects_are_failed_or_killed_and_failures_say_why() -> None:
    assert state.run_state(JOB, None) == "FAILED"
    assert state.run_state(JOB, None, cancelled=True) == "KILLED"
    failed = conds(("Failed", "True"))
    assert state.failure_message(JOB, failed) == "FailedReason: Failed msg"
    assert state.failure_message(PYTORCHJOB, {"status": {}}) == "PyTorchJob failed without a status message"


# -- rendering per kind ------------------------------------------------------------------------------


def test_mlflows_own_job_template_renders_with_mlflows_semantics() -> None:
    """MLflow's example, unchanged: name, container name, image and command overwritten; env appended."""
    tmpl = render.load(MLFLOW_EXAMPLE / "kubernetes_job_template.yaml")
    render.check(tmpl, JOB, render.BASE_PLACEHOLDERS)  # its "{replaced with ...}" strings are not placeholders
    body = render.build(tmpl, JOB, run_values(namespace="mlflow"))
    assert body["metadata"]["name"] == "wine-quality-01234567"
    assert body["metadata"]["namespace"] == "mlflow"
    assert body["metadata"]["labels"] == {"mlflow-crd-harness/run-id": RUN_ID}
    (container,) = body["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "wine-quality"
    assert container["image"] == "wine-quality:0123456789ab"
    assert container["command"] == ["python", "train.py", "--alpha", "0.5"]
    assert container["resources"] == {"limits": {"memory": "512Mi"}, "requests": {"memory": "256Mi"}}
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "FROM_MLPROJECT": "yes", "MLFLOW_RUN_ID": RUN_ID, "MLFLOW_EXPERIMENT_ID": "7",
        "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc.cluster.local:5000"}
    assert body["spec"]["ttlSecondsAfterFinished"] == 100


def test_mlflows_example_files_are_kept_unchanged() -> None:
    """The copies stay MLflow's own (tests/data/mlflow-kubernetes-example/ORIGIN.md)."""
    pinned = {
        "kubernetes_config.json": "49879c9693b8373d3f051ad556c0aa1b7323b9de8696ce0a4b7cc8df3f910e01",
        "kubernetes_job_template.yaml": "505fd181f2b0d7fa7b8e16f830fafe7e1d93b5c326298da615cf2be1cdc4be76",
    }
    for name, digest in pinned.items():
        assert hashlib.sha256((MLFLOW_EXAMPLE / name).read_bytes()).hexdigest() == digest, name


def test_mlflows_example_config_is_a_valid_backend_config_changed_only_in_its_context() -> None:
    raw = json.loads((MLFLOW_EXAMPLE / "kubernetes_config.json").read_text())
    cfg = BackendConfig.from_dict({**raw, "kube-context": "kind-mlflow-crd-e2e"})
    assert (cfg.template_path, cfg.repository_uri) == (raw["kube-job-template-path"], raw["repository-uri"])
    assert (cfg.image_delivery, cfg.kind_cluster) == ("kind", "mlflow-crd-e2e")
    assert cfg.resolve_namespace("mlflow") == "mlflow"


@pytest.mark.parametrize("template", ["pytorchjob_template.yaml", "pytorchjob_workers_template.yaml"])
def test_every_pytorchjob_replica_runs_the_project(template: str) -> None:
    tmpl = render.load(ROOT / "trainer" / template)
    render.check(tmpl, PYTORCHJOB, render.BASE_PLACEHOLDERS)
    body = render.build(tmpl, PYTORCHJOB, run_values())
    replicas = body["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == ({"Master", "Worker"} if "workers" in template else {"Master"})
    for spec in replicas.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert container["image"] == "wine-quality:0123456789ab"
        assert container["command"] == ["python", "train.py", "--alpha", "0.5"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["MLFLOW_RUN_ID"] == RUN_ID
        assert env["PYTHONUNBUFFERED"] == "1"
    assert body["metadata"]["name"] == "wine-quality-01234567"


def test_a_user_kind_with_its_container_in_the_spec_renders() -> None:
    kind = WorkloadKind.from_mapping({**TRAININGRUN, "identity": {"field": "spec.tracking", "run-id": "run"}})
    tmpl = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": "{job_name}"},
            "spec": {"runner": {"image": "{image}", "env": [{"name": "A", "value": "{params.alpha}"}]}}}
    body = render.build(tmpl, kind, run_values())
    assert body["spec"]["runner"] == {"image": "wine-quality:0123456789ab", "command": ["python", "train.py",
                                      "--alpha", "0.5"], "env": [{"name": "A", "value": "0.5"},
                                                                 {"name": "FROM_MLPROJECT", "value": "yes"}]}
    assert body["spec"]["tracking"] == {"run": RUN_ID, "experimentId": "7",
                                        "trackingUri": "http://mlflow.mlflow.svc.cluster.local:5000"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0].update(
            name="trainer"), r"no container at 'spec\.pytorchReplicaSpecs\.\*"),
        (lambda t: t["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "MLFLOW_RUN_ID", "value": "x"}), "sets MLFLOW_RUN_ID: the backend writes"),
        (lambda t: t.update(kind="TFJob"), "kind: PyTorchJob"),
        (lambda t: t["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].update(
            name="trainer"), r"no container at .* under spec\.pytorchReplicaSpecs\.Worker"),
        (lambda t: t["metadata"].update(name="wine-quality"), "same for every run"),
        (lambda t: t["metadata"].update(namespace="{params.ns}"), "metadata.namespace"),
        (lambda t: t["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0].update(
            image="python:3.11"), "must be \"\\{image\\}\" or absent"),
    ],
)
def test_bad_pytorchjob_templates_are_named(mutate: Any, message: str) -> None:
    tmpl = copy.deepcopy(render.load(ROOT / "trainer" / "pytorchjob_workers_template.yaml"))
    mutate(tmpl)
    with pytest.raises(render.TemplateError, match=message):
        render.check(tmpl, PYTORCHJOB, render.BASE_PLACEHOLDERS)
