"""Template rendering (the stub's kind): placeholders only in string values; structure is data, not text."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import contract
from harness.workloads import CUSTOMJOB
from harness.workloads import render as template
from harness.workloads.render import TemplateError
from tests.support import crd_validation as crdv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "trainer" / "customjob_template.yaml"
STUB = ROOT / "crds" / "templates" / "customjob.yaml"

ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
RUN_ID = "0123456789abcdef0123456789abcdef"


def _values(**overrides: str) -> dict[str, str]:
    values = {
        "project_name": "mlflow-crd-example",
        "entry_point": "main",
        "image": "mlflow-crd-example-project:0123456789ab",
        "run_id": RUN_ID,
        "experiment_id": "1",
        "tracking_uri": "http://mlflow.mlflow.svc.cluster.local:5000",
        "namespace": "default",
        "job_name": "mlflow-crd-example-01234567",
        "params.alpha": "0.5",
    }
    values.update(overrides)
    return values


def _manifest(
    tmpl: dict[str, Any],
    values: dict[str, str],
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    return template.build(tmpl, CUSTOMJOB, template.RunValues(
        job_name=values["job_name"],
        namespace=values["namespace"],
        image=values["image"],
        argv=argv or ["python", "train.py", "--alpha", "0.5"],
        run_id=values["run_id"],
        experiment_id=values["experiment_id"],
        tracking_uri=values["tracking_uri"],
        project_name=values["project_name"],
        env=env or {},
        placeholders=values,
        labels={contract.LABEL_RUN_ID: values["run_id"]},
    ))


def _shape(tree: Any) -> Any:
    """The tree with every string replaced by a marker: what rendering must not change."""
    if isinstance(tree, dict):
        return {k: _shape(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_shape(v) for v in tree]
    return "<str>" if isinstance(tree, str) else tree


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return template.load(EXAMPLE)


def test_example_template_passes_checks(example: dict[str, Any]) -> None:
    template.check(example, CUSTOMJOB, [*template.BASE_PLACEHOLDERS])


@settings(max_examples=300, deadline=None)
@given(hostile=ANY_TEXT, uri=ANY_TEXT)
def test_hostile_values_cannot_change_structure(example: dict[str, Any], hostile: str, uri: str) -> None:
    values = _values(entry_point=hostile, tracking_uri=uri, project_name=hostile)
    rendered = template.render(example, values)
    assert _shape(rendered) == _shape(example)
    assert rendered["metadata"]["annotations"]["training.example.com/entry-point"] == hostile
    assert rendered["spec"]["mlflow"]["trackingUri"] == uri
    # and the result survives a YAML round trip unchanged (what kubectl would see)
    assert yaml.safe_load(yaml.safe_dump(rendered)) == rendered


@settings(max_examples=200, deadline=None)
@given(value=ANY_TEXT)
def test_substituted_values_are_not_rescanned(value: str) -> None:
    tree = {"a": "{x}", "b": ["pre {x} post", 3, True, None], "{x}": "key untouched"}
    rendered = template.render(tree, {"x": value, "y": "SHOULD-NOT-APPEAR"})
    assert rendered == {"a": value, "b": [f"pre {value} post", 3, True, None], "{x}": "key untouched"}


def test_injection_attempts_stay_strings(example: dict[str, Any]) -> None:
    evil = 'x"\nspec:\n  image: evil\n  privileged: true\n#'
    body = _manifest(example, _values(entry_point=evil, tracking_uri="{run_id}}: {"))
    assert body["metadata"]["annotations"]["training.example.com/entry-point"] == evil
    assert "privileged" not in body["spec"]
    assert body["spec"]["mlflow"]["trackingUri"] == "{run_id}}: {"


def test_types_are_preserved(example: dict[str, Any]) -> None:
    body = _manifest(example, _values())
    assert body["spec"]["backoffLimit"] == 0
    assert body["spec"]["activeDeadlineSeconds"] == 1800
    assert body["spec"]["ttlSecondsAfterFinished"] == 3600
    assert isinstance(body["spec"]["backoffLimit"], int)


def test_manifest_injects_command_env_mlflow_and_labels(example: dict[str, Any]) -> None:
    argv = ["python", "train.py", "--msg", "a b", "--alpha", "0.5"]
    body = _manifest(example, _values(), argv)
    assert body["apiVersion"] == contract.API_VERSION
    assert body["kind"] == contract.KIND
    assert body["metadata"]["name"] == "mlflow-crd-example-01234567"
    assert body["metadata"]["namespace"] == "default"
    assert body["metadata"]["labels"][contract.LABEL_RUN_ID] == RUN_ID
    assert body["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mlflow-crd-example"
    assert body["spec"]["command"] == argv
    assert body["spec"]["image"] == "mlflow-crd-example-project:0123456789ab"
    assert body["spec"]["env"] == [{"name": "PYTHONUNBUFFERED", "value": "1"}]  # MLFLOW_* come from spec.mlflow
    assert body["spec"]["mlflow"] == {
        "runId": RUN_ID,
        "experimentId": "1",
        "trackingUri": "http://mlflow.mlflow.svc.cluster.local:5000",
    }


def test_docker_env_overrides_template_entries_of_the_same_name(example: dict[str, Any]) -> None:
    tmpl = copy.deepcopy(example)
    tmpl["spec"]["command"] = ["echo", "replaced"]
    body = _manifest(tmpl, _values(), env={"PYTHONUNBUFFERED": "0", "FROM_MLPROJECT": "yes"})
    assert body["spec"]["env"] == [
        {"name": "PYTHONUNBUFFERED", "value": "0"},
        {"name": "FROM_MLPROJECT", "value": "yes"},
    ]
    assert body["spec"]["command"][0] == "python"


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "MLFLOW_RUN_ID", "value": "{run_id}"},
        {"name": "MLFLOW_TRACKING_URI", "valueFrom": {"configMapKeyRef": {"name": "mlflow", "key": "uri"}}},
        {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mlflow", "key": "token"}}},
    ],
    ids=["literal run id", "valueFrom tracking uri", "other MLFLOW_ variable"],
)
def test_template_mlflow_env_is_refused_before_anything_is_built(example: dict[str, Any], entry: Any) -> None:
    tmpl = copy.deepcopy(example)
    tmpl["spec"]["env"].append(entry)
    with pytest.raises(TemplateError, match=rf"template spec\.env\[1\] sets {entry['name']}: .*spec\.mlflow.*remove"):
        template.check(tmpl, CUSTOMJOB, [*template.BASE_PLACEHOLDERS])


def test_build_manifest_never_writes_mlflow_env(example: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match=r"docker_env\.environment\)\[0\] sets MLFLOW_RUN_ID"):
        _manifest(example, _values(), env={"MLFLOW_RUN_ID": RUN_ID})
    tmpl = copy.deepcopy(example)
    tmpl["spec"]["env"].append({"name": "{params.alpha}", "value": "x"})  # a name only known once rendered
    with pytest.raises(TemplateError, match=r"spec\.env \(rendered from the template\)\[1\] sets MLFLOW_X"):
        _manifest(tmpl, _values(**{"params.alpha": "MLFLOW_X"}))


def test_template_is_not_mutated(example: dict[str, Any]) -> None:
    before = copy.deepcopy(example)
    _manifest(example, _values())
    assert example == before


def test_literal_braces() -> None:
    assert template.render({"a": '{{"k": "{x}"}}'}, {"x": "v"}) == {"a": '{"k": "v"}'}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.update(kind="Job"), "kind: CustomJob"),
        (lambda t: t.update(apiVersion="batch/v1"), "apiVersion: training.example.com/v1alpha1"),
        (lambda t: t.pop("spec"), "no container at 'spec'"),
        (lambda t: t["metadata"].update(name=3), "metadata.name must be a string"),
        (lambda t: t["spec"].update(env={"A": "1"}), "spec.env must be a list"),
        (lambda t: t["spec"].update(args="python x"), "spec.args must be a list"),
        (lambda t: t["metadata"].update(name="{jobname}"), r"\{jobname\} at metadata.name"),
        (lambda t: t["spec"].update(args=["{params.beta}"]), r"\{params.beta\} at spec.args\[0\]"),
    ],
)
def test_invalid_templates_are_named(example: dict[str, Any], mutate: Any, message: str) -> None:
    tmpl = copy.deepcopy(example)
    mutate(tmpl)
    with pytest.raises(TemplateError, match=message):
        template.check(tmpl, CUSTOMJOB, [*template.BASE_PLACEHOLDERS, "params.alpha"])


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("apiVersion: [unclosed\n")
    with pytest.raises(TemplateError, match=r"t\.yaml.*not valid YAML"):
        template.load(bad)


def test_non_mapping_template(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(TemplateError, match="must be a YAML mapping"):
        template.load(bad)


def test_rendered_name_must_be_dns_label(example: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="DNS-1123"):
        _manifest(example, _values(job_name="Not_Valid"))


def test_namespace_mismatch_is_refused(example: dict[str, Any]) -> None:
    tmpl = copy.deepcopy(example)
    tmpl["metadata"]["namespace"] = "other"
    with pytest.raises(TemplateError, match=r"'other'.*'default'"):
        _manifest(tmpl, _values())


def test_hardcoded_image_is_refused(example: dict[str, Any]) -> None:
    tmpl = copy.deepcopy(example)
    tmpl["spec"]["image"] = "python:3.11"
    with pytest.raises(TemplateError, match=r"spec\.image"):
        _manifest(tmpl, _values())


@pytest.mark.parametrize("path", [EXAMPLE, STUB], ids=["trainer template", "stub template"])
def test_rendered_templates_are_admitted_by_the_crd(path: Path) -> None:
    """Cross-check with the CRD: schema, defaults and CEL rules (tests/support/crd_validation.py)."""
    tmpl = template.load(path)
    template.check(tmpl, CUSTOMJOB, [*template.BASE_PLACEHOLDERS])
    body = _manifest(tmpl, _values(), ["python", "train.py", "--alpha", "0.5"], env={"FROM_MLPROJECT": "yes"})
    assert crdv.validate(body) == []
