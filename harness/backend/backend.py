"""``CustomJobBackend``: the MLflow project backend behind ``--backend customjob``.

``run()`` follows MLflow's own kubernetes branch (fetch, load, create the run,
build the docker image with the project code inside) but submits an object of
any *workload kind* (:mod:`harness.workloads`: the stub ``CustomJob``, a
``batch/v1`` ``Job``, a Kubeflow ``PyTorchJob``, a team's own CRD) instead of
only a batch Job, and differs on purpose in five places:

* argv is the entry point's command split once (see :mod:`.argv`), not
  re-quoted token by token;
* the template is rendered on the parsed YAML (see :mod:`harness.workloads.render`);
* the kubernetes client is built from an explicit kubeconfig/context and never
  touches the process-global configuration, and passes no ``pretty=True``
  (which kubernetes>=37 rejects);
* it works without a registry (``image-delivery: kind``);
* for kinds whose controller knows nothing of MLflow, the run is ended by the
  submitter from the workload's status, with the pods' logs attached.

Errors are split in two phases. Everything checkable without side effects
(backend config, MLproject, parameters, template and workload definition,
tracking URI, docker, kubeconfig) is checked *before* the MLflow run is
created, so a typo leaves no run behind. After the run exists, every failure
(kind not served, cluster unreachable, build, image delivery, API rejection)
marks it FAILED with the kind's failure-reason tag and re-raises.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from mlflow.exceptions import ExecutionException, MlflowException
from mlflow.projects import docker as mlflow_docker
from mlflow.projects import utils as project_utils
from mlflow.projects.backend.abstract_backend import AbstractBackend
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_DOCKER_IMAGE_ID,
    MLFLOW_DOCKER_IMAGE_URI,
    MLFLOW_PROJECT_ENV,
)

from harness import delivery, quickexit
from harness._errors import DeliveryError
from harness.backend import imageuser, kube, naming
from harness.backend.argv import entry_point_argv
from harness.backend.config import BackendConfig
from harness.backend.errors import BackendConfigError, ImageDeliveryError, ProjectError, TemplateError
from harness.backend.submitted_run import CustomJobSubmittedRun, mark_failed
from harness.workloads import closing, presets, render, stub
from harness.workloads.kind import DefinitionError, WorkloadKind

__all__ = ["CustomJobBackend"]

# Under "mlflow." because MLflow configures only its own logger tree: this way
# `mlflow run` prints our "=== ... ===" progress lines like its own backends do.
_log = logging.getLogger("mlflow.projects.customjob")


class CustomJobBackend(AbstractBackend):
    """Run an MLflow project as a workload object on Kubernetes (entry point ``customjob``)."""

    def run(
        self,
        project_uri: str,
        entry_point: str,
        params: Mapping[str, Any] | None,
        version: str | None,
        backend_config: Mapping[str, Any] | None,
        tracking_uri: str,
        experiment_id: str,
    ) -> CustomJobSubmittedRun:
        """Build, deliver and submit; return at once with a handle on the object (or wait, see ``wait``)."""
        quickexit.skip_final_collection()  # `mlflow run` returning is on the caller's clock; see the module
        cfg = BackendConfig.from_dict(backend_config)
        str_params = {str(k): str(v) for k, v in (params or {}).items()}

        # Phase 1: no side effects yet, so failures leave nothing behind.
        work_dir = project_utils.fetch_and_validate_project(project_uri, version, entry_point, str_params)
        project = project_utils.load_project(work_dir)
        if not project.docker_env:
            raise ProjectError(
                "the MLproject must declare docker_env (image: <base image>) to run on Kubernetes; "
                "the project code is baked into an image built from it"
            )
        mlflow_docker.validate_docker_env(project)
        argv = entry_point_argv(project, entry_point, str_params)
        param_values = _param_values(project.get_entry_point(entry_point), str_params)
        try:
            tmpl = render.load(cfg.resolve_template_path(work_dir))
            kind = _workload_kind(cfg, tmpl)
            _refuse_mlflow_pairs(project.docker_env, kind)
            render.check(tmpl, kind, [*render.BASE_PLACEHOLDERS, *(f"params.{k}" for k in param_values)])
        except render.TemplateError as exc:
            raise TemplateError(str(exc)) from exc
        namespace = _namespace(cfg, tmpl)
        waits = _waits(cfg, kind)
        pod_uri = cfg.pod_tracking_uri(tracking_uri)
        _refuse_unreachable(pod_uri)
        _warn_ignored(project.docker_env, cfg)
        mlflow_docker.validate_docker_installation()
        jobs = kube.Workloads.connect(cfg, kind, namespace)
        runs = MlflowClient(tracking_uri)

        # Phase 2: the run exists; any failure marks it FAILED before re-raising.
        active_run = project_utils.get_or_create_run(
            None, project_uri, experiment_id, work_dir, version, entry_point, str_params
        )
        run_id = active_run.info.run_id
        created: dict[str, Any] | None = None
        try:
            runs.set_tag(run_id, MLFLOW_PROJECT_ENV, "docker")
            jobs.preflight()
            stub_kind = (kind.api_version, kind.kind) == (stub.CUSTOMJOB.api_version, stub.CUSTOMJOB.kind)
            check_user = stub_kind or imageuser.demands_image_user(tmpl)
            image = self._build_and_deliver(cfg, project, work_dir, run_id, runs, check_user=check_user)
            run_experiment = str(active_run.info.experiment_id)
            job_name = naming.job_name(project.name, run_id)
            values = {
                "project_name": str(project.name),
                "entry_point": entry_point,
                "image": image.ref,
                "run_id": run_id,
                "experiment_id": run_experiment,
                "tracking_uri": pod_uri,
                "namespace": namespace,
                "job_name": job_name,
                **{f"params.{k}": v for k, v in param_values.items()},
            }
            try:
                body = render.build(tmpl, kind, render.RunValues(
                    job_name=job_name, namespace=namespace, image=image.ref, argv=argv, run_id=run_id,
                    experiment_id=run_experiment, tracking_uri=pod_uri, project_name=str(project.name),
                    env=_docker_env_pairs(project.docker_env), placeholders=values,
                    labels={kind.run_label: run_id}))
            except render.TemplateError as exc:
                raise TemplateError(str(exc)) from exc
            # Before the object exists: an MLflow-aware controller (the stub's) acts only on a run whose tag
            # names its object, and may read the run the moment the object is created.
            runs.set_tag(run_id, closing.WORKLOAD_TAG, closing.workload_tag(body))
            created = jobs.create(body)
            try:  # now with the uid, so a later namesake of this object is not the run's owner
                runs.set_tag(run_id, closing.WORKLOAD_TAG, closing.workload_tag(created))
            except Exception as exc:  # a refinement, not a reason to fail a submitted run
                _log.warning("could not add the uid of its %s to run %s's tag: %s", kind.kind, run_id, exc)
        except BaseException as exc:
            if created is not None:  # interrupted after the object exists: it must not train on, unowned
                _delete_quietly(jobs, str(created.get("metadata", {}).get("name")))
            _fail(runs, run_id, exc, kind)
            raise
        name = created.get("metadata", {}).get("name", body["metadata"]["name"])
        _log.info("=== Submitted %s %s/%s for run %s ===", kind.kind, namespace, name, run_id)
        submitted = CustomJobSubmittedRun(
            run_id=run_id,
            job_name=name,
            jobs=jobs,
            runs=runs,
            kind=kind,
            pods=jobs.client,
            timeout_seconds=cfg.timeout_seconds,
            poll_seconds=cfg.poll_seconds,
        )
        if cfg.synchronous:
            return submitted  # MLflow calls wait() itself
        if not waits and kind.closes_run == "controller":
            # It closes the run when the job ends, but not one it refuses before the job (its policy may forbid
            # calling the tracking server): a few seconds' wait for its verdict, so no run stays RUNNING.
            admitted = _cancelled_on_interrupt(submitted, submitted.wait_admitted)
            if not admitted:
                raise ExecutionException(_failed(runs, run_id, kind))
        if not waits:
            _log.info("=== Not waiting (asynchronous); the %s controller ends run %s when the job ends ===",
                      kind.kind, run_id)
            return submitted
        why = ("its controller does not close MLflow runs" if kind.closes_run == "submitter"
               else "backend config 'wait' is true")
        _log.info("=== Waiting for %s %s/%s to end (%s) ===", kind.kind, namespace, name, why)
        succeeded = _cancelled_on_interrupt(submitted, submitted.wait)
        if not succeeded:
            raise ExecutionException(_failed(runs, run_id, kind))
        _log.info("=== Run %s FINISHED (%s %s/%s succeeded) ===", run_id, kind.kind, namespace, name)
        return submitted

    @staticmethod
    def _build_and_deliver(
        cfg: BackendConfig, project: Any, work_dir: str, run_id: str, runs: MlflowClient, *, check_user: bool
    ) -> delivery.DeliveredImage:
        """Build with the project code inside (always), then get it to the nodes.

        ``check_user``: the pods must run as non-root and take the user from the image, so an
        image that runs as root (or as a user name) is refused here, before it is delivered.
        """
        base_image = str(project.docker_env.get("image"))
        repository = cfg.repository_uri or naming.repository_name(project.name)
        if not cfg.repository_uri and repository == naming.repository_of(base_image):
            # MLflow tags `<repo>[:<sha7>]`; untagged it would overwrite the base image.
            repository = f"{repository}-project"
        if not cfg.mlflow_keys.get("build_image"):
            _log.info("=== Building an image with the project code (always, on Kubernetes) ===")
        started = time.monotonic()
        image = mlflow_docker.build_docker_image(
            work_dir=work_dir,
            repository_uri=repository,
            base_image=base_image,
            run_id=run_id,
            build_image=True,
            docker_auth=cfg.docker_auth(),
        )
        ref = delivery.content_tag(repository, image.id)
        tag = ref.rsplit(":", 1)[1]
        image.tag(repository, tag=tag)
        built = time.monotonic()
        _log.info("=== Built %s in %.1f s ===", ref, built - started)
        if check_user:
            problem = imageuser.root_problem((image.attrs.get("Config") or {}).get("User"), ref)
            if problem:
                raise ProjectError(problem)
        try:
            delivered = cfg.route(repository, client=image.client).deliver(ref)
        except DeliveryError as exc:  # said as MLflow says a failed project run
            raise ImageDeliveryError(str(exc)) from exc
        if delivered.digest is not None:
            runs.set_tag(run_id, MLFLOW_DOCKER_IMAGE_ID, delivered.digest)
        runs.set_tag(run_id, MLFLOW_DOCKER_IMAGE_URI, delivered.ref)
        _log.info("=== Delivered %s (%s) in %.1f s ===", delivered.ref, cfg.image_delivery, time.monotonic() - built)
        return delivered



def _cancelled_on_interrupt(submitted: CustomJobSubmittedRun, wait: Callable[[], bool]) -> bool:
    """``wait()``; on Ctrl-C the object is deleted and the run marked KILLED before the interrupt goes on."""
    try:
        return wait()
    except KeyboardInterrupt:
        _log.warning("=== Interrupted: deleting %s %s/%s and marking run %s KILLED ===",
                     submitted.kind.kind, submitted.namespace, submitted.job_name, submitted.run_id)
        submitted.cancel()
        raise

def _failed(runs: MlflowClient, run_id: str, kind: WorkloadKind) -> str:
    """``Run (ID '…') failed: <first line of its failure reason>``, as ``mlflow run`` prints it."""
    reason = str(runs.get_run(run_id).data.tags.get(kind.failure_tag, "")).splitlines()
    return f"Run (ID '{run_id}') failed" + (f": {reason[0]}" if reason else "")


def _param_values(entry_point: Any, params: Mapping[str, str]) -> dict[str, str]:
    """Declared parameters (user value or default) plus extra ``-P`` ones, as strings."""
    values = {
        name: str(params.get(name, p.default))
        for name, p in entry_point.parameters.items()
        if name in params or p.default is not None
    }
    values.update({k: v for k, v in params.items() if k not in values})
    return values


def _docker_env_pairs(docker_env: Mapping[str, Any]) -> dict[str, str]:
    """``docker_env.environment`` entries that carry a value (``[NAME, value]``)."""
    pairs: dict[str, str] = {}
    for item in docker_env.get("environment") or []:
        if isinstance(item, list) and len(item) == 2:
            pairs[str(item[0])] = str(item[1])
    return pairs


def _workload_kind(cfg: BackendConfig, template: Mapping[str, Any]) -> WorkloadKind:
    """The kind ``workload`` names (preset or definition), else the one the template declares."""
    try:
        if isinstance(cfg.workload, Mapping):
            return WorkloadKind.from_mapping(cfg.workload, where="backend config key 'workload'")
        if isinstance(cfg.workload, str):
            return presets.resolve(cfg.workload, where="backend config key 'workload'")
    except DefinitionError as exc:
        raise BackendConfigError(str(exc)) from exc
    try:
        return presets.for_template(template)
    except DefinitionError as exc:
        raise TemplateError(str(exc)) from exc


def _namespace(cfg: BackendConfig, template: Mapping[str, Any]) -> str:
    """Where the object goes; a literal template namespace that differs from 'namespace' is refused now."""
    written = (template.get("metadata") or {}).get("namespace")
    namespace = cfg.resolve_namespace(written)
    if isinstance(written, str) and "{" not in written and written != namespace:
        raise TemplateError(f"metadata.namespace is {written!r} in the template but the backend config "
                            f"'namespace' is {namespace!r}; use \"{{namespace}}\", drop one of them, "
                            "or make them agree")
    return namespace


def _waits(cfg: BackendConfig, kind: WorkloadKind) -> bool:
    """Whether ``run()`` waits for the end when MLflow would not (``mlflow run`` with a plugin)."""
    if cfg.wait is False and kind.closes_run == "submitter" and not cfg.synchronous:
        # Legitimate from Python (mlflow.projects.run(..., synchronous=False), then wait() on the handle);
        # from the `mlflow run` CLI it leaves the run open, so say so where it shows.
        _log.warning("backend config 'wait' is false and the %s controller does not close MLflow runs: the "
                     "run stays RUNNING unless the caller calls wait() on the submitted run", kind.kind)
    return cfg.wait if cfg.wait is not None else kind.closes_run == "submitter"


def _refuse_mlflow_pairs(docker_env: Mapping[str, Any], kind: WorkloadKind) -> None:
    """An MLproject ``[MLFLOW_..., value]`` pair that would fight the run's identity: refused now."""
    # Host-copied entries (a bare name) stay in the list as "" so an index names the MLproject's own entry.
    pairs = [str(item[0]) if isinstance(item, list) and len(item) == 2 else ""
             for item in docker_env.get("environment") or []]
    try:
        render.refuse_reserved(pairs, kind, "MLproject docker_env.environment",
                               fix="remove the pair from docker_env.environment")
    except render.TemplateError as exc:
        raise ProjectError(str(exc)) from exc


def _warn_ignored(docker_env: Mapping[str, Any], cfg: BackendConfig) -> None:
    if docker_env.get("volumes"):
        _log.warning("docker_env.volumes are ignored by the customjob backend (no host mounts)")
    copied = [e for e in docker_env.get("environment") or [] if isinstance(e, str)]
    if copied:
        _log.warning(
            "docker_env.environment entries copied from the host (%s) are ignored: the "
            "CustomJob is stored in the cluster, so host values are not sent; use [NAME, value]",
            ", ".join(copied),
        )
    if cfg.mlflow_keys.get("DOCKER_ARGS"):
        _log.warning("-A/docker_args are ignored by the customjob backend")


def _refuse_unreachable(uri: str) -> None:
    """Pods cannot reach this machine's loopback: such a tracking URI is refused before anything exists."""
    parts = urllib.parse.urlparse(uri)
    if parts.scheme in ("", "file", "sqlite"):
        _log.warning(
            "pods will log to tracking URI %r, which is local to this machine; set "
            "'tracking-uri' (or KUBE_MLFLOW_TRACKING_URI) to a server the cluster can reach",
            uri,
        )
        return
    host = (parts.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        raise BackendConfigError(
            f"pods would log to tracking URI {uri!r}: that is this machine's loopback, which a pod cannot "
            "reach (it is the pod's own). Set 'tracking-uri' in the backend config, or KUBE_MLFLOW_TRACKING_URI "
            "as for MLflow's kubernetes backend, to the server's address as the cluster sees it (the harness's "
            "in-cluster server: http://mlflow.mlflow.svc.cluster.local:5000)")


def _delete_quietly(jobs: kube.Workloads, name: str) -> None:
    try:
        jobs.delete(name)
    except Exception:
        _log.exception("could not delete %s %s/%s", jobs.kind.kind, jobs.namespace, name)


def _fail(runs: MlflowClient, run_id: str, exc: BaseException, kind: WorkloadKind) -> None:
    if isinstance(exc, KeyboardInterrupt):
        reason, end = "submission interrupted (KeyboardInterrupt)", "KILLED"
    elif isinstance(exc, MlflowException):
        reason, end = exc.message, "FAILED"
    else:
        reason, end = f"{type(exc).__name__}: {exc}", "FAILED"
    mark_failed(runs, run_id, reason, failure_tag=kind.failure_tag, end=end)
