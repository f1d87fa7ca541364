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
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import doctor, images
from harness.cluster import forget_cluster
from harness.evidence import bundle_dir_for, collect_bundle
from harness.platform import REPO_ROOT, Platform, PlatformSettings, bring_up_cluster, deploy
from harness.project_runner import ProjectRunner
from harness.pytest_plugin import env_flag, missing_prerequisite
from harness.stack import Stack
from harness.timing import Phases

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("harness")
    g.addoption("--cluster-name", default=os.environ.get("HARNESS_CLUSTER_NAME", "mlflow-crd-e2e"),
                help="kind cluster to create or reuse (env HARNESS_CLUSTER_NAME)")
    g.addoption("--keep-cluster", action="store_true", default=None,
                help="keep the cluster after the session (default: keep locally, delete under CI)")
    g.addoption("--delete-cluster", action="store_true", default=False,
                help="delete the cluster after the session if this session created it")
    g.addoption("--no-reuse", action="store_true", default=env_flag("CI"),
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
    g.addoption("--keep-cluster-on-failure", action="store_true",
                default=env_flag("HARNESS_KEEP_CLUSTER_ON_FAILURE"),
                help="keep a cluster this session created if any test failed (to inspect it)")


@dataclass(frozen=True)
class E2ESettings:
    platform: PlatformSettings
    keep_cluster: bool
    keep_cluster_on_failure: bool
    bundle_dir: Path
    job_timeout: float


@pytest.fixture(scope="session")
def e2e_settings(pytestconfig: pytest.Config) -> E2ESettings:
    opt = pytestconfig.getoption
    keep = opt("--keep-cluster")
    if keep is None:
        keep = not env_flag("CI")
    if opt("--delete-cluster"):
        keep = False
    return E2ESettings(
        platform=PlatformSettings(
            cluster_name=opt("--cluster-name"), reuse=not opt("--no-reuse"), node_image=opt("--node-image"),
            node_image_mode=opt("--node-image-mode"), kind_bin=opt("--kind-bin"), kubectl_bin=opt("--kubectl-bin"),
        ),
        keep_cluster=bool(keep),
        keep_cluster_on_failure=bool(opt("--keep-cluster-on-failure")),
        bundle_dir=Path(opt("--bundle-dir")),
        job_timeout=float(opt("--job-timeout")),
    )


@pytest.fixture(scope="session")
def e2e_preflight(pytestconfig: pytest.Config, docker_ready: None) -> None:
    """Docker, privileged containers and disk checked in a second, before any build or cluster work."""
    failures = doctor.preflight_e2e()
    if failures:
        missing_prerequisite(pytestconfig, "preflight failed:\n" + doctor.render(failures))


@pytest.fixture(scope="session")
def e2e_platform(
    request: pytest.FixtureRequest, e2e_preflight: None, e2e_settings: E2ESettings, base_image: str,
    trainer_image: images.BuiltImage, phases: Phases,
) -> Iterator[Platform]:
    """The cluster (created or reused), with the controller and server images built while it boots.

    ``trainer_image`` is required here because the customjob backend builds the
    project image FROM the MLproject's ``docker_env.image``.
    """
    platform = bring_up_cluster(e2e_settings.platform, base_image=base_image, phases=phases)
    try:
        yield platform
    finally:
        failed = request.session.testsfailed > 0
        keep = e2e_settings.keep_cluster or (failed and e2e_settings.keep_cluster_on_failure)
        if platform.cluster.created and not keep:
            with phases.phase("delete cluster"):
                platform.kind.delete()
                forget_cluster(platform.kind.name)


@pytest.fixture(scope="session")
def e2e_stack(e2e_platform: Platform, phases: Phases) -> Stack:
    """CRD + controller + MLflow server deployed and answering."""
    return deploy(e2e_platform, phases=phases)


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


@pytest.fixture
def project_runner(e2e_stack: Stack, e2e_namespace: str, e2e_settings: E2ESettings,
                   tmp_path: Path) -> ProjectRunner:
    """Runs the MLflow project through a CustomJob in this test's namespace (see ProjectRunner)."""
    return ProjectRunner(e2e_stack, e2e_namespace, tmp_path, job_timeout=e2e_settings.job_timeout)


@pytest.fixture
def e2e_mlflow_client(e2e_stack: Stack) -> MlflowClient:
    """A client of the in-cluster tracking server."""
    return MlflowClient(tracking_uri=e2e_stack.tracking_uri)
