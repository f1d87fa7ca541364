"""Follow workload objects and MLflow runs to a terminal state, with bounded, explained waits.

Used by :mod:`harness.runs`, the e2e tests and the CLI, for every workload kind
(:mod:`harness.workloads`). On timeout the error lists every state the object
went through and its pods' states, which is usually the whole diagnosis. The
``*_customjob`` helpers are the same waits for the stub's kind, kept for tests
written against it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlflow.tracking import MlflowClient

from harness._waiting import Probe, wait_for
from harness.kubeapi import Kube
from harness.workloads import CUSTOMJOB, state, stub
from harness.workloads.api import WorkloadClient, pause_until_changed
from harness.workloads.kind import WorkloadKind

__all__ = [
    "customjob_for_run",
    "describe_customjob",
    "pod_summary",
    "wait_customjob",
    "wait_for_customjob",
    "wait_for_workload",
    "wait_run_terminal",
    "wait_workload",
    "workloads",
]

TERMINAL_RUN_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})


def workloads(kube: Kube, kind: WorkloadKind, namespace: str) -> WorkloadClient:
    """A client of ``kind``'s objects in ``namespace`` of the cluster ``kube`` reaches."""
    return WorkloadClient.of(kube.api, kind, namespace)


def pod_summary(client: WorkloadClient, obj: Mapping[str, Any]) -> str:
    """``pod=Phase[container states]`` for every pod of ``obj``, for wait histories."""
    out = []
    for pod in client.pods(obj):
        reasons = []
        for cs in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]:
            if cs.state and cs.state.waiting:
                reasons.append(cs.state.waiting.reason or "Waiting")
            elif cs.state and cs.state.terminated:
                reasons.append(f"Terminated:{cs.state.terminated.reason}")
            else:
                reasons.append("Ready" if cs.ready else "Running")
        out.append(f"{pod.metadata.name}={pod.status.phase}[{','.join(reasons)}]")
    return " ".join(out) or "none"


def wait_for_workload(client: WorkloadClient, run_id: str, *, timeout: float = 120) -> dict[str, Any]:
    """Wait until the object labelled with ``run_id`` exists; return it."""

    def probe() -> Probe[dict[str, Any]]:
        obj = client.for_run(run_id)
        return Probe(obj is not None, "present" if obj else "absent", obj)

    found = wait_for(probe, what=f"a {client.kind.kind} for run {run_id} in {client.namespace}", timeout=timeout)
    assert found is not None
    return found


def wait_workload(client: WorkloadClient, name: str, *, timeout: float,
                  until: Callable[[dict[str, Any]], bool] | None = None, what: str = "", hint: str = "",
                  ) -> dict[str, Any]:
    """Wait until ``until(obj)`` (default: its kind's rules say it ended); return the object."""
    kind = client.kind
    done = until or (lambda obj: state.is_terminal(state.run_state(kind, obj)))

    seen: list[dict[str, Any] | None] = [None]

    def probe() -> Probe[dict[str, Any]]:
        obj = seen[0] = client.get(name)
        if obj is None:
            return Probe(False, "absent")
        return Probe(done(obj), f"{state.describe(kind, obj)} | pods: {pod_summary(client, obj)}", obj)

    group = f".{kind.group}" if kind.group else ""
    hint = hint or (f"kubectl -n {client.namespace} describe {kind.kind.lower()}{group}/{name}; its pods: "
                    f"kubectl -n {client.namespace} get pods -l {kind.pod_selector(name) or '<owned by it>'}")
    # Event-driven: between probes, a watch on the object wakes the wait the moment its status is written
    # (every 2 s at the latest, for the pods' states in the log), instead of a sleep that sees it up to a
    # poll interval late, seconds on every run.
    found = wait_for(probe, what=what or f"{kind.kind} {client.namespace}/{name} to end", timeout=timeout,
                     interval=2.0, hint=hint,
                     sleep=lambda seconds: pause_until_changed(client.wait_change, name, seen[0], seconds))
    assert found is not None
    return found


def wait_run_terminal(client: MlflowClient, run_id: str, *, timeout: float) -> str:
    """Wait until the MLflow run is FINISHED, FAILED or KILLED; return that status."""

    def probe() -> Probe[str]:
        status = str(client.get_run(run_id).info.status)
        return Probe(status in TERMINAL_RUN_STATES, status, status)

    # No watch on a tracking server: a short interval, as the run is usually closed by the time this is asked.
    result = wait_for(probe, what=f"MLflow run {run_id} to end", timeout=timeout, interval=0.25)
    assert result is not None
    return result


# -- the stub CustomJob, by its phase ---------------------------------------------------------------


def describe_customjob(obj: dict[str, Any] | None) -> str:
    return state.describe(CUSTOMJOB, obj)


def customjob_for_run(kube: Kube, namespace: str, run_id: str) -> dict[str, Any] | None:
    """The CustomJob labelled with ``run_id`` in ``namespace`` (None if there is none yet)."""
    return workloads(kube, CUSTOMJOB, namespace).for_run(run_id)


def wait_for_customjob(kube: Kube, namespace: str, run_id: str, *, timeout: float = 120) -> dict[str, Any]:
    """Wait until the CustomJob labelled with ``run_id`` exists; return it."""
    return wait_for_workload(workloads(kube, CUSTOMJOB, namespace), run_id, timeout=timeout)


def wait_customjob(kube: Kube, namespace: str, name: str, *, timeout: float,
                   phases: frozenset[str] = stub.TERMINAL_PHASES, hint: str = "") -> dict[str, Any]:
    """Wait until the CustomJob's ``status.phase`` is in ``phases``; return the object."""
    return wait_workload(workloads(kube, CUSTOMJOB, namespace), name, timeout=timeout,
                         until=lambda obj: (obj.get("status") or {}).get("phase") in phases,
                         what=f"CustomJob {namespace}/{name} to reach {sorted(phases)}", hint=hint)
