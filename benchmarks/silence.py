"""Measure how long a command goes without printing: the "never silent" check.

    python benchmarks/silence.py [--limit 30] -- python -m tox -e e2e

Runs the command with its stdout and stderr merged, stamps every line as it
arrives, and reports the longest gaps between lines, with the lines on either
side. Exits 1 if any gap exceeds ``--limit`` seconds (a cold run must never
look stuck for longer than that). A measurement, not a test: run it on a cold
and a warm machine and read the figures.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=float, default=30.0, help="largest acceptable gap, seconds")
    parser.add_argument("--top", type=int, default=5, help="how many of the longest gaps to show")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        parser.error("give the command after --")
    started = time.monotonic()
    stamped: list[tuple[float, str]] = [(0.0, "<start>")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a pipe would otherwise batch Python children's lines
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            stamped.append((time.monotonic() - started, line.rstrip("\n")))
            sys.stdout.write(line)
            sys.stdout.flush()
    stamped.append((time.monotonic() - started, "<end>"))
    gaps = sorted(((b[0] - a[0], a, b) for a, b in itertools.pairwise(stamped)), reverse=True)
    print(f"\n== {len(stamped) - 2} lines in {stamped[-1][0]:.0f} s; exit {proc.returncode}; longest gaps:")
    for gap, before, after in gaps[: args.top]:
        print(f"  {gap:6.1f} s  after [{before[0]:7.1f}s] {before[1][:90]!r}\n"
              f"            before [{after[0]:7.1f}s] {after[1][:90]!r}")
    worst = gaps[0][0] if gaps else 0.0
    verdict = "within" if worst <= args.limit else "OVER"
    print(f"== longest silence {worst:.1f} s: {verdict} the {args.limit:.0f} s limit")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
