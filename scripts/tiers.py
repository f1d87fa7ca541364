#!/usr/bin/env python3
"""Run tox tiers in lanes: each lane's tiers one after another, the lanes side by side.

    scripts/tiers.py lint,unit,e2e,pages,matrix docker,example,existing,fault

Each argument is a lane. A tier runs as ``scripts/tox -e TIER`` and every line it
prints is shown as it comes, prefixed with the tier's name (``tox -p -o`` shows the
lines of parallel envs with no name, and ``tox -p`` alone is silent until an env
ends). A failing tier does not stop its lane, as ``tox -e a,b`` goes on: the exit
code is 1 if any tier failed, and the last lines are one row per tier (lane, start,
wall time, result), then, for each tier that failed, the lines that say why (pytest's
``FAILED``/``ERROR`` summary, tox's failing command; else the tier's last lines): the
lanes interleave, and a CI log is often read from its end.

Why lanes: on two cores every tier that brings up a cluster leaves a third of the
CPU idle while it waits on pods, pulls and graces (CI 21: 61-72 % busy), and the
tiers do not share clusters, names or ports (the fault tier's reaping scenario
keeps its own cache directory), so two lanes fill most of those waits.

Ctrl-C reaches every tier's tox in the terminal's process group; this script then
starts no more tiers and waits for the running ones to tear down. SIGTERM to this
script alone is passed on to each running tox as SIGINT (tox relays it to pytest,
whose plugin tears the session down).
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
TOX = REPO / "scripts" / "tox"


@dataclass
class Result:
    """One tier's outcome, for the closing table."""

    tier: str
    lane: int
    start: float
    wall: float = 0.0
    code: int | None = None
    why: list[str] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL))


TAIL = 25
# pytest's short summary (``FAILED tests/x.py::test - msg``, ``ERROR ...``), its closing counts line when
# something failed, and tox's line for a failing command (``e2e: exit 1 (12.3 seconds) /repo> pytest ...``).
WHY = re.compile(r"^(FAILED|ERROR) \S|^=+ .*\b(failed|errors?)\b.* in [\d.]+s|^\s*[\w.-]+: exit (?!0 )-?\d+ \(")


def keep_why(result: Result, line: str) -> None:
    """Remember a line of a tier's output if it says why the tier failed; keep its last lines too."""
    text = line.rstrip("\n")
    result.tail.append(text)
    if WHY.search(text) and len(result.why) < 2 * TAIL:
        result.why.append(text.strip())


def failures(results: list[Result]) -> str:
    """For each failed tier, its reasons (or its last lines when none matched), to close the log."""
    parts = []
    for r in results:
        if r.code in (0, None):
            continue
        lines = r.why or [f"(no pytest or tox summary line; its last {len(r.tail)} lines)", *r.tail]
        parts.append(f"why {r.tier} failed:\n" + "\n".join(f"  {ln}" for ln in lines))
    return "\n".join(parts)


class Lanes:
    """The running lanes: their tox processes, the shared output lock, the results."""

    def __init__(self, lanes: list[list[str]]) -> None:
        self.lanes = lanes
        self.started = time.monotonic()
        self.write = threading.Lock()
        self.stopping = threading.Event()
        self.running: dict[int, subprocess.Popen[str]] = {}
        self.results: list[Result] = []

    def say(self, line: str) -> None:
        with self.write:
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            sys.stdout.flush()

    def clock(self) -> str:
        return f"{time.monotonic() - self.started:5.0f}s"

    def run_lane(self, index: int) -> None:
        for tier in self.lanes[index]:
            if self.stopping.is_set():
                self.say(f"[tiers {self.clock()}] lane {index + 1}: not starting {tier} (interrupted)")
                continue
            result = Result(tier, index + 1, time.monotonic() - self.started)
            self.results.append(result)
            self.say(f"[tiers {self.clock()}] ▶ {tier} (lane {index + 1})")
            proc = subprocess.Popen([str(TOX), "-e", tier], cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1, errors="replace")
            self.running[index] = proc
            assert proc.stdout is not None
            width = max(len(t) for lane in self.lanes for t in lane)
            for line in proc.stdout:
                keep_why(result, line)
                self.say(f"{tier:<{width}} │ {line}")
            result.code = proc.wait()
            del self.running[index]
            result.wall = time.monotonic() - self.started - result.start
            mark = "✔" if result.code == 0 else "✘"
            self.say(f"[tiers {self.clock()}] {mark} {tier} (lane {index + 1}) exit {result.code} "
                     f"after {result.wall:.0f} s")

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Start nothing new; on SIGTERM (sent to this script alone) interrupt the running tiers' tox."""
        self.stopping.set()
        if signum == signal.SIGTERM:
            for proc in list(self.running.values()):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)

    def table(self) -> str:
        rows = [f"{'tier':<10} {'lane':>4} {'start':>7} {'wall':>7}  result"]
        for r in sorted(self.results, key=lambda r: r.start):
            verdict = ("OK" if r.code == 0 else "interrupted" if r.code is None
                       else f"interrupted (exit {r.code})" if self.stopping.is_set() else f"FAILED ({r.code})")
            rows.append(f"{r.tier:<10} {r.lane:>4} {r.start:>6.0f}s {r.wall:>6.0f}s  {verdict}")
        rows.append(f"wall {time.monotonic() - self.started:.0f} s for {len(self.results)} tiers in "
                    f"{len(self.lanes)} lanes")
        return "\n".join(rows)


def parse(argv: list[str], known: set[str]) -> list[list[str]]:
    """Lanes from arguments; a tier tox does not define, or given twice, is refused with the fix."""
    lanes = [[t for t in arg.split(",") if t] for arg in argv]
    tiers = [t for lane in lanes for t in lane]
    if not tiers:
        raise SystemExit("scripts/tiers.py: name the lanes, e.g. scripts/tiers.py lint,unit,e2e example,fault")
    unknown = sorted(set(tiers) - known)
    if unknown:
        raise SystemExit(f"scripts/tiers.py: no tox env {', '.join(unknown)} in tox.ini; "
                         f"known: {', '.join(sorted(known))}")
    twice = sorted({t for t in tiers if tiers.count(t) > 1})
    if twice:
        raise SystemExit(f"scripts/tiers.py: {', '.join(twice)} given twice; a tier runs once, in one lane")
    return lanes


def tox_envs(tox_ini: Path) -> set[str]:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(tox_ini)
    return {s.split(":", 1)[1] for s in ini.sections() if s.startswith("testenv:")}


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    lanes = Lanes(parse(argv, tox_envs(REPO / "tox.ini")))
    # scripts/tox prepares its private venv on first use: once here, not in two lanes at once.
    subprocess.run([str(TOX), "--version"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    signal.signal(signal.SIGINT, lanes.on_signal)
    signal.signal(signal.SIGTERM, lanes.on_signal)
    lanes.say(f"[tiers {lanes.clock()}] {len(lanes.lanes)} lanes: "
              + " | ".join(" → ".join(lane) for lane in lanes.lanes))
    threads = [threading.Thread(target=lanes.run_lane, args=(i,), name=f"lane-{i + 1}")
               for i in range(len(lanes.lanes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # wakes up for signals
    lanes.say(lanes.table())
    if reasons := failures(lanes.results):
        lanes.say(reasons)
    if lanes.stopping.is_set():
        return 130
    return 0 if all(r.code == 0 for r in lanes.results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
