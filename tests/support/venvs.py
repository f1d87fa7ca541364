"""A virtualenv with only the ``customjob`` backend installed (the wheel, no extras), its dependencies cached.

Proves the backend's distribution is complete on its own: submitting needs
nothing from the pytest plugin, kopf, hypothesis, jsonschema or cel-python.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

from harness import _exec
from harness.cachedir import cache_dir
from harness.nodeimage.cache import build_lock

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("pytest", "kopf", "hypothesis", "jsonschema", "cel-python", "scikit-learn", "pandas")


def _key(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _deps_key() -> str:
    """What decides the venv's dependencies: the package's metadata and the lock (not its code)."""
    return _key([REPO / "pyproject.toml", REPO / "requirements" / "constraints.txt"])


def _code_key() -> str:
    """What goes into the wheel: the package (its code and data) and the stub stack it ships from ``crds/``."""
    files = [f for top in ("harness", "crds") for f in (REPO / top).rglob("*")
             if f.is_file() and "__pycache__" not in f.parts]
    return _key([REPO / "pyproject.toml", *files])


def backend_only_venv() -> Path:
    """The venv's ``bin`` directory, holding a wheel of the package as the working tree has it now.

    The venv and its dependencies are cached by :func:`_deps_key` (built once, about a minute); a code change
    only rebuilds the wheel and reinstalls it without dependencies (a few seconds: keyed by the whole package,
    every commit of this repository changed it and paid the full install, 30 core-s). One builder at a time.
    """
    root = cache_dir("venvs") / f"backend-only-{_deps_key()}"
    with build_lock(root.parent, name=f".{root.name}.lock", what="the backend-only venv", timeout=900):
        code = _code_key()
        if (root / "ok").is_file() and (root / "ok").read_text() == code:
            (root / "ok").touch()  # in use: not pruned
            return root / "bin"
        wheels = root / "wheels"
        shutil.rmtree(wheels, ignore_errors=True)
        if not (root / "ok").is_file():
            shutil.rmtree(root, ignore_errors=True)
            _prune(root)
            # The stdlib venv brings its own pip (tox-uv envs have none), which also builds the wheel.
            _exec.run([sys.executable, "-m", "venv", root], timeout=120)
        _exec.run([root / "bin" / "python", "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, REPO], timeout=600)
        (wheel,) = wheels.glob("*.whl")
        # First time: the wheel and its dependencies under the lock; after that the wheel alone, replacing the last.
        again = ["--no-deps", "--force-reinstall"] if (root / "ok").is_file() else []
        (root / "ok").unlink(missing_ok=True)
        _exec.run([root / "bin" / "python", "-m", "pip", "install", "-q", *again, wheel],
                  extra_env={"PIP_CONSTRAINT": str(REPO / "requirements" / "constraints.txt")}, timeout=900)
        (root / "ok").write_text(code)
    return root / "bin"


def _prune(keep: Path, days: float = 1.0) -> None:
    """Other backend-only venvs (an older lock or pyproject) unused for ``days``: ~200 MB each, never read again."""
    for old in keep.parent.glob("backend-only-*"):
        ok = old / "ok"
        if old != keep and old.is_dir() and (not ok.exists() or time.time() - ok.stat().st_mtime > days * 86400):
            shutil.rmtree(old, ignore_errors=True)


def installed(bin_dir: Path) -> set[str]:
    """Lower-case distribution names installed in the venv."""
    out = _exec.run([bin_dir / "python", "-m", "pip", "list", "--format", "freeze"], timeout=120).stdout
    return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}
