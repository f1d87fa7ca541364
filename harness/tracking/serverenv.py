"""The environment both MLflow servers start with: what a test bed's tracking server needs, and no more.

MLflow 3's server starts a job system by default (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``):
a job runner and several Huey consumers, each a Python process that imports MLflow
and polls its queue. The harness runs no server-side jobs (they serve GenAI
evaluation and prompt optimisation), and on two cores those eight processes cost
what a test bed cannot spare: measured on the local server, 11 processes and 32 s
of CPU in its first 40 s with it, 3 processes and 19 s without. Both servers turn
it off here, in one place, so they stay alike.
"""

from __future__ import annotations

__all__ = ["SERVER_ENV"]

SERVER_ENV: dict[str, str] = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}
"""Variables set on every ``mlflow server`` the harness starts (locally and in the cluster)."""
