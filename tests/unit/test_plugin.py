"""Unit tier: the pytest plugin, tested as a plugin (pytester runs a pytest inside pytest)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PROBE = """
import pytest
from harness.pytest_plugin import missing_prerequisite

def test_needs_docker(pytestconfig):
    missing_prerequisite(pytestconfig, "Docker engine not reachable; fix: scripts/docker-up.sh")
"""


def test_missing_prerequisite_skips_with_the_reason(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_NO_SKIP", raising=False)
    pytester.makepyfile(PROBE)
    result = pytester.runpytest("-p", "harness.pytest_plugin", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*Docker engine not reachable; fix: scripts/docker-up.sh*"])


def test_no_skip_turns_the_skip_into_a_failure(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_NO_SKIP", raising=False)
    pytester.makepyfile(PROBE)
    result = pytester.runpytest("-p", "harness.pytest_plugin", "--no-skip")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*prerequisite missing (and --no-skip is set)*"])


def test_env_var_enables_no_skip(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_NO_SKIP", "1")
    pytester.makepyfile(PROBE)
    pytester.runpytest("-p", "harness.pytest_plugin").assert_outcomes(failed=1)


def test_tier_markers_follow_the_directory(pytester: pytest.Pytester) -> None:
    pytester.mkdir("e2e")
    pytester.makepyfile(**{"e2e/test_a.py": "def test_a():\n    assert True\n",
                           "test_b.py": "def test_b():\n    pass\n"})
    pytester.makeini("[pytest]\nmarkers =\n  unit: u\n  docker: d\n  e2e: e\n")
    result = pytester.runpytest("-p", "harness.pytest_plugin", "-m", "e2e")
    result.assert_outcomes(passed=1, deselected=1)


def test_phase_summary_is_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
def test_timed(phases):
    with phases.phase("build things") as note:
        note["note"] = "reused"
""")
    result = pytester.runpytest("-p", "harness.pytest_plugin")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*harness phase timings*", "build things*reused*"])
