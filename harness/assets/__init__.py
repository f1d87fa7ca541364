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

import shutil
from pathlib import Path

from harness._errors import HarnessError

__all__ = ["asset_path", "materialise_stub", "stub_path", "stub_root", "stub_template", "tracking_server_context"]

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
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for part in _STACK_PARTS:
        s = src / part
        if s.is_dir():
            shutil.copytree(s, dest / part)
        elif s.is_file():
            shutil.copy2(s, dest / part)
    return dest
