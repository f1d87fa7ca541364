"""The built-in workload kinds, written in the same vocabulary as a user's own definition.

* ``customjob``: the stub ``training.example.com/v1alpha1`` ``CustomJob`` shipped with the package
  (:mod:`harness.workloads.stub`; its controller closes MLflow runs).
* ``job``: a ``batch/v1`` ``Job``, with the semantics of MLflow's own kubernetes backend (the
  template's metadata.name and first container's name, image and command are overwritten,
  ``MLFLOW_*`` env appended, status from the ``Complete``/``Failed`` conditions).
* ``pytorchjob``: Kubeflow training-operator v1's ``kubeflow.org/v1`` ``PyTorchJob``: every
  replica's ``pytorch`` container runs the project; status from its conditions.

A user's kind is a table in the settings (``[[tool.mlflow-crd-harness.workloads]]``) or a
``workload`` object in ``--backend-config``; :func:`resolve` finds either by name, and
:func:`for_template` picks the kind whose apiVersion/kind a template declares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.workloads import stub
from harness.workloads.kind import DefinitionError, WorkloadKind

__all__ = ["JOB", "PRESETS", "PYTORCHJOB", "for_template", "resolve"]

JOB = WorkloadKind.from_mapping({
    "name": "job",
    "api-version": "batch/v1",
    "kind": "Job",
    "description": "a batch/v1 Job, as MLflow's kubernetes backend creates it",
    "containers": "spec.template.spec.containers[0]",
    "container-name": "{project_name}",
    "template-style": "mlflow",
    "identity": "env",
    "succeeded": ["condition=Complete"],
    "failed": ["condition=Failed"],
    "running": ["jsonpath={.status.active}"],
    "pods": "batch.kubernetes.io/job-name={name}",
    "closes-run": "submitter",
})

PYTORCHJOB = WorkloadKind.from_mapping({
    "name": "pytorchjob",
    "api-version": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "description": "Kubeflow training-operator v1 PyTorchJob (Master and Worker replicas)",
    "containers": "spec.pytorchReplicaSpecs.*.template.spec.containers[name=pytorch]",
    "identity": "env",
    "succeeded": ["condition=Succeeded"],
    "failed": ["condition=Failed"],
    "running": ["condition=Running"],
    "pods": "training.kubeflow.org/job-name={name}",
    "closes-run": "submitter",
})

PRESETS: Mapping[str, WorkloadKind] = {k.name: k for k in (stub.CUSTOMJOB, JOB, PYTORCHJOB)}


def resolve(name: str, user_defined: Sequence[WorkloadKind] = (), *, where: str = "workload") -> WorkloadKind:
    """The kind called ``name``: a user's definition first (it may refine a preset), then a preset."""
    for kind in user_defined:
        if kind.name == name:
            return kind
    if name in PRESETS:
        return PRESETS[name]
    known = sorted({*PRESETS, *(k.name for k in user_defined)})
    raise DefinitionError(f"{where} {name!r} is neither a preset nor defined in the settings; known: "
                          f"{', '.join(known)} (define your own in [[tool.mlflow-crd-harness.workloads]])")


def for_template(template: Mapping[str, Any], user_defined: Sequence[WorkloadKind] = ()) -> WorkloadKind:
    """The kind whose apiVersion/kind ``template`` declares (a user's definition first)."""
    api_version, kind = template.get("apiVersion"), template.get("kind")
    for candidate in (*user_defined, *PRESETS.values()):
        if (candidate.api_version, candidate.kind) == (api_version, kind):
            return candidate
    known = ", ".join(f"{k.kind} ({k.api_version})" for k in (*user_defined, *PRESETS.values()))
    raise DefinitionError(
        f"the template declares apiVersion {api_version!r}, kind {kind!r}, which no workload definition covers; "
        f"known: {known}. Fix: define it ([[tool.mlflow-crd-harness.workloads]], or 'workload' in the backend "
        "config) or correct the template's apiVersion/kind")
