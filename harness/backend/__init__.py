"""The ``customjob`` MLflow project backend: run an MLflow project as a workload object on Kubernetes.

Registered as ``[project.entry-points."mlflow.project_backend"] customjob =
"harness.backend:CustomJobBackend"``, so ``mlflow run <project> --backend customjob
--backend-config cfg.json`` and ``mlflow.projects.run(..., backend="customjob")``
both reach :class:`CustomJobBackend`. Config keys: :mod:`harness.backend.config`.

The object is of any workload kind (:mod:`harness.workloads`): the stub
CustomJob, a ``batch/v1`` Job (MLflow's own kubernetes example config and
template work as they are), Kubeflow's PyTorchJob or a team's own CRD.

Modules, one job each: ``config`` (backend config), ``argv`` (entry point ->
argv), ``naming`` (DNS/docker names), ``delivery`` (image to nodes), ``kube``
(API calls and their errors), ``submitted_run`` (wait/cancel), ``backend`` (the
pipeline). Templates, status mapping and run closing are the workload seam's
(:mod:`harness.workloads`), shared with the harness.
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
