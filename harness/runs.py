"""Run an MLflow project the way a user does: ``mlflow run <project> --backend customjob``.

The one driver of ``mlflow run`` for the pytest fixtures, the CLI and the
docker tier. :class:`ProjectRunner` writes the backend config for one
namespace and cluster, calls MLflow's own CLI in a child process (its own
environment, never the test process's), finds the run it created and, with
:meth:`ProjectRunner.run`, follows the workload object and the MLflow run to
their end, for any workload kind (:mod:`harness.workloads`). For kinds whose
controller does not close MLflow runs, the driver makes sure the run is
closed from the workload's end (normally the backend already did it), and for
every kind the pods' logs are attached to the run. The ``project_run`` fixture
hands out :meth:`ProjectRunner.run`.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from harness import _exec, dockercli
from harness._errors import CommandError
from harness.settings import ProjectSpec, find_project
from harness.stack import Stack
from harness.waits import wait_for_workload, wait_run_terminal, wait_workload, workloads
from harness.workloads import closing, paths, presets, state
from harness.workloads.api import KindNotServed, WorkloadClient
from harness.workloads.kind import WorkloadKind

__all__ = ["ProjectRun", "ProjectRunner", "mlflow_run"]

PICKUP_TIMEOUT = 120.0
"""Seconds a controller may take to give a new object its first status."""
BUILD_ALLOWANCE = 1200.0
"""Seconds ``mlflow run`` may take beyond the job timeout (fetch, image build, delivery): for kinds whose
run the submitter closes, the child waits for the workload's end too."""


def controller_hint(stack: Stack) -> str:
    """Where to look when no controller answers: the stack's Deployments and their logs."""
    kube = stack.cluster.kube
    return "; ".join(f"kubectl --kubeconfig {kube.kubeconfig} -n {ns} logs deploy/{name}"
                     for ns, name in stack.controllers) or "no controller deployed"


def mlflow_run(project_dir: Path, *args: str, tracking_uri: str, cwd: Path | None = None, timeout: float = 1200,
               check: bool = True, extra_env: Mapping[str, str] | None = None) -> _exec.CompletedProcess[str]:
    """``python -m mlflow run <project_dir> <args>`` in a child process with ``MLFLOW_TRACKING_URI`` set."""
    env = {"MLFLOW_TRACKING_URI": tracking_uri, **dockercli.docker_env(), **(extra_env or {})}
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
    """One finished project run: its MLflow run, its workload object, and how to read both."""

    project: str
    run_id: str
    experiment: str
    status: str
    """MLflow run status: FINISHED, FAILED or KILLED."""
    customjob: Mapping[str, Any]
    """The workload object as it ended (a CustomJob for the stub; the name stays for tests written for it)."""
    namespace: str
    tracking_uri: str
    output: str = field(repr=False, default="")
    kind: str = "customjob"
    """The workload kind's name (``customjob``, ``job``, ``pytorchjob``, a team's own)."""
    workload_state: str = ""
    """What the kind's status rules said at the end: FINISHED, FAILED (or KILLED)."""
    closed_by: str = "workload"
    """``submitter``: the harness's side ended the run (backend or driver); ``workload``: it was already
    ended when the workload was (by the training code itself, or by an MLflow-aware controller)."""
    logs: tuple[str, ...] = ()
    """Artifact paths of the pods' logs attached to the run (``logs/<pod>/<container>.txt``)."""

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)

    @property
    def workload(self) -> Mapping[str, Any]:
        return self.customjob

    @property
    def name(self) -> str:
        return str(self.customjob["metadata"]["name"])

    @property
    def phase(self) -> str:
        return str((self.customjob.get("status") or {}).get("phase"))


def _local_image_id(ref: str) -> str | None:
    """The local docker image id of ``ref`` (a content tag, or a pushed digest), None if Docker lacks it."""
    try:
        return dockercli.image_id(ref) or None
    except CommandError:
        return None


def image_of(kind: WorkloadKind, obj: Mapping[str, Any]) -> str | None:
    """The image the object's (first) run container runs."""
    found = paths.find(obj, kind.containers)
    return str(found[0][1].get("image")) if found and isinstance(found[0][1], Mapping) else None


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
    workload_kinds: Sequence[WorkloadKind] = ()
    """The settings' own workload definitions (besides the presets)."""

    @property
    def client(self) -> MlflowClient:
        """A client of the tracking server the stack runs."""
        return MlflowClient(tracking_uri=self.stack.tracking_uri)

    def spec(self, project: ProjectSpec | str | None) -> ProjectSpec:
        if isinstance(project, ProjectSpec):
            return project
        if project is None:
            if self.projects:
                return self.projects[0]  # the first configured project is the default one
            raise ValueError("no project is configured: name a directory with an MLproject, or configure one")
        found = find_project(self.projects, project)
        if found is None:
            raise ValueError(f"no configured project {project!r}; configured: {[p.name for p in self.projects]}")
        return found

    def workloads(self, kind: WorkloadKind | str) -> WorkloadClient:
        """A client of ``kind``'s objects (a kind, or a preset/defined name) in this runner's namespace."""
        if isinstance(kind, str):
            kind = presets.resolve(kind, self.workload_kinds)
        return workloads(self.stack.cluster.kube, kind, self.namespace)

    def backend_config(self, project: ProjectSpec) -> Path:
        """The ``--backend-config`` file for this namespace and cluster."""
        cluster = self.stack.cluster
        kind = project.workload
        cfg: dict[str, Any] = {
            "kubeconfig": str(cluster.kube.kubeconfig),
            "namespace": self.namespace,
            "template-path": str(project.template),
            "tracking-uri": self.stack.pod_tracking_uri,
            "timeout-seconds": int(self.job_timeout),
            # A preset by name; a settings-defined kind travels whole (the backend has no settings).
            "workload": kind.name if presets.PRESETS.get(kind.name) == kind else kind.to_mapping(),
        }
        if cluster.kube.context:
            cfg["kube-context"] = cluster.kube.context
        cfg.update(cluster.images.backend_config(project.name))  # the backend delivers as the stack's images went
        cfg.update(project.backend_config)
        path = self.workdir / f"backend-config-{project.name}.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def mlflow_run(self, *params: str, project: ProjectSpec | str | None = None, backend: str = "customjob",
                   extra: tuple[str, ...] = (), check: bool = True,
                   experiment: str | None = None) -> tuple[str, _exec.CompletedProcess[str]]:
        """``mlflow run <project> -P k=v ...`` in a fresh experiment; returns (experiment name, process).

        ``backend="local"`` runs the same project with MLflow's local (docker)
        backend against the same tracking server, for comparisons.
        """
        spec = self.spec(project)
        experiment = experiment or self.new_experiment()
        args = ["--experiment-name", experiment, "-e", spec.entry_point]
        if backend == "customjob":
            args += ["--backend", "customjob", "--backend-config", str(self.backend_config(spec))]
        for p in params:
            args += ["-P", p]
        try:
            proc = mlflow_run(spec.path, *args, *extra, tracking_uri=self.stack.tracking_uri, cwd=self.workdir,
                              check=check, timeout=self.job_timeout + BUILD_ALLOWANCE)
        except BaseException as exc:
            if backend == "customjob" and not (isinstance(exc, CommandError) and exc.returncode > 0):
                # Interrupted or timed out: the child was killed before it could clean up after itself.
                self._abandon(spec.workload, experiment, f"mlflow run ended early: {type(exc).__name__}")
            raise
        if backend == "customjob" and self.on_image is not None and proc.returncode == 0:
            found = self._found(spec.workload, experiment)
            ref = image_of(spec.workload, found) if found is not None else None
            if ref is not None:
                self.on_image(spec.name, ref, _local_image_id(ref))
        return experiment, proc

    def _abandon(self, kind: WorkloadKind, experiment: str, why: str) -> None:
        """Delete what a killed ``mlflow run`` submitted and end its open runs KILLED; never raises."""
        try:
            exp = self.client.get_experiment_by_name(experiment)
            for found in self.client.search_runs([exp.experiment_id]) if exp is not None else []:
                run_id = str(found.info.run_id)
                if found.info.status in state.TERMINAL:
                    continue
                client = self.workloads(kind)
                obj = client.for_run(run_id)
                if obj is not None:
                    client.delete(str(obj["metadata"]["name"]))
                closing.close_run(self.client, run_id, "KILLED", why, failure_tag=kind.failure_tag)
                print(f"harness: ended run {run_id} KILLED ({why})"
                      + (f"; deleted {kind.kind} {self.namespace}/{obj['metadata']['name']}" if obj else ""),
                      file=sys.stderr)
        except Exception as exc:
            print(f"harness: could not clean up after the interrupted mlflow run of {experiment}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)

    def _found(self, kind: WorkloadKind, experiment: str) -> dict[str, Any] | None:
        """The object of the one run in ``experiment``, if both exist (a kind the cluster lacks: none)."""
        exp = self.client.get_experiment_by_name(experiment)
        found = self.client.search_runs([exp.experiment_id]) if exp is not None else []
        if len(found) != 1:
            return None
        try:
            return self.workloads(kind).for_run(str(found[0].info.run_id))
        except KindNotServed:
            return None

    def only_run_id(self, experiment: str) -> str:
        return only_run_id(self.client, experiment)

    def run(self, project: ProjectSpec | str | None = None, /, **params: object) -> ProjectRun:
        """Run ``project`` with its configured params overridden by ``params``; wait until both sides end.

        Returns when the workload ended and the MLflow run is FINISHED/FAILED/KILLED,
        its pods' logs attached. A failed job is returned, not raised: assert on it
        (``assert_run``) so the failure message quotes the run. A submission that
        never created its object (a build error, a refused template) raises
        :class:`~harness._errors.CommandError` with ``mlflow run``'s output.
        """
        spec = self.spec(project)
        spec.check_params(params)  # a typo fails here, not as an unknown --flag in the pod
        kind = spec.workload
        merged = {**spec.params, **{k: str(v) for k, v in params.items()}}
        experiment = self.new_experiment()
        try:
            return self._run(spec, merged, experiment)
        except (KeyboardInterrupt, SystemExit) as exc:
            # A signal can land after `mlflow run` returned (a terminal's Ctrl-C reaches it too, and it may exit
            # first, before or in the middle of its own cancel): whatever is still open in the experiment is ended.
            self._abandon(kind, experiment, f"interrupted: {type(exc).__name__}")
            raise

    def new_experiment(self) -> str:
        """A fresh experiment name in this runner's namespace (one per ``mlflow run``)."""
        return f"{self.namespace}-{uuid.uuid4().hex[:6]}"

    def _run(self, spec: ProjectSpec, merged: Mapping[str, str], experiment: str) -> ProjectRun:
        kind = spec.workload
        # Kinds whose controller does not close runs make `mlflow run` wait and exit 1 on a failed run:
        # that is a result to return, not an error, once the object exists.
        _, proc = self.mlflow_run(*(f"{k}={v}" for k, v in merged.items()), project=spec, check=False,
                                  experiment=experiment)
        client = self.workloads(kind)
        if proc.returncode != 0 and self._found(kind, experiment) is None:
            raise CommandError(proc.args, proc.returncode, proc.stdout or "", proc.stderr or "")
        run_id = self.only_run_id(experiment)
        found = wait_for_workload(client, run_id)
        name = found["metadata"]["name"]
        # A controller that never reconciles (no RBAC, crash loop, wrong watch) fails in two minutes, not at
        # the job timeout: any status at all means it picked the object up.
        wait_workload(client, name, timeout=min(PICKUP_TIMEOUT, self.job_timeout),
                      until=lambda obj: bool(obj.get("status")),
                      what=f"a controller to pick up {kind.kind} {self.namespace}/{name}",
                      hint=f"no controller has reconciled it; check the controller's logs and RBAC: "
                           f"{controller_hint(self.stack)}")
        done = wait_workload(client, name, timeout=self.job_timeout)
        ended = state.run_state(kind, done)
        closed_by = "workload"
        attached = closing.attach_logs(self.client, run_id, client, done)
        if kind.closes_run == "submitter":
            reason = None if ended == "FINISHED" else closing.explain_failure(client, done)
            if closing.close_run(self.client, run_id, ended, reason, failure_tag=kind.failure_tag):
                closed_by = "submitter"
        status = wait_run_terminal(self.client, run_id, timeout=120)
        tags = self.client.get_run(run_id).data.tags
        if tags.get(closing.CLOSED_BY_TAG) == "submitter":
            closed_by = "submitter"
        logs = tuple(closing.artifact_files(self.client, run_id)) if attached or closing.LOGS_TAG in tags else ()
        return ProjectRun(project=spec.name, run_id=run_id, experiment=experiment, status=status, customjob=done,
                          namespace=self.namespace, tracking_uri=self.stack.tracking_uri,
                          output=(proc.stdout or "") + (proc.stderr or ""), kind=kind.name, workload_state=ended,
                          closed_by=closed_by, logs=logs)

    def customjob(self, run_id: str) -> dict[str, Any] | None:
        """The stub CustomJob of ``run_id`` in this namespace (None if none yet)."""
        return self.workloads("customjob").for_run(run_id)
