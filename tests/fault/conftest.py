"""The fault tier's fixture: child sessions that are never left running."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fault.childsession import CHILD_TEST, KEPT, Child, down_if_left

CLUSTERS = (KEPT, "fault-sessions-b", "fault-build", "fault-bring-up")
"""Every cluster name a scenario uses."""


@pytest.fixture(scope="session", autouse=True)
def _no_cluster_outlives_the_tier() -> Iterator[None]:
    """After the last scenario (the kept cluster passes from one module to the next): whatever a scenario left,
    passing or failing, is not left for the machine's next user."""
    yield
    down_if_left(*CLUSTERS)


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """``child(*pytest_args, select=..., via_tox=False, env=None)`` starts a child session (see :mod:`.childsession`);
    whatever still runs at the end of the test is SIGKILLed with its whole process group."""
    test_file = tmp_path / "test_child.py"
    test_file.write_text(CHILD_TEST)
    started: list[Child] = []

    def start(*argv: str, select: str, via_tox: bool = False, env: dict[str, str] | None = None) -> Child:
        found = Child.start(test_file, tmp_path, len(started), *argv, select=select, via_tox=via_tox, env=env)
        started.append(found)
        return found

    yield start
    for found in started:
        found.kill()
