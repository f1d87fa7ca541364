"""Phase timing: how long each setup step took, for the end-of-session summary.

Speed is a feature, so every expensive step (cluster, image build, load, deploy,
run) is timed with :meth:`Phases.phase` and reported in the terminal, as JUnit
properties and in the GitHub step summary. Phases that overlap (run in threads)
are timed independently; ``wall`` is the whole session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["Phase", "Phases"]


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    ok: bool
    note: str = ""


@dataclass
class Phases:
    """A thread-safe, ordered record of timed phases."""

    started: float = field(default_factory=time.monotonic)
    items: list[Phase] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def phase(self, name: str, note: str = "") -> Iterator[dict[str, str]]:
        """Time the block; the yielded dict's ``note`` may be set inside (e.g. "reused")."""
        extra = {"note": note}
        t0 = time.monotonic()
        ok = False
        try:
            yield extra
            ok = True
        finally:
            self.add(name, time.monotonic() - t0, ok=ok, note=extra.get("note", ""))

    def add(self, name: str, seconds: float, *, ok: bool = True, note: str = "") -> None:
        with self._lock:
            self.items.append(Phase(name, seconds, ok, note))

    def wall(self) -> float:
        return time.monotonic() - self.started

    def table(self) -> str:
        """A plain-text table, one phase a line, then the wall time."""
        width = max([len(p.name) for p in self.items] + [10])
        lines = [f"{'phase':<{width}}  {'seconds':>8}  note"]
        for p in self.items:
            status = "" if p.ok else " FAILED"
            lines.append(f"{p.name:<{width}}  {p.seconds:8.1f}  {p.note}{status}".rstrip())
        lines.append(f"{'wall (session)':<{width}}  {self.wall():8.1f}")
        return "\n".join(lines)

    def markdown(self) -> str:
        rows = ["| phase | seconds | note |", "|---|---:|---|"]
        rows += [f"| {p.name} | {p.seconds:.1f} | {p.note}{'' if p.ok else ' **FAILED**'} |" for p in self.items]
        rows.append(f"| wall (session) | {self.wall():.1f} | |")
        return "\n".join(rows)
