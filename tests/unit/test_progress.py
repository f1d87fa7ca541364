"""Unit tier: live progress lines, heartbeats and the timeline renderings of the phase timer."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import pytest

from harness.timing import Phases
from tests.support.pytester import WITHOUT_UNUSED_PLUGINS

pytest_plugins = ["pytester"]


def test_each_phase_says_when_it_starts_and_ends() -> None:
    lines: list[str] = []
    phases = Phases(sink=lines.append, heartbeat=0)
    with phases.phase("build trainer image") as note:
        phases.log("image: building mlflow-crd-example:abc")
        note["note"] = "reused"
    with pytest.raises(RuntimeError), phases.phase("cluster"):
        raise RuntimeError("boom")
    text = "\n".join(lines)
    assert [ln.split("] ", 1)[1] for ln in lines] == [
        "▶ build trainer image", "  image: building mlflow-crd-example:abc",
        lines[2].split("] ", 1)[1], "▶ cluster", lines[4].split("] ", 1)[1]]
    assert lines[2].split("] ", 1)[1].startswith("✔ build trainer image (")
    assert "- reused" in lines[2]
    assert lines[4].split("] ", 1)[1].startswith("✘ cluster (")
    assert lines[4].endswith("FAILED")
    assert all(ln.startswith("[harness ") for ln in lines), text
    assert [(p.name, p.ok) for p in phases.items] == [("build trainer image", True), ("cluster", False)]


def test_quiet_mode_keeps_only_the_end_lines() -> None:
    lines: list[str] = []
    phases = Phases(sink=lines.append, heartbeat=0, verbose=False)
    with phases.phase("deploy"):
        phases.log("applying")
    assert len(lines) == 1
    assert "✔ deploy" in lines[0]


def test_long_phases_heartbeat_with_what_they_are_doing() -> None:
    lines: list[str] = []
    done = threading.Event()
    phases = Phases(sink=lines.append, heartbeat=0.05)
    with phases.phase("node image"):
        phases.log("go build k8s.io/kubernetes/cmd/kubelet")
        done.wait(0.3)
    beats = [ln for ln in lines if "… node image running for" in ln]
    assert len(beats) >= 3, lines
    assert beats[-1].endswith(": go build k8s.io/kubernetes/cmd/kubelet")
    time.sleep(0.15)
    settled = len(lines)
    time.sleep(0.15)
    assert len(lines) == settled, "no heartbeat once nothing runs"


def test_a_broken_sink_never_breaks_a_phase() -> None:
    def broken(_line: str) -> None:
        raise OSError("terminal gone")

    phases = Phases(sink=broken, heartbeat=0)
    with phases.phase("x"):
        pass
    assert phases.items[0].ok


def test_timelines_place_each_phase_at_its_start() -> None:
    now = [100.0]
    phases = Phases(clock=lambda: now[0], heartbeat=0)
    phases.started = 100.0
    with phases.phase("cluster"):
        now[0] = 112.0
    with phases.phase("deploy: stack #1"):
        now[0] = 150.0
    gantt = phases.mermaid()
    assert "  cluster : 0, 12s" in gantt
    assert "  deploy  stack  1 : 12, 38s" in gantt
    svg = ET.fromstring(phases.svg())
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect")]
    assert len(bars) == 2
    assert float(bars[1].get("x", "0")) > float(bars[0].get("x", "0"))


def test_progress_reaches_the_terminal_through_output_capture(pytester: pytest.Pytester) -> None:
    """A phase inside a fixture prints live even though pytest captures the test's output."""
    pytester.makepyfile("""
import pytest

@pytest.fixture
def slow(phases):
    with phases.phase("build thing") as note:
        phases.log("step one")
        note["note"] = "done"

def test_x(slow):
    print("captured, not shown")
""")
    result = pytester.runpytest_subprocess(*WITHOUT_UNUSED_PLUGINS)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*] ▶ build thing", "*]   step one", "*] ✔ build thing (*s) - done"])
    assert "captured, not shown" not in result.stdout.str()
