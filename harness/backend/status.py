"""CustomJob status -> MLflow ``RunStatus`` (pure).

The controller writes ``status.phase`` (Pending|Running|Succeeded|Failed); it is
authoritative. Conditions are a fallback for the moment between a terminal
condition and the phase update, using the Kubernetes Job vocabulary
(``Complete``/``Succeeded`` and ``Failed`` with ``status: "True"``).

=====================================  =============
CustomJob                              MLflow run
=====================================  =============
no status yet / ``Pending`` / unknown  ``SCHEDULED``
``Running``                            ``RUNNING``
``Succeeded``                          ``FINISHED``
``Failed``                             ``FAILED``
object gone (deleted by someone)       ``FAILED``
object gone after our ``cancel()``     ``KILLED``
=====================================  =============

An unknown phase maps to SCHEDULED rather than an error so that a newer
controller with an extra phase cannot crash old submitters; ``wait()`` is still
bounded by ``timeout-seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow.entities import RunStatus

from harness import contract

__all__ = ["describe", "failure_message", "phase_of", "run_status"]

_PHASE_TO_STATUS: dict[str, int] = {
    contract.PENDING: RunStatus.SCHEDULED,
    contract.RUNNING: RunStatus.RUNNING,
    contract.SUCCEEDED: RunStatus.FINISHED,
    contract.FAILED: RunStatus.FAILED,
}
_CONDITION_TO_PHASE = {
    "Succeeded": contract.SUCCEEDED,
    "Complete": contract.SUCCEEDED,
    "Failed": contract.FAILED,
}


def _status(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    status = (obj or {}).get("status")
    return status if isinstance(status, Mapping) else {}


def phase_of(obj: Mapping[str, Any] | None) -> str | None:
    """The effective phase: ``status.phase``, else a terminal condition, else None."""
    status = _status(obj)
    phase = status.get("phase")
    if isinstance(phase, str) and phase:
        return phase
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and str(cond.get("status")) == "True":
            mapped = _CONDITION_TO_PHASE.get(str(cond.get("type")))
            if mapped:
                return mapped
    return None


def run_status(obj: Mapping[str, Any] | None) -> int:
    """The MLflow ``RunStatus`` (an int) for a CustomJob object (a dict from the API)."""
    phase = phase_of(obj)
    return _PHASE_TO_STATUS.get(phase or "", RunStatus.SCHEDULED)


def failure_message(obj: Mapping[str, Any] | None) -> str:
    """A one-line reason for a failed CustomJob: ``reason: message`` from its status."""
    status = _status(obj)
    reason = str(status.get("reason") or "").strip()
    message = str(status.get("message") or "").strip()
    if not message:
        for cond in status.get("conditions") or []:
            if isinstance(cond, Mapping) and cond.get("type") == "Failed" and cond.get("message"):
                message = str(cond["message"]).strip()
                reason = reason or str(cond.get("reason") or "").strip()
                break
    if reason and message:
        return f"{reason}: {message}"
    return message or reason or "CustomJob failed without a status message"


def describe(obj: Mapping[str, Any] | None) -> str:
    """Short state line for timeout histories: ``phase=Running jobName=x message=...``."""
    status = _status(obj)
    parts = [f"phase={phase_of(obj) or '<none>'}"]
    for key in ("jobName", "reason", "message"):
        if status.get(key):
            parts.append(f"{key}={status[key]}")
    return " ".join(parts)
