"""Fixtures of our e2e tests (the cluster-level ones, ``project_runner`` and per-test timing come from the plugin)."""

from __future__ import annotations

import pytest

from harness.runs import ProjectRunner


@pytest.fixture
def launcher(project_runner: ProjectRunner) -> ProjectRunner:
    """The trainer's runner for this test's namespace (a short name for the tests below)."""
    return project_runner
