"""Unit tier: the package's shape: public API pinned, imports point one way, the wheel holds what it needs."""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

import pytest

import harness

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "harness"

PUBLIC = [
    "Cluster", "ClusterProvider", "CommandError", "ConfigError", "ExistingProvider", "HarnessError", "ImageSpec",
    "KindProvider", "LocalTrackingServer", "ProjectRun", "ProjectRunner", "ProjectSpec", "RunFacts", "Settings",
    "Stack", "Testbed", "WaitTimeout", "WorkloadKind", "__version__", "assert_customjob", "assert_run",
    "assert_workload", "load_settings",
]


def test_public_api_is_pinned_and_sorted() -> None:
    assert harness.__all__ == sorted(harness.__all__)
    assert harness.__all__ == PUBLIC, "a change to the public API must be deliberate: update PUBLIC too"
    for name in harness.__all__:
        assert getattr(harness, name) is not None


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports (absolute names), TYPE_CHECKING blocks included."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "files" not in p.parts)


# Lower layers must never import higher ones (a test keeps the arrows pointing one way).
RULES = {
    "harness/backend": ("harness.pytest_plugin", "harness.testbed", "harness.stack", "harness.clusters",
                        "harness.settings", "harness.runs", "harness.assertions", "harness.nodeimage", "pytest",
                        "kopf", "hypothesis", "jsonschema", "celpy"),
    "harness/nodeimage": ("harness.backend", "harness.pytest_plugin", "harness.testbed", "harness.stack",
                          "harness.clusters", "harness.settings", "mlflow", "kubernetes", "docker", "pytest", "yaml"),
    "harness/registry": ("harness.pytest_plugin", "harness.testbed", "harness.stack", "pytest", "mlflow"),
    "harness/clusters": ("harness.pytest_plugin", "harness.testbed", "harness.stack", "harness.runs", "pytest"),
    "harness/contract.py": ("harness.",),
    # The seam below the backend and the harness: it knows neither, nor MLflow (runs are named by state).
    "harness/workloads": ("harness.backend", "harness.pytest_plugin", "harness.testbed", "harness.stack",
                          "harness.clusters", "harness.settings", "harness.runs", "harness.assertions",
                          "harness.evidence", "harness.waits", "mlflow", "pytest", "kopf"),
    "harness/imagerefs.py": ("harness.", "mlflow", "kubernetes", "docker", "yaml", "pytest"),
    "harness/settings.py": ("harness.pytest_plugin", "harness.testbed", "pytest", "mlflow", "kubernetes"),
    "harness/testbed.py": ("harness.pytest_plugin", "pytest"),
    "harness/runs.py": ("harness.pytest_plugin", "pytest"),
    "harness/assertions.py": ("harness.pytest_plugin", "pytest"),
    "harness/cli.py": ("harness.pytest_plugin", "pytest"),
    "crds/controller/customjob_controller": ("harness", "tests", "pytest"),
}


@pytest.mark.parametrize("where", sorted(RULES))
def test_imports_point_one_way(where: str) -> None:
    target = REPO / where
    files = [target] if target.is_file() else _modules(target)
    assert files, f"nothing found at {where}"
    bad = []
    for f in files:
        for name in _imports(f):
            if any(name == b.rstrip(".") or name.startswith(b if b.endswith(".") else b + ".") or name == b
                   for b in RULES[where]):
                bad.append(f"{f.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


CONTRACT_READERS = {"harness/contract.py", "harness/workloads/stub.py"}
"""Only the stub's preset knows the stub's names; everything else goes through a workload kind."""


def test_only_the_stub_preset_imports_the_contract() -> None:
    readers = {f.relative_to(REPO).as_posix() for f in _modules(PACKAGE)
               if "harness.contract" in _imports(f) or "contract" in _relative_imports(f)}
    wrong = sorted(readers - CONTRACT_READERS)
    assert wrong == [], f"import the stub's names through harness.workloads.stub: {wrong}"
    assert "harness/workloads/stub.py" in readers, "the rule reads imports wrongly: the stub preset must show up"


def _relative_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 0
            for a in node.names}


def test_every_package_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in PACKAGE.rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert "harness.assets.stub" in listed


def test_every_data_file_of_the_package_goes_into_the_wheel() -> None:
    """A file the code reads at run time (netd/main.go, node files) but the wheel lacks breaks only users."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["harness"]
    globs = [g for pat in patterns for g in (pat, pat.replace("**/", ""))]  # setuptools' ** also matches no dir
    data = [p.relative_to(PACKAGE).as_posix() for top in ("nodeimage", "registry")
            for p in (PACKAGE / top).rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "no data files found: the test looks in the wrong place"
    missing = [f for f in data if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert missing == [], f"add to [tool.setuptools.package-data] harness: {missing}"
    assets = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    asset_files = [p.relative_to(PACKAGE / "assets").as_posix() for p in (PACKAGE / "assets").rglob("*")
                   if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert "kubeflow/pytorch-init/nslookup" in asset_files
    missing = [f for f in asset_files if not any(fnmatch.fnmatch(f, g) for g in assets["harness.assets"])]
    assert missing == [], f"add to [tool.setuptools.package-data] harness.assets: {missing}"


def test_the_stub_stack_and_tracking_image_are_found() -> None:
    from harness import assets

    assert (assets.stub_root() / "kustomization.yaml").is_file()
    assert (assets.stub_path("controller") / "Dockerfile").is_file()
    assert assets.stub_template().is_file()
    assert (assets.tracking_server_context() / "Dockerfile").is_file()


def test_materialised_stub_is_a_kustomize_base(tmp_path: Path) -> None:
    from harness import assets

    out = assets.materialise_stub(tmp_path / "stub")
    text = (out / "kustomization.yaml").read_text()
    for rel in ("bases/customjob.yaml", "rbac/cluster_role.yaml", "manager/deployment.yaml"):
        assert rel in text
        assert (out / rel).is_file()
    assert not (out / "controller").exists(), "the overlay base holds manifests only"
