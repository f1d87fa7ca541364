"""The e2e half of the pytest plugin: cluster, images, stack, per-test namespace, evidence.

Fixture chain (each a thin wrapper over a package function that also works
from ``python -m harness``):

``e2e_settings`` → ``e2e_platform`` (cluster ∥ images, overlapped) → ``e2e_stack``
(CRD, controller, MLflow server) → per test ``e2e_namespace`` (fresh namespace,
evidence bundle on failure, kept on failure when the cluster is kept).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import images, toolchain
from harness.cluster import ClusterHandle, provision_cluster
from harness.evidence import bundle_dir_for, collect_bundle
from harness.kind import KindCluster
from harness.pytest_plugin import REPO_ROOT, missing_prerequisite
from harness.stack import Stack, StackImages, deploy_stack
from harness.timing import Phases

CONTROLLER_DIR = REPO_ROOT / "crds" / "controller"
CRDS_DIR = REPO_ROOT / "crds"
MLFLOW_SERVER_DIR = REPO_ROOT / "deploy" / "mlflow-server"
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("harness")
    g.addoption("--cluster-name", default=os.environ.get("HARNESS_CLUSTER_NAME", "mlflow-crd-e2e"),
                help="kind cluster to create or reuse (env HARNESS_CLUSTER_NAME)")
    g.addoption("--keep-cluster", action="store_true", default=None,
                help="keep the cluster after the session (default: keep locally, delete under CI)")
    g.addoption("--delete-cluster", action="store_true", default=False,
                help="delete the cluster after the session if this session created it")
    g.addoption("--no-reuse", action="store_true", default=_env_flag("CI"),
                help="always create a fresh cluster (default under CI)")
    g.addoption("--node-image", default=os.environ.get("HARNESS_NODE_IMAGE"),
                help="kind node image to use as is (env HARNESS_NODE_IMAGE)")
    g.addoption("--node-image-mode", choices=("auto", "public", "local"),
                default=os.environ.get("HARNESS_NODE_IMAGE_MODE", "auto"),
                help="auto: the pinned public node image if pullable, else the registry-less build")
    g.addoption("--kind-bin", default=os.environ.get("HARNESS_KIND_BIN"), help="kind executable")
    g.addoption("--kubectl-bin", default=os.environ.get("HARNESS_KUBECTL_BIN"), help="kubectl executable")
    g.addoption("--bundle-dir", default=os.environ.get("HARNESS_BUNDLE_DIR", str(REPO_ROOT / "build" / "e2e-bundles")),
                help="where failure evidence bundles go, one directory per failed test")
    g.addoption("--job-timeout", type=float, default=900.0, help="seconds a CustomJob may take to finish")


@dataclass(frozen=True)
class E2ESettings:
    cluster_name: str
    keep_cluster: bool
    reuse: bool
    node_image: str | None
    node_image_mode: str
    kind_bin: str | None
    kubectl_bin: str | None
    bundle_dir: Path
    job_timeout: float
    state_dir: Path


@pytest.fixture(scope="session")
def e2e_settings(pytestconfig: pytest.Config) -> E2ESettings:
    opt = pytestconfig.getoption
    keep = opt("--keep-cluster")
    if keep is None:
        keep = not _env_flag("CI")
    if opt("--delete-cluster"):
        keep = False
    name = opt("--cluster-name")
    return E2ESettings(
        cluster_name=name, keep_cluster=bool(keep), reuse=not opt("--no-reuse"),
        node_image=opt("--node-image"), node_image_mode=opt("--node-image-mode"),
        kind_bin=opt("--kind-bin"), kubectl_bin=opt("--kubectl-bin"),
        bundle_dir=Path(opt("--bundle-dir")), job_timeout=float(opt("--job-timeout")),
        state_dir=REPO_ROOT / ".harness" / "clusters" / name,
    )


@dataclass(frozen=True)
class Platform:
    cluster: ClusterHandle
    stack_images: StackImages
    trainer: images.BuiltImage
    kind: KindCluster


@pytest.fixture(scope="session")
def e2e_platform(
    e2e_settings: E2ESettings, base_image: str, trainer_image: images.BuiltImage, phases: Phases,
    pytestconfig: pytest.Config,
) -> Iterator[Platform]:
    """The cluster, with the controller and server images built while it boots."""
    s = e2e_settings
    with phases.phase("tools (kind, kubectl)"):
        kind_bin = toolchain.resolve_kind(s.kind_bin)
        kubectl_bin = toolchain.resolve_kubectl(s.kubectl_bin)
    kind = KindCluster(s.cluster_name, kind_bin, s.state_dir)

    def build(context: Path, repo: str, label: str) -> images.BuiltImage:
        with phases.phase(f"build {label} image") as note:
            built = images.build_image(context, repo, base_image=base_image)
            note["note"] = f"{built.tag} {built.size_bytes / 1e6:.0f} MB{' (reused)' if built.reused else ''}"
            return built

    def cluster() -> ClusterHandle:
        with phases.phase("node image") as note:
            choice = toolchain.resolve_node_image(mode=s.node_image_mode, override=s.node_image)  # type: ignore[arg-type]
            note["note"] = f"{choice.source}: {choice.image}"
        with phases.phase("cluster") as note:
            handle = provision_cluster(kind, node_image=choice.image, kubectl_bin=kubectl_bin, reuse=s.reuse)
            note["note"] = "created" if handle.created else "reused"
            return handle

    with ThreadPoolExecutor(max_workers=3) as pool:
        f_cluster = pool.submit(cluster)
        f_ctrl = pool.submit(build, CONTROLLER_DIR, "customjob-controller", "controller")
        f_srv = pool.submit(build, MLFLOW_SERVER_DIR, "mlflow-server", "MLflow server")
        handle = f_cluster.result()
        ctrl, srv = f_ctrl.result(), f_srv.result()
    try:
        yield Platform(handle, StackImages(ctrl.tag, srv.tag), trainer_image, kind)
    finally:
        if handle.created and not s.keep_cluster:
            with phases.phase("delete cluster"):
                kind.delete()


@pytest.fixture(scope="session")
def e2e_stack(e2e_platform: Platform, phases: Phases) -> Stack:
    """CRD + controller + MLflow server deployed and answering."""
    with phases.phase("deploy stack (load images, CRD, controller, MLflow)") as note:
        stack = deploy_stack(e2e_platform.cluster, e2e_platform.stack_images, crds_dir=CRDS_DIR)
        note["note"] = "applied" if stack.redeployed else "unchanged (warm)"
    return stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture
def e2e_namespace(request: pytest.FixtureRequest, e2e_stack: Stack, e2e_settings: E2ESettings) -> Iterator[str]:
    """A fresh namespace per test; on failure its evidence bundle is written and it is kept if the cluster is."""
    kube = e2e_stack.cluster.kube
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kube.ensure_namespace(name, labels={"app.kubernetes.io/managed-by": "mlflow-crd-harness"})
    yield name
    if _failed(request.node):
        collect_bundle(bundle_dir_for(e2e_settings.bundle_dir, request.node.nodeid), kube,
                       namespaces=[name], kind=e2e_stack.cluster.kind)
        if e2e_settings.keep_cluster:
            return
    kube.delete_namespace(name)


@pytest.fixture(scope="session")
def e2e_ready(pytestconfig: pytest.Config, docker_ready: None) -> None:
    """Skip (or fail under --no-skip) when the host cannot run kind at all."""
    if not Path("/proc/self/cgroup").exists():
        missing_prerequisite(pytestconfig, "no cgroups: kind needs a Linux Docker host")
