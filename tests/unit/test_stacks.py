"""Unit tier: stack presets, Go-binary images, operator image flags and extended resources (no cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import stacks
from harness.clusters import noderesources
from harness.goimage import GoBuild
from harness.settings import ConfigError, load_settings
from harness.stack import replace_images


def _project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.mlflow-crd-harness]\n" + body)
    return tmp_path


def test_a_stack_preset_brings_its_images_and_yours_win(tmp_path: Path) -> None:
    s = load_settings(root=_project(tmp_path, 'stack = ["stub", "kubeflow-training-operator"]\n'), environ={})
    assert s["stack"] == ("stub", "kubeflow-training-operator")
    by_repo = {i.repository: i for i in s.images}
    operator = by_repo["kubeflow/training-operator"]
    assert operator.go == GoBuild("github.com/kubeflow/training-operator", "v1.8.1", "./cmd/training-operator.v1")
    assert operator.public == "kubeflow/training-operator:v1-04f9f13"
    assert operator.context is None
    assert (by_repo["mlflow-crd-harness/pytorch-init"].context / "nslookup").is_file()  # type: ignore[operator]
    assert "customjob-controller" in by_repo
    mine = ('[[tool.mlflow-crd-harness.images]]\nrepository = "kubeflow/training-operator"\n'
            'go = { module = "github.com/acme/fork", version = "v1.8.2", package = "./cmd/op" }\n')
    s = load_settings(root=_project(tmp_path, 'stack = ["kubeflow-training-operator"]\n' + mine), environ={})
    (operator,) = [i for i in s.images if i.repository == "kubeflow/training-operator"]
    assert operator.go is not None
    assert operator.go.module == "github.com/acme/fork"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ('repository = "op"\n', "context is required.*or a 'go' table"),
        ('repository = "op"\ngo = { module = "not a module", version = "v1", package = "./x" }\n', "go: go.module"),
        ('repository = "op"\ngo = { module = "github.com/a/b", version = "1.2", package = "./x" }\n', "go.version"),
        ('repository = "op"\ngo = { module = "github.com/a/b", version = "v1.2.3", package = "../x" }\n', "go.package"),
        ('repository = "op"\ngo = { module = "github.com/a/b", version = "v1.2.3", package = "./x", arch = "arm" }\n',
         "unknown key 'arch'"),
        ('repository = "op"\ncontext = "."\ngo = { module = "github.com/a/b", version = "v1.2.3", package = "./x" }\n',
         "not both"),
        ('repository = "op"\ngo = { module = "github.com/a/b", version = "v1.2.3", package = "./x" }\n'
         'public = "latest"\n', "public must be an image reference"),
    ],
)
def test_bad_go_images_are_named(tmp_path: Path, image: str, message: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(root=_project(tmp_path, "[[tool.mlflow-crd-harness.images]]\n" + image), environ={})


def test_the_preset_patches_only_the_init_container_image_flag_and_the_readiness_timing() -> None:
    preset = stacks.PRESETS["kubeflow-training-operator"]
    (patch,) = preset.patches
    assert patch["target"]["name"] == "training-operator"
    probe = "/spec/template/spec/containers/0/readinessProbe/"
    assert json.loads(patch["patch"]) == [
        {"op": "add", "path": "/spec/template/spec/containers/0/args",
         "value": ["--pytorch-init-container-image=mlflow-crd-harness/pytorch-init"]},
        {"op": "replace", "path": probe + "initialDelaySeconds", "value": 1},
        {"op": "replace", "path": probe + "periodSeconds", "value": 2},
    ]
    assert preset.workloads == ("pytorchjob",)


def test_operator_image_flags_are_swapped_like_container_images() -> None:
    docs: list[dict[str, Any]] = [{"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{
        "name": "op", "image": "kubeflow/training-operator:v1-04f9f13",
        "args": ["--pytorch-init-container-image=mlflow-crd-harness/pytorch-init", "--other=x",
                 "--mpi-kubectl-delivery-image=kubeflow/kubectl-delivery:v1"]}]}}}}]
    swapped = replace_images(docs, {"kubeflow/training-operator": "kubeflow/training-operator:abc",
                                    "mlflow-crd-harness/pytorch-init": "mlflow-crd-harness/pytorch-init:123"})
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    assert swapped == 2
    assert container["image"] == "kubeflow/training-operator:abc"
    assert container["args"] == ["--pytorch-init-container-image=mlflow-crd-harness/pytorch-init:123", "--other=x",
                                 "--mpi-kubectl-delivery-image=kubeflow/kubectl-delivery:v1"]


# -- extended resources ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{ worker = { "nvidia.com/gpu" = 0 } }', "whole numbers >= 1"),
        ('{ worker = { "gpu" = 1 } }', "needs a domain"),
        ('{ worker = { "kubernetes.io/gpu" = 1 } }', "outside kubernetes.io"),
        ('{ worker = { "nvidia.com/gpu" = 1.5 } }', "whole numbers"),
        ("{ worker = 2 }", "table of resource = count"),
    ],
)
def test_bad_extended_resources_stop_at_startup(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(root=_project(tmp_path, f"extended-resources = {value}\nworkers = 1\n"), environ={})


def test_extended_resources_are_refused_on_an_existing_cluster(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\n")
    body = ('extended-resources = { worker = { "nvidia.com/gpu" = 1 } }\ncluster = "existing"\n'
            'kubeconfig = "kc"\nregistry = "local"\n')
    with pytest.raises(ConfigError, match="never changes the nodes of an existing cluster"):
        load_settings(root=_project(tmp_path, body), environ={})


def _node(name: str, control_plane: bool = False, capacity: dict[str, str] | None = None,
          annotations: dict[str, str] | None = None) -> Any:
    labels = {noderesources.CONTROL_PLANE_LABEL: ""} if control_plane else {}
    return SimpleNamespace(metadata=SimpleNamespace(name=name, labels=labels, annotations=annotations or {}),
                           status=SimpleNamespace(capacity=dict(capacity or {}), allocatable=dict(capacity or {})))


def test_node_selectors() -> None:
    nodes = [_node("c-control-plane", control_plane=True), _node("c-worker"), _node("c-worker2")]
    assert noderesources.select_nodes("worker", nodes) == ["c-worker", "c-worker2"]
    assert noderesources.select_nodes("control-plane", nodes) == ["c-control-plane"]
    assert noderesources.select_nodes("c-worker2", nodes) == ["c-worker2"]
    assert len(noderesources.select_nodes("all", nodes)) == 3


class FakeCore:
    """Applies the JSON patches advertise() sends to in-memory nodes (capacity and allocatable)."""

    def __init__(self, nodes: list[Any]) -> None:
        self.nodes = {n.metadata.name: n for n in nodes}
        self.patches: list[tuple[str, Any]] = []

    def list_node(self) -> Any:
        return SimpleNamespace(items=list(self.nodes.values()))

    def patch_node_status(self, name: str, ops: list[dict[str, Any]], **kw: Any) -> None:
        assert kw["_content_type"] == "application/json-patch+json"
        self.patches.append((name, ops))
        for op in ops:
            field, resource = op["path"].split("/")[2], op["path"].split("/", 3)[3].replace("~1", "/")
            target = getattr(self.nodes[name].status, field)
            if op["op"] == "add":
                target[resource] = op["value"]
            else:
                del target[resource]

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        self.nodes[name].metadata.annotations.update(body["metadata"]["annotations"])


def test_advertise_sets_exactly_what_the_settings_say_and_undoes_what_it_set_before() -> None:
    core = FakeCore([_node("c-control-plane", control_plane=True),
                     _node("c-worker", capacity={"example.com/dongle": "4", "cpu": "2"},
                           annotations={noderesources.ADVERTISED: json.dumps(["example.com/dongle"])})])
    kube = SimpleNamespace(core=core)
    done = noderesources.advertise(kube, {"worker": {"nvidia.com/gpu": 2}}, log=lambda _: None)  # type: ignore[arg-type]
    worker = core.nodes["c-worker"]
    assert done == {"c-worker": {"nvidia.com/gpu": 2}}
    assert worker.status.capacity == {"cpu": "2", "nvidia.com/gpu": "2"}  # the old dongle is gone
    assert worker.status.allocatable["nvidia.com/gpu"] == "2"
    assert json.loads(worker.metadata.annotations[noderesources.ADVERTISED]) == ["nvidia.com/gpu"]
    assert [name for name, _ in core.patches] == ["c-worker"]
    with pytest.raises(Exception, match="matches no node"):
        noderesources.advertise(kube, {"c-gpu-node": {"nvidia.com/gpu": 1}}, log=lambda _: None)  # type: ignore[arg-type]
