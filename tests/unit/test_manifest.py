"""Unit tier: the run manifest's record, comparison and take-over of settings (no Docker, no cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import __version__, manifest
from harness.cli import main as cli_main
from harness.settings import ConfigError, load_settings

pytestmark = pytest.mark.unit


def _record(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "harness": {"version": __version__, "python": manifest.python_environment(), "lock_sha256": "ab"},
        "settings": {"cluster": "kind", "kubernetes-version": "1.37", "workers": 1, "node-image-mode": "local",
                     "base-mode": "local", "tracking": "in-cluster"},
        "kind": {"version": "v0.33.0"},
        "kubernetes": {"minor": "1.37", "server": "v1.37.2"},
        "node_image": {"ref": "local/kind-node-offline:v1.37.2-1", "id": "sha256:n1", "source": "local",
                       "published": None},
        "base_image": {"ref": "local/python-base:3.11", "id": "sha256:b1", "source": "local"},
        "images": {"controller": {"id": "sha256:c1", "tag": "customjob-controller:c1"}},
    }
    for key, value in over.items():
        section, _, field = key.partition("__")
        base[section] = {**base[section], field: value} if field else value
    return base


def test_a_run_compared_with_itself_has_no_difference(tmp_path: Path) -> None:
    path = manifest.write(tmp_path / "m.json", _record())
    assert manifest.compare(manifest.load(path), _record()) == []
    assert json.loads(path.read_text())["schema"] == manifest.SCHEMA


def test_every_deciding_field_is_compared_with_both_values() -> None:
    now = _record(node_image__id="sha256:n2", kind__version="v0.32.0",
                  images={"controller": {"id": "sha256:c2", "tag": "customjob-controller:c2"}})
    diffs = manifest.compare(_record(), now)
    assert "node_image.id: recorded 'sha256:n1', now 'sha256:n2'" in diffs
    assert "kind.version: recorded 'v0.33.0', now 'v0.32.0'" in diffs
    assert any(d.startswith("images.controller.id:") for d in diffs)


def test_images_only_one_run_built_count_only_when_asked() -> None:
    now = _record(images={**_record()["images"], "project trainer": {"ref": "t:1", "id": "sha256:t"}})
    assert manifest.compare(_record(), now, images_in_both_only=True) == []
    assert manifest.compare(_record(), now) == ["images.project trainer.id: recorded (absent), now 'sha256:t'",
                                                "images.project trainer.ref: recorded (absent), now 't:1'"]


def test_unrelated_packages_and_the_lock_file_are_recorded_not_compared() -> None:
    env = manifest.python_environment()
    now = _record(harness={"version": __version__, "lock_sha256": None,
                           "python": {**env, "all_packages_sha256": "other", "python_patch": "3.11.99"}})
    assert manifest.compare(_record(), now) == []
    older = _record(harness={"version": "0.1.0", "python": {**env, "packages": {**env["packages"], "mlflow": "2.0"}}})
    assert manifest.environment_differences(_record()) == []
    diffs = manifest.environment_differences(older)
    assert "harness.python.packages.mlflow: recorded '2.0', now " + repr(env["packages"]["mlflow"]) in diffs


def test_recorded_settings_replace_defaults_and_an_explicit_disagreement_is_refused(tmp_path: Path) -> None:
    path = manifest.write(tmp_path / "m.json", _record())
    taken = load_settings(root=tmp_path, environ={"HARNESS_FROM_MANIFEST": str(path)})
    assert (taken["kubernetes-version"], taken["workers"]) == ("1.37", 1)
    assert taken.sources["workers"] == f"manifest {path}"
    same = load_settings(root=tmp_path, environ={"HARNESS_FROM_MANIFEST": str(path), "HARNESS_WORKERS": "1"})
    assert same["workers"] == 1
    with pytest.raises(ConfigError, match=r"kubernetes-version = '1\.35' \(env HARNESS_KUBERNETES_VERSION\) but "
                                          r"the manifest .* recorded '1\.37'"):
        load_settings(root=tmp_path, environ={"HARNESS_FROM_MANIFEST": str(path),
                                              "HARNESS_KUBERNETES_VERSION": "1.35"})


@pytest.mark.parametrize(("content", "why"), [("{", "not JSON"), ('{"schema": 99}', "schema 99"),
                                               ("[]", "schema 'list'")])
def test_an_unreadable_manifest_is_refused_with_the_reason(tmp_path: Path, content: str, why: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(manifest.ManifestError, match=why):
        manifest.load(bad)
    with pytest.raises(manifest.ManifestError, match="cannot read"):
        manifest.load(tmp_path / "missing.json")


def test_merge_unites_the_images_of_xdist_workers() -> None:
    a = _record()
    b = {"images": {"project trainer": {"ref": "t:1", "id": "sha256:t"}}}
    merged = manifest.merge(a, b)
    assert set(merged["images"]) == {"controller", "project trainer"}
    assert merged["node_image"] == a["node_image"]


def test_the_path_sits_next_to_the_junit_report(tmp_path: Path) -> None:
    assert manifest.manifest_path_for("build/junit-e2e.xml", tmp_path) == Path("build/junit-e2e.manifest.json")
    assert manifest.manifest_path_for(None, tmp_path) == tmp_path / "run-manifest.json"


def test_cli_compare_exits_1_on_a_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = manifest.write(tmp_path / "a.json", _record())
    b = manifest.write(tmp_path / "b.json", _record(base_image__id="sha256:b2"))
    assert cli_main(["manifest", str(a), str(a)]) == 0
    assert cli_main(["manifest", str(a), str(b)]) == 1
    assert "differs: base_image.id: recorded 'sha256:b1', now 'sha256:b2'" in capsys.readouterr().out
