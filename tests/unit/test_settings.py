"""Unit tier: one settings table for file, env, pytest options and CLI flags."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness import assets
from harness.cli import build_parser
from harness.settings import OPTIONS, ConfigError, load_settings

CHURN = """name: churn
docker_env: {image: churn-base}
entry_points:
  main:
    parameters: {model: string, max_depth: float}
    command: python train.py --model {model} --max-depth {max_depth}
"""


def _project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.mlflow-crd-harness]\n" + body)
    return tmp_path


def test_precedence_is_option_then_env_then_file_then_default(tmp_path: Path) -> None:
    root = _project(tmp_path, 'cluster-name = "from-file"\njob-timeout = 60\n')
    s = load_settings(root=root, environ={})
    assert (s.cluster_name, s["job-timeout"], s["deploy-timeout"]) == ("from-file", 60.0, 300.0)
    assert s.sources["cluster-name"].startswith("[tool.mlflow-crd-harness] of ")
    s = load_settings(root=root, environ={"HARNESS_CLUSTER_NAME": "from-env"})
    assert (s.cluster_name, s.sources["cluster-name"]) == ("from-env", "env HARNESS_CLUSTER_NAME")
    s = load_settings(root=root, environ={"HARNESS_CLUSTER_NAME": "from-env"}, explicit={"cluster-name": "from-opt"})
    assert s.cluster_name == "from-opt"


def test_defaults_without_any_file(tmp_path: Path) -> None:
    (tmp_path / "My Project").mkdir()
    s = load_settings(root=tmp_path / "My Project", environ={})
    assert s.cluster_name == "my-project-e2e"
    assert s["stack"] == ("stub",)
    assert [i.repository for i in s.images] == ["customjob-controller"], "the stub's controller comes with the stub"
    assert s.images[0].context == assets.stub_path("controller")
    assert s["tracking"] == "in-cluster"
    assert s.state_dir == (tmp_path / "My Project" / ".harness").resolve()


def test_paths_in_the_file_are_relative_to_it_and_stub_names_package_data(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "kustomization.yaml").write_text("resources: []\n")
    (tmp_path / "ml" / "churn").mkdir(parents=True)
    (tmp_path / "ml" / "churn" / "MLproject").write_text(CHURN)
    _project(tmp_path, '''stack = ["deploy"]
[[tool.mlflow-crd-harness.images]]
context = "stub:controller"
repository = "customjob-controller"
[[tool.mlflow-crd-harness.projects]]
path = "ml/churn"
params = { model = "gbm", max_depth = 4 }
''')
    sub = tmp_path / "ml"
    s = load_settings(root=sub, environ={})  # found by walking up
    assert s.root == tmp_path
    assert s["stack"] == (str(tmp_path / "deploy"),)
    (project,) = s.projects
    assert (project.name, project.path, dict(project.params)) == ("churn", tmp_path / "ml" / "churn",
                                                                   {"model": "gbm", "max_depth": "4"})
    assert project.template == assets.stub_template()
    assert s.project("churn") is project
    assert s.project("ml/churn") is project


def test_structured_values_come_as_json_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # paths from the environment are relative to the current directory
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "kustomization.yaml").write_text("resources: []\n")
    env = {"HARNESS_STACK": "a,b", "HARNESS_PROJECTS": "[]", "HARNESS_REUSE": "false"}
    s = load_settings(root=tmp_path, environ=env)
    assert s["stack"] == (str(tmp_path / "a"), str(tmp_path / "b"))
    assert s["reuse"] is False
    with pytest.raises(ConfigError, match=r"projects = '\{' \(env HARNESS_PROJECTS\): expected JSON"):
        load_settings(root=tmp_path, environ={"HARNESS_PROJECTS": "{"})


@pytest.mark.parametrize(("body", "message"), [
    ('cluster-nme = "x"', r"unknown key 'cluster-nme' .*did you mean 'cluster-name'"),
    ('keep-cluster = "sometimes"', r"keep-cluster = 'sometimes' .*expected one of auto, always, never, on-failure"),
    ('cluster-name = "Bad_Name"', r"cluster-name 'Bad_Name' .*lower-case"),
    ('tracking = "ftp://x"', r"tracking 'ftp://x' .*in-cluster' or an http\(s\) URI"),
    ('cluster = "existing"', r"cluster = existing needs a kubeconfig"),
    ('[[tool.mlflow-crd-harness.projects]]\npath = "nowhere"', r"projects\[0\].path .* has no MLproject"),
    ('stack = ["kubeflow-trainingoperator"]', r"stack entry .*kubeflow-trainingoperator .* did you mean "
                                              "'kubeflow-training-operator'"),
    ('extended-resources = { worker = { "nvidia.com/gpu" = 1 } }', r"names 'worker' .* set workers = 1"),
    ('[[tool.mlflow-crd-harness.images]]\ncontext = "."\nrepository = "x"\ntag = "1"',
     r"unknown key 'tag' in images\[0\]"),
    ('job-timeout = -1', r"job-timeout = -1 .*positive number"),
])
def test_bad_settings_fail_with_the_key_and_the_fix(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(root=_project(tmp_path, body + "\n"), environ={})


def test_help_is_short_and_help_all_lists_every_setting_once(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    with pytest.raises(SystemExit):
        main(["up", "-h"])
    short = capsys.readouterr().out
    assert len(short.splitlines()) < 30
    assert "--help-all" in short
    with pytest.raises(SystemExit):
        main(["up", "--help-all"])
    full = capsys.readouterr().out
    for opt in OPTIONS:
        assert opt.cli_flag in full
    assert "--no-no-skip" not in full
    assert "(default: None)" not in full  # one default per option, the table's


def test_cli_flags_pytest_options_and_env_names_come_from_one_table() -> None:
    parser = build_parser()
    up = parser._subparsers._group_actions[0].choices["up"]  # type: ignore[union-attr]
    flags = {s for a in up._actions for s in a.option_strings}
    for opt in OPTIONS:
        assert opt.cli_flag in flags
        assert opt.env == "HARNESS_" + opt.key.upper().replace("-", "_")
        assert opt.pytest_flag == f"--harness-{opt.key}"
        assert opt.help


def test_cli_resolves_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    _project(tmp_path, 'cluster-name = "from-file"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_CLUSTER_NAME", raising=False)
    assert main(["config", "--job-timeout", "42"]) == 0
    out = capsys.readouterr().out
    assert 'cluster-name = "from-file"  # [tool.mlflow-crd-harness] of' in out
    assert "job-timeout = 42.0  # option" in out
    pasted = tomllib.loads(out)["tool"]["mlflow-crd-harness"]  # the output is TOML a user can paste back
    assert (pasted["cluster-name"], pasted["job-timeout"], pasted["state-dir"]) == ("from-file", 42.0, ".harness")
    assert "_base" not in out
    with pytest.raises(SystemExit) as info:
        main(["config", "--keep-cluster", "sometimes"])
    assert info.value.code == 2


TRAININGRUN_TOML = '''
[[tool.mlflow-crd-harness.workloads]]
name = "trainingrun"
api-version = "ml.platform.example/v1beta1"
kind = "TrainingRun"
containers = "spec.runner"
succeeded = ["condition=Done"]
failed = ["condition=Done=False"]
pods = "ml.platform.example/run={name}"
'''


def _churn(tmp_path: Path, template: str) -> None:
    (tmp_path / "ml").mkdir(exist_ok=True)
    (tmp_path / "ml" / "MLproject").write_text(CHURN)
    (tmp_path / "ml" / "run.yaml").write_text(template)


def test_a_teams_own_workload_kind_is_a_settings_table(tmp_path: Path) -> None:
    """No code: the kind is defined in the settings, and a project's template picks it by apiVersion/kind."""
    _churn(tmp_path, "apiVersion: ml.platform.example/v1beta1\nkind: TrainingRun\nmetadata: {name: '{job_name}'}\n"
                     "spec: {runner: {image: '{image}'}}\n")
    _project(tmp_path, TRAININGRUN_TOML + '[[tool.mlflow-crd-harness.projects]]\npath = "ml"\n'
                                          'template = "ml/run.yaml"\n')
    s = load_settings(root=tmp_path, environ={})
    (kind,) = s.workloads
    assert (kind.name, kind.kind, kind.closes_run) == ("trainingrun", "TrainingRun", "submitter")
    assert s.projects[0].workload is kind


def test_a_preset_is_inferred_from_the_template_or_named(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    _churn(tmp_path, (root / "trainer" / "job_template.yaml").read_text())
    _project(tmp_path, '[[tool.mlflow-crd-harness.projects]]\npath = "ml"\ntemplate = "ml/run.yaml"\n')
    assert load_settings(root=tmp_path, environ={}).projects[0].workload.name == "job"
    _project(tmp_path, '[[tool.mlflow-crd-harness.projects]]\npath = "ml"\ntemplate = "ml/run.yaml"\n'
                       'workload = "job"\n')
    assert load_settings(root=tmp_path, environ={}).projects[0].workload.name == "job"


@pytest.mark.parametrize(
    ("extra", "project_extra", "template", "message"),
    [
        (TRAININGRUN_TOML.replace("succeeded", "succeded"), "", "", r"workloads\[0\].*unknown key 'succeded'; did "
                                                                  "you mean 'succeeded'"),
        (TRAININGRUN_TOML.replace('"condition=Done"]', '"Done"]', 1), "", "", "not a status rule"),
        (TRAININGRUN_TOML, 'workload = "trainingrunn"\n', "", "'trainingrunn' is neither a preset nor defined"),
        (TRAININGRUN_TOML, 'workload = "job"\n', "", "apiVersion: batch/v1 and kind: Job"),
        ("", "", "", "no workload definition covers"),
        (TRAININGRUN_TOML, "", "apiVersion: ml.platform.example/v1beta1\nkind: TrainingRun\nmetadata: {}\nspec: {}\n",
         "no container at 'spec.runner'"),
        (TRAININGRUN_TOML * 2, "", "", "workload names must be unique"),
    ],
    ids=["misspelt key", "bad status rule", "unknown kind name", "template of another kind", "undefined kind",
         "container missing", "duplicate names"],
)
def test_bad_workload_definitions_stop_at_startup(tmp_path: Path, extra: str, project_extra: str, template: str,
                                                  message: str) -> None:
    _churn(tmp_path, template or "apiVersion: ml.platform.example/v1beta1\nkind: TrainingRun\nmetadata: {}\n"
                                 "spec: {runner: {}}\n")
    _project(tmp_path, extra + '[[tool.mlflow-crd-harness.projects]]\npath = "ml"\ntemplate = "ml/run.yaml"\n'
             + project_extra)
    with pytest.raises(ConfigError, match=message):
        load_settings(root=tmp_path, environ={})


def test_a_projects_backend_config_cannot_redirect_what_the_harness_sets(tmp_path: Path) -> None:
    _churn(tmp_path, (Path(__file__).resolve().parents[2] / "trainer" / "job_template.yaml").read_text())
    _project(tmp_path, '[[tool.mlflow-crd-harness.projects]]\npath = "ml"\ntemplate = "ml/run.yaml"\n'
                       'backend-config = { namespace = "prod", timeout-seconds = 60 }\n')
    with pytest.raises(ConfigError, match=r"backend-config sets 'namespace'.*which the harness sets for every run"):
        load_settings(root=tmp_path, environ={})


MISTAKES = [
    # (what the user wrote, the message that must name it)
    ('[[tool.mlflow-crd-harness.projects]]\npath = "ml"\n', "declares no docker_env.image", "name: churn\n"),
    ('[[tool.mlflow-crd-harness.projects]]\npath = "ml"\nparams = { max_dept = 4 }\n',
     r"params has 'max_dept'.*did you mean 'max_depth'", None),
    ('[[tool.mlflow-crd-harness.projects]]\npath = "ml"\nentry-point = "train"\n',
     r"entry-point 'train' is not an entry point .* it has: main", None),
    ('kind-config = "kind.yaml"\n', r"kind-config .*kind.yaml .* cannot be read: No such file", None),
    ('kind-config = "nodes.yaml"\nworkers = 1\n', r"workers = 1 .* and kind-config .* lists nodes", None),
    ('tracking-pod-uri = "http://mlflow:5000"\n', r"tracking-pod-uri .* is for an external tracking server", None),
    ('kubernetes-version = 1.36\n', r"kubernetes-version = 1.36 .* quote it", None),
    ('registry = "registry.corp:5000"\n', r"registry = 'registry.corp:5000' .* with cluster = kind", None),
]


@pytest.mark.parametrize(("body", "message", "mlproject"), MISTAKES,
                         ids=["no docker_env", "misspelt parameter", "unknown entry point", "kind-config missing",
                              "workers beside nodes", "pod URI with in-cluster tracking", "version as a number",
                              "a registry kind cannot pull from"])
def test_everyday_mistakes_stop_at_load_time_naming_the_key_and_the_fix(
    tmp_path: Path, body: str, message: str, mlproject: str | None
) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "MLproject").write_text(mlproject or CHURN)
    (tmp_path / "nodes.yaml").write_text("kind: Cluster\nnodes: [{role: control-plane}, {role: worker}]\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(root=_project(tmp_path, body), environ={})


@pytest.mark.parametrize("registry", ["local", "localhost:5002", "127.0.0.1:5002"])
def test_kind_takes_a_registry_container_it_can_wire_in(tmp_path: Path, registry: str) -> None:
    """The harness's own (local) or one this engine publishes on loopback: both get wired into the nodes."""
    settings = load_settings(root=_project(tmp_path, f'registry = "{registry}"\n'), environ={})
    assert (settings["cluster"], settings["registry"]) == ("kind", registry)


def test_a_misspelt_section_is_named(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.mlflow_crd_harness]\ncluster-name = "x"\n')
    with pytest.raises(ConfigError, match=r"found \[tool.mlflow_crd_harness\].*did you mean "
                                          r"\[tool.mlflow-crd-harness\]"):
        load_settings(root=tmp_path, environ={})


def test_a_misspelt_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown environment variable HARNESS_CLUSTERNAME; did you mean "
                                          "HARNESS_CLUSTER_NAME"):
        load_settings(root=tmp_path, environ={"HARNESS_CLUSTERNAME": "x"})
    assert load_settings(root=tmp_path, environ={"HARNESS_CACHE_DIR": "/c"}).cluster_name  # a known knob


def test_a_configured_projects_runtime_params_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "MLproject").write_text(CHURN)
    s = load_settings(root=_project(tmp_path, '[[tool.mlflow-crd-harness.projects]]\npath = "ml"\n'), environ={})
    s.projects[0].check_params({"model": "gbm", "max_depth": 4})
    with pytest.raises(ConfigError, match=r"'max_dpth' is not declared .* did you mean 'max_depth'"):
        s.projects[0].check_params({"max_dpth": 4})


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "-P", "max_depth"], "give parameters as NAME=VALUE"),
    (["run", "nowhere"], "no project 'nowhere'"),
    (["run", "-P", "max_dpth=3"], "'max_dpth' is not declared"),
])
def test_cli_run_usage_errors_exit_2_before_any_cluster_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    message: str,
) -> None:
    from harness import cli

    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "MLproject").write_text(CHURN)
    _project(tmp_path, '[[tool.mlflow-crd-harness.projects]]\npath = "ml"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_up", lambda ns: pytest.fail("a usage error reached the bring-up"))
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_stub_keeps_its_controller_image_when_other_images_are_configured(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text("FROM scratch\n")
    s = load_settings(root=_project(tmp_path, '[[tool.mlflow-crd-harness.images]]\ncontext = "base"\n'
                                              'repository = "my-base"\ndeliver = false\n'), environ={})
    assert [i.repository for i in s.images] == ["customjob-controller", "my-base"]
