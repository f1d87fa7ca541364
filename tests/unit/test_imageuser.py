"""Unit tier: which images a ``runAsNonRoot`` pod refuses, and which templates leave the user to the image."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.backend.imageuser import demands_image_user, root_problem

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("user", "refused"), [
    ("", "runs as root (no USER)"), ("root", "runs as root (USER root)"), ("0", "runs as root (USER 0)"),
    ("0:0", "runs as root (USER 0)"), ("trainer", "the user name 'trainer'"), ("10001", None),
    ("10001:10001", None), (" 1000 ", None),
])
def test_a_non_root_pod_takes_only_a_numeric_non_root_user(user: str, refused: str | None) -> None:
    problem = root_problem(user, "img:1")
    if refused is None:
        assert problem is None
    else:
        assert problem is not None
        assert refused in problem
        assert "USER 10001:10001" in problem


@pytest.mark.parametrize(("template", "demands"), [
    ("trainer/job_template.yaml", False),                       # runAsUser set beside runAsNonRoot
    ("trainer/pytorchjob_workers_template.yaml", False),
    ("trainer/customjob_template.yaml", False),                 # the stub's controller decides (the backend knows)
    ("tests/data/mlflow-kubernetes-example/kubernetes_job_template.yaml", False),  # MLflow's: may run as root
])
def test_the_shipped_templates(template: str, demands: bool) -> None:
    assert demands_image_user(yaml.safe_load((REPO / template).read_text())) is demands


def test_a_template_that_requires_non_root_without_a_user_leaves_it_to_the_image() -> None:
    tmpl = {"spec": {"template": {"spec": {"securityContext": {"runAsNonRoot": True},
                                           "containers": [{"name": "x"}]}}}}
    assert demands_image_user(tmpl) is True
    tmpl["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    assert demands_image_user(tmpl) is True  # the pod-level rule still leaves it to the image
    tmpl["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 10001
    assert demands_image_user(tmpl) is False
