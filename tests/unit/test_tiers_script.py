"""Unit tier: ``scripts/tiers.py``, the lane runner of the README's test command (no tox is run here).

What CI runs is the README's second command; a tier left out of its lanes would
silently stop being tested, and a tier in two lanes would run twice at once.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _tiers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tiers_script", REPO / "scripts" / "tiers.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _readme_lanes() -> list[str]:
    """The lane arguments of the README's test command (its first ``scripts/tiers.py`` line)."""
    line = next(ln for ln in (REPO / "README.md").read_text().splitlines() if "scripts/tiers.py " in ln)
    argv = shlex.split(line.split("&&")[-1], comments=True)
    return argv[argv.index("scripts/tiers.py") + 1:]


def test_the_readme_runs_every_ci_tier_once() -> None:
    tiers = _tiers()
    known = tiers.tox_envs(REPO / "tox.ini")
    lanes = tiers.parse(_readme_lanes(), known)
    named = [t for lane in lanes for t in lane]
    helpers = {"docs", "fault-child"}  # a docs server and the fault tier's own child session, not tiers
    assert sorted(named) == sorted(known - helpers)
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^scripts/tiers\.py " + re.escape(" ".join(_readme_lanes())), ci, re.M), \
        ".ci/run must call the README's test command as written"


def test_pages_runs_after_e2e_in_the_same_lane() -> None:
    """The pages tier reads the e2e tier's report: in another lane it could start first."""
    lanes = _tiers().parse(_readme_lanes(), _tiers().tox_envs(REPO / "tox.ini"))
    lane = next(lane for lane in lanes if "pages" in lane)
    assert "e2e" in lane
    assert lane.index("e2e") < lane.index("pages")


@pytest.mark.parametrize(("argv", "says"), [
    (["lint,nope"], "no tox env nope in tox.ini; known: e2e, lint"),
    (["lint", "e2e,lint"], "lint given twice"),
    ([], "name the lanes"),
    ([","], "name the lanes"),
])
def test_bad_lanes_are_refused_with_the_fix(argv: list[str], says: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(says)):
        _tiers().parse(argv, {"lint", "e2e"})


def test_lanes_keep_their_order() -> None:
    assert _tiers().parse(["lint,unit", "e2e"], {"lint", "unit", "e2e"}) == [["lint", "unit"], ["e2e"]]


def test_a_failed_tier_closes_the_log_with_why() -> None:
    """The lanes interleave; the log's last lines name the failed test and tox's failing command."""
    tiers = _tiers()
    failed = tiers.Result("e2e", 1, 0.0, code=1)
    for line in [
        "tests/e2e/test_x.py::test_ok PASSED\n",
        "  e2e: exit 0 (3.10 seconds) /repo> python -m harness manifest a.json b.json pid=41\n",
        "FAILED tests/e2e/test_x.py::test_bad - AssertionError: run FAILED\n",
        "=================== 1 failed, 30 passed in 512.20s (0:08:32) ===================\n",
        "  e2e: exit 1 (530.12 seconds) /repo> pytest -m e2e tests/e2e pid=42\n",
        "======================== 31 passed in 512.20s ========================\n",
    ]:
        tiers.keep_why(failed, line)
    passed = tiers.Result("unit", 2, 0.0, code=0)
    tiers.keep_why(passed, "FAILED but in a tier that passed\n")
    text = tiers.failures([failed, passed])
    assert text.splitlines() == [
        "why e2e failed:",
        "  FAILED tests/e2e/test_x.py::test_bad - AssertionError: run FAILED",
        "  =================== 1 failed, 30 passed in 512.20s (0:08:32) ===================",
        "  e2e: exit 1 (530.12 seconds) /repo> pytest -m e2e tests/e2e pid=42",
    ]


def test_a_failed_tier_without_a_summary_line_shows_its_last_lines() -> None:
    tiers = _tiers()
    failed = tiers.Result("pages", 1, 0.0, code=2)
    for n in range(40):
        tiers.keep_why(failed, f"line {n}\n")
    text = tiers.failures([failed]).splitlines()
    assert text[0] == "why pages failed:"
    assert text[-1] == "  line 39"
    assert len(text) == 2 + tiers.TAIL
