"""Files the package ships: the stub CustomJob stack and the in-cluster tracking server's image.

A user who brings only an MLflow project gets a working platform from these:
the CustomJob CRD, its kopf controller (build context), RBAC, the manager
Deployment, a CustomJob template, and an MLflow server image context. A
platform team replaces any of them with its own (settings ``stack``,
``images``, a project's ``template``, ``tracking``).

In a wheel the stub stack lives at ``harness/assets/stub/`` (setuptools maps
the repository's ``crds/`` there); in a source checkout (editable install) it
is read from ``crds/`` itself, so there is one copy either way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from harness._errors import HarnessError

__all__ = [
    "asset_path",
    "materialise_stub",
    "stub_path",
    "stub_root",
    "stub_template",
    "swap_in",
    "tracking_server_context",
]

_HERE = Path(__file__).resolve().parent


def stub_root() -> Path:
    """The stub stack's directory (``kubectl apply -k`` takes it as is)."""
    for candidate in (_HERE / "stub", _HERE.parent.parent / "crds"):
        if (candidate / "kustomization.yaml").is_file():
            return candidate
    raise HarnessError(f"the stub CustomJob stack is missing from the installed package ({_HERE / 'stub'}); "
                       "reinstall mlflow-crd-harness")


def stub_path(rel: str = "") -> Path:
    """A file or directory of the stub stack: ``controller`` is the controller's build context."""
    path = stub_root() / rel
    if not path.exists():
        raise HarnessError(f"stub:{rel} does not exist (looked at {path}); valid: controller, templates, bases, rbac")
    return path


def stub_template() -> Path:
    """The stub CustomJob template, used for projects that name no template."""
    return stub_path("templates/customjob.yaml")


def asset_path(rel: str) -> Path:
    """A directory the package ships besides the stub (``kubeflow/pytorch-init``): settings ``asset:<rel>``."""
    path = _HERE / rel
    if not path.exists() or rel.startswith(("/", "..")):
        raise HarnessError(f"asset:{rel} does not exist in the installed package (looked at {path})")
    return path


def tracking_server_context() -> Path:
    """Build context of the in-cluster MLflow tracking server image."""
    return _HERE / "mlflow-server"


_STACK_PARTS = ("kustomization.yaml", "bases", "rbac", "manager", "templates")


def materialise_stub(dest: Path) -> Path:
    """Copy the stub's manifests to ``dest`` (replacing what is there) and return it.

    kustomize resolves ``resources:`` by relative path, so an overlay that
    changes the stub (another namespace, labels, patches) refers to this copy,
    e.g. ``resources: [../../.harness/stub]``; the session refreshes it.
    """
    src = stub_root()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Two sessions on different clusters share a state dir: build aside, then swap in by rename, so
    # neither ever sees (or removes) the other's half-written copy.
    fresh = Path(tempfile.mkdtemp(prefix=f".{dest.name}-new-", dir=dest.parent))
    for part in _STACK_PARTS:
        s = src / part
        if s.is_dir():
            shutil.copytree(s, fresh / part)
        elif s.is_file():
            shutil.copy2(s, fresh / part)
    return swap_in(fresh, dest)


def swap_in(fresh: Path, dest: Path) -> Path:
    """Put directory ``fresh`` at ``dest`` by rename (replacing what is there); return ``dest``.

    For copies sessions regenerate (the stub, a stack preset's manifests): another session
    that swaps in the same files at the same moment wins, and neither half-deletes the other's.
    """
    old = dest.parent / f".{dest.name}-old-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        dest.rename(old)
    try:
        fresh.rename(dest)
    except OSError:  # another session put its copy (the same files) in place first
        shutil.rmtree(fresh, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return dest
