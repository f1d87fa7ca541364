"""Unit tier: the package's shape: public API pinned, imports point one way, the wheel holds what it needs."""

from __future__ import annotations

import ast
import fnmatch
import re
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
    # Below the backend and the harness alike: both deliver through it.
    "harness/delivery": ("harness.backend", "harness.pytest_plugin", "harness.testbed", "harness.stack",
                         "harness.clusters", "harness.settings", "harness.runs", "harness.images", "harness.registry",
                         "mlflow", "kubernetes", "pytest"),
    "harness/clusters": ("harness.pytest_plugin", "harness.testbed", "harness.stack", "harness.runs", "pytest"),
    # The stack deploys the tracking server as one of its parts: it imports tracking, never the reverse.
    "harness/tracking": ("harness.pytest_plugin", "harness.testbed", "harness.stack", "harness.runs", "pytest"),
    "harness/contract.py": ("harness.",),
    # The seam below the backend and the harness: it knows neither, nor MLflow (runs are named by state).
    "harness/workloads": ("harness.backend", "harness.pytest_plugin", "harness.testbed", "harness.stack",
                          "harness.clusters", "harness.settings", "harness.runs", "harness.assertions",
                          "harness.evidence", "harness.waits", "mlflow", "pytest", "kopf"),
    "harness/imagerefs.py": ("harness.", "mlflow", "kubernetes", "docker", "yaml", "pytest"),
    "harness/settings.py": ("harness.pytest_plugin", "harness.testbed", "pytest", "mlflow", "kubernetes"),
    "harness/testbed.py": ("harness.pytest_plugin", "pytest"),
    "harness/runs.py": ("harness.pytest_plugin", "pytest"),
    "harness/assertions.py": ("harness.pytest_plugin", "harness.runs", "pytest"),
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


LAYERS: list[set[str]] = [
    {"_errors", "_version", "ports", "cachedir", "contract", "imagerefs", "versions", "charts", "tooldownload",
     "envflags", "findings", "hostenv", "imagesource", "quickexit"},
    {"_waiting", "owners"},
    {"_exec", "interrupts", "clusterobjects"},
    {"dockercli", "leftovers", "debian", "timing", "kubeapi", "assets"},
    {"workloads"},
    {"nodeimage", "baseimage", "goimage", "toolchain", "sessionlock", "sessionlease"},
    {"delivery", "options"},
    {"registry", "clusters", "stacks", "manifest", "waits", "evidence", "tracking"},
    {"settings", "stack", "images", "report"},
    {"backend", "runs", "assertions", "doctor", "testbed"},
    {"cli", "__main__", "pytest_plugin"},
]
"""The harness from the bottom up: a module may import its own layer and the ones below, nothing above.
docs/development.md's layout lists the same layers. The package's ``__init__`` (the public facade)
sits above them all and no module imports it."""

KNOWN_WRONG_WAY: set[tuple[str, str]] = set()
"""Arrows that point up today, each named with its way out (none: ``images`` used to deliver through the MLflow
backend, until ``delivery`` became the package both import)."""


def _unit(module: str) -> str | None:
    """``harness.clusters.kind`` -> ``clusters``; ``harness`` itself -> ``harness``; not ours -> None."""
    parts = module.split(".")
    if parts[0] != "harness":
        return None
    return parts[1] if len(parts) > 1 else "harness"


def _harness_units() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in _modules(PACKAGE):
        rel = path.relative_to(PACKAGE)
        name = rel.parts[0].removesuffix(".py")
        if name != "__init__":
            found.setdefault(name, []).append(path)
    return found


def _layer_of(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_ones() -> None:
    units = _harness_units()
    placed = set().union(*LAYERS)
    assert sorted(set(units) - placed) == [], "give these a row in LAYERS (and in docs/development.md's layout)"
    assert sorted(placed - set(units)) == [], "LAYERS names modules that no longer exist"
    bad = []
    for unit, files in units.items():
        for path in files:
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = ([f"harness.{a.name}" for a in node.names] if node.module == "harness"
                             else [node.module])
                else:
                    continue
                for name in names:
                    target = _unit(name)
                    if target is None or target == unit:
                        continue
                    if target == "harness" or (target in placed and _layer_of(target) > _layer_of(unit)
                                               and (unit, target) not in KNOWN_WRONG_WAY):
                        bad.append(f"{path.relative_to(REPO)} (layer {_layer_of(unit)}) imports {name} "
                                   f"(layer {_layer_of(target) if target in placed else 'facade'})")
    assert bad == [], "imports pointing up:\n" + "\n".join(bad)


def test_the_known_wrong_way_arrows_still_exist() -> None:
    """An exception nobody needs any more must go, or the table would forgive a new arrow there."""
    for unit, target in KNOWN_WRONG_WAY:
        assert any(f"harness.{target}" in _imports(p) or any(i.startswith(f"harness.{target}.") for i in _imports(p))
                   for p in _harness_units()[unit]), f"{unit} no longer imports {target}: drop it from KNOWN_WRONG_WAY"


def test_the_docs_layout_names_every_module() -> None:
    text = (REPO / "docs" / "development.md").read_text()
    layout = text.split("## Layout", 1)[1].split("```", 2)[1]
    missing = [u for u in _harness_units() if not re.search(rf"(?<![\w/]){re.escape(u)}(\.py|/)", layout)]
    assert missing == [], f"docs/development.md's layout does not name: {missing}"
