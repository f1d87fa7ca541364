"""Unit tier: signals during a teardown that logs cannot freeze it (real processes, no Docker).

The signal handler must not take the locks the session's own logging holds: a
flood of signals, as a terminal's Ctrl-C through tox delivers (pytest gets it
directly and tox relays it twice), once froze a teardown until tox's SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

# A "session" whose cleanup logs without pause through a non-reentrant lock (like the terminal sink and the
# phase timer do): any signal handler that logs would deadlock on it.
SESSION = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path
    from harness import interrupts
    out = Path(sys.argv[1])
    lock = threading.Lock()
    said = []
    def log(line):
        with lock:
            said.append(line)
    installed = interrupts.install(log)
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        pass
    finally:
        print("cleaning", flush=True)
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            log("teardown progress")
        installed.restore()  # says what the handler recorded
        out.write_text(json.dumps({"ignored": installed.ignored,
                                   "said": [s for s in said if s != "teardown progress"]}))
""")


def _as_from_a_terminal() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


@contextlib.contextmanager
def _session(script: str, out: Path) -> Iterator[tuple[subprocess.Popen[str], IO[str]]]:
    """``script`` in a real process with a terminal's signal dispositions (it writes its record to ``out``):
    yields the process and its stdout; killed at the end if it still runs."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                            preexec_fn=_as_from_a_terminal)
    assert proc.stdout is not None
    try:
        yield proc, proc.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_flood_of_signals_during_a_logging_cleanup_does_not_freeze_it(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    with _session(SESSION, out) as (proc, stdout):
        assert stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        assert stdout.readline().strip() == "cleaning"
        for i in range(100):
            proc.send_signal(signal.SIGTERM if i % 3 else signal.SIGINT)
            time.sleep(0.01)
        assert proc.wait(30) == 0
    result = json.loads(out.read_text())
    assert result["ignored"], "the later signals were noted"
    assert set(result["ignored"]) <= {"SIGINT", "SIGTERM"}
    assert result["said"][0].startswith("SIGINT: stopping")
    assert len(result["said"]) == 2, "the ignored signals are said once, after the fact"
    assert "during the cleanup after SIGINT: ignored" in result["said"][1]


def test_the_handler_only_records_and_flush_says_it_once() -> None:
    from harness import interrupts

    said: list[str] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    installed = interrupts.install(said.append)
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        assert said == [], "nothing is written from the handler"
        installed.flush()
        installed.flush()
    finally:
        installed.restore()
        signal.signal(signal.SIGINT, previous)
    assert installed.interrupted == "SIGINT"
    assert installed.ignored == ["SIGINT", "SIGINT"]
    assert said[0] == installed.stopping_line
    assert said[0].startswith("SIGINT: stopping")
    assert len(said) == 2
    assert said[1].startswith("SIGINT x2 during the cleanup after SIGINT: ignored")


# A session that ended on its own: its teardown (a child process standing for `kind delete`, then a finalizer)
# runs shielded, and a SIGTERM lands in the middle of it.
SHIELDED = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from harness import _exec, interrupts
    out = Path(sys.argv[1])
    said, steps = [], []
    installed = interrupts.install(said.append)
    with installed.shielded():
        print("tearing down", flush=True)
        _exec.run(["sleep", "2"], timeout=30)
        steps.append("the child ran to its end")
    steps.append("the finalizer after it ran")
    installed.restore()
    out.write_text(json.dumps({"steps": steps, "interrupted": installed.interrupted,
                               "ignored": installed.ignored, "said": said}))
""")


def test_a_signal_during_an_ordinary_teardown_does_not_cut_it_short(tmp_path: Path) -> None:
    """Issue 24: a SIGTERM during a session's normal end raised into the teardown and killed `kind delete`."""
    out = tmp_path / "out.json"
    with _session(SHIELDED, out) as (proc, stdout):
        assert stdout.readline().strip() == "tearing down"
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    result = json.loads(out.read_text())
    assert result["steps"] == ["the child ran to its end", "the finalizer after it ran"]
    assert result["interrupted"] == "SIGTERM"
    assert result["ignored"] == ["SIGINT"]
    assert result["said"][0].startswith("SIGTERM: stopping")
