"""Errors of the ``customjob`` MLflow project backend.

Each class names one thing a user can fix. They subclass MLflow's
``ExecutionException`` so ``mlflow run`` prints them as a one-line
``=== message ===`` instead of a traceback, and ``HarnessError`` so harness code
can catch every deliberate failure with one ``except``.
"""

from __future__ import annotations

from mlflow.exceptions import ExecutionException

from harness._errors import DeliveryError, HarnessError

__all__ = [
    "ApiRejected",
    "BackendConfigError",
    "ClusterUnreachable",
    "CrdNotInstalled",
    "CustomJobBackendError",
    "ImageDeliveryError",
    "NamespaceNotFound",
    "ParameterError",
    "ProjectError",
    "TemplateError",
]


class CustomJobBackendError(ExecutionException, HarnessError):
    """Base class: a run could not be submitted or followed; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class BackendConfigError(CustomJobBackendError):
    """``--backend-config`` has an unknown key, a missing key or a bad value."""


class ProjectError(CustomJobBackendError):
    """The MLproject cannot run on this backend (no docker_env, shell syntax in the command)."""


class ParameterError(CustomJobBackendError):
    """A ``-P name=value`` does not fit its declared type or cannot travel in argv."""


class TemplateError(CustomJobBackendError):
    """The CustomJob template is not YAML, not a CustomJob, or uses an unknown placeholder."""


class ClusterUnreachable(CustomJobBackendError):
    """The API server could not be reached or the kubeconfig could not be loaded."""


class CrdNotInstalled(CustomJobBackendError):
    """The API server does not serve ``customjobs.training.example.com``."""


class NamespaceNotFound(CustomJobBackendError):
    """The target namespace does not exist."""


class ImageDeliveryError(CustomJobBackendError, DeliveryError):
    """The built image could not be loaded into kind or pushed to the registry."""


class ApiRejected(CustomJobBackendError):
    """The API server refused the CustomJob (schema/CEL validation, RBAC, conflict)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)
