"""Fixtures of our e2e tests (the cluster-level ones and ``project_runner`` come from the harness plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.runs import ProjectRunner
from harness.timing import Phases


@pytest.fixture
def launcher(project_runner: ProjectRunner) -> ProjectRunner:
    """The trainer's runner for this test's namespace (a short name for the tests below)."""
    return project_runner


@pytest.fixture(autouse=True)
def _time_each_test(request: pytest.FixtureRequest, phases: Phases) -> Iterator[None]:
    """Each e2e test's own wall time joins the phase summary (the 'run' phases)."""
    with phases.phase(f"test {request.node.name}"):
        yield
