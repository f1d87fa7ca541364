"""A workload object's status, read through its kind's rules, as an MLflow run state (pure).

======================================  ==============
the object                              MLflow run
======================================  ==============
a ``failed`` rule holds                 ``FAILED``
a ``succeeded`` rule holds              ``FINISHED``
a ``running`` rule holds                ``RUNNING``
no rule holds yet (or no status)        ``SCHEDULED``
gone (deleted by someone)               ``FAILED``
gone after the submitter's cancel       ``KILLED``
======================================  ==============

A terminal rule that holds decides before any ``running`` rule (an object that
has failed stays failed, whatever else still reads "started"). Among terminal
rules, field rules (``jsonpath=``) decide before condition rules (a controller's
phase is authoritative), and ``failed`` before ``succeeded``. Anything unknown
maps to ``SCHEDULED`` rather than an error, so a newer controller with an
extra state cannot crash old submitters; every wait on it is still bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.workloads.kind import RunState, StateRule, WorkloadKind

__all__ = ["TERMINAL", "describe", "failure_message", "is_terminal", "run_state"]

TERMINAL: frozenset[str] = frozenset({"FINISHED", "FAILED", "KILLED"})


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def _status(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    status = (obj or {}).get("status")
    return status if isinstance(status, Mapping) else {}


def _ordered(kind: WorkloadKind) -> list[tuple[RunState, StateRule]]:
    def fields_first(state: RunState, rules: tuple[StateRule, ...]) -> list[tuple[RunState, StateRule]]:
        return [(state, r) for r in rules if r.condition is None] + [(state, r) for r in rules if r.condition]

    terminal = [*fields_first("FAILED", kind.failed), *fields_first("FINISHED", kind.succeeded)]
    terminal = [t for t in terminal if t[1].condition is None] + [t for t in terminal if t[1].condition]
    return [*terminal, *fields_first("RUNNING", kind.running)]


def run_state(kind: WorkloadKind, obj: Mapping[str, Any] | None, *, cancelled: bool = False) -> RunState:
    """The MLflow run state for ``obj`` (None: the object is gone)."""
    if obj is None:
        return "KILLED" if cancelled else "FAILED"
    for state, rule in _ordered(kind):
        if rule.matches(obj) is not None:
            return state
    return "SCHEDULED"


def failure_message(kind: WorkloadKind, obj: Mapping[str, Any] | None) -> str:
    """One line on why ``obj`` failed: its ``status.reason``/``message``, else its failed condition's."""
    status = _status(obj)
    reason = str(status.get("reason") or "").strip()
    message = str(status.get("message") or "").strip()
    if not message:
        for rule in kind.failed:
            cond = rule.matches(obj or {}) if rule.condition is not None else None
            if cond and cond.get("message"):
                message = str(cond["message"]).strip()
                reason = reason or str(cond.get("reason") or "").strip()
                break
    if reason and message:
        return f"{reason}: {message}"
    return message or reason or f"{kind.kind} failed without a status message"


def describe(kind: WorkloadKind, obj: Mapping[str, Any] | None) -> str:
    """A short state line for wait histories: ``Failed phase=Failed reason=X message='...'``."""
    if obj is None:
        return "absent"
    status = _status(obj)
    parts: list[str] = [run_state(kind, obj)]
    if status.get("phase"):
        parts.append(f"phase={status['phase']}")
    true = [str(c.get("type")) for c in status.get("conditions") or () if isinstance(c, Mapping)
            and str(c.get("status")) == "True"]
    if true:
        parts.append(f"conditions={','.join(true)}")
    for key in ("reason", "jobName"):
        if status.get(key):
            parts.append(f"{key}={status[key]}")
    if status.get("message"):
        parts.append(f"message={str(status['message'])[:200]!r}")
    return " ".join(parts)
