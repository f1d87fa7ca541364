"""An empty or whitespace-only MLflow parameter (``-P msg=``) stops before any image build, naming it.

Three ways in: ``mlflow run -P`` through the backend (``harness/backend/argv.py``,
phase 1, before the run or the image exists), the harness CLI's ``run -P``
(``ProjectSpec.check_params``, before the cluster is brought up) and a test's
``project_run(**params)`` (the same check, before ``mlflow run`` starts).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.projects import docker as mlflow_docker
from mlflow.tracking import MlflowClient

from harness import runs
from harness.backend import CustomJobBackend
from harness.backend.errors import ParameterError
from harness.runs import ProjectRunner
from harness.settings import ConfigError, ProjectSpec, load_settings

ROOT = Path(__file__).resolve().parents[2]
MLPROJECT = """\
name: churn
docker_env: {image: churn-base}
entry_points:
  main:
    parameters: {model: string, max_depth: {type: float, default: 3}}
    command: python train.py --model {model} --max-depth {max_depth}
"""
BLANK = ["", " ", "\t", "\n  "]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "ml"
    root.mkdir()
    (root / "MLproject").write_text(MLPROJECT)
    (tmp_path / "pyproject.toml").write_text('[tool.mlflow-crd-harness]\n[[tool.mlflow-crd-harness.projects]]\n'
                                             'path = "ml"\n')
    return root


@pytest.mark.parametrize("value", BLANK)
def test_mlflow_run_through_the_backend_refuses_it_before_any_run_or_build(
    project: Path, sqlite_tracking_uri: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    uri = sqlite_tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(mlflow_docker, "build_docker_image", lambda **kw: pytest.fail("an image was built"))
    monkeypatch.setattr(CustomJobBackend, "_build_and_deliver", lambda *a, **kw: pytest.fail("an image was built"))
    config = {"template-path": str(ROOT / "trainer" / "customjob_template.yaml"), "image-delivery": "none",
              "tracking-uri": "http://mlflow.mlflow.svc:5000"}
    with pytest.raises(ParameterError, match=r"parameter 'model' is (empty|only whitespace)") as info:
        CustomJobBackend().run(str(project), "main", {"model": value}, None, config, uri, "0")
    assert "-P model=" in str(info.value)
    assert MlflowClient(uri).search_runs(experiment_ids=["0"]) == []


@pytest.mark.parametrize("value", BLANK)
def test_check_params_names_an_empty_or_blank_value(project: Path, value: str) -> None:
    spec = load_settings(root=project.parent, environ={}).projects[0]
    spec.check_params({"model": "gbm", "max_depth": 0})  # 0 is a value
    with pytest.raises(ConfigError, match=r"project ml: parameter 'model' is (empty|only whitespace).*-P model="):
        spec.check_params({"model": value})


@pytest.mark.parametrize("param", ["model=", "model=  ", "max_depth="])
def test_cli_run_refuses_it_with_exit_2_before_any_cluster_work(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], param: str
) -> None:
    from harness import cli

    monkeypatch.chdir(project.parent)
    monkeypatch.setattr(cli, "_up", lambda ns: pytest.fail("an empty parameter reached the bring-up"))
    assert cli.main(["run", "-P", "model=gbm", "-P", param]) == 2
    name = param.split("=")[0]
    assert f"parameter '{name}' is" in capsys.readouterr().err


@pytest.mark.parametrize("value", BLANK)
def test_project_run_refuses_it_before_mlflow_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    stack = SimpleNamespace(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", cluster=None)
    spec = ProjectSpec(name="trainer", path=ROOT / "trainer", template=ROOT / "trainer" / "customjob_template.yaml",
                       params={"alpha": "0.5"}, declared_params=("alpha", "l1_ratio"))
    runner = ProjectRunner(stack, "ns", tmp_path, projects=(spec,))  # type: ignore[arg-type]

    def no_child(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("mlflow run was started")

    monkeypatch.setattr(runs, "mlflow_run", no_child)
    with pytest.raises(ConfigError, match=r"parameter 'l1_ratio' is (empty|only whitespace)"):
        runner.run("trainer", l1_ratio=value)
