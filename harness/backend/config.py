"""``--backend-config`` for the ``customjob`` backend: parsed once, validated, frozen.

Keys (JSON object; ``mlflow run --backend-config cfg.json`` or a dict passed to
``mlflow.projects.run(backend_config=...)``):

=====================  ========  ==========================================================
key                    default   meaning
=====================  ========  ==========================================================
``template-path``      required  workload YAML template (a CustomJob, a Job, ...); a relative path is looked up in
                                 the current directory, then in the project directory.
                                 ``kube-job-template-path`` (MLflow's kubernetes backend's
                                 name) is accepted for it.
``kube-context``       current   kubeconfig context to submit to.
``kubeconfig``         default   kubeconfig file; default is ``$KUBECONFIG`` or
                                 ``~/.kube/config`` (in-cluster config inside a pod).
``namespace``          see text  namespace of the object; default: the template's
                                 ``metadata.namespace`` (as MLflow's kubernetes backend
                                 reads it), else ``default``.
``image-delivery``     ``kind``  ``kind`` (``kind load docker-image``), ``registry``
                                 (``docker push``, pods pull by digest) or ``none`` (the
                                 nodes already see the submitter's docker images).
``kind-cluster``       -         kind cluster name; required when image-delivery is kind.
``kind-binary``        ``kind``  path or name of the kind executable.
``repository-uri``     project   image repository the built image is tagged into (for
                       name      ``registry``: include the registry host).
``tracking-uri``       see text  MLflow tracking URI the *pod* uses; falls back to
                                 ``$KUBE_MLFLOW_TRACKING_URI``, then the submitter's URI.
``timeout-seconds``    3600      how long ``wait()`` follows the job before giving up.
``poll-seconds``       5         interval between status reads in ``wait()`` (a watch
                                 wakes it earlier).
``workload``           from the  the workload kind: a preset name (``customjob``, ``job``,
                       template  ``pytorchjob``) or a definition object
                                 (:mod:`harness.workloads.kind`); default: the preset whose
                                 apiVersion/kind the template declares.
``wait``               ``auto``  ``mlflow run`` (asynchronous for plugins) returns at once
                                 only when the kind's controller closes MLflow runs
                                 (``auto``); ``true`` always waits for the end, closes the
                                 run, attaches the logs and exits non-zero on failure;
                                 ``false`` never waits (for kinds whose run only the
                                 submitter closes: call ``wait()`` on the returned run).
=====================  ========  ==========================================================

With ``image-delivery`` ``kind``, ``kind-cluster`` defaults to the cluster of a
``kind-<name>`` ``kube-context`` (kind's own context names), and ``kind-binary``
to ``kind`` on PATH, else the harness's pinned kind (its cache).

MLflow itself adds ``ENV_MANAGER``, ``SYNCHRONOUS``, ``DOCKER_ARGS``,
``STORAGE_DIR``, ``build_image`` and ``docker_auth`` to every backend config; they
are accepted and kept in :attr:`BackendConfig.mlflow_keys`. Any other key is an
error that lists the valid ones, because a misspelt key silently falling back to
a default is the most expensive kind of typo on a cluster.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from harness.backend import naming
from harness.backend.errors import BackendConfigError
from harness.delivery import KindLoad, NoDelivery, RegistryPush, Route

__all__ = ["ALIASES", "DELIVERY_MODES", "MLFLOW_KEYS", "USER_KEYS", "BackendConfig", "ImageDelivery"]

_log = logging.getLogger("mlflow.projects.customjob")

ImageDelivery = Literal["kind", "registry", "none"]
DELIVERY_MODES: tuple[ImageDelivery, ...] = ("kind", "registry", "none")

USER_KEYS: tuple[str, ...] = (
    "template-path",
    "kube-context",
    "kubeconfig",
    "namespace",
    "image-delivery",
    "kind-cluster",
    "kind-binary",
    "repository-uri",
    "tracking-uri",
    "timeout-seconds",
    "poll-seconds",
    "workload",
    "wait",
)
"""Keys a user may write in ``--backend-config``."""

ALIASES: Mapping[str, str] = {"kube-job-template-path": "template-path"}
"""Keys of MLflow's own kubernetes backend that mean the same here (``kube-context`` and
``repository-uri`` already share their names)."""

MLFLOW_KEYS: tuple[str, ...] = (
    "ENV_MANAGER",
    "SYNCHRONOUS",
    "DOCKER_ARGS",
    "STORAGE_DIR",
    "build_image",
    "docker_auth",
    "_mlflow_local_backend_run_id",
)
"""Keys MLflow's project runner injects into every backend config."""

TRACKING_URI_ENV = "KUBE_MLFLOW_TRACKING_URI"
"""Same override MLflow's built-in kubernetes backend honours, for parity."""


@dataclass(frozen=True)
class BackendConfig:
    """Validated ``customjob`` backend settings; build with :meth:`from_dict`."""

    template_path: str
    """As written by the user; resolve with :meth:`resolve_template_path`."""
    kube_context: str | None = None
    """kubeconfig context; ``None`` = the kubeconfig's current context."""
    kubeconfig: str | None = None
    """kubeconfig path; ``None`` = ``$KUBECONFIG`` / ``~/.kube/config`` / in-cluster."""
    namespace: str | None = None
    """Namespace of the object as configured; None = the template's (see :meth:`resolve_namespace`)."""
    image_delivery: ImageDelivery = "kind"
    """How the built image reaches the nodes."""
    kind_cluster: str | None = None
    """kind cluster name (``kind get clusters``); required for ``kind`` delivery."""
    kind_binary: str | None = None
    """kind executable, a name on PATH or a path; None: see :meth:`resolve_kind_binary`."""
    repository_uri: str | None = None
    """Image repository; ``None`` = the MLproject name, lower-cased."""
    tracking_uri: str | None = None
    """Tracking URI for pods as configured; see :meth:`pod_tracking_uri`."""
    timeout_seconds: float = 3600.0
    """Upper bound of ``wait()``, in seconds; then the job is deleted and the run FAILED."""
    poll_seconds: float = 5.0
    """Seconds between status reads while waiting."""
    workload: str | Mapping[str, Any] | None = None
    """A preset name or a definition mapping; None: the kind the template declares."""
    wait: bool | None = None
    """True/False as configured; None (``auto``): wait when the submitter must close the run."""
    synchronous: bool = True
    """MLflow's SYNCHRONOUS flag: False for ``mlflow run`` with a plugin backend."""
    mlflow_keys: Mapping[str, Any] = field(default_factory=dict)
    """The keys MLflow injected (ENV_MANAGER, DOCKER_ARGS, docker_auth, ...), untouched."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> BackendConfig:
        """Validate ``raw``; every error names the offending key and what is allowed."""
        if raw is None:
            raise BackendConfigError(_missing("template-path"))
        if not isinstance(raw, Mapping):
            raise BackendConfigError(f"backend config must be a JSON object, got {type(raw).__name__}")
        for alias, key in ALIASES.items():
            if alias in raw:
                if key in raw and raw[key] != raw[alias]:
                    raise BackendConfigError(f"backend config keys {alias!r} and {key!r} mean the same; give one")
                raw = {**{k: v for k, v in raw.items() if k != alias}, key: raw[alias]}
        unknown = sorted(str(k) for k in raw if k not in USER_KEYS and k not in MLFLOW_KEYS)
        if unknown:
            raise BackendConfigError(
                f"unknown backend config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(USER_KEYS)}"
            )
        if raw.get("template-path") in (None, ""):
            raise BackendConfigError(_missing("template-path"))

        delivery = raw.get("image-delivery", "kind")
        if delivery not in DELIVERY_MODES:
            raise BackendConfigError(
                f"backend config key 'image-delivery' must be one of {', '.join(DELIVERY_MODES)}; got {delivery!r}"
            )
        kind_cluster = _opt_str(raw, "kind-cluster")
        context = _opt_str(raw, "kube-context")
        if delivery == "kind" and not kind_cluster and context and context.startswith("kind-"):
            kind_cluster = context.removeprefix("kind-")
        if delivery == "kind" and not kind_cluster:
            raise BackendConfigError(
                "backend config key 'kind-cluster' is required when 'image-delivery' is "
                "'kind' (the name shown by `kind get clusters`; or a 'kube-context' named kind-<cluster>)"
            )
        namespace = _opt_str(raw, "namespace")
        if namespace is not None and not naming.is_dns_label(namespace):
            raise BackendConfigError(
                f"backend config key 'namespace' must be a DNS-1123 label "
                f"(lower-case alphanumerics and '-', at most 63 chars); got {namespace!r}"
            )
        repository = _opt_str(raw, "repository-uri")
        if repository is not None and (repository != repository.lower() or " " in repository):
            raise BackendConfigError(
                f"backend config key 'repository-uri' must be a lower-case docker "
                f"repository name without a tag; got {repository!r}"
            )
        workload = raw.get("workload")
        if workload is not None and not (isinstance(workload, str) and workload) and not isinstance(workload, Mapping):
            raise BackendConfigError(
                "backend config key 'workload' must be a preset name (customjob, job, pytorchjob) or a workload "
                f"definition object; got {workload!r}"
            )
        wait = raw.get("wait", "auto")
        if wait not in ("auto", True, False):
            raise BackendConfigError(f"backend config key 'wait' must be true, false or \"auto\"; got {wait!r}")
        return cls(
            template_path=_req_str(raw, "template-path"),
            kube_context=context,
            kubeconfig=_opt_str(raw, "kubeconfig"),
            namespace=namespace,
            image_delivery=cast(ImageDelivery, delivery),
            kind_cluster=kind_cluster,
            kind_binary=_opt_str(raw, "kind-binary"),
            repository_uri=repository,
            tracking_uri=_opt_str(raw, "tracking-uri"),
            timeout_seconds=_positive(raw, "timeout-seconds", 3600.0),
            poll_seconds=_positive(raw, "poll-seconds", 5.0),
            workload=workload,
            wait=None if wait == "auto" else bool(wait),
            synchronous=bool(raw.get("SYNCHRONOUS", True)),
            mlflow_keys={k: raw[k] for k in MLFLOW_KEYS if k in raw},
        )

    def resolve_template_path(self, project_dir: str | os.PathLike[str]) -> Path:
        """Find the template: absolute as is; relative to cwd first, then the project dir."""
        path = Path(self.template_path).expanduser()
        candidates = [path] if path.is_absolute() else [Path.cwd() / path, Path(project_dir) / path]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise BackendConfigError(
            f"backend config key 'template-path': {self.template_path!r} not found "
            f"(looked in: {', '.join(str(c) for c in candidates)})"
        )

    def resolve_namespace(self, template_namespace: object) -> str:
        """The configured namespace, else the template's literal ``metadata.namespace``, else ``default``."""
        if self.namespace is not None:
            return self.namespace
        if isinstance(template_namespace, str) and naming.is_dns_label(template_namespace):
            return template_namespace
        return "default"

    def resolve_kind_binary(self) -> str:
        """``kind-binary``, else ``kind`` on PATH, else the harness's pinned kind (cached, or fetched/built)."""
        if self.kind_binary:
            return self.kind_binary
        if shutil.which("kind"):
            return "kind"
        from harness import toolchain

        return str(toolchain.resolve_kind(None, log=_log.info))

    def route(self, repository: str, *, client: Any = None) -> Route:
        """The image route ``image-delivery`` names, for images tagged into ``repository`` (pushed with ``client``)."""
        if self.image_delivery == "kind":
            assert self.kind_cluster is not None  # enforced by from_dict
            return KindLoad(kind_cluster=self.kind_cluster, kind_bin=Path(self.resolve_kind_binary()))
        if self.image_delivery == "registry":
            registry = repository.rsplit("/", 1)[0] if "/" in repository else ""
            return RegistryPush(registry=registry, auth=self.docker_auth(), client=client)
        return NoDelivery()

    def pod_tracking_uri(self, submitter_uri: str, environ: Mapping[str, str] | None = None) -> str:
        """The tracking URI pods use: config, then ``$KUBE_MLFLOW_TRACKING_URI``, then ours."""
        env = os.environ if environ is None else environ
        return self.tracking_uri or env.get(TRACKING_URI_ENV) or submitter_uri

    def docker_auth(self) -> dict[str, Any] | None:
        """``docker_auth`` from ``mlflow.projects.run`` (a Python-API-only argument)."""
        auth = self.mlflow_keys.get("docker_auth")
        return dict(auth) if isinstance(auth, Mapping) else None

    def describe_cluster(self) -> str:
        """Where we submit, for error messages: ``context 'x' in kubeconfig '/p'``."""
        ctx = f"context {self.kube_context!r}" if self.kube_context else "the current context"
        cfg = self.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        return f"{ctx} of kubeconfig {cfg!r}"


def _missing(key: str) -> str:
    return (
        f"backend config key {key!r} is required (path to a workload YAML template such as a CustomJob or "
        f"a batch/v1 Job, e.g. trainer/customjob_template.yaml)"
    )


def _opt_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BackendConfigError(f"backend config key {key!r} must be a string; got {type(value).__name__} {value!r}")
    return value or None


def _req_str(raw: Mapping[str, Any], key: str) -> str:
    value = _opt_str(raw, key)
    if value is None:
        raise BackendConfigError(_missing(key))
    return value


def _positive(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BackendConfigError(f"backend config key {key!r} must be a positive number of seconds; got {value!r}")
    return float(value)
