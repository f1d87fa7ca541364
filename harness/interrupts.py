"""Ctrl-C, SIGTERM and SIGHUP end a session the same way: by running its teardown.

Python's default SIGTERM (what tox, CI runners and ``kill`` send) ends the
process at once, skipping every ``finally``: clusters, namespaces, the local
``mlflow server`` and port-forwards would stay behind. Here the first of
SIGINT, SIGTERM or SIGHUP raises ``KeyboardInterrupt`` in the main thread,
which pytest turns into an orderly stop with fixture teardown. Signals that
arrive while that teardown runs (tox sends SIGINT, then SIGTERM; a terminal's
Ctrl-C reaches pytest directly and again, twice, relayed by tox 4) are noted
and ignored, so the cleanup is not cut short; SIGKILL still ends it, and the
next session reaps what is left (:mod:`harness.leftovers`). Handlers a user
installed themselves are kept.

A teardown that runs because the session simply ended (no signal yet) is
guarded the same way: inside :meth:`Installed.shielded` even the *first*
signal is recorded instead of raised, so a SIGTERM that lands while the test
bed deletes its cluster does not cut ``kind delete`` short and skip the
finalizers after it. (Only the teardown itself: a wait before it, such as for
a hung xdist worker, still stops at the first signal.)

The handler itself writes nothing: it runs in the main thread between two
bytecodes, possibly while that thread holds the terminal's or the phase
timer's lock (a teardown writing a progress line), so logging from it
deadlocks; that froze an interrupted teardown through tox until tox's SIGKILL
left the cluster behind. It only records. :meth:`Installed.flush` says what
was recorded, from a safe point of the main thread: the pytest plugin calls it
when pytest reports the interrupt (before the teardown) and at the end of the
session; :meth:`Installed.restore` flushes too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

__all__ = ["Installed", "install"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _quiet(_line: str) -> None:
    pass


@dataclass
class Installed:
    """The handlers replaced (to put back at the end of the session), and what the signals were."""

    previous: dict[int, Any] = field(default_factory=dict)
    interrupted: str | None = None
    """The signal that started the cleanup (``SIGINT``), once one came."""
    ignored: list[str] = field(default_factory=list)
    """Signals that came during the cleanup after the first one, in order."""
    log: Callable[[str], None] = field(default=_quiet, repr=False)
    _said_stopping: bool = field(default=False, repr=False)
    _said_ignored: int = field(default=0, repr=False)
    _shielded: int = field(default=0, repr=False)

    @property
    def shielding(self) -> bool:
        """Inside :meth:`shielded`: a signal now is recorded, never raised."""
        return self._shielded > 0

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """A teardown that must run to its end: signals during it are recorded and ignored, the first one too.

        Says what came once the block is done (:meth:`flush`).
        """
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1
            self.flush()

    @property
    def stopping_line(self) -> str | None:
        """What the first signal means, to tell the user (None before any came)."""
        if self.interrupted is None:
            return None
        return f"{self.interrupted}: stopping; tearing down what this session started (clusters, namespaces, servers)"

    def flush(self) -> None:
        """Log what the handler recorded and was not said yet. Never call it from a signal handler."""
        if self.interrupted is not None and not self._said_stopping:
            self._said_stopping = True
            self.log(self.stopping_line or self.interrupted)
        new = self.ignored[self._said_ignored:]  # a slice first: the handler may append meanwhile
        if new:
            self._said_ignored += len(new)
            counts = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in Counter(new).items())
            self.log(f"{counts} during the cleanup after {self.interrupted}: ignored, so the cleanup could finish "
                     "(SIGKILL abandons it; the next session reaps what is left)")

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()
        self.flush()


def install(log: Callable[[str], None]) -> Installed:
    """Take over SIGINT/SIGTERM/SIGHUP where they have Python's default handling (main thread only).

    Call :meth:`Installed.flush` where the ``KeyboardInterrupt`` is handled to say what happened.
    """
    state = Installed(log=log)
    if threading.current_thread() is not threading.main_thread():
        return state

    def handler(signum: int, _frame: FrameType | None) -> None:
        # Record and raise; no I/O, no locks (see the module docstring).
        name = signal.Signals(signum).name
        if state.interrupted is None:
            state.interrupted = name
            if not state.shielding:
                raise KeyboardInterrupt(name)
            return  # the first signal, during a shielded teardown: that teardown is the stop it asks for
        state.ignored.append(name)

    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current in (signal.SIG_DFL, signal.default_int_handler):
            state.previous[signum] = current
            signal.signal(signum, handler)
    return state
