"""What the plugin keeps for the session (stash keys) and tells the user at its end."""

from __future__ import annotations

from typing import NoReturn

import pytest

from harness.settings import Settings
from harness.timing import Phases

__all__ = ["ENDING", "PHASES", "REPORTS", "SETTINGS", "ending_lines", "failed", "missing_prerequisite", "note_ending"]

PHASES = pytest.StashKey[Phases]()
SETTINGS = pytest.StashKey[Settings]()
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
ENDING = pytest.StashKey[list[str]]()
"""Lines for the end of the session: kept cluster, kubeconfig, MLflow UI, bundles."""


def missing_prerequisite(config: pytest.Config, reason: str) -> NoReturn:
    """Skip with ``reason``, or fail under ``no-skip``."""
    if config.stash[SETTINGS]["no-skip"]:
        pytest.fail(f"prerequisite missing (and --harness-no-skip is set): {reason}", pytrace=False)
    pytest.skip(reason)


def failed(item: pytest.Item) -> bool:
    """True if any phase (setup, call, teardown) of ``item`` failed so far."""
    return any(r.failed for r in item.stash.get(REPORTS, {}).values())


def note_ending(config: pytest.Config, line: str) -> None:
    config.stash.setdefault(ENDING, []).append(line)


def ending_lines(config: pytest.Config) -> list[str]:
    lines: list[str] = config.stash.get(ENDING, [])
    return [*lines]
