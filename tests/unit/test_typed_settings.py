"""Unit tier: the settings as typed, frozen groups, declared once and read by field."""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path

import pytest

from harness import hostenv, options
from harness.settings import OPTIONS, Settings, load_settings
from harness.versions import RELEASES

REPO = Path(__file__).resolve().parents[2]


def test_every_option_is_one_field_of_its_group_and_holds_the_resolved_value(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.mlflow-crd-harness]\nworkers = 2\nregistry = "local"\n')
    s = load_settings(root=tmp_path, environ={"HARNESS_JOB_TIMEOUT": "42"})
    declared = [(o.group, o.attr) for o in OPTIONS]
    assert len(set(declared)) == len(declared) == len({o.key for o in OPTIONS})
    for opt in OPTIONS:
        value = getattr(getattr(s, opt.group), opt.attr)
        if opt.kind != "table-list":  # tables of tables are held parsed (ImageSpec, ProjectSpec, WorkloadKind)
            assert value == s.values[opt.key], opt.key
    assert (s.cluster.workers, s.build.registry, s.runs.job_timeout) == (2, "local", 42.0)
    assert s.images == s.build.images
    assert s.images[0].repository == "customjob-controller"


def test_each_groups_fields_are_its_options_and_nothing_else() -> None:
    groups = dict(options.GROUPS)
    assert list(groups) == [f.name for f in dataclasses.fields(Settings)][3:], "Settings has one field per group"
    for name, cls in groups.items():
        rows = [f.name for f in dataclasses.fields(cls) if "option" in f.metadata]
        assert rows == [o.attr for o in OPTIONS if o.group == name]
        derived = [f.name for f in dataclasses.fields(cls) if "option" not in f.metadata]
        assert all(not f.init for f in dataclasses.fields(cls) if f.name in derived), "derived fields are not set"


def test_a_boolean_or_number_option_is_typed_so_in_its_group() -> None:
    for name, cls in options.GROUPS:
        hints = typing.get_type_hints(cls, globalns=vars(options))
        for opt in (o for o in OPTIONS if o.group == name):
            wanted = {"bool": bool, "int": int, "float": float}.get(opt.kind)
            if wanted is not None:
                assert hints[opt.attr] is wanted, opt.key
            if opt.kind == "path":
                assert Path in typing.get_args(hints[opt.attr]) or hints[opt.attr] is Path, opt.key


def test_the_groups_are_frozen(tmp_path: Path) -> None:
    s = load_settings(root=tmp_path, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cluster.workers = 3  # type: ignore[misc]


@pytest.mark.parametrize("minor", sorted(RELEASES))
def test_the_version_row_is_resolved_once_at_load(tmp_path: Path, minor: str) -> None:
    s = load_settings(root=tmp_path, environ={"HARNESS_KUBERNETES_VERSION": minor})
    assert s.cluster.release is RELEASES[minor]


def test_no_module_outside_the_settings_reads_a_setting_by_its_key() -> None:
    """The harness reads fields; a key in brackets would turn a rename into a KeyError at run time.

    (``settings.sources[key]``, where a value came from, is how error messages name the source.)"""
    keys = "|".join(re.escape(o.key) for o in OPTIONS)
    by_key = re.compile(rf"""\[\s*["']({keys})["']\s*\]""")
    found = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        if path.name in ("settings.py", "options.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str) and by_key.fullmatch(f'["{node.slice.value}"]') \
                    and re.fullmatch(r"(.*\.)?(\w*settings|s|cfg)", ast.unparse(node.value)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_every_harness_variable_the_code_names_is_a_setting_or_in_the_machine_table() -> None:
    known = {o.env for o in OPTIONS} | {v.name for v in hostenv.HOST_VARS}
    named: set[str] = set()
    for path in [*sorted((REPO / "harness").rglob("*.py")), *sorted((REPO / "scripts").iterdir())]:
        if path.is_file():
            named |= set(re.findall(r"\bHARNESS_[A-Z][A-Z_]*[A-Z]\b", path.read_text(errors="replace")))
    assert sorted(named - known) == []


def test_a_machine_variable_is_read_when_used_and_only_from_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hostenv.LOCK_DIR, "/x")
    assert hostenv.get(hostenv.LOCK_DIR) == "/x"
    assert hostenv.get(hostenv.LOCK_DIR, {hostenv.LOCK_DIR: ""}) is None
    with pytest.raises(KeyError, match="HOST_VARS"):
        hostenv.get("HARNESS_NOT_A_THING")


def test_no_harness_module_reads_the_environment_at_import() -> None:
    """Module-level code (outside functions and classes' methods) never touches os.environ or os.getenv."""
    found = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            text = ast.unparse(stmt)
            if "os.environ" in text or "getenv(" in text:
                found.append(f"{path.relative_to(REPO)}:{stmt.lineno}")
    assert found == []
