"""The stub CustomJob as a workload kind: the one harness module that knows the stub's contract.

The stub (``crds/``) stands in for a platform team's own training CRD. Its
names live in :mod:`harness.contract` (shared with its controller); the rest
of the harness sees the stub only through :data:`CUSTOMJOB`, plus the two facts
its teardown needs (which Jobs the controller holds with a finalizer).
``tests/unit/test_layout.py`` keeps every other harness module off the contract.
"""

from __future__ import annotations

from harness import contract
from harness.workloads.kind import WorkloadKind

__all__ = ["CUSTOMJOB", "CUSTOMJOB_JOB_LABEL", "OUTCOME_FINALIZER", "PHASES", "SUCCEEDED", "TERMINAL_PHASES"]

CUSTOMJOB = WorkloadKind.from_mapping({
    "name": "customjob",
    "api-version": contract.API_VERSION,
    "kind": contract.KIND,
    "description": "the stub CustomJob shipped with the package (its kopf controller closes MLflow runs)",
    # The container's fields (image, command, env) sit directly in the CustomJob's spec.
    "containers": "spec",
    "identity": {"field": "spec.mlflow", "run-id": "runId", "experiment-id": "experimentId",
                 "tracking-uri": "trackingUri"},
    "succeeded": [f"jsonpath={{.status.phase}}={contract.SUCCEEDED}", "condition=Succeeded", "condition=Complete"],
    "failed": [f"jsonpath={{.status.phase}}={contract.FAILED}", "condition=Failed"],
    "running": [f"jsonpath={{.status.phase}}={contract.RUNNING}"],
    "pods": f"{contract.LABEL_CUSTOMJOB}={{name}}",
    "closes-run": "controller",
    "run-label": contract.LABEL_RUN_ID,
    "failure-tag": contract.TAG_FAILURE_REASON,
})

CUSTOMJOB_JOB_LABEL = contract.LABEL_CUSTOMJOB
"""On the Jobs the stub controller makes: the owning CustomJob's name."""
OUTCOME_FINALIZER = contract.FINALIZER_OUTCOME
"""The stub controller's finalizer on those Jobs, held until it recorded their outcome."""
SUCCEEDED = contract.SUCCEEDED
PHASES = frozenset(contract.PHASES)
"""Every phase the stub controller writes: any of them means it picked the object up."""
TERMINAL_PHASES = contract.TERMINAL_PHASES
