"""Stack presets: a public operator named in ``stack``, deployed as its project ships it.

``stack = ["stub", "kubeflow-training-operator"]`` deploys Kubeflow's
training-operator v1.8.1 next to the stub: its CRDs, RBAC, webhook (with the
certificate handling the operator does itself) and Deployment come from the
kustomize overlay in its own Go module (``manifests/overlays/standalone``,
fetched from the Go module proxy, as ``kubectl apply -k`` of its repository
would take it); the changes are a patch giving the operator an image the
nodes have for the PyTorchJob Worker's init container, and a readiness probe
that asks sooner and more often (nothing else of its probes). Its controller image
is the published one where it can be pulled, else built from the same module
(:mod:`harness.goimage`).

A preset is data in the settings' own vocabulary: its ``images`` are
``[[images]]`` tables (added to the configured ones), so nothing here is
special to the harness's build, delivery or deploy paths.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PRESETS", "StackPreset", "materialise", "prebuild"]


@dataclass(frozen=True)
class StackPreset:
    """One operator: where its manifests come from, its images, the patches a registry-less cluster needs."""

    name: str
    description: str
    module: str
    version: str
    overlay: str
    """The kustomize directory inside the module (``manifests/overlays/standalone``)."""
    images: tuple[Mapping[str, Any], ...]
    """``[[images]]`` tables: built (or pulled) and delivered whenever the preset is in the stack."""
    patches: tuple[Mapping[str, Any], ...] = ()
    """kustomize ``patches`` entries applied on top of ``overlay``."""
    workloads: tuple[str, ...] = field(default=())
    """Workload presets whose kinds it serves."""


KUBEFLOW_TRAINING_OPERATOR = StackPreset(
    name="kubeflow-training-operator",
    description="Kubeflow training-operator v1.8.1 (PyTorchJob, TFJob, XGBoostJob, MPIJob, MXJob, PaddleJob)",
    module="github.com/kubeflow/training-operator",
    version="v1.8.1",
    overlay="manifests/overlays/standalone",
    images=(
        {"name": "training-operator", "repository": "kubeflow/training-operator",
         # The image the overlay names; built from the same tag of the module where it cannot be pulled.
         "public": "kubeflow/training-operator:v1-04f9f13",
         "go": {"module": "github.com/kubeflow/training-operator", "version": "v1.8.1",
                "package": "./cmd/training-operator.v1", "binary": "/manager"}},
        {"name": "pytorch-init", "repository": "mlflow-crd-harness/pytorch-init",
         "context": "asset:kubeflow/pytorch-init"},
    ),
    patches=(
        # The Worker's init container otherwise runs alpine:3.10 (the operator's default), which a
        # registry-less node cannot pull; the flag is the operator's own way to name another image.
        # Its readiness probe (first after 10 s, then every 15 s) made a new cluster wait ~16 s after the
        # operator was up (its certificates take ~2 s): the harness waits for the Deployment to be available,
        # so it asks sooner and more often. Liveness, and what is probed, stay as shipped.
        {"target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": "training-operator"},
         "patch": json.dumps([{"op": "add", "path": "/spec/template/spec/containers/0/args",
                               "value": ["--pytorch-init-container-image=mlflow-crd-harness/pytorch-init"]},
                              {"op": "replace", "path": "/spec/template/spec/containers/0/readinessProbe/"
                                                       "initialDelaySeconds", "value": 1},
                              {"op": "replace", "path": "/spec/template/spec/containers/0/readinessProbe/"
                                                       "periodSeconds", "value": 2}])},
    ),
    workloads=("pytorchjob",),
)

PRESETS: Mapping[str, StackPreset] = {p.name: p for p in (KUBEFLOW_TRAINING_OPERATOR,)}


def materialise(preset: StackPreset, dest: Path, *, log: Callable[[str], None] = print) -> Path:
    """A kustomize directory for ``preset`` at ``dest``: the module's manifests copied in, plus an overlay.

    kustomize refuses resources by absolute path, and the module cache is
    read-only, so the module's ``manifests/`` is copied next to a generated
    ``kustomization.yaml`` that names it and adds the preset's patches.
    """
    from harness import assets
    from harness.cachedir import cache_dir
    from harness.nodeimage.gobuild import GoToolchain

    toolchain = GoToolchain.discover(cache_dir())
    found = json.loads(toolchain.run("mod", "download", "-json", f"{preset.module}@{preset.version}",
                                     cwd=cache_dir()))
    if found.get("Error"):
        raise RuntimeError(f"go mod download {preset.module}@{preset.version}: {found['Error']}")
    source = Path(found["Dir"])
    top = preset.overlay.split("/", 1)[0]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{dest.name}-new-", dir=dest.parent))
    shutil.copytree(source / top, fresh / "upstream" / top)
    for path in [fresh / "upstream", *(fresh / "upstream").rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"upstream/{preset.overlay}"],
        "patches": [dict(p) for p in preset.patches],
    }
    import yaml  # here, not at import: `python3 -m harness.stacks prebuild` runs on a bare interpreter

    (fresh / "kustomization.yaml").write_text(
        f"# Generated by the harness: stack preset {preset.name} ({preset.module}@{preset.version}).\n"
        + yaml.safe_dump(kustomization, sort_keys=False))
    assets.swap_in(fresh, dest)
    log(f"stack: {preset.name}: {preset.module}@{preset.version} {preset.overlay} -> {dest}")
    return dest


def prebuild(preset: StackPreset, *, log: Callable[[str], None] = print) -> list[Path]:
    """Build (or find cached) the Go binaries of ``preset``'s images: long cold builds, started early in CI."""
    from harness.goimage import GoBuild, build_context

    return [build_context(GoBuild(**item["go"]), log=log) for item in preset.images if "go" in item]


def main(argv: list[str] | None = None) -> int:
    """``python3 -m harness.stacks prebuild NAME``: the stdlib-only entry CI uses beside the node images."""
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m harness.stacks", description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=["prebuild"])
    parser.add_argument("preset", choices=sorted(PRESETS))
    args = parser.parse_args(argv)
    for path in prebuild(PRESETS[args.preset]):
        print(f"stacks: {args.preset}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
