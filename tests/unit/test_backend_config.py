"""Backend config validation: every error names the key and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.backend.config import MLFLOW_KEYS, USER_KEYS, BackendConfig
from harness.backend.errors import BackendConfigError

MINIMAL = {"template-path": "t.yaml", "kind-cluster": "c"}


def test_minimal_config_defaults() -> None:
    cfg = BackendConfig.from_dict(MINIMAL)
    assert cfg.namespace is None  # the template's metadata.namespace, else "default"
    assert cfg.resolve_namespace(None) == "default"
    assert cfg.resolve_namespace("mlflow") == "mlflow"
    assert cfg.resolve_namespace("{namespace}") == "default"
    assert cfg.image_delivery == "kind"
    assert cfg.kind_binary is None  # kind on PATH, else the harness's pinned one
    assert cfg.workload is None
    assert cfg.wait is None
    assert cfg.timeout_seconds == 3600.0
    assert cfg.poll_seconds == 5.0
    assert cfg.synchronous is True
    assert cfg.kube_context is None
    assert cfg.kubeconfig is None


def test_a_kind_context_names_the_kind_cluster() -> None:
    """MLflow's kubernetes example config changed only in its context: kind's own context names suffice."""
    cfg = BackendConfig.from_dict({"kube-job-template-path": "t.yaml", "kube-context": "kind-mlflow-crd-e2e",
                                   "repository-uri": "username/mlflow-kubernetes-example"})
    assert cfg.kind_cluster == "mlflow-crd-e2e"
    assert cfg.template_path == "t.yaml"


@pytest.mark.parametrize(
    ("raw", "hint"),
    [({"workload": 3}, "preset name"), ({"wait": "sometimes"}, "true, false or")],
)
def test_workload_and_wait_are_checked(raw: dict[str, Any], hint: str) -> None:
    with pytest.raises(BackendConfigError, match=hint):
        BackendConfig.from_dict({**MINIMAL, **raw})


def test_mlflow_injected_keys_are_accepted_and_kept() -> None:
    raw = {
        **MINIMAL,
        "ENV_MANAGER": None,
        "SYNCHRONOUS": False,
        "DOCKER_ARGS": {},
        "STORAGE_DIR": None,
        "build_image": False,
        "docker_auth": {"username": "u", "password": "p"},
    }
    cfg = BackendConfig.from_dict(raw)
    assert cfg.synchronous is False
    assert cfg.docker_auth() == {"username": "u", "password": "p"}
    assert set(cfg.mlflow_keys) == set(raw) - set(MINIMAL)


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(BackendConfigError) as info:
        BackendConfig.from_dict({**MINIMAL, "kube-contxt": "x"})
    message = str(info.value)
    assert "'kube-contxt'" in message
    for key in USER_KEYS:
        assert key in message
    assert not any(k in message for k in MLFLOW_KEYS if k.isupper())


@pytest.mark.parametrize(
    ("raw", "key", "hint"),
    [
        ({}, "template-path", "required"),
        ({"template-path": ""}, "template-path", "required"),
        ({"template-path": "t", "image-delivery": "scp"}, "image-delivery", "kind, registry, none"),
        ({"template-path": "t"}, "kind-cluster", "kind get clusters"),
        ({**MINIMAL, "namespace": "Bad_NS"}, "namespace", "DNS-1123"),
        ({**MINIMAL, "timeout-seconds": 0}, "timeout-seconds", "positive"),
        ({**MINIMAL, "poll-seconds": "5"}, "poll-seconds", "positive"),
        ({**MINIMAL, "poll-seconds": True}, "poll-seconds", "positive"),
        ({**MINIMAL, "kube-context": 3}, "kube-context", "must be a string"),
        ({**MINIMAL, "repository-uri": "Upper/Case"}, "repository-uri", "lower-case"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, Any], key: str, hint: str) -> None:
    with pytest.raises(BackendConfigError) as info:
        BackendConfig.from_dict(raw)
    assert f"'{key}'" in str(info.value)
    assert hint in str(info.value)


def test_non_mapping_config() -> None:
    not_a_mapping: Any = ["template-path"]
    with pytest.raises(BackendConfigError, match="JSON object"):
        BackendConfig.from_dict(not_a_mapping)


def test_other_deliveries_do_not_need_a_kind_cluster() -> None:
    assert BackendConfig.from_dict({"template-path": "t", "image-delivery": "none"}).kind_cluster is None


def test_config_is_frozen() -> None:
    cfg = BackendConfig.from_dict(MINIMAL)
    with pytest.raises(AttributeError):
        setattr(cfg, "namespace", "x")  # noqa: B010 - bypass the type checker on purpose


def test_pod_tracking_uri_precedence() -> None:
    cfg = BackendConfig.from_dict(MINIMAL)
    assert cfg.pod_tracking_uri("sqlite:///x.db", {}) == "sqlite:///x.db"
    env = {"KUBE_MLFLOW_TRACKING_URI": "http://env:5000"}
    assert cfg.pod_tracking_uri("sqlite:///x.db", env) == "http://env:5000"
    explicit = BackendConfig.from_dict({**MINIMAL, "tracking-uri": "http://cfg:5000"})
    assert explicit.pod_tracking_uri("sqlite:///x.db", env) == "http://cfg:5000"


def test_template_path_cwd_then_project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project, cwd = tmp_path / "project", tmp_path / "cwd"
    project.mkdir()
    cwd.mkdir()
    (project / "t.yaml").write_text("x")
    monkeypatch.chdir(cwd)
    cfg = BackendConfig.from_dict(MINIMAL)
    assert cfg.resolve_template_path(project) == (project / "t.yaml").resolve()
    (cwd / "t.yaml").write_text("y")
    assert cfg.resolve_template_path(project) == (cwd / "t.yaml").resolve()


def test_missing_template_lists_where_it_looked(tmp_path: Path) -> None:
    cfg = BackendConfig.from_dict({**MINIMAL, "template-path": "nope.yaml"})
    with pytest.raises(BackendConfigError, match=r"'template-path'.*nope\.yaml.*looked in"):
        cfg.resolve_template_path(tmp_path)


def test_example_config_in_trainer_is_valid() -> None:
    import json

    example = Path(__file__).resolve().parents[2] / "trainer" / "backend-config.example.json"
    cfg = BackendConfig.from_dict(json.loads(example.read_text()))
    assert cfg.resolve_template_path(example.parent).name == "customjob_template.yaml"


def test_mlflow_kubernetes_backend_keys_mean_the_same() -> None:
    """A config written for MLflow's kubernetes backend carries over: kube-job-template-path, kube-context,
    repository-uri."""
    cfg = BackendConfig.from_dict({"kube-job-template-path": "job.yaml", "kube-context": "kind-x",
                                   "repository-uri": "localhost:5001/trainer", "image-delivery": "registry"})
    assert (cfg.template_path, cfg.kube_context, cfg.repository_uri) == ("job.yaml", "kind-x",
                                                                         "localhost:5001/trainer")
    with pytest.raises(BackendConfigError, match="mean the same"):
        BackendConfig.from_dict({"kube-job-template-path": "a.yaml", "template-path": "b.yaml",
                                 "image-delivery": "none"})
