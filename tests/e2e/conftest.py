"""Fixtures of the e2e tests (the cluster-level ones come from harness.pytest_e2e)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.platform import Platform
from harness.pytest_e2e import E2ESettings
from harness.stack import Stack
from harness.timing import Phases
from tests.e2e.launcher import Launcher


@pytest.fixture
def launcher(e2e_stack: Stack, e2e_platform: Platform, e2e_settings: E2ESettings, e2e_namespace: str,
             tmp_path: Path) -> Launcher:
    return Launcher(e2e_stack, e2e_platform, e2e_settings, e2e_namespace, tmp_path)


@pytest.fixture(autouse=True)
def _time_each_test(request: pytest.FixtureRequest, phases: Phases) -> Iterator[None]:
    """Each e2e test's own wall time joins the phase summary (the 'run' phases)."""
    with phases.phase(f"test {request.node.name}"):
        yield
