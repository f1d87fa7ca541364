"""Ctrl-C, SIGTERM and SIGHUP end a session the same way: by running its teardown.

Python's default SIGTERM (what tox, CI runners and ``kill`` send) ends the
process at once, skipping every ``finally``: clusters, namespaces, the local
``mlflow server`` and port-forwards would stay behind. Here the first of
SIGINT, SIGTERM or SIGHUP raises ``KeyboardInterrupt`` in the main thread,
which pytest turns into an orderly stop with fixture teardown. Signals that
arrive while that teardown runs (tox sends SIGINT, then SIGTERM; a terminal's
Ctrl-C reaches tox and pytest both) are noted and ignored, so the cleanup is
not cut short; SIGKILL still ends it, and the next session reaps what is left
(:mod:`harness.leftovers`). Handlers a user installed themselves are kept.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

__all__ = ["Installed", "install"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Installed:
    """The handlers replaced, to put back at the end of the session."""

    previous: dict[int, Any] = field(default_factory=dict)
    interrupted: str | None = None

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()


def install(log: Callable[[str], None]) -> Installed:
    """Take over SIGINT/SIGTERM/SIGHUP where they have Python's default handling (main thread only)."""
    state = Installed()
    if threading.current_thread() is not threading.main_thread():
        return state

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if state.interrupted is None:
            state.interrupted = name
            log(f"{name}: stopping; tearing down what this session started (clusters, namespaces, servers)")
            raise KeyboardInterrupt(name)
        log(f"{name} during the cleanup after {state.interrupted}: ignored so the cleanup finishes "
            "(SIGKILL abandons it; the next session reaps what is left)")

    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current in (signal.SIG_DFL, signal.default_int_handler):
            state.previous[signum] = current
            signal.signal(signum, handler)
    return state
