"""Run an MLflow project the way a user does: ``mlflow run <project> --backend customjob``.

The one driver of ``mlflow run`` for the pytest fixtures, the CLI and the
docker tier. :class:`ProjectRunner` writes the backend config for one
namespace and cluster, calls MLflow's own CLI in a child process (its own
environment, never the test process's), finds the run it created and, with
:meth:`ProjectRunner.run`, follows the CustomJob and the MLflow run to their
end. The ``project_run`` fixture hands out :meth:`ProjectRunner.run`.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from harness import _exec, contract, dockercli
from harness._errors import CommandError
from harness.settings import ProjectSpec, find_project
from harness.stack import Stack
from harness.waits import customjob_for_run, wait_customjob, wait_for_customjob, wait_run_terminal

__all__ = ["ProjectRun", "ProjectRunner", "mlflow_run"]

PICKUP_TIMEOUT = 120.0
"""Seconds a controller may take to give a new CustomJob its first status."""


def controller_hint(stack: Stack) -> str:
    """Where to look when no controller answers: the stack's Deployments and their logs."""
    kube = stack.cluster.kube
    return "; ".join(f"kubectl --kubeconfig {kube.kubeconfig} -n {ns} logs deploy/{name}"
                     for ns, name in stack.controllers) or "no controller deployed"


def mlflow_run(project_dir: Path, *args: str, tracking_uri: str, cwd: Path | None = None, timeout: float = 1200,
               check: bool = True) -> _exec.CompletedProcess[str]:
    """``python -m mlflow run <project_dir> <args>`` in a child process with ``MLFLOW_TRACKING_URI`` set."""
    env = {"MLFLOW_TRACKING_URI": tracking_uri, **dockercli.docker_env()}  # MLflow builds with the Docker SDK
    return _exec.run([sys.executable, "-m", "mlflow", "run", str(project_dir), *args],
                     extra_env=env, cwd=cwd, timeout=timeout, check=check)


def only_run_id(client: MlflowClient, experiment: str) -> str:
    """The id of the single run in ``experiment`` (fails loudly on none or several)."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, f"expected one run in {experiment}, got {[r.info.run_id for r in runs]}"
    return str(runs[0].info.run_id)


@dataclass(frozen=True)
class ProjectRun:
    """One finished project run: its MLflow run, its CustomJob, and how to read both."""

    project: str
    run_id: str
    experiment: str
    status: str
    """MLflow run status: FINISHED, FAILED or KILLED."""
    customjob: Mapping[str, Any]
    namespace: str
    tracking_uri: str
    output: str = field(repr=False, default="")

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)

    @property
    def phase(self) -> str:
        return str((self.customjob.get("status") or {}).get("phase"))


def _local_image_id(ref: str) -> str | None:
    """The local docker image id of ``ref`` (a content tag, or a pushed digest), None if Docker lacks it."""
    try:
        return dockercli.image_id(ref) or None
    except CommandError:
        return None


@dataclass
class ProjectRunner:
    """Submits configured projects through the customjob backend into ``namespace``."""

    stack: Stack
    namespace: str
    workdir: Path
    projects: tuple[ProjectSpec, ...] = ()
    job_timeout: float = 900.0
    on_image: Callable[[str, str, str | None], None] | None = None
    """Told (project, image reference, local image id or None) of every image a :meth:`run` ran."""

    @property
    def client(self) -> MlflowClient:
        """A client of the tracking server the stack runs."""
        return MlflowClient(tracking_uri=self.stack.tracking_uri)

    def spec(self, project: ProjectSpec | str | None) -> ProjectSpec:
        if isinstance(project, ProjectSpec):
            return project
        if project is None:
            if len(self.projects) == 1:
                return self.projects[0]
            raise ValueError(f"name the project: {[p.name for p in self.projects]}")
        found = find_project(self.projects, project)
        if found is None:
            raise ValueError(f"no configured project {project!r}; configured: {[p.name for p in self.projects]}")
        return found

    def backend_config(self, project: ProjectSpec) -> Path:
        """The ``--backend-config`` file for this namespace and cluster."""
        cluster = self.stack.cluster
        cfg: dict[str, Any] = {
            "kubeconfig": str(cluster.kube.kubeconfig),
            "namespace": self.namespace,
            "template-path": str(project.template),
            "tracking-uri": self.stack.pod_tracking_uri,
            "timeout-seconds": int(self.job_timeout),
        }
        if cluster.kube.context:
            cfg["kube-context"] = cluster.kube.context
        route = cluster.images
        if route.mode == "kind":
            cfg.update({"image-delivery": "kind", "kind-cluster": route.kind_cluster,
                        "kind-binary": str(route.kind_bin)})
        else:
            cfg.update({"image-delivery": "registry", "repository-uri": f"{route.registry}/{project.name}"})
        cfg.update(project.backend_config)
        path = self.workdir / f"backend-config-{project.name}.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def mlflow_run(self, *params: str, project: ProjectSpec | str | None = None, backend: str = "customjob",
                   extra: tuple[str, ...] = (), check: bool = True) -> tuple[str, _exec.CompletedProcess[str]]:
        """``mlflow run <project> -P k=v ...`` in a fresh experiment; returns (experiment name, process).

        ``backend="local"`` runs the same project with MLflow's local (docker)
        backend against the same tracking server, for comparisons.
        """
        spec = self.spec(project)
        experiment = f"{self.namespace}-{uuid.uuid4().hex[:6]}"
        args = ["--experiment-name", experiment, "-e", spec.entry_point]
        if backend == "customjob":
            args += ["--backend", "customjob", "--backend-config", str(self.backend_config(spec))]
        for p in params:
            args += ["-P", p]
        proc = mlflow_run(spec.path, *args, *extra, tracking_uri=self.stack.tracking_uri, cwd=self.workdir,
                          check=check)
        if backend == "customjob" and proc.returncode == 0 and self.on_image is not None:
            found = self.customjob(self.only_run_id(experiment))
            if found is not None:
                self.on_image(spec.name, found["spec"]["image"], _local_image_id(found["spec"]["image"]))
        return experiment, proc

    def only_run_id(self, experiment: str) -> str:
        return only_run_id(self.client, experiment)

    def run(self, project: ProjectSpec | str | None = None, /, **params: object) -> ProjectRun:
        """Run ``project`` with its configured params overridden by ``params``; wait until both sides end.

        Returns when the CustomJob is Succeeded/Failed and the MLflow run is
        FINISHED/FAILED/KILLED. A failed job is returned, not raised: assert on
        it (``assert_run``) so the failure message quotes the run.
        """
        spec = self.spec(project)
        merged = {**spec.params, **{k: str(v) for k, v in params.items()}}
        experiment, proc = self.mlflow_run(*(f"{k}={v}" for k, v in merged.items()), project=spec)
        run_id = self.only_run_id(experiment)
        kube = self.stack.cluster.kube
        found = wait_for_customjob(kube, self.namespace, run_id)
        name = found["metadata"]["name"]
        # A controller that never reconciles (no RBAC, crash loop, wrong watch) fails in two minutes, not at
        # the job timeout: any phase at all means it picked the CustomJob up.
        wait_customjob(kube, self.namespace, name, timeout=min(PICKUP_TIMEOUT, self.job_timeout),
                       phases=frozenset(contract.PHASES),
                       hint=f"no controller has reconciled it; check the controller's logs and RBAC: "
                            f"{controller_hint(self.stack)}")
        done = wait_customjob(kube, self.namespace, name, timeout=self.job_timeout)
        status = wait_run_terminal(self.client, run_id, timeout=120)
        return ProjectRun(project=spec.name, run_id=run_id, experiment=experiment, status=status, customjob=done,
                          namespace=self.namespace, tracking_uri=self.stack.tracking_uri,
                          output=(proc.stdout or "") + (proc.stderr or ""))

    def customjob(self, run_id: str) -> dict[str, Any] | None:
        return customjob_for_run(self.stack.cluster.kube, self.namespace, run_id)
