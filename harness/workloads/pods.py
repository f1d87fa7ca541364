"""What a workload's pods say about how it ended (pure: typed pod objects in, facts out).

A controller's status says *that* a job failed ("BackoffLimitExceeded");
the pods say *which* replica failed first and *why* (exit code, OOMKilled,
ImagePullBackOff, the last lines it printed). This module reads that from
the pods' container states so the run's failure reason and the evidence
bundle can say it, for every kind, whatever its controller reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["ContainerEnd", "first_failure", "log_tail", "replica_of", "stuck", "terminations"]

_REPLICA_LABELS = ("training.kubeflow.org/replica-type", "training.kubeflow.org/replica-index")


@dataclass(frozen=True)
class ContainerEnd:
    """One container instance that terminated."""

    pod: str
    container: str
    replica: str
    """The replica it belongs to (``master/0`` for Kubeflow's labels; else the pod name)."""
    exit_code: int | None
    reason: str
    message: str
    finished_at: datetime | None
    init: bool
    previous: bool
    """True for an earlier attempt (``lastState``) of a restarted container."""

    @property
    def failed(self) -> bool:
        return (self.exit_code not in (0, None)) or self.reason not in ("Completed", "")

    def describe(self) -> str:
        when = f" at {self.finished_at.isoformat()}" if self.finished_at else ""
        code = f"exit {self.exit_code}" if self.exit_code is not None else "no exit code"
        kind = "init container" if self.init else "container"
        attempt = " (previous attempt)" if self.previous else ""
        return f"{self.pod} {kind} {self.container}{attempt}: {self.reason or 'Terminated'}, {code}{when}"


def replica_of(pod: Any) -> str:
    labels = pod.metadata.labels or {}
    if all(label in labels for label in _REPLICA_LABELS):
        return f"{labels[_REPLICA_LABELS[0]]}/{labels[_REPLICA_LABELS[1]]}"
    return str(pod.metadata.name)


def terminations(pods: Iterable[Any]) -> list[ContainerEnd]:
    """Every terminated container instance (current and previous attempts), oldest end first."""
    out: list[ContainerEnd] = []
    for pod in pods:
        statuses = [(s, True) for s in pod.status.init_container_statuses or []]
        statuses += [(s, False) for s in pod.status.container_statuses or []]
        for st, init in statuses:
            for state, previous in ((st.state, False), (st.last_state, True)):
                term = getattr(state, "terminated", None) if state is not None else None
                if term is None:
                    continue
                out.append(ContainerEnd(
                    pod=str(pod.metadata.name), container=str(st.name), replica=replica_of(pod),
                    exit_code=term.exit_code, reason=str(term.reason or ""), message=str(term.message or "").strip(),
                    finished_at=term.finished_at, init=init, previous=previous))
    return sorted(out, key=lambda e: (e.finished_at is None, e.finished_at or datetime.min))


def first_failure(pods: Iterable[Any]) -> ContainerEnd | None:
    """The container that failed first (earliest end among failed ones), None if none failed."""
    return next((e for e in terminations(pods) if e.failed), None)


def stuck(pods: Iterable[Any]) -> list[str]:
    """Why pods that never ran are waiting: ``pod/container: ImagePullBackOff: ...``, ``pod: Unschedulable: ...``."""
    out = []
    for pod in pods:
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False":
                out.append(f"{pod.metadata.name}: {cond.reason}: {cond.message}")
        for st in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]:
            waiting = st.state.waiting if st.state is not None else None
            if waiting is not None and waiting.reason not in (None, "ContainerCreating", "PodInitializing"):
                out.append(f"{pod.metadata.name}/{st.name}: {waiting.reason}: {waiting.message or ''}".rstrip(": "))
    return out


def log_tail(text: str, *, lines: int = 15, chars: int = 1500) -> str:
    """The last ``lines`` non-empty lines of a log (timestamps stripped), at most ``chars`` characters."""
    kept: Sequence[str] = [_strip_timestamp(line) for line in text.splitlines() if line.strip()][-lines:]
    tail = "\n".join(kept)
    return tail[-chars:]


def _strip_timestamp(line: str) -> str:
    head, _, rest = line.partition(" ")
    return rest if len(head) >= 20 and head[:4].isdigit() and "T" in head else line
