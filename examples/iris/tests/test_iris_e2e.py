"""The iris project runs through a CustomJob on the iris team's overlay of the stub stack."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import ProjectRun, assert_customjob, assert_run
from harness.kubeapi import Kube

ROWS = [
    {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2},
    {"sepal length (cm)": 6.7, "sepal width (cm)": 3.0, "petal length (cm)": 5.2, "petal width (cm)": 2.3},
]


@pytest.mark.parametrize(("model", "c"), [("logistic", 0.5), ("svm", 3.0)])
def test_iris_trains_and_predicts(project_run: Callable[..., ProjectRun], e2e_kube: Kube, model: str, c: float) -> None:
    run = project_run("iris", model=model, C=c)
    facts = assert_run(run, params={"model": model, "C": str(c)}, metrics={"accuracy": (0.85, 1.0)},
                       model_predicts=ROWS)
    assert [int(p) for p in facts.predictions] == [0, 2]  # setosa, virginica
    assert_customjob(e2e_kube, run.namespace, run.customjob["metadata"]["name"], run_id=run.run_id)


def test_controller_runs_in_the_overlay_namespace(e2e_kube: Kube) -> None:
    deployments = e2e_kube.apps.list_namespaced_deployment("iris-platform").items
    assert [d.metadata.name for d in deployments] == ["customjob-controller"]
    assert deployments[0].metadata.labels["team"] == "iris"
    assert (deployments[0].status.available_replicas or 0) == 1
    assert e2e_kube.apps.list_namespaced_deployment("customjob-system").items == []


def test_unknown_model_fails_the_run_with_the_reason(project_run: Callable[..., ProjectRun]) -> None:
    run = project_run("iris", model="forest")
    assert run.phase == "Failed"
    assert_run(run, status="FAILED")
    assert "model must be one of" in run.customjob["status"]["message"]


@pytest.mark.parametrize(("verb", "resource"), [("list", "pods"), ("watch", "jobs"), ("create", "jobs"),
                                                ("patch", "customjobs/status")])
def test_the_overlays_controller_has_the_rbac_it_needs(e2e_kube: Kube, verb: str, resource: str) -> None:
    """The overlay moved the ServiceAccount: its ClusterRoleBinding must have followed it."""
    from kubernetes import client

    group = {"jobs": "batch", "customjobs/status": "training.example.com"}.get(resource, "")
    name, _, sub = resource.partition("/")
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user="system:serviceaccount:iris-platform:customjob-controller",
        resource_attributes=client.V1ResourceAttributes(verb=verb, resource=name, subresource=sub or None,
                                                       group=group)))
    answer = client.AuthorizationV1Api(e2e_kube.api).create_subject_access_review(review)
    assert answer.status.allowed, answer.status
