"""Fixtures of our e2e tests (the cluster-level ones, ``project_runner`` and per-test timing come from the plugin)."""

from __future__ import annotations

import pytest

from harness.runs import ProjectRunner
from tests.support.trainer import import_flavor_in_background


@pytest.fixture(scope="session", autouse=True)
def _trainer_flavor_imported_beside_the_bring_up() -> None:
    """First fixture of the session: the trainer's model libraries import while the test bed comes up."""
    import_flavor_in_background()


@pytest.fixture
def launcher(project_runner: ProjectRunner) -> ProjectRunner:
    """The trainer's runner for this test's namespace (a short name for the tests below)."""
    return project_runner
