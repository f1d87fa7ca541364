"""Workload kinds: the seam between "an MLflow project run" and "an object some controller runs".

A run becomes one object of a *workload kind* — the stub ``CustomJob``, a
``batch/v1`` ``Job``, Kubeflow's ``PyTorchJob``, or a platform team's own CRD —
and everything above this package (the MLflow backend, the run driver, waits,
evidence, assertions) handles it through a :class:`WorkloadKind`, never
through one API's names. A kind is data (:mod:`.kind`); a team's own is a
settings table, no code.

Modules, one job each:

* :mod:`.paths`: the field-path grammar (``spec.x.*.containers[name=pytorch]``);
* :mod:`.kind`: the definition and its validation; :mod:`.presets` and
  :mod:`.stub` the built-in ones (only :mod:`.stub` knows the stub's contract);
* :mod:`.render`: template -> the object one run submits;
* :mod:`.state`: the object's status -> MLflow run state and a failure reason;
* :mod:`.api`: discovery and the object's calls, and its pods and logs (kubernetes client);
* :mod:`.pods`: what pods say about how it ended; :mod:`.closing`: ending the run and
  attaching the logs to it (for kinds whose controller does not close runs).

This ``__init__`` imports only the pure modules, so the settings can validate
definitions without loading the kubernetes client.
"""

from harness.workloads.kind import DefinitionError, StateRule, WorkloadKind
from harness.workloads.presets import JOB, PRESETS, PYTORCHJOB, for_template, resolve
from harness.workloads.stub import CUSTOMJOB

__all__ = [
    "CUSTOMJOB",
    "JOB",
    "PRESETS",
    "PYTORCHJOB",
    "DefinitionError",
    "StateRule",
    "WorkloadKind",
    "for_template",
    "resolve",
]
