"""CustomJob -> ``batch/v1`` Job manifest. Pure: no I/O, no clock, no randomness.

Why the Job looks the way it does:

* The Job name *is* the CustomJob name (the CRD caps it at 63 characters), so
  creating it twice is a harmless 409 and a restarted controller finds it.
* ``restartPolicy: Never`` plus ``backoffLimit`` from the spec: every retry is
  a new Pod whose failure stays inspectable.
* ``terminationMessagePolicy: FallbackToLogsOnError`` makes the kubelet copy
  the last log lines of a failed container into its status, so the controller
  can report *why* training crashed without reading logs.
* Quantities are rendered as strings: the kubernetes client models only accept
  strings there, while the CRD lets users write ``cpu: 1`` (requests, limits,
  extended resources such as ``nvidia.com/gpu``, a ``resourceFieldRef`` divisor).
* The Job carries the controller's finaliser until its outcome is recorded:
  a Job collected by its TTL (or deleted with its CustomJob) while the
  controller is down keeps its final status until the controller reads it.
  Its annotations say where its MLflow run lives, so the run can still be
  closed (``KILLED``) when the CustomJob is deleted mid-run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from customjob_controller import contract

MLFLOW_ENV_PREFIX = "MLFLOW_"
"""User env names dropped when spec.mlflow is set (the CRD refuses them there)."""


def job_name(customjob_name: str) -> str:
    """Return the one Job name a CustomJob may own (deterministic, idempotent)."""
    return customjob_name


def owner_labels(customjob_name: str, spec: Mapping[str, Any]) -> dict[str, str]:
    """Labels linking a Job/Pod back to its CustomJob and MLflow run."""
    labels = {
        contract.LABEL_CUSTOMJOB: customjob_name,
        "app.kubernetes.io/managed-by": contract.MANAGED_BY,
    }
    mlflow = spec.get("mlflow") or {}
    if mlflow.get("runId"):
        labels[contract.LABEL_RUN_ID] = mlflow["runId"]
    if mlflow.get("experimentId"):
        labels[contract.LABEL_EXPERIMENT_ID] = mlflow["experimentId"]
    return labels


def container_env(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """User env first, then MLFLOW_* from spec.mlflow.

    When spec.mlflow is set it is the only source of MLFLOW_* variables: the
    CRD refuses ``MLFLOW_*`` env entries next to it, and any that an older CRD
    admitted are dropped here, so the trainer always logs to the run the
    controller will close. Without spec.mlflow nothing is injected and the
    user's own MLFLOW_* entries are passed through.
    """
    mlflow = spec.get("mlflow")
    env: list[dict[str, Any]] = []
    for entry in spec.get("env") or []:
        if mlflow is not None and entry["name"].startswith(MLFLOW_ENV_PREFIX):
            continue
        item: dict[str, Any] = {"name": entry["name"]}
        if "value" in entry:
            item["value"] = entry["value"]
        if "valueFrom" in entry:
            item["valueFrom"] = _value_from(entry["valueFrom"])
        env.append(item)
    for field, var in contract.MLFLOW_ENV.items():
        value = (mlflow or {}).get(field)
        if value:
            env.append({"name": var, "value": str(value)})
    return env


def _value_from(source: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ref in ("secretKeyRef", "configMapKeyRef"):
        if ref in source:
            out[ref] = {k: source[ref][k] for k in ("name", "key", "optional") if k in source[ref]}
    if "fieldRef" in source:
        out["fieldRef"] = {k: source["fieldRef"][k] for k in ("fieldPath", "apiVersion") if k in source["fieldRef"]}
    if "resourceFieldRef" in source:
        ref = source["resourceFieldRef"]
        out["resourceFieldRef"] = {k: ref[k] for k in ("containerName", "resource") if k in ref}
        if "divisor" in ref:
            out["resourceFieldRef"]["divisor"] = str(ref["divisor"])  # a quantity: a string to the client models
    return out


def container_resources(spec: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Requests/limits with every quantity as a string (``1`` -> ``"1"``), extended resources included.

    An extended resource (``nvidia.com/gpu``) goes through as written: the CRD
    already holds it to a Pod's rules (whole units, a request equal to the limit).
    """
    resources = spec.get("resources") or {}
    out: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        quantities = resources.get(kind)
        if quantities:
            out[kind] = {name: str(value) for name, value in quantities.items()}
    return out


def build_job(customjob: Mapping[str, Any]) -> dict[str, Any]:
    """Render the Job for a CustomJob object (``metadata`` + ``spec`` are read).

    The owner reference needs ``metadata.uid``; it is what makes the garbage
    collector delete the Job (and its Pods) with the CustomJob.
    """
    meta = customjob["metadata"]
    spec = customjob["spec"]
    name = meta["name"]
    labels = owner_labels(name, spec)
    pod_labels = {**(spec.get("podLabels") or {}), **labels}

    container: dict[str, Any] = {
        "name": contract.CONTAINER_NAME,
        "image": spec["image"],
        "imagePullPolicy": spec.get("imagePullPolicy", contract.DEFAULT_IMAGE_PULL_POLICY),
        "command": list(spec["command"]),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.get("args"):
        container["args"] = list(spec["args"])
    if spec.get("workingDir"):
        container["workingDir"] = spec["workingDir"]
    env = container_env(spec)
    if env:
        container["env"] = env
    resources = container_resources(spec)
    if resources:
        container["resources"] = resources

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if spec.get("nodeSelector"):
        pod_spec["nodeSelector"] = {str(k): str(v) for k, v in spec["nodeSelector"].items()}
    if spec.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = spec["serviceAccountName"]
    else:
        # The default ServiceAccount grants nothing a trainer needs; no token.
        pod_spec["automountServiceAccountToken"] = False

    job_spec: dict[str, Any] = {
        "backoffLimit": int(spec.get("backoffLimit", contract.DEFAULT_BACKOFF_LIMIT)),
        "ttlSecondsAfterFinished": int(
            spec.get("ttlSecondsAfterFinished", contract.DEFAULT_TTL_SECONDS_AFTER_FINISHED)
        ),
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    if spec.get("activeDeadlineSeconds") is not None:
        job_spec["activeDeadlineSeconds"] = int(spec["activeDeadlineSeconds"])

    job_meta: dict[str, Any] = {
        "name": job_name(name),
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": contract.API_VERSION,
                "kind": contract.KIND,
                "name": name,
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if meta.get("namespace"):
        job_meta["namespace"] = meta["namespace"]
    job_meta["finalizers"] = [contract.FINALIZER_OUTCOME]
    mlflow = spec.get("mlflow") or {}
    annotations = {}
    if mlflow.get("runName"):
        annotations[contract.ANNOTATION_RUN_NAME] = mlflow["runName"]
    if mlflow.get("trackingUri"):
        annotations[contract.ANNOTATION_TRACKING_URI] = mlflow["trackingUri"]
    if annotations:
        job_meta["annotations"] = annotations

    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": job_spec}
