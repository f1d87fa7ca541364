"""What the plugin keeps for the session (stash keys) and tells the user at its end."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import pytest

from harness import interrupts, manifest
from harness.settings import Settings
from harness.timing import Phases

__all__ = ["ENDING", "INTERRUPTS", "MANIFEST", "PHASES", "REPORTS", "SETTINGS", "ending_lines", "failed",
           "missing_prerequisite", "note_ending", "record_manifest", "shielded", "terminal_sink"]

PHASES = pytest.StashKey[Phases]()
SETTINGS = pytest.StashKey[Settings]()
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
ENDING = pytest.StashKey[list[str]]()
"""Lines for the end of the session: kept cluster, kubeconfig, MLflow UI, bundles."""
MANIFEST = pytest.StashKey[dict[str, Any]]()
"""This session's run manifest so far (:mod:`harness.manifest`): the test bed's, then each project image."""
INTERRUPTS = pytest.StashKey[interrupts.Installed]()
"""The session's SIGINT/SIGTERM/SIGHUP handling (:mod:`harness.interrupts`)."""


def shielded(config: pytest.Config) -> contextlib.AbstractContextManager[None]:
    """Signals are recorded, not raised, inside: for a teardown that must run to its end (the test bed's)."""
    installed = config.stash.get(INTERRUPTS, None)
    return installed.shielded() if installed is not None else contextlib.nullcontext()


def terminal_sink(config: pytest.Config) -> Callable[[str], None]:
    """Write a line to the terminal *now*, outside output capture, from any thread.

    The same mechanism pytest's live logging uses (suspend capture around the
    write), under a lock so progress from build threads and the heartbeat do
    not interleave. Before the terminal exists, lines go to stderr; so do an
    xdist worker's (prefixed with its id): its stdout is not the terminal.
    """
    lock = threading.Lock()
    worker = getattr(config, "workerinput", {}).get("workerid")

    def write(line: str) -> None:
        tr = config.pluginmanager.get_plugin("terminalreporter")
        capman = config.pluginmanager.get_plugin("capturemanager")
        with lock:
            if worker is not None:  # an xdist worker: its stdout is the channel to the controller, stderr the tty
                ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
                with ctx:
                    print(f"[{worker}] {line}", file=sys.stderr, flush=True)
                return
            if tr is None:
                print(line, file=sys.stderr, flush=True)
                return
            ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
            with ctx:
                tr.ensure_newline()
                tr.write_line(line)
                tr.flush()

    return write


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


def record_manifest(config: pytest.Config, part: dict[str, Any]) -> None:
    """Lay ``part`` over this session's run manifest (images are added, not replaced)."""
    before: dict[str, Any] = config.stash.get(MANIFEST, {})
    config.stash[MANIFEST] = manifest.merge(before, part)
