"""Derived names: DNS-1123 job names and the image references kind must find."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import delivery
from harness.backend import naming


@given(project=st.text(max_size=120), run_id=st.from_regex(r"[0-9a-f]{32}", fullmatch=True))
def test_job_name_is_always_a_dns_label_keeping_the_run_prefix(project: str, run_id: str) -> None:
    name = naming.job_name(project, run_id)
    assert naming.is_dns_label(name)
    assert name.endswith("-" + run_id[:8])


def test_job_name_examples() -> None:
    run_id = "0123456789abcdef0123456789abcdef"
    assert naming.job_name("mlflow-crd-example", run_id) == "mlflow-crd-example-01234567"
    assert naming.job_name("My Trainer_v2", run_id) == "my-trainer-v2-01234567"
    assert naming.job_name(None, run_id) == "project-01234567"
    long = naming.job_name("x" * 200, run_id)
    assert len(long) == 63
    assert long.endswith("-01234567")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a", True), ("a-b", True), ("-a", False), ("a-", False), ("A", False), ("a" * 64, False)],
)
def test_is_dns_label(value: str, ok: bool) -> None:
    assert naming.is_dns_label(value) is ok


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("trainer", "trainer"),
        ("trainer:abc", "trainer"),
        ("localhost:5000/a/b:t@sha256:" + "0" * 64, "localhost:5000/a/b"),
        ("localhost:5000/a", "localhost:5000/a"),
    ],
)
def test_repository_of(ref: str, repo: str) -> None:
    assert naming.repository_of(ref) == repo


@pytest.mark.parametrize(
    ("ref", "normal"),
    [
        ("trainer:abc", "docker.io/library/trainer:abc"),
        ("trainer", "docker.io/library/trainer:latest"),
        ("org/trainer:1", "docker.io/org/trainer:1"),
        ("localhost:5001/trainer:1", "localhost:5001/trainer:1"),
        ("registry.example.com/a/b", "registry.example.com/a/b:latest"),
    ],
)
def test_normalize_ref(ref: str, normal: str) -> None:
    assert delivery.normalize_ref(ref) == normal


CTR_LS = """\
docker.io/kindest/kindnetd:v20240813-c6f155d6
docker.io/library/mlflow-crd-example-project:0123456789ab
sha256:7e2a1c4b0d6f...
"""


def test_image_on_node() -> None:
    assert delivery.image_on_node(CTR_LS, "mlflow-crd-example-project:0123456789ab")
    assert not delivery.image_on_node(CTR_LS, "mlflow-crd-example-project:ffffffffffff")
    assert not delivery.image_on_node(CTR_LS, "mlflow-crd-example-project")


def test_content_tag_is_derived_from_the_image_id() -> None:
    assert delivery.content_tag("repo", "sha256:" + "ab" * 32) == "repo:abababababab"
