"""The ``customjob`` MLflow project backend: run an MLflow project as a CustomJob.

Registered as ``[project.entry-points."mlflow.project_backend"] customjob =
"harness.backend:CustomJobBackend"``, so ``mlflow run <project> --backend customjob
--backend-config cfg.json`` and ``mlflow.projects.run(..., backend="customjob")``
both reach :class:`CustomJobBackend`. Config keys: :mod:`harness.backend.config`.

Modules, one job each: ``config`` (backend config), ``argv`` (entry point ->
argv), ``template`` (YAML rendering), ``naming`` (DNS/docker names), ``status``
(CustomJob -> RunStatus), ``delivery`` (image to nodes), ``kube`` (API calls and
their errors), ``submitted_run`` (wait/cancel), ``backend`` (the pipeline).
"""

from harness.backend.backend import CustomJobBackend
from harness.backend.config import BackendConfig
from harness.backend.errors import (
    ApiRejected,
    BackendConfigError,
    ClusterUnreachable,
    CrdNotInstalled,
    CustomJobBackendError,
    ImageDeliveryError,
    NamespaceNotFound,
    ParameterError,
    ProjectError,
    TemplateError,
)
from harness.backend.submitted_run import CustomJobSubmittedRun

__all__ = [
    "ApiRejected",
    "BackendConfig",
    "BackendConfigError",
    "ClusterUnreachable",
    "CrdNotInstalled",
    "CustomJobBackend",
    "CustomJobBackendError",
    "CustomJobSubmittedRun",
    "ImageDeliveryError",
    "NamespaceNotFound",
    "ParameterError",
    "ProjectError",
    "TemplateError",
]
