"""Where build caches live: outside the clone, shared by every checkout on the machine.

Node images, Go caches and base-image work survive across CI runs this way, so a
warm machine skips minutes of work while a new one still builds from scratch.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_CACHE_DIR", "cache_dir"]

DEFAULT_CACHE_DIR = Path("/var/cache/mlflow-crd-harness")


def cache_dir(*parts: str) -> Path:
    """``$HARNESS_CACHE_DIR`` (default ``/var/cache/mlflow-crd-harness``) joined with ``parts``, created.

    Non-root users without write access to /var/cache fall back to ``~/.cache``.
    """
    base = Path(os.environ.get("HARNESS_CACHE_DIR") or DEFAULT_CACHE_DIR)
    if "HARNESS_CACHE_DIR" not in os.environ and os.geteuid() != 0:
        base = Path.home() / ".cache" / "mlflow-crd-harness"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
