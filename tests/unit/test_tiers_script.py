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
