"""The example TrainingRun controller: one TrainingRun becomes one Job; its status is two conditions.

A stand-in for a platform team's own controller: it knows nothing of MLflow
(no run ids, no tracking server), reports no phase, only the conditions
``Started`` (its Job exists) and ``Done`` (``True`` when the Job completed,
``False`` with the Job's reason when it failed). The harness drives it through
a workload definition in the settings alone (see ``docs/workloads.md``).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "ml.platform.example", "v1beta1", "trainingruns"
RUN_LABEL = f"{GROUP}/run"
"""On the Job and its pods: the TrainingRun's name (the pods' selector)."""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's bookkeeping in annotations under our own prefix; no status fields of its own.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP,
                                                                             key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    config.load_incluster_config()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_for(run: dict[str, Any], name: str) -> dict[str, Any]:
    """The Job that runs ``run``'s runner container once, as a non-root user."""
    spec = run["spec"]
    runner = {k: v for k, v in spec["runner"].items() if k in ("image", "command", "env", "resources")}
    container = {"name": "runner", "imagePullPolicy": "IfNotPresent", **runner,
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {RUN_LABEL: name}},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(spec.get("deadlineSeconds", 1800)),
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {RUN_LABEL: name}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
        },
    }


def _set_conditions(namespace: str, name: str, *conditions: dict[str, str], job: str | None = None) -> None:
    """Merge ``conditions`` (by type) into the TrainingRun's status."""
    api = client.CustomObjectsApi()
    current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    merged = {c["type"]: c for c in (current.get("status") or {}).get("conditions") or []}
    for cond in conditions:
        old = merged.get(cond["type"])
        if old is not None and (old.get("status"), old.get("reason")) == (cond["status"], cond.get("reason")):
            continue
        merged[cond["type"]] = {**cond, "lastTransitionTime": _now()}
    status: dict[str, Any] = {"conditions": list(merged.values())}
    if job:
        status["jobName"] = job
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_job(body: kopf.Body, name: str, namespace: str, **_: Any) -> None:
    job = job_for(dict(body), name)
    kopf.adopt(job, owner=body, strict=True)  # deleting the TrainingRun deletes its Job and pods
    try:
        client.BatchV1Api().create_namespaced_job(namespace, job)
    except ApiException as exc:
        if exc.status != 409:  # created before a restart: idempotent
            raise
    _set_conditions(namespace, name, {"type": "Started", "status": "True", "reason": "JobCreated",
                                      "message": f"Job {name} created"}, job=name)


@kopf.on.event("batch", "v1", "jobs", labels={RUN_LABEL: kopf.PRESENT})
def job_changed(body: kopf.Body, namespace: str, **_: Any) -> None:
    run = body["metadata"]["labels"][RUN_LABEL]
    for cond in body.get("status", {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            done = {"type": "Done", "status": "True", "reason": "Succeeded", "message": "the runner exited 0"}
        elif cond.get("type") == "Failed":
            done = {"type": "Done", "status": "False", "reason": str(cond.get("reason") or "Failed"),
                    "message": str(cond.get("message") or "the runner failed")}
        else:
            continue
        try:
            _set_conditions(namespace, run, done)
        except ApiException as exc:
            if exc.status != 404:  # the TrainingRun is gone: nothing to report to
                raise
        return
