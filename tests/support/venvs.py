"""A virtualenv with only the ``customjob`` backend installed (the wheel, no extras), cached by its inputs.

Proves the backend's distribution is complete on its own: submitting needs
nothing from the pytest plugin, kopf, hypothesis, jsonschema or cel-python.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from harness import _exec
from harness.cachedir import cache_dir

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("pytest", "kopf", "hypothesis", "jsonschema", "cel-python", "scikit-learn", "pandas")


def _inputs_key() -> str:
    h = hashlib.sha256()
    for path in sorted([REPO / "pyproject.toml", REPO / "requirements" / "constraints.txt",
                        *(REPO / "harness").rglob("*.py")]):
        h.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def backend_only_venv() -> Path:
    """The venv's ``bin`` directory; built (about a minute) when the package or the lock changed."""
    root = cache_dir("venvs") / f"backend-only-{_inputs_key()}"
    if (root / "ok").is_file():
        return root / "bin"
    shutil.rmtree(root, ignore_errors=True)
    wheels = root / "wheels"
    # The stdlib venv brings its own pip (tox-uv envs have none), which also builds the wheel.
    _exec.run([sys.executable, "-m", "venv", root], timeout=120)
    _exec.run([root / "bin" / "python", "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, REPO], timeout=600)
    (wheel,) = wheels.glob("*.whl")
    _exec.run([root / "bin" / "python", "-m", "pip", "install", "-q", wheel],
              extra_env={"PIP_CONSTRAINT": str(REPO / "requirements" / "constraints.txt")}, timeout=900)
    (root / "ok").write_text("")
    return root / "bin"


def installed(bin_dir: Path) -> set[str]:
    """Lower-case distribution names installed in the venv."""
    out = _exec.run([bin_dir / "python", "-m", "pip", "list", "--format", "freeze"], timeout=120).stdout
    return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}
