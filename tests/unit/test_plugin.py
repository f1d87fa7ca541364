"""Unit tier: the pytest plugin, tested as a plugin (pytester runs a pytest inside pytest).

The plugin is loaded from its ``pytest11`` entry point, exactly as in a user's
project: none of these inner runs names it with ``-p``.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PROBE = """
import pytest
from harness.pytest_plugin import missing_prerequisite

def test_needs_docker(pytestconfig):
    missing_prerequisite(pytestconfig, "Docker engine not reachable; fix: scripts/docker-up.sh")
"""


@pytest.fixture(autouse=True)
def _clean_harness_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HARNESS_NO_SKIP", "HARNESS_CLUSTER_NAME", "HARNESS_CONFIG", "CI"):
        monkeypatch.delenv(name, raising=False)


def test_missing_prerequisite_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROBE)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*Docker engine not reachable; fix: scripts/docker-up.sh*"])


def test_no_skip_turns_the_skip_into_a_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROBE)
    result = pytester.runpytest("--harness-no-skip")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*prerequisite missing (and --harness-no-skip is set)*"])


def test_env_var_and_config_key_enable_no_skip(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(PROBE)
    monkeypatch.setenv("HARNESS_NO_SKIP", "1")
    pytester.runpytest().assert_outcomes(failed=1)
    monkeypatch.delenv("HARNESS_NO_SKIP")
    pytester.makepyprojecttoml("[tool.mlflow-crd-harness]\nno-skip = true\n")
    pytester.runpytest().assert_outcomes(failed=1)
    pytester.runpytest("--harness-no-skip=false").assert_outcomes(skipped=1)  # the option beats the file


def test_markers_are_registered_by_the_plugin(pytester: pytest.Pytester) -> None:
    """--strict-markers works in a project that declares no markers of its own."""
    pytester.makepyfile("""
import pytest

@pytest.mark.e2e
def test_a():
    pass

@pytest.mark.fault
def test_b():
    pass
""")
    result = pytester.runpytest("--strict-markers", "-m", "e2e")
    result.assert_outcomes(passed=1, deselected=1)


def test_tier_markers_follow_directories_below_the_rootdir(pytester: pytest.Pytester) -> None:
    pytester.mkdir("e2e")
    pytester.makepyfile(**{"e2e/test_a.py": "def test_a():\n    assert True\n",
                           "test_b.py": "def test_b():\n    pass\n"})
    result = pytester.runpytest("--strict-markers", "-m", "e2e")
    result.assert_outcomes(passed=1, deselected=1)


def test_a_tier_name_above_the_rootdir_marks_nothing(pytester: pytest.Pytester) -> None:
    """A project that lives under /srv/docker/... is not the docker tier."""
    root = pytester.mkdir("docker").joinpath("project")
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "test_c.py").write_text("def test_c():\n    pass\n")
    result = pytester.runpytest(str(root), "--rootdir", str(root), "-m", "docker")
    result.assert_outcomes(deselected=1)


def test_tests_using_cluster_fixtures_are_e2e(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
def test_uses_runner(project_run):
    pass

def test_plain():
    pass
""")
    result = pytester.runpytest("-m", "not e2e")
    result.assert_outcomes(passed=1, deselected=1)


def test_phase_summary_is_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
def test_timed(phases):
    with phases.phase("build things") as note:
        note["note"] = "reused"
""")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*harness phase timings*", "build things*reused*"])


def test_unknown_config_key_stops_the_run_with_the_key_and_a_suggestion(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.mlflow-crd-harness]\ncluster-nme = "x"\n')
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown key 'cluster-nme'*did you mean 'cluster-name'*"])


def test_bad_value_names_key_source_and_allowed_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--harness-keep-cluster=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--harness-keep-cluster*invalid choice*sometimes*"])
    pytester.makepyprojecttoml('[tool.mlflow-crd-harness]\njob-timeout = "soon"\n')
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*job-timeout = 'soon' ([[]tool.mlflow-crd-harness[]] of *): expected a number*"])


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    text = result.stdout.str()
    for name in ("harness_settings", "testbed", "e2e_stack", "e2e_namespace", "project_runner", "project_run",
                 "e2e_kube", "e2e_mlflow_client", "harness_images", "local_tracking_server", "base_image"):
        block = text.split(f"\n{name} ", 1)
        assert len(block) == 2, f"fixture {name} not listed"
        doc = block[1].split("\n", 2)[1]
        assert doc.strip(), f"fixture {name} has no docstring"
        assert "no docstring" not in doc, f"fixture {name} has no docstring: {doc!r}"


def test_loads_beside_pytest_kind_ng(pytester: pytest.Pytester) -> None:
    """Both plugins in one environment: no option clash, both usable in one run."""
    pytester.makepyfile("""
def test_both(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("mlflow-crd-harness")
    assert pytestconfig.pluginmanager.has_plugin("pytest-kind-ng")
    assert pytestconfig.getoption("cluster_name") == "theirs"
    assert pytestconfig.getoption("harness_cluster_name") == "ours"
""")
    result = pytester.runpytest("--cluster-name", "theirs", "--harness-cluster-name", "ours")
    result.assert_outcomes(passed=1)
