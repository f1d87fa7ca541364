"""Where build caches live: outside the clone, shared by every checkout on the machine.

Node images, Go caches and base-image work survive across CI runs this way, so a
warm machine skips minutes of work while a new one still builds from scratch.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harness import hostenv

__all__ = ["DEFAULT_CACHE_DIR", "cache_dir", "readable_elsewhere", "trusted_file"]

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


def readable_elsewhere() -> list[Path]:
    """Other caches this process may read finished tools from: the machine's, for a user who falls back to ~/.cache.

    Root's runs (CI, a first ``scripts/run-e2e``) leave ``kubectl`` and ``kind`` in
    ``/var/cache/mlflow-crd-harness``; a normal user cannot write there, but compiling them again in
    ``~/.cache`` took 7 of the 11 minutes of that user's first run. Nothing is written there.
    """
    if hostenv.get(hostenv.CACHE_DIR) is not None or os.geteuid() == 0:
        return []
    return [DEFAULT_CACHE_DIR] if DEFAULT_CACHE_DIR.is_dir() else []


def trusted_file(path: Path, root: Path) -> bool:
    """``path`` under ``root`` is a regular executable file nobody but root or this user can have changed.

    Each component from ``root`` down to the file must be owned by root or by this user and
    writable by neither group nor others: a binary another user could have replaced is not run.
    """
    uid = os.geteuid()
    try:
        if not path.resolve().is_relative_to(root.resolve()) or not os.access(path, os.X_OK):
            return False
        node = path
        while True:
            st = node.lstat()
            if stat.S_ISLNK(st.st_mode) or st.st_uid not in (0, uid) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return False
            if node == root:
                return stat.S_ISREG(path.lstat().st_mode)
            node = node.parent
            if node == node.parent:  # walked past the root without meeting it
                return False
    except OSError:
        return False
