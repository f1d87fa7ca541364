"""Bounded waits that explain themselves.

A wait polls a probe until it reports success or the deadline passes. Every
distinct state the probe reports is kept with its time, so a timeout says
"Pending 0 s, Pending/ContainerCreating 3 s, ImagePullBackOff 9 s" instead of
just "timed out".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from harness._errors import WaitTimeout

__all__ = ["Probe", "StateLog", "wait_for"]

T = TypeVar("T")


@dataclass(frozen=True)
class Probe(Generic[T]):
    """One observation: ``done`` ends the wait with ``value``; ``state`` is what was seen."""

    done: bool
    state: str
    value: T | None = None


@dataclass
class StateLog:
    """Distinct states seen during a wait, each with seconds since the start."""

    started: float = field(default_factory=time.monotonic)
    entries: list[str] = field(default_factory=list)
    _last: str | None = None

    def record(self, state: str) -> None:
        if state != self._last:
            self.entries.append(f"+{time.monotonic() - self.started:6.1f}s  {state}")
            self._last = state


def wait_for(
    probe: Callable[[], Probe[T]],
    *,
    what: str,
    timeout: float,
    interval: float = 1.0,
    hint: str = "",
    transient: tuple[type[BaseException], ...] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """Poll ``probe`` every ``interval`` s until it is done; raise :class:`WaitTimeout` after ``timeout`` s.

    Exceptions listed in ``transient`` (e.g. connection refused while a server
    boots) count as a state, not a failure. The final probe always runs at or
    after the deadline, so a slow probe cannot make the wait give up early.
    """
    log = StateLog(started=clock())
    deadline = log.started + timeout
    while True:
        try:
            result = probe()
        except transient as exc:
            log.entries.append(f"+{clock() - log.started:6.1f}s  {type(exc).__name__}: {exc}"[:300])
        else:
            log.record(result.state)
            if result.done:
                return result.value
        now = clock()
        if now >= deadline:
            raise WaitTimeout(what, now - log.started, log.entries, hint)
        sleep(min(interval, max(0.0, deadline - now)))
