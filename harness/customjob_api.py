"""Names of the ``CustomJob`` API, shared by the backend, the controller and the tests.

The CRD, the controller and the MLflow backend are written separately; keeping
the group/version/plural, the label prefix and the phase vocabulary in one
module means a rename is one edit and a typo is an import error, not a 404.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "API_VERSION",
    "FAILURE_REASON_TAG",
    "GROUP",
    "KIND",
    "LABEL_PREFIX",
    "PHASES",
    "PHASE_FAILED",
    "PHASE_PENDING",
    "PHASE_RUNNING",
    "PHASE_SUCCEEDED",
    "PLURAL",
    "RUN_ID_LABEL",
    "SHORT_NAME",
    "SINGULAR",
    "TERMINAL_PHASES",
    "VERSION",
]

GROUP: Final = "training.example.com"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "CustomJob"
PLURAL: Final = "customjobs"
SINGULAR: Final = "customjob"
SHORT_NAME: Final = "cj"

LABEL_PREFIX: Final = f"{GROUP}/"
"""Prefix of every label, annotation and MLflow tag this project owns."""

RUN_ID_LABEL: Final = f"{LABEL_PREFIX}mlflow-run-id"
"""Label on the CustomJob carrying the MLflow run id (32 hex chars: a valid label value)."""

FAILURE_REASON_TAG: Final = f"{LABEL_PREFIX}failure-reason"
"""MLflow run tag holding a human-readable reason when a run ends FAILED."""

PHASE_PENDING: Final = "Pending"
PHASE_RUNNING: Final = "Running"
PHASE_SUCCEEDED: Final = "Succeeded"
PHASE_FAILED: Final = "Failed"
PHASES: Final = (PHASE_PENDING, PHASE_RUNNING, PHASE_SUCCEEDED, PHASE_FAILED)
TERMINAL_PHASES: Final = frozenset({PHASE_SUCCEEDED, PHASE_FAILED})
