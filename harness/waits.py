"""Follow CustomJobs and MLflow runs to a terminal state, with bounded, explained waits.

Used by :mod:`harness.runs`, the e2e tests and the CLI. On timeout the error lists every
phase/reason/message the CustomJob went through (and the pods' states), which
is usually the whole diagnosis.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException
from mlflow.tracking import MlflowClient

from harness import contract
from harness._waiting import Probe, wait_for
from harness.kubeapi import Kube

__all__ = ["customjob_for_run", "describe_customjob", "wait_customjob", "wait_for_customjob", "wait_run_terminal"]

TERMINAL_RUN_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})


def describe_customjob(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return "absent"
    st = obj.get("status") or {}
    parts = [st.get("phase") or "no status"]
    for key in ("reason", "jobName"):
        if st.get(key):
            parts.append(f"{key}={st[key]}")
    if st.get("message"):
        parts.append(f"message={str(st['message'])[:200]!r}")
    return " ".join(parts)


def customjob_for_run(kube: Kube, namespace: str, run_id: str) -> dict[str, Any] | None:
    """The CustomJob labelled with ``run_id`` in ``namespace`` (None if there is none yet)."""
    items = kube.custom.list_namespaced_custom_object(
        contract.GROUP, contract.VERSION, namespace, contract.PLURAL, label_selector=f"{contract.LABEL_RUN_ID}={run_id}"
    ).get("items", [])
    if len(items) > 1:
        raise AssertionError(f"{len(items)} CustomJobs carry run id {run_id}: {[i['metadata']['name'] for i in items]}")
    return items[0] if items else None


def wait_for_customjob(kube: Kube, namespace: str, run_id: str, *, timeout: float = 120) -> dict[str, Any]:
    """Wait until the CustomJob labelled with ``run_id`` exists; return it."""

    def probe() -> Probe[dict[str, Any]]:
        obj = customjob_for_run(kube, namespace, run_id)
        return Probe(obj is not None, "present" if obj else "absent", obj)

    found = wait_for(probe, what=f"a CustomJob for run {run_id} in {namespace}", timeout=timeout)
    assert found is not None
    return found


def wait_customjob(
    kube: Kube, namespace: str, name: str, *, timeout: float, phases: frozenset[str] = contract.TERMINAL_PHASES,
    hint: str = "",
) -> dict[str, Any]:
    """Wait until the CustomJob's phase is in ``phases``; return the object."""

    def probe() -> Probe[dict[str, Any]]:
        try:
            obj = kube.get_custom(contract.GROUP, contract.VERSION, namespace, contract.PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return Probe(False, "absent")
            raise
        phase = (obj.get("status") or {}).get("phase")
        pods = kube.pod_states(namespace, {contract.LABEL_CUSTOMJOB: name})
        return Probe(phase in phases, f"{describe_customjob(obj)} | pods: {pods}", obj)

    hint = hint or f"kubectl --kubeconfig {kube.kubeconfig} -n {namespace} describe cj/{name}"
    found = wait_for(probe, what=f"CustomJob {namespace}/{name} to reach {sorted(phases)}", timeout=timeout,
                     interval=1.0, hint=hint)
    assert found is not None
    return found


def wait_run_terminal(client: MlflowClient, run_id: str, *, timeout: float) -> str:
    """Wait until the MLflow run is FINISHED, FAILED or KILLED; return that status."""

    def probe() -> Probe[str]:
        status = str(client.get_run(run_id).info.status)
        return Probe(status in TERMINAL_RUN_STATES, status, status)

    result = wait_for(probe, what=f"MLflow run {run_id} to end", timeout=timeout, interval=1.0)
    assert result is not None
    return result
