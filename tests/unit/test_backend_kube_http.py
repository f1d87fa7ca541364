"""CustomJobs against a stdlib HTTP stand-in for the API server (no cluster).

This pins what goes over the wire with the strict (pydantic) kubernetes 37
client: the custom-objects paths, no ``pretty``, ``propagationPolicy=Background``
on delete, the body as JSON, and a client built from an explicit kubeconfig.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from harness import contract
from harness.backend.config import BackendConfig
from harness.backend.errors import ApiRejected, NamespaceNotFound
from harness.backend.kube import Workloads
from harness.workloads import CUSTOMJOB

GROUP_VERSION = f"/apis/{contract.GROUP}/{contract.VERSION}"
BASE = f"{GROUP_VERSION}/namespaces/team/{contract.PLURAL}"


class FakeApiServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}
        self.namespaces = {"team"}


class _Handler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> tuple[str, dict[str, list[str]], Any]:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        query = parse_qs(url.query)
        self.server.requests.append((self.command, url.path, query, body))
        return url.path, query, body

    def _missing(self, kind: str, name: str) -> None:
        self._reply(
            404,
            {
                "kind": "Status",
                "message": f'{kind} "{name}" not found',
                "details": {"name": name, "kind": kind},
            },
        )

    def _namespace_ok(self, path: str) -> bool:
        namespace = path.split("/")[5]
        if namespace in self.server.namespaces:
            return True
        self._missing("namespaces", namespace)
        return False

    def do_GET(self) -> None:
        path, _, _ = self._record()
        if path == GROUP_VERSION:  # API discovery: the plural is found, never assumed
            self._reply(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": path[6:],
                              "resources": [{"name": contract.PLURAL, "singularName": contract.SINGULAR,
                                             "namespaced": True, "kind": contract.KIND, "verbs": ["get"]},
                                            {"name": f"{contract.PLURAL}/status", "singularName": "",
                                             "namespaced": True, "kind": contract.KIND, "verbs": ["get"]}]})
            return
        if not self._namespace_ok(path):
            return
        if path == BASE:
            self._reply(200, {"items": list(self.server.objects.values())})
        elif path.startswith(BASE + "/"):
            name = path.rsplit("/", 1)[1]
            obj = self.server.objects.get(name)
            self._reply(200, obj) if obj else self._missing(contract.PLURAL, name)

    def do_POST(self) -> None:
        path, _, body = self._record()
        if not self._namespace_ok(path):
            return
        if not body["spec"].get("command"):
            self._reply(422, {"kind": "Status", "message": "spec.command: Required value"})
            return
        self.server.objects[body["metadata"]["name"]] = body
        self._reply(201, body)

    def do_DELETE(self) -> None:
        path, _, _ = self._record()
        name = path.rsplit("/", 1)[1]
        if self.server.objects.pop(name, None) is None:
            self._missing(contract.PLURAL, name)
        else:
            self._reply(200, {"kind": "Status", "status": "Success"})


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    srv = FakeApiServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def jobs(server: FakeApiServer, tmp_path: Path) -> Workloads:
    kubeconfig = tmp_path / "kubeconfig"
    host, port = server.server_address[:2]
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: other\n"
        f"clusters: [{{name: fake, cluster: {{server: 'http://{host!s}:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: u}},"
        " {name: other, context: {cluster: nowhere, user: u}}]\n"
    )
    cfg = BackendConfig.from_dict(
        {
            "template-path": "t",
            "image-delivery": "none",
            "kubeconfig": str(kubeconfig),
            "kube-context": "fake",
            "namespace": "team",
        }
    )
    return Workloads.connect(cfg, CUSTOMJOB, "team")


def body(name: str = "j", command: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.KIND,
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"image": "x:1", "command": command if command is not None else ["python", "a b"]},
    }


def test_roundtrip_over_http(server: FakeApiServer, jobs: Workloads) -> None:
    jobs.preflight()
    assert jobs.create(body())["spec"]["command"] == ["python", "a b"]
    obj = jobs.get("j")
    assert obj is not None
    assert obj["metadata"]["name"] == "j"
    assert jobs.delete("j") is True
    assert jobs.get("j") is None
    assert jobs.delete("j") is False
    methods = [(m, p) for m, p, _, _ in server.requests]
    assert methods[:4] == [("GET", GROUP_VERSION), ("GET", BASE), ("POST", BASE), ("GET", BASE + "/j")]
    assert methods.count(("GET", GROUP_VERSION)) == 1, "discovery is asked once per client"
    assert ("DELETE", BASE + "/j") in methods
    for _, _, query, _ in server.requests:
        assert "pretty" not in query
    assert server.requests[1][2]["limit"] == ["1"]
    delete = next(r for r in server.requests if r[0] == "DELETE")
    assert delete[2]["propagationPolicy"] == ["Background"]


def test_explicit_context_does_not_touch_global_config(jobs: Workloads) -> None:
    from kubernetes import client

    assert "127.0.0.1" not in client.Configuration.get_default_copy().host


def test_http_422_surfaces_the_server_message(jobs: Workloads) -> None:
    with pytest.raises(ApiRejected, match=r"spec\.command: Required value"):
        jobs.create(body(command=[]))


def test_missing_namespace(server: FakeApiServer, jobs: Workloads) -> None:
    server.namespaces.clear()
    with pytest.raises(NamespaceNotFound, match="kubectl create namespace team"):
        jobs.create(body())
