"""``CustomJobBackend``: the MLflow project backend behind ``--backend customjob``.

``run()`` follows MLflow's own kubernetes branch (fetch, load, create the run,
build the docker image with the project code inside) but submits a
``training.example.com/v1alpha1`` ``CustomJob`` instead of a batch Job, and
differs on purpose in four places:

* argv is the entry point's command split once (see :mod:`.argv`), not
  re-quoted token by token;
* the template is rendered on the parsed YAML (see :mod:`.template`);
* the kubernetes client is built from an explicit kubeconfig/context and never
  touches the process-global configuration, and passes no ``pretty=True``
  (which kubernetes>=37 rejects);
* it works without a registry (``image-delivery: kind``).

Errors are split in two phases. Everything checkable without side effects
(backend config, MLproject, parameters, template, docker, kubeconfig) is
checked *before* the MLflow run is created, so a typo leaves no run behind.
After the run exists, every failure (CRD missing, cluster unreachable, build,
image delivery, API rejection) marks it FAILED with the tag
``training.example.com/failure-reason`` and re-raises.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.projects import docker as mlflow_docker
from mlflow.projects import utils as project_utils
from mlflow.projects.backend.abstract_backend import AbstractBackend
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_DOCKER_IMAGE_ID,
    MLFLOW_DOCKER_IMAGE_URI,
    MLFLOW_PROJECT_ENV,
)

from harness import contract
from harness.backend import delivery, kube, naming, template
from harness.backend.argv import entry_point_argv
from harness.backend.config import BackendConfig
from harness.backend.errors import ProjectError
from harness.backend.submitted_run import CustomJobSubmittedRun, mark_terminal

__all__ = ["CustomJobBackend"]

# Under "mlflow." because MLflow configures only its own logger tree: this way
# `mlflow run` prints our "=== ... ===" progress lines like its own backends do.
_log = logging.getLogger("mlflow.projects.customjob")


class CustomJobBackend(AbstractBackend):
    """Run an MLflow project as a ``CustomJob`` on Kubernetes (entry point ``customjob``)."""

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
        """Build, deliver and submit; return at once with a handle on the CustomJob."""
        cfg = BackendConfig.from_dict(backend_config)
        str_params = {str(k): str(v) for k, v in (params or {}).items()}

        # Phase 1: no side effects yet, so failures leave nothing behind.
        work_dir = project_utils.fetch_and_validate_project(project_uri, version, entry_point, str_params)
        project = project_utils.load_project(work_dir)
        if not project.docker_env:
            raise ProjectError(
                "the MLproject must declare docker_env (image: <base image>) to run as a "
                "CustomJob; the project code is baked into an image built from it"
            )
        mlflow_docker.validate_docker_env(project)
        _refuse_mlflow_pairs(project.docker_env)
        argv = entry_point_argv(project, entry_point, str_params)
        param_values = _param_values(project.get_entry_point(entry_point), str_params)
        tmpl = template.load_template(cfg.resolve_template_path(work_dir))
        template.check_template(tmpl, [*template.BASE_PLACEHOLDERS, *(f"params.{k}" for k in param_values)])
        _warn_ignored(project.docker_env, cfg)
        mlflow_docker.validate_docker_installation()
        jobs = kube.CustomJobs(kube.custom_objects_api(cfg), cfg)
        runs = MlflowClient(tracking_uri)

        # Phase 2: the run exists; any failure marks it FAILED before re-raising.
        active_run = project_utils.get_or_create_run(
            None, project_uri, experiment_id, work_dir, version, entry_point, str_params
        )
        run_id = active_run.info.run_id
        try:
            runs.set_tag(run_id, MLFLOW_PROJECT_ENV, "docker")
            jobs.preflight()
            image = self._build_and_deliver(cfg, project, work_dir, run_id, runs)
            pod_uri = cfg.pod_tracking_uri(tracking_uri)
            _warn_if_unreachable(pod_uri)
            run_experiment = str(active_run.info.experiment_id)
            # No MLFLOW_* here: the controller injects them from spec.mlflow (see template.build_manifest).
            env = _docker_env_pairs(project.docker_env)
            job_name = naming.job_name(project.name, run_id)
            values = {
                "project_name": str(project.name),
                "entry_point": entry_point,
                "image": image.ref,
                "run_id": run_id,
                "experiment_id": run_experiment,
                "tracking_uri": pod_uri,
                "namespace": cfg.namespace,
                "job_name": job_name,
                **{f"params.{k}": v for k, v in param_values.items()},
            }
            body = template.build_manifest(
                tmpl,
                values=values,
                argv=argv,
                env=env,
                image=image.ref,
                namespace=cfg.namespace,
                run_id=run_id,
                experiment_id=run_experiment,
                tracking_uri=pod_uri,
                labels={contract.LABEL_RUN_ID: run_id},
            )
            created = jobs.create(body)
        except BaseException as exc:
            _fail(runs, run_id, exc)
            raise
        name = created.get("metadata", {}).get("name", body["metadata"]["name"])
        _log.info("=== Submitted CustomJob %s/%s for run %s ===", cfg.namespace, name, run_id)
        if not cfg.synchronous:
            _log.info(
                "=== Not waiting (asynchronous); the controller ends run %s when the job ends ===",
                run_id,
            )
        return CustomJobSubmittedRun(
            run_id=run_id,
            job_name=name,
            jobs=jobs,
            runs=runs,
            timeout_seconds=cfg.timeout_seconds,
            poll_seconds=cfg.poll_seconds,
        )

    @staticmethod
    def _build_and_deliver(
        cfg: BackendConfig, project: Any, work_dir: str, run_id: str, runs: MlflowClient
    ) -> delivery.DeliveredImage:
        """Build with the project code inside (always), then get it to the nodes."""
        base_image = str(project.docker_env.get("image"))
        repository = cfg.repository_uri or naming.repository_name(project.name)
        if not cfg.repository_uri and repository == naming.repository_of(base_image):
            # MLflow tags `<repo>[:<sha7>]`; untagged it would overwrite the base image.
            repository = f"{repository}-project"
        if not cfg.mlflow_keys.get("build_image"):
            _log.info("=== Building an image with the project code (always, for CustomJob) ===")
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
        if cfg.image_delivery == "kind":
            assert cfg.kind_cluster is not None  # enforced by BackendConfig.from_dict
            delivery.load_verified(cfg.kind_binary, cfg.kind_cluster, ref)
            delivered = delivery.DeliveredImage(ref=ref)
        elif cfg.image_delivery == "registry":
            delivered = delivery.push_to_registry(image.client, repository, tag, cfg.docker_auth())
            runs.set_tag(run_id, MLFLOW_DOCKER_IMAGE_ID, delivered.digest)
        else:
            delivered = delivery.DeliveredImage(ref=ref)
        runs.set_tag(run_id, MLFLOW_DOCKER_IMAGE_URI, delivered.ref)
        _log.info("=== Delivered %s (%s) in %.1f s ===", delivered.ref, cfg.image_delivery, time.monotonic() - built)
        return delivered


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


def _refuse_mlflow_pairs(docker_env: Mapping[str, Any]) -> None:
    """An MLproject ``[MLFLOW_..., value]`` pair would land in spec.env, which the CRD refuses: say so now."""
    for index, item in enumerate(docker_env.get("environment") or []):
        if isinstance(item, list) and len(item) == 2 and str(item[0]).startswith(template.RESERVED_ENV_PREFIX):
            raise ProjectError(
                f"MLproject docker_env.environment[{index}] sets {item[0]}: the customjob backend passes the run "
                "in the CustomJob's spec.mlflow, from which the controller injects MLFLOW_RUN_ID, "
                "MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID, and the CRD refuses every other "
                f"{template.RESERVED_ENV_PREFIX}* env entry next to it; remove the pair from docker_env.environment"
            )


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


def _warn_if_unreachable(uri: str) -> None:
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("", "file", "sqlite"):
        _log.warning(
            "pods will log to tracking URI %r, which is local to this machine; set "
            "'tracking-uri' (or KUBE_MLFLOW_TRACKING_URI) to a server the cluster can reach",
            uri,
        )


def _fail(runs: MlflowClient, run_id: str, exc: BaseException) -> None:
    if isinstance(exc, KeyboardInterrupt):
        reason, state = "submission interrupted (KeyboardInterrupt)", RunStatus.KILLED
    elif isinstance(exc, MlflowException):
        reason, state = exc.message, RunStatus.FAILED
    else:
        reason, state = f"{type(exc).__name__}: {exc}", RunStatus.FAILED
    try:
        mark_terminal(runs, run_id, state, reason)
    except Exception:
        _log.exception("could not mark run %s %s", run_id, RunStatus.to_string(state))
