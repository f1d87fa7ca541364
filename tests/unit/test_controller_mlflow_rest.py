"""Closing MLflow runs over REST: request building, decisions, and the wire format."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from customjob_controller import contract, mlflow_rest

URI = "http://mlflow.example:5000/"
RUN = "0123456789abcdef0123456789abcdef"
OWNER = mlflow_rest.Owner("CustomJob", "team-a", "train-1", "cj-uid-1")
TAGS = [{"key": contract.TAG_WORKLOAD, "value": "CustomJob team-a/train-1 uid=cj-uid-1"}]
OWNED = json.dumps({"run": {"info": {"status": "RUNNING"}, "data": {"tags": TAGS}}}).encode()


def test_request_builders_match_the_mlflow_rest_api() -> None:
    assert mlflow_rest.get_run(URI, RUN) == mlflow_rest.Request(
        "GET", f"http://mlflow.example:5000/api/2.0/mlflow/runs/get?run_id={RUN}"
    )
    assert mlflow_rest.update_run(URI, RUN, "FAILED", 1700000000123) == mlflow_rest.Request(
        "POST",
        "http://mlflow.example:5000/api/2.0/mlflow/runs/update",
        {"run_id": RUN, "status": "FAILED", "end_time": 1700000000123},
    )
    tag = mlflow_rest.set_tag("http://h/prefix", RUN, contract.TAG_FAILURE_REASON, "x" * 9000)
    assert tag.url == "http://h/prefix/api/2.0/mlflow/runs/set-tag"
    assert tag.body is not None
    assert tag.body["key"] == "training.example.com/failure-reason"
    assert len(tag.body["value"]) == mlflow_rest.MAX_TAG_VALUE


class FakeMlflow:
    """Records requests; answers runs/get with a fixed status and tags (by default: the run is OWNER's)."""

    def __init__(self, run_status: str, fail: Exception | None = None,
                 tags: list[dict[str, str]] | None = None) -> None:
        self.run_status = run_status
        self.fail = fail
        self.tags = TAGS if tags is None else tags
        self.calls: list[mlflow_rest.Request] = []

    def __call__(self, request: mlflow_rest.Request, timeout: float) -> Mapping[str, Any]:
        assert 0 < timeout <= 10
        self.calls.append(request)
        if self.fail is not None:
            raise self.fail
        if request.url.split("?")[0].endswith("runs/get"):
            return {"run": {"info": {"run_id": RUN, "status": self.run_status}, "data": {"tags": self.tags}}}
        return {}


def _finalize(fake: FakeMlflow, *, succeeded: bool) -> mlflow_rest.Outcome:
    return mlflow_rest.finalize_run(
        URI, RUN, status="FINISHED" if succeeded else "FAILED", reason="OOMKilled", message="limit 64Mi",
        end_time_ms=42, owner=OWNER, sender=fake
    )


@pytest.mark.parametrize("open_status", ["RUNNING", "SCHEDULED"])
def test_open_run_of_a_failed_job_is_failed_and_tagged(open_status: str) -> None:
    fake = FakeMlflow(open_status)
    outcome = _finalize(fake, succeeded=False)
    assert outcome == mlflow_rest.Outcome("closed", open_status)
    # the reason first: a reader who sees the run ended FAILED finds why (CI 37 read FAILED between the two)
    assert [c.url.rsplit("/", 1)[-1].split("?")[0] for c in fake.calls] == ["get", "set-tag", "update"]
    assert fake.calls[2].body == {"run_id": RUN, "status": "FAILED", "end_time": 42}
    assert fake.calls[1].body is not None
    assert fake.calls[1].body["value"] == "OOMKilled: limit 64Mi"


def test_open_run_of_a_succeeded_job_is_finished_without_tag() -> None:
    fake = FakeMlflow("RUNNING")
    assert _finalize(fake, succeeded=True).action == "closed"
    assert len(fake.calls) == 2
    assert fake.calls[1].body is not None
    assert fake.calls[1].body["status"] == "FINISHED"


@pytest.mark.parametrize("done", ["FINISHED", "FAILED", "KILLED"])
def test_terminal_runs_are_not_touched(done: str) -> None:
    fake = FakeMlflow(done)
    assert _finalize(fake, succeeded=True) == mlflow_rest.Outcome("already-terminal", done)
    assert len(fake.calls) == 1


def test_failure_reason_is_tagged_even_if_the_trainer_closed_the_run() -> None:
    fake = FakeMlflow("FAILED")
    _finalize(fake, succeeded=False)
    assert [c.url.rsplit("/", 1)[-1].split("?")[0] for c in fake.calls] == ["get", "set-tag"]


def test_unreachable_server_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeMlflow("RUNNING", fail=ConnectionRefusedError("refused"))
    outcome = _finalize(fake, succeeded=False)
    assert outcome.action == "error"
    assert "refused" in outcome.detail
    assert "could not read MLflow run" in caplog.text


# --- the real urllib sender against a local HTTP server -------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, dict[str, str], Any]]] = []

    def _reply(self, payload: dict[str, Any], code: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, dict(self.headers), None))
        self._reply({"run": {"info": {"status": "RUNNING"}, "data": {"tags": TAGS}}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("POST", self.path, dict(self.headers), json.loads(raw)))
        if self.path.endswith("set-tag"):
            self._reply({"error_code": "INTERNAL_ERROR"}, code=500)
        else:
            self._reply({})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.seen = []
    httpd = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_urllib_sender_speaks_json_and_http_errors_are_not_fatal(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret")
    outcome = mlflow_rest.finalize_run(
        server,
        RUN,
        status="FAILED",
        reason="DeadlineExceeded",
        message="too slow",
        end_time_ms=7,
        owner=OWNER,
        with_token=True,
        timeout=2.0,
    )
    assert outcome.action == "error"
    assert "500" in outcome.detail
    (get, tag, update) = _Recorder.seen  # the tag write failed; the run is closed all the same
    assert get[:2] == ("GET", f"/api/2.0/mlflow/runs/get?run_id={RUN}")
    assert update[0:2] == ("POST", "/api/2.0/mlflow/runs/update")
    assert update[2]["Content-Type"] == "application/json"
    assert update[2]["Authorization"] == "Bearer s3cret"
    assert update[3] == {"run_id": RUN, "status": "FAILED", "end_time": 7}
    assert tag[3] == {"run_id": RUN, "key": contract.TAG_FAILURE_REASON, "value": "DeadlineExceeded: too slow"}


def test_the_token_goes_only_where_the_caller_says(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy decides: a server that is merely allowed (``*``), not listed, never sees the token."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret")
    mlflow_rest.finalize_run(server, RUN, status="KILLED", reason="CustomJobDeleted", message="gone",
                             end_time_ms=7, owner=OWNER, timeout=2.0)
    assert _Recorder.seen, "the server was called"
    assert all("Authorization" not in headers for _m, _p, headers, _b in _Recorder.seen)
    assert _Recorder.seen[2][3] == {"run_id": RUN, "status": "KILLED", "end_time": 7}  # after the reason's tag


def test_only_terminal_statuses_are_accepted() -> None:
    with pytest.raises(ValueError, match="RUNNING"):
        mlflow_rest.finalize_run(URI, RUN, status="RUNNING", reason="x", message="", end_time_ms=1,
                                 owner=OWNER, sender=FakeMlflow("RUNNING"))


def test_closed_port_fails_fast_and_softly() -> None:
    outcome = mlflow_rest.finalize_run(
        "http://127.0.0.1:9", RUN, status="FINISHED", reason="Completed", message="", end_time_ms=1, owner=OWNER,
        timeout=1.0
    )
    assert outcome.action == "error"


class _Witness(BaseHTTPRequestHandler):
    """A loopback server that records every request it gets (and, as 'the attacker', the Authorization header)."""

    seen: ClassVar[list[tuple[str, str | None]]] = []
    redirect_to: ClassVar[str | None] = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(OWNED)


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[HTTPServer, str]:
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_a_redirect_never_carries_the_token_to_another_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed tracking server answers 302 to another host: the token stays home, the call fails."""
    attacker = type("Attacker", (_Witness,), {"seen": [], "redirect_to": None})
    listed = type("Listed", (_Witness,), {"seen": []})
    evil, evil_uri = _serve(attacker)
    home, home_uri = _serve(listed)
    listed.redirect_to = evil_uri
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret")
    try:
        outcome = mlflow_rest.finalize_run(home_uri, RUN, status="FAILED", reason="r", message="m",
                                           end_time_ms=1, owner=OWNER, with_token=True)
    finally:
        evil.shutdown()
        home.shutdown()
    assert outcome.action == "error"
    assert "redirect" in outcome.detail
    assert listed.seen == [(f"/api/2.0/mlflow/runs/get?run_id={RUN}", "Bearer s3cret")]
    assert attacker.seen == [], "the redirect was followed (with the token)"


# --- whose run it is: the workload tag ----------------------------------------------------------


def test_the_workload_tag_key_and_format_are_the_harness_ones() -> None:
    """The submitter (harness) writes the tag, the controller reads it: one key, one format."""
    from harness import contract as harness_contract
    from harness.workloads import closing

    assert closing.WORKLOAD_TAG == contract.TAG_WORKLOAD == harness_contract.TAG_WORKLOAD
    assert harness_contract.REASON_RUN_NOT_OWNED == contract.REASON_RUN_NOT_OWNED == "RunNotOwned"
    body = {"kind": "CustomJob", "metadata": {"name": "train-1", "namespace": "team-a"}}
    before = closing.workload_tag(body)
    after = closing.workload_tag({**body, "metadata": {**body["metadata"], "uid": "6f1c2d9e-0b7a-4c1e-9a52-1f0e"}})
    assert (before, after) == ("CustomJob team-a/train-1", "CustomJob team-a/train-1 uid=6f1c2d9e-0b7a-4c1e-9a52-1f0e")
    assert mlflow_rest.Owner.parse(before) == mlflow_rest.Owner("CustomJob", "team-a", "train-1", None)
    assert mlflow_rest.Owner.parse(after) == mlflow_rest.Owner("CustomJob", "team-a", "train-1",
                                                               "6f1c2d9e-0b7a-4c1e-9a52-1f0e")


@pytest.mark.parametrize("value", ["", "CustomJob", "CustomJob train-1", "CustomJob a/b/c", "CustomJob a/b uid=",
                                   "CustomJob a/b uid=x extra", "CustomJob  a/b", "custom job a/b", "CustomJob a/b\n"
                                   "CustomJob c/d"])
def test_a_malformed_workload_tag_names_nobody(value: str) -> None:
    assert mlflow_rest.Owner.parse(value) is None
    problem = mlflow_rest.ownership_problem(RUN, {contract.TAG_WORKLOAD: value}, OWNER)
    assert problem is not None
    assert "not '<Kind> <namespace>/<name>[ uid=<uid>]'" in problem


def test_a_run_that_is_not_the_owners_is_read_and_never_written() -> None:
    theirs = [{"key": contract.TAG_WORKLOAD, "value": "CustomJob team-b/theirs uid=b-1"}]
    fake = FakeMlflow("RUNNING", tags=theirs)
    outcome = _finalize(fake, succeeded=False)
    assert outcome.action == "not-owned"
    assert "belongs to CustomJob team-b/theirs, not to CustomJob team-a/train-1" in (outcome.detail or "")
    assert [c.method for c in fake.calls] == ["GET"], "no update, no tag"
    check = mlflow_rest.check_owner(URI, RUN, owner=OWNER, sender=fake)
    assert (check.action, check.run_status) == ("not-owned", "RUNNING")
    assert mlflow_rest.check_owner(URI, RUN, owner=OWNER, sender=FakeMlflow("RUNNING")).action == "owned"
    assert mlflow_rest.check_owner(URI, RUN, owner=OWNER, sender=FakeMlflow("RUNNING", fail=OSError("x"))).action \
        == "error"


class _NotFound(BaseHTTPRequestHandler):
    """MLflow's answer for a run it does not have, or (``/elsewhere``) a 404 from something that is not MLflow."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        mlflow = not self.path.startswith("/elsewhere")
        body = (b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run \'x\' not found"}' if mlflow
                else b"<html>404 page not found</html>")
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_run_the_server_does_not_have_is_final_and_any_other_404_is_retried() -> None:
    httpd, uri = _serve(_NotFound)
    try:
        missing = mlflow_rest.check_owner(uri, RUN, owner=OWNER, timeout=2.0)
        closing = mlflow_rest.finalize_run(uri, RUN, status="FAILED", reason="r", message="m", end_time_ms=1,
                                           owner=OWNER, timeout=2.0)
        proxy = mlflow_rest.check_owner(f"{uri}/elsewhere", RUN, owner=OWNER, timeout=2.0)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert missing.action == closing.action == "not-owned"
    assert f"{RUN} does not exist at {uri}" in missing.detail
    assert proxy.action == "error", "a 404 that is not MLflow's answer about the run may be a wrong path: retried"
