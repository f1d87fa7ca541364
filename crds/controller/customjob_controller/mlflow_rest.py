"""Close an MLflow run the workload left open, via MLflow's REST API (stdlib only).

Why this exists: a trainer that is OOM-killed, never starts (image errors) or
hits its deadline cannot end its own run, so the run would stay ``RUNNING``
forever. When a CustomJob reaches a terminal phase the controller asks MLflow
for the run's status and, if it is still ``RUNNING``/``SCHEDULED``, sets it to
``FINISHED``/``FAILED`` (``KILLED`` when the CustomJob was deleted mid-run)
and records the reason as a tag. The caller retries an ``error`` outcome.

Only the run's own CustomJob may do that. Anyone who may create a CustomJob
may write any ``runId`` into it, and the controller calls MLflow with its own
identity (and token), so without a check one team's CustomJob could fail
another team's run (a confused deputy). The submitter therefore tags the run
with the object it belongs to (:data:`contract.TAG_WORKLOAD`) *before* it
creates the object; :func:`check_owner` (before the Job is created) and
:func:`finalize_run` (before anything is written) read that tag from the same
``runs/get`` and act only when it names the CustomJob (:class:`Owner`).

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
import re
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


_WORKLOAD_TAG = re.compile(r"(?P<kind>[A-Za-z][A-Za-z0-9]*) (?P<namespace>[^\s/]+)/(?P<name>[^\s/]+)"
                           r"(?: uid=(?P<uid>[^\s]+))?")
"""``<Kind> <namespace>/<name>[ uid=<uid>]``: the value of :data:`contract.TAG_WORKLOAD`."""


@dataclasses.dataclass(frozen=True)
class Owner:
    """The object a run belongs to, as :data:`contract.TAG_WORKLOAD` names it."""

    kind: str
    namespace: str
    name: str
    uid: str | None = None
    """Absent in the tag until the submitter has seen the created object; always set for the expected owner."""

    @classmethod
    def parse(cls, value: str) -> Owner | None:
        """The owner a tag value names, or None if it does not follow the format."""
        match = _WORKLOAD_TAG.fullmatch(value.strip())
        if match is None:
            return None
        return cls(match["kind"], match["namespace"], match["name"], match["uid"])

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def ownership_problem(run_id: str, tags: Mapping[str, str], owner: Owner) -> str | None:
    """Why the run with these tags is not ``owner``'s (a message naming its owner and the fix), or None if it is.

    A tag without a uid matches by kind, namespace and name (the submitter
    writes it before the object, and so its uid, exists); with a uid, that
    must match too, so a later namesake of a deleted object is not its owner.
    """
    key = contract.TAG_WORKLOAD
    value = tags.get(key)
    fix = (f"name a run created for this CustomJob (the customjob backend tags its runs; by hand, set the tag "
           f"{key}={str(owner)!r} on a new run before creating the CustomJob)")
    if value is None:
        return (f"MLflow run {run_id} has no {key} tag, so nothing says it belongs to {owner}; the controller "
                f"creates Jobs for, and closes, only runs tagged for their CustomJob. Fix: {fix}")
    theirs = Owner.parse(value)
    if theirs is None:
        # The value is not echoed: it is read from someone else's run, the message goes to this namespace.
        return (f"MLflow run {run_id} has a {key} tag that is not '<Kind> <namespace>/<name>[ uid=<uid>]', so "
                f"it cannot be shown to belong to {owner}. Fix: {fix}")
    if (theirs.kind, theirs.namespace, theirs.name) != (owner.kind, owner.namespace, owner.name):
        return (f"MLflow run {run_id} belongs to {theirs}, not to {owner} (its {key} tag says so); it is left as "
                f"it is. Fix: {fix}")
    if theirs.uid is not None and theirs.uid != owner.uid:
        return (f"MLflow run {run_id} belongs to an earlier {theirs} (uid {theirs.uid}), not to this one (uid "
                f"{owner.uid}); it is left as it is. Fix: {fix}")
    return None


def _tags(run: Mapping[str, Any]) -> dict[str, str]:
    """``run.data.tags`` of a ``runs/get`` answer (a list of key/value objects) as a mapping."""
    tags = (run.get("data") or {}).get("tags") or ()
    return {str(t.get("key")): str(t.get("value")) for t in tags if isinstance(t, Mapping)}


def _missing(exc: BaseException) -> bool:
    """True for MLflow's answer to ``runs/get`` of a run that does not exist (404 RESOURCE_DOES_NOT_EXIST).

    Any other 404 (a wrong path prefix, a proxy) stays an error: only the
    server itself can say the run is not there.
    """
    if not isinstance(exc, urllib.error.HTTPError) or exc.code != 404:
        return False
    try:
        body = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :func:`finalize_run` or :func:`check_owner` found or did, for logs, events and tests."""

    action: str
    """``closed`` (status changed), ``already-terminal``, ``owned`` (:func:`check_owner` only), ``not-owned``
    (the run is another object's, or absent: nothing was written), or ``error`` (retry)."""
    run_status: str | None = None
    detail: str = ""


def check_owner(
    tracking_uri: str,
    run_id: str,
    *,
    owner: Owner,
    with_token: bool = False,
    sender: Sender = send,
    timeout: float = DEFAULT_TIMEOUT,
) -> Outcome:
    """Read the run and say whether its :data:`contract.TAG_WORKLOAD` names ``owner``; never writes."""
    return _read(tracking_uri, run_id, owner, lambda request: sender(dataclasses.replace(request, bearer=with_token),
                                                                     timeout))


def _read(tracking_uri: str, run_id: str, owner: Owner, call: Callable[[Request], Mapping[str, Any]]) -> Outcome:
    """``runs/get``: ``owned``, ``not-owned`` (another object's, or absent) or ``error``, with the run's status."""
    try:
        run = call(get_run(tracking_uri, run_id)).get("run") or {}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # URLError/HTTPError subclass OSError; ValueError covers bad JSON.
        if _missing(exc):
            return Outcome("not-owned", None, _absent(run_id, tracking_uri))
        LOG.warning("could not read MLflow run %s at %s: %s", run_id, tracking_uri, exc)
        return Outcome("error", None, str(exc))
    current = (run.get("info") or {}).get("status")
    problem = ownership_problem(run_id, _tags(run), owner)
    return Outcome("not-owned", current, problem) if problem else Outcome("owned", current)


def _absent(run_id: str, tracking_uri: str) -> str:
    return (f"MLflow run {run_id} does not exist at {tracking_uri}; create the run (tagged for this CustomJob) "
            "before the CustomJob, or name an existing one")


def finalize_run(
    tracking_uri: str,
    run_id: str,
    *,
    status: str,
    reason: str,
    message: str,
    end_time_ms: int,
    owner: Owner,
    with_token: bool = False,
    sender: Sender = send,
    timeout: float = DEFAULT_TIMEOUT,
) -> Outcome:
    """Make sure ``owner``'s run is terminal (``status``: FINISHED, FAILED or KILLED); tag why unless FINISHED.

    The tag is written on failure even if the trainer already ended the run,
    because the controller's reason (e.g. ``OOMKilled``) is not otherwise
    visible from MLflow. A run that is not ``owner``'s (see
    :func:`ownership_problem`), or does not exist, is not written to at all:
    ``not-owned``, which is final (no retry). The ownership is read in the
    same ``runs/get`` that decides whether to close.
    """
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"not a terminal MLflow run status: {status!r}")

    def call(request: Request) -> Mapping[str, Any]:
        return sender(dataclasses.replace(request, bearer=with_token), timeout)

    seen = _read(tracking_uri, run_id, owner, call)
    if seen.action != "owned":
        return seen
    # The reason goes in before the status: whoever reads the run as ended also reads why (tagged after it, a
    # reader polling for FAILED could see the run ended and no reason). A failed tag write does not keep the run
    # open (``finally``); it makes the outcome an error, and the retry tags the then terminal run.
    closes = seen.run_status in OPEN_STATUSES
    try:
        try:
            if status != "FINISHED":
                call(set_tag(tracking_uri, run_id, contract.TAG_FAILURE_REASON, f"{reason}: {message}"))
        finally:
            if closes:
                call(update_run(tracking_uri, run_id, status, end_time_ms))
        return Outcome("closed" if closes else "already-terminal", seen.run_status)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        LOG.warning("could not finalise MLflow run %s at %s: %s", run_id, tracking_uri, exc)
        return Outcome("error", None, str(exc))
