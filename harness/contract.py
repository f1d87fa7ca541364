"""The CustomJob API's names: one contract for the CRD, the controller, the backend and the harness.

These strings are part of the public contract (``kubectl get -l``, the MLflow
backend, the e2e harness), so they live in one module. The defaults must equal
the ``default:`` values in ``crds/bases/customjob.yaml``; a unit test checks
that, because the controller also sees specs the API server never defaulted
(unit tests, objects created before a CRD upgrade).

Standard library only. The controller image cannot import the harness, so it
carries a byte-identical copy (``crds/controller/customjob_controller/contract.py``);
``tests/unit/test_contract.py`` keeps the two equal.
"""


from __future__ import annotations

from typing import Final

GROUP: Final = "training.example.com"
VERSION: Final = "v1alpha1"
KIND: Final = "CustomJob"
PLURAL: Final = "customjobs"
SINGULAR: Final = "customjob"
SHORT_NAME: Final = "cjob"
API_VERSION: Final = f"{GROUP}/{VERSION}"

PREFIX: Final = "training.example.com"
"""Label/annotation prefix; also kopf's progress and diff-base annotation prefix."""
LABEL_PREFIX: Final = f"{PREFIX}/"
"""Prefix of every label, annotation and MLflow tag this project owns."""

LABEL_CUSTOMJOB: Final = f"{PREFIX}/customjob"
"""On the Job and its Pods: the owning CustomJob's name. The watch selector."""
LABEL_RUN_ID: Final = f"{PREFIX}/mlflow-run-id"
LABEL_EXPERIMENT_ID: Final = f"{PREFIX}/mlflow-experiment-id"
ANNOTATION_RUN_NAME: Final = f"{PREFIX}/mlflow-run-name"
ANNOTATION_TRACKING_URI: Final = f"{PREFIX}/mlflow-tracking-uri"
"""On the Job: where its run lives, so the run can be closed after its CustomJob is gone."""
FINALIZER_OUTCOME: Final = f"{PREFIX}/outcome"
"""On the Job until the controller has recorded its outcome (kept from TTL and cascade deletion)."""
CONDITION_RUN_CLOSED: Final = "MLflowRunClosed"
"""CustomJob condition: whether the controller made sure the MLflow run is terminal."""
TAG_FAILURE_REASON: Final = f"{PREFIX}/failure-reason"
"""MLflow run tag set when the controller fails a run on the workload's behalf."""
TAG_WORKLOAD: Final = "mlflow-crd-harness/workload"
"""MLflow run tag naming the one object the run belongs to: ``<Kind> <namespace>/<name>``, and
``<Kind> <namespace>/<name> uid=<uid>`` once the object exists (single spaces; no part contains one).
The submitter sets it *before* it creates the object. The controller creates a Job for, and closes,
only a run whose tag names its CustomJob (and its uid, when the tag has one): a CustomJob naming
another object's run fails ``RunNotOwned`` and the run is left as it is. The key is the harness's
(the same tag on runs of every workload kind), hence not under :data:`PREFIX`."""
REASON_RUN_NOT_OWNED: Final = "RunNotOwned"
"""CustomJob status reason: ``spec.mlflow.runId`` names a run whose :data:`TAG_WORKLOAD` is not this CustomJob."""

MANAGED_BY: Final = "customjob-controller"
CONTAINER_NAME: Final = "trainer"

DEFAULT_IMAGE_PULL_POLICY: Final = "IfNotPresent"
DEFAULT_BACKOFF_LIMIT: Final = 0
DEFAULT_TTL_SECONDS_AFTER_FINISHED: Final = 3600

PENDING: Final = "Pending"
RUNNING: Final = "Running"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
PHASES: Final = (PENDING, RUNNING, SUCCEEDED, FAILED)
TERMINAL_PHASES: Final = frozenset({SUCCEEDED, FAILED})

MLFLOW_ENV: Final = {
    "runId": "MLFLOW_RUN_ID",
    "trackingUri": "MLFLOW_TRACKING_URI",
    "experimentId": "MLFLOW_EXPERIMENT_ID",
}
"""spec.mlflow field -> environment variable the controller injects."""
