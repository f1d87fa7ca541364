"""Bring the e2e platform up (and down) outside pytest: cluster ∥ images, then the stack.

The pytest fixtures and ``python -m harness up`` call the same functions, so a
cluster kept by the test session is the one the CLI works against.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness import images, toolchain
from harness.cluster import ClusterHandle, provision_cluster
from harness.kind import KindCluster
from harness.stack import Stack, StackImages, deploy_stack
from harness.timing import Phases

__all__ = [
    "REPO_ROOT", "Platform", "PlatformSettings", "bring_up_cluster", "build_trainer_image", "deploy", "kind_for",
    "state_dir_for",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINER_DIR = REPO_ROOT / "trainer"
CONTROLLER_DIR = REPO_ROOT / "crds" / "controller"
CRDS_DIR = REPO_ROOT / "crds"
MLFLOW_SERVER_DIR = REPO_ROOT / "deploy" / "mlflow-server"
TRAINER_IMAGE = "mlflow-crd-example"  # the MLproject's docker_env.image


def build_trainer_image(base_image: str, *, log: Callable[[str], None] = print) -> images.BuiltImage:
    """The trainer image (content-hash tag), also tagged as the MLproject's ``docker_env.image``.

    ``mlflow run --build-image`` and the customjob backend build FROM that name.
    """
    return images.build_image(TRAINER_DIR, TRAINER_IMAGE, base_image=base_image,
                              also_tag=(f"{TRAINER_IMAGE}:latest",), log=log)


def state_dir_for(cluster_name: str) -> Path:
    """Where the harness keeps a cluster's kubeconfig (0600) and kind config."""
    return REPO_ROOT / ".harness" / "clusters" / cluster_name


@dataclass(frozen=True)
class PlatformSettings:
    """What to bring up; every field has a CLI flag and a pytest option."""

    cluster_name: str = "mlflow-crd-e2e"
    reuse: bool = True
    node_image: str | None = None
    node_image_mode: Literal["auto", "public", "local"] = "auto"
    kind_bin: str | None = None
    kubectl_bin: str | None = None


@dataclass(frozen=True)
class Platform:
    cluster: ClusterHandle
    stack_images: StackImages
    kind: KindCluster


def kind_for(settings: PlatformSettings, log: Callable[[str], None] = print) -> KindCluster:
    return KindCluster(settings.cluster_name, toolchain.resolve_kind(settings.kind_bin, log=log),
                       state_dir_for(settings.cluster_name), log=log)


def bring_up_cluster(
    settings: PlatformSettings, *, base_image: str, phases: Phases, log: Callable[[str], None] = print,
) -> Platform:
    """Create or reuse the cluster while the controller and MLflow server images build."""
    with phases.phase("tools (kind, kubectl)"):
        kind = kind_for(settings, log)
        kubectl_bin = toolchain.resolve_kubectl(settings.kubectl_bin, log=log)

    def build(context: Path, repo: str, label: str) -> images.BuiltImage:
        with phases.phase(f"build {label} image") as note:
            built = images.build_image(context, repo, base_image=base_image, log=log)
            note["note"] = f"{built.tag} {built.size_bytes / 1e6:.0f} MB{' (reused)' if built.reused else ''}"
            return built

    def cluster() -> ClusterHandle:
        with phases.phase("node image") as note:
            choice = toolchain.resolve_node_image(mode=settings.node_image_mode, override=settings.node_image,
                                                  log=log)
            note["note"] = f"{choice.source}: {choice.image}"
        with phases.phase("cluster") as note:
            handle = provision_cluster(kind, node_image=choice.image, kubectl_bin=kubectl_bin,
                                       reuse=settings.reuse, log=log)
            note["note"] = "created" if handle.created else "reused"
            return handle

    with ThreadPoolExecutor(max_workers=3) as pool:
        f_cluster = pool.submit(cluster)
        f_ctrl = pool.submit(build, CONTROLLER_DIR, "customjob-controller", "controller")
        f_srv = pool.submit(build, MLFLOW_SERVER_DIR, "mlflow-server", "MLflow server")
        handle = f_cluster.result()
        ctrl, srv = f_ctrl.result(), f_srv.result()
    return Platform(handle, StackImages(ctrl.tag, srv.tag), kind)


def deploy(platform: Platform, *, phases: Phases, log: Callable[[str], None] = print) -> Stack:
    with phases.phase("deploy stack (load images, CRD, controller, MLflow)") as note:
        stack = deploy_stack(platform.cluster, platform.stack_images, crds_dir=CRDS_DIR, log=log)
        note["note"] = "applied" if stack.redeployed else "unchanged (warm)"
    return stack
