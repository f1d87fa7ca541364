"""The plugin's fixtures: thin wrappers over package resources that also work from scripts and the CLI.

Session scope: settings → images / tracking server (docker tier) or the
:class:`~harness.testbed.Testbed` (cluster ∥ image builds, then the stack).
Test scope: a namespace of its own (labelled as the harness's, evidence
bundle on failure), a runner for ``mlflow run --backend customjob`` into it,
and ``project_run`` to run a configured project and get its finished run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import manifest
from harness._errors import HarnessError
from harness.pytest_plugin.shared import XdistRun, attach, bed_record
from harness.pytest_plugin.state import (
    MANIFEST,
    PHASES,
    SETTINGS,
    failed,
    missing_prerequisite,
    note_ending,
    record_manifest,
    shielded,
)
from harness.settings import Settings
from harness.timing import Phases

# The plugin loads in every pytest run of the environment: what only a tier's fixtures need (the Docker
# SDK, MLflow, the kubernetes client: seconds of imports) is imported inside them, when they are used.
if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from harness import images
    from harness.kubeapi import Kube
    from harness.runs import ProjectRun, ProjectRunner
    from harness.stack import Stack
    from harness.testbed import Testbed
    from harness.tracking import LocalTrackingServer

__all__ = [
    "base_image",
    "docker_ready",
    "e2e_kube",
    "e2e_mlflow_client",
    "e2e_namespace",
    "e2e_preflight",
    "e2e_stack",
    "harness_images",
    "harness_settings",
    "local_tracking_server",
    "phases",
    "project_run",
    "project_runner",
    "testbed",
]


@pytest.fixture(scope="session")
def harness_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings ([tool.mlflow-crd-harness] < env HARNESS_* < --harness-* options)."""
    return pytestconfig.stash[SETTINGS]


@pytest.fixture(scope="session")
def phases(pytestconfig: pytest.Config) -> Phases:
    """The session's phase timer (summarised at the end of the run, and in JUnit properties)."""
    return pytestconfig.stash[PHASES]


@pytest.fixture(scope="session")
def docker_ready(pytestconfig: pytest.Config) -> None:
    """Docker answers, or the tier is skipped (failed under no-skip) with the fix."""
    import docker.errors

    from harness import dockercli

    try:
        dockercli.sdk_client(timeout=10).ping()
    except (docker.errors.DockerException, OSError) as exc:
        missing_prerequisite(pytestconfig, f"Docker engine not reachable ({exc}); fix: start Docker "
                                           "(on Debian as root: scripts/docker-up.sh)")


@pytest.fixture(scope="session")
def base_image(harness_settings: Settings, docker_ready: None, phases: Phases) -> str:
    """The image the harness's Dockerfiles build FROM (public, or built registry-less)."""
    from harness import baseimage

    with phases.phase("base image") as note:
        choice = baseimage.resolve_base_image(mode=harness_settings.build.base_mode,
                                              override=harness_settings.build.base_image, log=phases.log)
        note["note"] = f"{choice.source}: {choice.image}"
    return choice.image


@pytest.fixture(scope="session")
def harness_images(harness_settings: Settings, base_image: str, phases: Phases) -> dict[str, images.BuiltImage]:
    """Every configured image, built (content-hash tags; reused when unchanged), by name."""
    from harness import images

    built = {}
    for spec in harness_settings.images:
        with phases.phase(f"build {spec.name} image") as note:
            built[spec.name] = images.build_spec(spec, base_image=base_image, log=phases.log)
            note["note"] = built[spec.name].summary()
    return built


@pytest.fixture(scope="session")
def local_tracking_server(tmp_path_factory: pytest.TempPathFactory, phases: Phases) -> Iterator[LocalTrackingServer]:
    """A real ``mlflow server`` on this host (sqlite, proxied artifacts, explicit allowed hosts).

    It listens where ``mlflow run`` containers reach it under the host's own URI:
    the Docker bridge's gateway on a Linux engine (no host networking), else
    loopback. Pass ``*server.docker_args`` to ``mlflow run`` (empty on Linux).
    """
    from harness.tracking import LocalTrackingServer

    with phases.phase("start local MLflow server") as note:
        server = LocalTrackingServer.for_containers(tmp_path_factory.mktemp("mlflow-server")).start()
        shown = f" (containers: {' '.join(server.docker_args)})" if server.docker_args else ""
        note["note"] = f"{server.uri}{shown}"
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def e2e_preflight(pytestconfig: pytest.Config, docker_ready: None) -> None:
    """Docker, privileged containers and disk checked in a second, before any build or cluster work."""
    from harness import doctor

    failures = doctor.preflight_e2e()
    if failures:
        missing_prerequisite(pytestconfig, "preflight failed:\n" + doctor.render(failures))


@pytest.fixture(scope="session")
def testbed(request: pytest.FixtureRequest, e2e_preflight: None, harness_settings: Settings,
            phases: Phases) -> Iterator[Testbed]:
    """The cluster (kind: created or reused; or existing), the configured images and the stack, ready.

    Torn down at the end of the session by the keep-cluster policy; the last
    lines of the session say what was kept and how to reach it. Under
    ``pytest -n N`` the workers share one test bed (:mod:`.shared`): the first
    brings it up, the others attach, and it ends once, after all of them.
    """
    from harness.testbed import Testbed

    run = XdistRun.of_session(request.config, harness_settings.state_dir)
    if run is None:
        bed = Testbed(harness_settings, phases=phases, log=phases.log)
        bed.start()
        record_manifest(request.config, bed.manifest)
        try:
            yield bed
        finally:
            with shielded(request.config):  # a SIGTERM now must not cut `kind delete` short
                kept = bed.finish(failed=request.session.testsfailed > 0)
            _note_ending(request.config, bed, kept)
        return
    with run.bringup():
        published = run.published()
        owner = published is None
        if published is None:
            bed = Testbed(harness_settings, phases=phases, log=phases.log)
            try:
                bed.start()
            except BaseException as exc:
                run.publish(error=f"{type(exc).__name__}: {exc}")
                raise
            run.publish(bed=bed_record(bed))
        elif "error" in published:
            raise HarnessError(f"the shared test bed failed to start on another xdist worker: {published['error']}")
        else:
            bed = attach(harness_settings, published["bed"], phases=phases, log=phases.log)
            phases.log(f"xdist {run.worker}: attached to the test bed on cluster {bed.cluster and bed.cluster.name}")
        record_manifest(request.config, bed.manifest)
    try:
        yield bed
    finally:
        if owner:
            bound = max(3600.0, 4 * harness_settings.runs.job_timeout)
            failures, all_done = request.session.testsfailed, False
            try:
                failures += run.wait_for_others(bound, phases.log)
                all_done = True
            finally:  # a worker that hung past the bound, or a Ctrl-C while waiting: the bed still ends
                with shielded(request.config):
                    kept = bed.finish(failed=failures > 0 or not all_done)
                _note_ending(request.config, bed, kept)


def _note_ending(config: pytest.Config, bed: Testbed, kept: bool) -> None:
    cluster, stack = bed.cluster, bed.stack
    if cluster is None:
        return
    if cluster.shared:
        note_ending(config, f"{cluster.provider} cluster {cluster.name}: untouched; harness namespaces "
                            f"{'kept' if kept else 'removed'}")
        if stack is not None and stack.cluster_objects:
            from harness.clusters import MANAGED_BY, MANAGED_BY_LABEL

            note_ending(config, f"  left in place, shared by every session on it: {', '.join(stack.cluster_objects)} "
                                f"(labelled {MANAGED_BY_LABEL}={MANAGED_BY}; delete them when no one needs them)")
        return
    if kept or not cluster.created:
        note_ending(config, f"{cluster.provider} cluster {cluster.name}: kept (settings keep-cluster="
                            f"{bed.settings.cluster.keep})")
        note_ending(config, f"  export KUBECONFIG={cluster.kube.kubeconfig}")
        if stack is not None:
            note_ending(config, f"  MLflow UI: {stack.tracking_uri}")
        note_ending(config, f"  delete it: python -m harness down --cluster-name {cluster.name}")
    else:
        note_ending(config, f"{cluster.provider} cluster {cluster.name}: deleted")


@pytest.fixture(scope="session")
def e2e_stack(testbed: Testbed) -> Stack:
    """The deployed stack: CRDs Established, controllers rolled out, the tracking server answering."""
    assert testbed.stack is not None
    return testbed.stack


@pytest.fixture(scope="session")
def e2e_kube(e2e_stack: Stack) -> Kube:
    """Typed Kubernetes API clients of the test cluster (``.core``, ``.batch``, ``.custom``, ...)."""
    return e2e_stack.cluster.kube


@pytest.fixture
def e2e_namespace(request: pytest.FixtureRequest, testbed: Testbed, e2e_stack: Stack,
                  harness_settings: Settings) -> Iterator[str]:
    """A fresh namespace per test, labelled as the harness's; on failure its evidence bundle is written.

    A failed test's namespace is kept when the cluster is kept, to inspect.
    """
    from harness.clusters import MANAGED_BY, MANAGED_BY_LABEL, SESSION_LABEL
    from harness.evidence import bundle_dir_for, collect_bundle
    from harness.testbed import keep_cluster

    kube = e2e_stack.cluster.kube
    name = f"{harness_settings.stack.namespace_prefix}-{uuid.uuid4().hex[:8]}"
    kube.ensure_namespace(name, labels={MANAGED_BY_LABEL: MANAGED_BY, SESSION_LABEL: testbed.session})
    yield name
    if failed(request.node):
        dest = bundle_dir_for(harness_settings.bundle_dir, request.node.nodeid)
        collect_bundle(dest, kube, namespaces=[name], export_logs=e2e_stack.cluster.export_logs,
                       system_namespaces=e2e_stack.namespaces, kinds=harness_settings.workloads)
        so_far: dict[str, Any] = request.config.stash.get(MANIFEST, {})
        manifest.write(dest / "run-manifest.json", so_far)
        note_ending(request.config, f"evidence of {request.node.nodeid}: {dest}")
        if keep_cluster(harness_settings, failed=True):
            return
    kube.delete_namespace(name)


@pytest.fixture
def project_runner(request: pytest.FixtureRequest, e2e_stack: Stack, e2e_namespace: str,
                   harness_settings: Settings, tmp_path: Path) -> ProjectRunner:
    """Runs configured MLflow projects with ``mlflow run --backend customjob`` into this test's namespace.

    Every project image a run used goes into the session's run manifest.
    """
    from harness.runs import ProjectRunner

    def record(project: str, ref: str, image_id: str | None) -> None:
        record_manifest(request.config, {"images": {f"project {project}": {"ref": ref, "id": image_id}}})

    return ProjectRunner(e2e_stack, e2e_namespace, tmp_path, projects=harness_settings.projects,
                         job_timeout=harness_settings.runs.job_timeout, on_image=record,
                         workload_kinds=harness_settings.workloads)


@pytest.fixture
def project_run(project_runner: ProjectRunner, harness_settings: Settings,
                phases: Phases) -> Callable[..., ProjectRun]:
    """``project_run("name-or-path", param=value, ...)`` → the finished :class:`~harness.runs.ProjectRun`.

    The project is a configured one (by name or path) or any directory with an
    MLproject (it then gets the stub CustomJob template). Params override the
    configured ones. It runs as its workload kind (the project's ``workload``, or
    the kind its template declares). Assert on the result with ``harness.assert_run``.
    """
    def run(project: str | None = None, /, **params: object) -> ProjectRun:
        spec = harness_settings.project(project) if project is not None else project_runner.spec(None)
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        with phases.phase(f"project {spec.name} {shown}".strip()) as note:
            result = project_runner.run(spec, **params)
            note["note"] = (f"{result.status}, {spec.workload.kind} {result.workload_state}, run {result.run_id} "
                            f"(closed by {result.closed_by})")
        return result

    return run


@pytest.fixture
def e2e_mlflow_client(e2e_stack: Stack) -> MlflowClient:
    """A client of the stack's tracking server."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=e2e_stack.tracking_uri)
