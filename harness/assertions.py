"""Checks for users' own tests: what a finished run and its workload object must show.

Each helper reads the real state (the tracking server, the API server) and
fails with a message that quotes what is actually there, so a red test says
*what* the run logged, not just that it differs. They take the
:class:`~harness.runs.ProjectRun` the ``project_run`` fixture returns, or an
MLflow client and a run id.

Model checks (``model_predicts``) load the model with MLflow's generic
``pyfunc`` loader, so they need the model's own libraries on the host (for
scikit-learn models: ``pip install mlflow-crd-harness[models]``).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow.tracking import MlflowClient

from harness.kubeapi import Kube
from harness.workloads import CUSTOMJOB, closing, state, stub
from harness.workloads.api import WorkloadClient
from harness.workloads.kind import WorkloadKind

__all__ = ["RunFacts", "assert_customjob", "assert_run", "assert_workload"]

MetricCheck = float | tuple[float, float]
"""A value (equal within 1e-9 relative) or an inclusive (low, high) range."""


@dataclass(frozen=True)
class RunFacts:
    """What was read back about a run (returned by :func:`assert_run` for further checks)."""

    run_id: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    model_id: str | None
    model_files: tuple[str, ...]
    predictions: tuple[Any, ...]
    logs: tuple[str, ...] = ()
    """Artifact paths of the pods' logs attached to the run (``logs/...``), when asked for with ``logs=True``."""


def _fail(run_id: str, what: str, data: Any) -> AssertionError:
    return AssertionError(f"run {run_id}: {what}\n  actual: {data!r}")


class RunRef(Protocol):
    """What :func:`assert_run` needs of a run: a :class:`~harness.runs.ProjectRun` is one (no import of it here,
    so the assertions stay below the run driver)."""

    @property
    def run_id(self) -> str: ...

    @property
    def client(self) -> MlflowClient: ...


def assert_run(
    run: RunRef | str,
    *,
    client: MlflowClient | None = None,
    status: str = "FINISHED",
    params: Mapping[str, object] | None = None,
    metrics: Mapping[str, MetricCheck] | None = None,
    model_predicts: Any = None,
    model_files: Sequence[str] = ("MLmodel",),
    logs: bool = False,
) -> RunFacts:
    """Assert the run's status, params (as logged strings), metrics, and exactly one READY model that predicts.

    ``metrics``: name -> value or (low, high); every metric must be finite.
    ``model_predicts``: rows (a DataFrame, or a list of dicts) the model must
    predict one finite value for each; None skips the model checks.
    ``logs``: the pods' logs must be attached to the run (``logs/<pod>/<container>.txt``).
    """
    if isinstance(run, str):
        if client is None:
            raise TypeError("assert_run(run_id, ...) needs client=")
        run_id = run
    else:
        client = client or run.client
        run_id = run.run_id
    got = client.get_run(run_id)
    info, data = got.info, got.data
    if info.status != status:
        reason = "; ".join(v for k, v in data.tags.items() if k.endswith("/failure-reason"))
        ours = {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")}
        raise _fail(run_id, f"status is {info.status}, expected {status}" + (f"; reason: {reason}" if reason else ""),
                    {"status": info.status, "tags": ours})
    for key, value in (params or {}).items():
        if data.params.get(key) != str(value):
            raise _fail(run_id, f"param {key} is {data.params.get(key)!r}, expected {str(value)!r}", dict(data.params))
    for key, check in (metrics or {}).items():
        if key not in data.metrics:
            raise _fail(run_id, f"metric {key} was not logged", dict(data.metrics))
        value = float(data.metrics[key])
        if not math.isfinite(value):
            raise _fail(run_id, f"metric {key} is not finite", dict(data.metrics))
        if isinstance(check, tuple):
            low, high = check
            if not low <= value <= high:
                raise _fail(run_id, f"metric {key}={value} is outside [{low}, {high}]", dict(data.metrics))
        elif not math.isclose(value, float(check), rel_tol=1e-9, abs_tol=1e-12):
            raise _fail(run_id, f"metric {key}={value}, expected {check}", dict(data.metrics))

    model_id: str | None = None
    files: tuple[str, ...] = ()
    predictions: tuple[Any, ...] = ()
    if model_predicts is not None:
        model_id, files, predictions = _check_model(client, run_id, str(info.experiment_id), model_predicts,
                                                    model_files)
    attached: tuple[str, ...] = ()
    if logs:
        attached = tuple(closing.artifact_files(client, run_id))
        if not attached:
            raise _fail(run_id, f"no pod logs attached under {closing.LOGS_ARTIFACT_DIR}/",
                        [a.path for a in client.list_artifacts(run_id)])
    return RunFacts(run_id=run_id, status=str(info.status), params=dict(data.params), metrics=dict(data.metrics),
                    tags=dict(data.tags), model_id=model_id, model_files=files, predictions=predictions,
                    logs=attached)


def _check_model(client: MlflowClient, run_id: str, experiment_id: str, rows: Any,
                 required: Sequence[str]) -> tuple[str, tuple[str, ...], tuple[Any, ...]]:
    import mlflow.artifacts
    import mlflow.pyfunc

    models = client.search_logged_models(experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'")
    if len(models) != 1:
        raise _fail(run_id, "expected exactly one logged model", [(m.model_id, m.name, str(m.status)) for m in models])
    model = models[0]
    if str(model.status) not in ("READY", "LoggedModelStatus.READY"):
        raise _fail(run_id, f"model {model.model_id} is not READY", str(model.status))
    files = tuple(sorted(a.path for a in client.list_logged_model_artifacts(model.model_id)))
    for name in required:
        if name not in files:
            raise _fail(run_id, f"model {model.model_id} lacks {name}", files)
    if isinstance(rows, list):
        import pandas as pd

        rows = pd.DataFrame(rows)
    # Download through *this* client's server (a models:/ URI would resolve through the global tracking
    # URI), then load from disk: no global state is touched.
    with tempfile.TemporaryDirectory(prefix="harness-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=str(model.artifact_location), dst_path=tmp,
                                                    tracking_uri=client.tracking_uri)
        raw = mlflow.pyfunc.load_model(local).predict(rows)
    predicted = tuple(raw.tolist() if hasattr(raw, "tolist") else list(raw))
    if len(predicted) != len(rows):
        raise _fail(run_id, f"model predicted {len(predicted)} values for {len(rows)} rows", predicted)
    numeric = [p for p in predicted if isinstance(p, (int, float))]
    if any(not math.isfinite(float(p)) for p in numeric):
        raise _fail(run_id, "model predicted non-finite values", predicted)
    return str(model.model_id), files, predicted


def assert_workload(
    kube: Kube, kind: WorkloadKind, namespace: str, name: str, *, status: str = "FINISHED",
    run_id: str | None = None,
) -> dict[str, Any]:
    """Assert what ``kind``'s status rules say of the object (``FINISHED``, ``FAILED``...) and whose run it carries.

    Works for every kind (a Job, a PyTorchJob, a team's own CRD); return the object.
    """
    client = WorkloadClient.of(kube.api, kind, namespace)
    obj = client.get(name)
    if obj is None:
        raise AssertionError(f"{kind.kind} {namespace}/{name} does not exist")
    got = state.run_state(kind, obj)
    if got != status:
        raise AssertionError(f"{kind.kind} {namespace}/{name}: its status reads {got}, expected {status}\n"
                             f"  status: {obj.get('status')!r}")
    label = ((obj.get("metadata") or {}).get("labels") or {}).get(kind.run_label)
    if run_id is not None and label != run_id:
        raise AssertionError(f"{kind.kind} {namespace}/{name}: label {kind.run_label}={label!r}, expected {run_id!r}")
    return obj


def assert_customjob(
    kube: Kube, namespace: str, name: str, *, phase: str = stub.SUCCEEDED, run_id: str | None = None,
) -> dict[str, Any]:
    """Assert the stub CustomJob's phase, its MLflow run id, and that it owns exactly one Job; return the object."""
    obj = WorkloadClient.of(kube.api, CUSTOMJOB, namespace).get(name)
    if obj is None:
        raise AssertionError(f"CustomJob {namespace}/{name} does not exist")
    status = obj.get("status") or {}
    if status.get("phase") != phase:
        raise AssertionError(f"CustomJob {namespace}/{name}: phase {status.get('phase')!r}, expected {phase!r}\n"
                             f"  status: {status!r}")
    if run_id is not None and status.get("mlflowRunId") != run_id:
        raise AssertionError(f"CustomJob {namespace}/{name}: mlflowRunId {status.get('mlflowRunId')!r}, "
                             f"expected {run_id!r}")
    jobs = kube.batch.list_namespaced_job(namespace, label_selector=f"{stub.CUSTOMJOB_JOB_LABEL}={name}").items
    owned = [j for j in jobs if any(o.kind == CUSTOMJOB.kind and o.name == name and o.controller
                                    for o in (j.metadata.owner_references or []))]
    if len(owned) != 1 or (status.get("jobName") and owned[0].metadata.name != status["jobName"]):
        raise AssertionError(f"CustomJob {namespace}/{name}: expected exactly one owned Job named "
                             f"{status.get('jobName')!r}; found {[j.metadata.name for j in jobs]} "
                             f"(owned: {[j.metadata.name for j in owned]})")
    return obj
