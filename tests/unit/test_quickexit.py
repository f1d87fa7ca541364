"""The exit without a last collection: registered once, and it freezes what the process built before it ends."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

CHILD = """
import atexit, gc
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))  # runs after the freeze (LIFO)
from harness import quickexit
before = atexit._ncallbacks()
quickexit.skip_final_collection()
quickexit.skip_final_collection()
print("registered:", atexit._ncallbacks() - before)
print("frozen now:", gc.get_freeze_count() > 0)
"""


def test_the_freeze_is_registered_once_and_runs_as_the_process_exits() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines() == ["registered: 1", "frozen now: False", "frozen at exit: True"], out.stderr
