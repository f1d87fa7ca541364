"""Phase timing and live progress: every expensive step says when it starts, how it goes and when it ends.

Speed is a feature and silence is a bug. Each step (tools, image builds, node
image, cluster, delivery, stack, each test) runs inside :meth:`Phases.phase`,
which writes a start line and an end line with the duration to a *sink* (the
pytest terminal, outside output capture; stderr for the CLI) as it happens,
and a heartbeat every ``heartbeat`` seconds naming the running phases and the
last thing each said (:meth:`Phases.log`). The record feeds the end-of-session
table, JUnit properties, the GitHub step summary (with a Mermaid timeline) and
an SVG timeline next to the JUnit report (:mod:`harness.charts`; the session
report, :mod:`harness.report`, shows the same timeline with each test's
outcome). Phases that overlap (threads) are timed independently; ``wall`` is
the whole session. An xdist worker's phases reach the controller named
``[gw0] <name>``: :attr:`Phase.lane` and :attr:`Phase.label` split that again.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from harness.charts import Bar, timeline_svg

__all__ = ["Phase", "Phases"]

Sink = Callable[[str], None]


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    ok: bool
    note: str = ""
    start: float = 0.0
    """Seconds after the session started."""

    @property
    def lane(self) -> str:
        """The process that ran it: an xdist worker's id (``gw0``) or ``main`` (the session itself)."""
        match = _WORKER.match(self.name)
        return match.group(1) if match else "main"

    @property
    def label(self) -> str:
        """The name without its worker prefix."""
        match = _WORKER.match(self.name)
        return match.group(2) if match else self.name


_WORKER = re.compile(r"^\[(gw\d+)\] (.*)$", re.DOTALL)


@dataclass
class _Running:
    name: str
    started: float
    thread: int
    last: str = ""


def _quiet(_line: str) -> None:
    """The default sink: nothing (library use without a terminal)."""


@dataclass
class Phases:
    """A thread-safe, ordered record of timed phases that reports them live to ``sink``."""

    started: float = field(default_factory=time.monotonic)
    items: list[Phase] = field(default_factory=list)
    sink: Sink = _quiet
    heartbeat: float = 20.0
    """Seconds between heartbeat lines while a phase runs (< 30 s: CI logs never look stuck)."""
    verbose: bool = True
    """False (pytest -q): end lines only, no start or heartbeat lines."""
    clock: Callable[[], float] = time.monotonic
    label: str = "harness"
    """The tag of every line (``[harness  12.0s] …``; a node-image build says ``node image``)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _running: dict[int, _Running] = field(default_factory=dict, repr=False)
    _next_id: int = field(default=0, repr=False)
    _beat: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _emit(self, text: str) -> None:
        with contextlib.suppress(Exception):  # a broken terminal must never fail a build
            self.sink(f"[{self.label} {self.clock() - self.started:7.1f}s] {text}")

    @contextmanager
    def phase(self, name: str, note: str = "") -> Iterator[dict[str, str]]:
        """Time the block and report it live; the yielded dict's ``note`` may be set inside (e.g. "reused")."""
        extra = {"note": note}
        t0 = self.clock()
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._running[key] = _Running(name, t0, threading.get_ident())
            self._ensure_heartbeat()
        if self.verbose:
            self._emit(f"▶ {name}")
        ok = False
        try:
            yield extra
            ok = True
        finally:
            with self._lock:
                self._running.pop(key, None)
            seconds = self.clock() - t0
            self.add(name, seconds, ok=ok, note=extra.get("note", ""), start=t0 - self.started)
            mark = "✔" if ok else "✘"
            tail = f" - {extra['note']}" if extra.get("note") else ""
            self._emit(f"{mark} {name} ({seconds:.1f} s){tail}{'' if ok else ' FAILED'}")

    def log(self, message: str) -> None:
        """A progress message from inside a phase: shown at once, and repeated by its heartbeat.

        It belongs to the innermost phase running in the calling thread
        (builds run side by side in threads; each heartbeat says its own).
        """
        me = threading.get_ident()
        with self._lock:
            mine = [run for run in self._running.values() if run.thread == me]
            if mine:
                mine[-1].last = message
        if self.verbose:
            self._emit(f"  {message}")

    def _ensure_heartbeat(self) -> None:
        if self.heartbeat > 0 and (self._beat is None or not self._beat.is_alive()):
            self._stop.clear()
            self._beat = threading.Thread(target=self._beat_loop, name="harness-heartbeat", daemon=True)
            self._beat.start()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                running = list(self._running.values())
                if not running:
                    self._beat = None
                    return
            now = self.clock()
            innermost: dict[int, _Running] = {}
            for run in running:  # started in order: the last per thread is the one doing the work
                innermost[run.thread] = run
            for run in innermost.values():
                said = f": {run.last}" if run.last else ""
                self._emit(f"… {run.name} running for {now - run.started:.0f} s{said}"[:300])

    def close(self) -> None:
        """Stop the heartbeat thread (it also stops by itself when no phase runs)."""
        self._stop.set()

    def add(self, name: str, seconds: float, *, ok: bool = True, note: str = "", start: float | None = None) -> None:
        with self._lock:
            begin = start if start is not None else max(0.0, self.clock() - self.started - seconds)
            self.items.append(Phase(name, seconds, ok, note, begin))

    def wall(self) -> float:
        return self.clock() - self.started

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

    def mermaid(self) -> str:
        """The phases as a Mermaid gantt chart (GitHub renders it in the step summary)."""
        lines = ["```mermaid", "gantt", "  title harness phases (seconds from session start)",
                 "  dateFormat X", "  axisFormat %s"]
        for p in self.items:
            label = p.name.replace(":", " ").replace("#", " ")
            state = "" if p.ok else "crit, "
            lines.append(f"  {label} : {state}{int(p.start)}, {max(1, round(p.seconds))}s")
        lines.append("```")
        return "\n".join(lines)

    def svg(self) -> str:
        """A self-contained SVG timeline: a time axis, one lane per process, each phase's full name."""
        bars = [Bar(p.lane, p.label, p.start, p.seconds, "ok" if p.ok else "failed", note=p.note) for p in self.items]
        return timeline_svg(bars, self.wall())
