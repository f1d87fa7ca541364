"""The few Docker questions asked before any build: is an image here, can it be pulled, its id.

Kept on the ``docker`` CLI and the stdlib (no SDK), because the registry-less
node-image builder and ``.ci/run`` use it with a bare system Python.
"""

from __future__ import annotations

from typing import Literal

from harness import _exec

__all__ = ["image_exists", "image_id", "obtain"]


def image_exists(ref: str) -> bool:
    """True if the local Docker engine has ``ref``."""
    return _exec.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref],
                     check=False, timeout=60).returncode == 0


def image_id(ref: str) -> str:
    """The local image id (``sha256:…``) of ``ref``; raises if it is not there."""
    return _exec.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], timeout=60).stdout.strip()


def obtain(ref: str, *, pull_timeout: float) -> tuple[Literal["present", "pulled"] | None, str]:
    """Make ``ref`` local if possible: ("present"|"pulled", "") or (None, the pull's last error line)."""
    if image_exists(ref):
        return "present", ""
    proc = _exec.run(["docker", "pull", "--quiet", ref], check=False, timeout=pull_timeout)
    if proc.returncode == 0:
        return "pulled", ""
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return None, lines[-1] if lines else "no answer"
