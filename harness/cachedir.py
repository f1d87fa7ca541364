"""Where build caches live: outside the clone, shared by every checkout on the machine.

Node images, Go caches and base-image work survive across CI runs this way, so a
warm machine skips minutes of work while a new one still builds from scratch.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness import hostenv

__all__ = ["DEFAULT_CACHE_DIR", "cache_dir"]

DEFAULT_CACHE_DIR = Path("/var/cache/mlflow-crd-harness")


def cache_dir(*parts: str) -> Path:
    """``$HARNESS_CACHE_DIR`` (default ``/var/cache/mlflow-crd-harness``) joined with ``parts``, created.

    Non-root users without write access to /var/cache fall back to ``~/.cache``.
    """
    given = hostenv.get(hostenv.CACHE_DIR)
    base = Path(given or DEFAULT_CACHE_DIR)
    if given is None and os.geteuid() != 0:
        base = Path.home() / ".cache" / "mlflow-crd-harness"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
