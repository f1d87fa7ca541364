"""Close an MLflow run the workload left open, via MLflow's REST API (stdlib only).

Why this exists: a trainer that is OOM-killed, never starts (image errors) or
hits its deadline cannot end its own run, so the run would stay ``RUNNING``
forever. When a CustomJob reaches a terminal phase the controller asks MLflow
for the run's status and, if it is still ``RUNNING``/``SCHEDULED``, sets it to
``FINISHED``/``FAILED`` (``KILLED`` when the CustomJob was deleted mid-run)
and records the reason as a tag. The caller retries an ``error`` outcome.

Why not the ``mlflow`` package: it would add hundreds of MB to the controller
image for three HTTP calls. Request building is pure (see :func:`get_run`,
:func:`update_run`, :func:`set_tag`) so tests need no server; :func:`send` is
the only I/O. Errors never propagate past :func:`finalize_run`: a tracking
server outage must not wedge the controller, it is logged instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from customjob_controller import contract

LOG = logging.getLogger(__name__)

OPEN_STATUSES = frozenset({"RUNNING", "SCHEDULED"})
TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})
MAX_TAG_VALUE = 5000
"""MLflow accepts at least 5000 characters in a tag value on every store."""
DEFAULT_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class Request:
    """One REST call, fully described, so tests can compare it as data."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    bearer: bool = False
    """Send ``MLFLOW_TRACKING_TOKEN``: only for servers the policy lists (see :mod:`.policy`)."""


Sender = Callable[[Request, float], Mapping[str, Any]]


def _endpoint(tracking_uri: str, path: str) -> str:
    return tracking_uri.rstrip("/") + "/api/2.0/mlflow/" + path


def get_run(tracking_uri: str, run_id: str) -> Request:
    """``GET runs/get``: the run's ``info.status`` decides whether to act."""
    query = urllib.parse.urlencode({"run_id": run_id})
    return Request("GET", f"{_endpoint(tracking_uri, 'runs/get')}?{query}")


def update_run(tracking_uri: str, run_id: str, status: str, end_time_ms: int) -> Request:
    """``POST runs/update`` with a terminal status and end time (epoch ms)."""
    return Request(
        "POST",
        _endpoint(tracking_uri, "runs/update"),
        {"run_id": run_id, "status": status, "end_time": int(end_time_ms)},
    )


def set_tag(tracking_uri: str, run_id: str, key: str, value: str) -> Request:
    """``POST runs/set-tag``; long values are cut to :data:`MAX_TAG_VALUE`."""
    return Request(
        "POST",
        _endpoint(tracking_uri, "runs/set-tag"),
        {"run_id": run_id, "key": key, "value": value[:MAX_TAG_VALUE]},
    )


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is an error, never followed: urllib would resend the Authorization header to wherever it points."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused (the token goes to listed "
                                     "tracking servers only; list the server the redirect names)", headers, fp)


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


def send(request: Request, timeout: float) -> Mapping[str, Any]:
    """Perform a request with urllib and return the decoded JSON object.

    ``MLFLOW_TRACKING_TOKEN`` (read per call, never at import) becomes a
    bearer token for servers with auth enabled, on requests marked ``bearer``.
    Redirects are refused, not followed (a listed server's 302 must not carry
    the token to another host).
    """
    if urllib.parse.urlsplit(request.url).scheme not in ("http", "https"):
        raise ValueError(f"refusing non-HTTP tracking URI {request.url!r}")
    data = None if request.body is None else json.dumps(request.body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    token = os.environ.get("MLFLOW_TRACKING_TOKEN") if request.bearer else None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(request.url, data=data, headers=headers, method=request.method)  # noqa: S310 - scheme checked above
    with _NO_REDIRECTS.open(req, timeout=timeout) as resp:
        payload = resp.read()
    decoded = json.loads(payload) if payload.strip() else {}
    return decoded if isinstance(decoded, dict) else {}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :func:`finalize_run` did, for logs, events and tests."""

    action: str
    """``closed`` (status changed), ``already-terminal``, or ``error``."""
    run_status: str | None = None
    detail: str = ""


def finalize_run(
    tracking_uri: str,
    run_id: str,
    *,
    status: str,
    reason: str,
    message: str,
    end_time_ms: int,
    with_token: bool = False,
    sender: Sender = send,
    timeout: float = DEFAULT_TIMEOUT,
) -> Outcome:
    """Make sure the run is terminal (``status``: FINISHED, FAILED or KILLED); tag why unless FINISHED.

    The tag is written on failure even if the trainer already ended the run,
    because the controller's reason (e.g. ``OOMKilled``) is not otherwise
    visible from MLflow.
    """
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"not a terminal MLflow run status: {status!r}")

    def call(request: Request) -> Mapping[str, Any]:
        return sender(dataclasses.replace(request, bearer=with_token), timeout)

    try:
        info = (call(get_run(tracking_uri, run_id)).get("run") or {}).get("info") or {}
        current = info.get("status")
        action = "already-terminal"
        if current in OPEN_STATUSES:
            call(update_run(tracking_uri, run_id, status, end_time_ms))
            action = "closed"
        if status != "FINISHED":
            call(set_tag(tracking_uri, run_id, contract.TAG_FAILURE_REASON, f"{reason}: {message}"))
        return Outcome(action, current)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # URLError/HTTPError subclass OSError; ValueError covers bad JSON.
        LOG.warning("could not finalise MLflow run %s at %s: %s", run_id, tracking_uri, exc)
        return Outcome("error", None, str(exc))
