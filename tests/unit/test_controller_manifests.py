"""CustomJob -> Job manifest: unit tests and the "always a valid Job" property.

The property validates against ``kubernetes.client.V1Job.model_validate``,
which is exactly what ``BatchV1Api.create_namespaced_job`` runs on its body
(pydantic, ``extra="forbid"``, strict strings): a manifest that passes here
is not refused client-side, and misspelt fields cannot slip through.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from customjob_controller import contract, manifests
from hypothesis import HealthCheck, given, settings
from kubernetes.client import V1Job
from pydantic import ValidationError

from tests.support import crd_strategies as strategies
from tests.support import crd_validation as crdv

UID = "6f1c1d7e-2b5a-4a55-9d0e-1d2f3a4b5c6d"
RUN_ID = "0123456789abcdef0123456789abcdef"


def _cj(spec: dict[str, Any], name: str = "train-1") -> dict[str, Any]:
    obj = crdv.customjob(spec, name=name, namespace="team-a")
    obj["metadata"]["uid"] = UID
    return obj


BASE = {"image": "trainer:0.1.0", "command": ["python3", "train.py"]}


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_job_name_is_the_customjob_name_and_stable() -> None:
    assert manifests.job_name("train-1") == "train-1"
    assert manifests.build_job(_cj(BASE)) == manifests.build_job(_cj(BASE))


def test_owner_reference_makes_the_customjob_the_controller() -> None:
    job = manifests.build_job(_cj(BASE))
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "training.example.com/v1alpha1",
            "kind": "CustomJob",
            "name": "train-1",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert job["metadata"]["namespace"] == "team-a"


def test_labels_link_job_and_pods_back_to_customjob_and_run() -> None:
    spec = {
        **BASE,
        "mlflow": {"runId": RUN_ID, "experimentId": "7", "trackingUri": "http://m:5000", "runName": "r"},
    }
    job = manifests.build_job(_cj(spec))
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels[contract.LABEL_CUSTOMJOB] == "train-1"
        assert labels[contract.LABEL_RUN_ID] == RUN_ID
        assert labels[contract.LABEL_EXPERIMENT_ID] == "7"
    assert job["metadata"]["annotations"] == {contract.ANNOTATION_RUN_NAME: "r",
                                              contract.ANNOTATION_TRACKING_URI: "http://m:5000"}
    assert job["metadata"]["finalizers"] == [contract.FINALIZER_OUTCOME], "held until the outcome is recorded"


def test_pod_labels_cannot_override_controller_labels() -> None:
    spec = {**BASE, "podLabels": {"team": "ml", contract.LABEL_CUSTOMJOB: "spoofed"}}
    labels = manifests.build_job(_cj(spec))["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "ml"
    assert labels[contract.LABEL_CUSTOMJOB] == "train-1"


def test_node_selector_reaches_the_pod_and_is_absent_by_default() -> None:
    spec = {**BASE, "nodeSelector": {"kubernetes.io/hostname": "e2e-worker"}}
    pod = manifests.build_job(_cj(spec))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "e2e-worker"}
    assert "nodeSelector" not in manifests.build_job(_cj(BASE))["spec"]["template"]["spec"]


def test_defaults_and_hardening() -> None:
    job = manifests.build_job(_cj(BASE))
    pod = job["spec"]["template"]["spec"]
    container = _container(job)
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert "activeDeadlineSeconds" not in job["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    assert container["name"] == "trainer"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_spec_fields_are_copied() -> None:
    spec = {
        **BASE,
        "imagePullPolicy": "Never",
        "args": ["--alpha", "0.1"],
        "workingDir": "/work",
        "backoffLimit": 2,
        "activeDeadlineSeconds": 600,
        "ttlSecondsAfterFinished": 0,
        "serviceAccountName": "trainer",
    }
    job = manifests.build_job(_cj(spec))
    container = _container(job)
    assert (container["image"], container["imagePullPolicy"]) == ("trainer:0.1.0", "Never")
    assert (container["command"], container["args"], container["workingDir"]) == (
        ["python3", "train.py"],
        ["--alpha", "0.1"],
        "/work",
    )
    assert (
        job["spec"]["backoffLimit"],
        job["spec"]["activeDeadlineSeconds"],
        job["spec"]["ttlSecondsAfterFinished"],
    ) == (2, 600, 0)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "trainer"
    assert "automountServiceAccountToken" not in job["spec"]["template"]["spec"]


def test_quantities_become_strings() -> None:
    spec = {
        **BASE,
        "resources": {"requests": {"cpu": 1, "memory": "512Mi"}, "limits": {"memory": 1073741824}},
    }
    assert _container(manifests.build_job(_cj(spec)))["resources"] == {
        "requests": {"cpu": "1", "memory": "512Mi"},
        "limits": {"memory": "1073741824"},
    }


def test_extended_resources_reach_the_pod() -> None:
    spec = {
        **BASE,
        "resources": {
            "requests": {"cpu": "500m", "example.com/foo": "2"},
            "limits": {"cpu": 1, "nvidia.com/gpu": 1, "example.com/foo": 2},
        },
    }
    assert crdv.validate(_cj(spec)) == []
    job = manifests.build_job(_cj(spec))
    assert _container(job)["resources"] == {
        "requests": {"cpu": "500m", "example.com/foo": "2"},
        "limits": {"cpu": "1", "nvidia.com/gpu": "1", "example.com/foo": "2"},
    }
    V1Job.model_validate(job)


def test_resource_field_ref_env_reaches_the_pod() -> None:
    entries = [
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"containerName": contract.CONTAINER_NAME,
                                                             "resource": "requests.cpu", "divisor": "1m"}}},
        {"name": "DISK", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage", "divisor": 1000}}},
        {"name": "my.var", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}},
    ]
    spec = {**BASE, "env": entries}
    assert crdv.validate(_cj(spec)) == []
    job = manifests.build_job(_cj(spec))
    env = _container(job)["env"]
    assert env[:2] == entries[:2]
    assert env[2] == {"name": "DISK", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage",
                                                                         "divisor": "1000"}}}
    assert env[3] == entries[3]
    model = V1Job.model_validate(job)
    assert model.spec is not None
    assert model.spec.template.spec is not None
    (container,) = model.spec.template.spec.containers
    assert container.env is not None
    ref = container.env[0].value_from.resource_field_ref if container.env[0].value_from else None
    assert ref is not None
    assert (ref.resource, ref.divisor) == ("limits.memory", "1Mi")


def test_mlflow_env_is_injected_from_spec_mlflow() -> None:
    spec = {
        **BASE,
        "env": [{"name": "SEED", "value": "1"}],
        "mlflow": {"runId": RUN_ID, "experimentId": "3", "trackingUri": "http://mlflow:5000"},
    }
    assert crdv.validate(_cj(spec)) == []
    assert _container(manifests.build_job(_cj(spec)))["env"] == [
        {"name": "SEED", "value": "1"},
        {"name": "MLFLOW_RUN_ID", "value": RUN_ID},
        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},
        {"name": "MLFLOW_EXPERIMENT_ID", "value": "3"},
    ]


def test_spec_mlflow_is_the_only_mlflow_source_even_for_objects_an_older_crd_admitted() -> None:
    """The CRD now refuses these; one stored before that must still log to the run the controller closes."""
    spec = {
        **BASE,
        "env": [
            {"name": "SEED", "value": "1"},
            {"name": "MLFLOW_RUN_ID", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "run"}}},
            {"name": "MLFLOW_TRACKING_URI", "value": "http://other:5000"},
            {"name": "MLFLOW_TRACKING_INSECURE_TLS", "value": "true"},
        ],
        "mlflow": {"runId": RUN_ID, "trackingUri": "http://mlflow:5000"},
    }
    assert crdv.validate(_cj(spec))  # refused today
    assert _container(manifests.build_job(_cj(spec)))["env"] == [
        {"name": "SEED", "value": "1"},
        {"name": "MLFLOW_RUN_ID", "value": RUN_ID},
        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},
    ]


def test_user_mlflow_env_passes_through_without_spec_mlflow() -> None:
    entries = [
        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},
        {"name": "MLFLOW_RUN_ID", "valueFrom": {"configMapKeyRef": {"name": "run", "key": "id"}}},
    ]
    spec = {**BASE, "env": entries}
    assert crdv.validate(_cj(spec)) == []
    assert _container(manifests.build_job(_cj(spec)))["env"] == entries


def test_a_minimal_job_validates_and_a_typo_would_not() -> None:
    job = manifests.build_job(_cj(BASE))
    V1Job.model_validate(job)
    broken = copy.deepcopy(job)
    _container(broken)["imagePullPolicyy"] = "Never"
    with pytest.raises(ValidationError):
        V1Job.model_validate(broken)
    broken = copy.deepcopy(job)
    _container(broken)["resources"] = {"limits": {"cpu": 1}}  # int quantity: the client refuses it
    with pytest.raises(ValidationError):
        V1Job.model_validate(broken)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.valid_specs())
def test_every_admitted_spec_yields_a_valid_batch_v1_job(spec: dict[str, Any]) -> None:
    obj = _cj(spec)
    assert crdv.validate(obj) == []  # same object the API server would store...
    stored = crdv.apply_defaults(crdv.version_schema(), obj)
    job = manifests.build_job(stored)  # ...turned into a Job
    model = V1Job.model_validate(job)
    assert json.loads(json.dumps(job)) == job
    assert model.metadata is not None
    assert model.metadata.name == "train-1"
    assert model.spec is not None
    assert model.spec.template.spec is not None
    assert model.spec.template.spec.restart_policy == "Never"
    (container,) = model.spec.template.spec.containers
    assert container.name == "trainer"
    assert container.image == spec["image"]
    assert container.image_pull_policy == stored["spec"]["imagePullPolicy"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert all(len(v) <= 63 for v in labels.values())
    env = job["spec"]["template"]["spec"]["containers"][0].get("env", [])
    env_names = [e["name"] for e in env]
    assert len(env_names) == len(set(env_names))
    user_env = [e for e in stored["spec"].get("env", []) if "mlflow" not in stored["spec"] or
                not e["name"].startswith("MLFLOW_")]
    for entry, rendered in zip(user_env, env, strict=False):  # every source reaches the pod (none dropped)
        assert entry["name"] == rendered["name"]
        assert set(entry.get("valueFrom", {})) == set(rendered.get("valueFrom", {}))
    resources = job["spec"]["template"]["spec"]["containers"][0].get("resources", {})
    for kind in ("requests", "limits"):
        assert set(resources.get(kind, {})) == set((stored["spec"].get("resources") or {}).get(kind) or {})
