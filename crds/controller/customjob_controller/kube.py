"""The :class:`~customjob_controller.reconcile.Api` protocol on the kubernetes client.

Reads use ``_preload_content=False`` and ``json.loads``: the controller works
on plain dicts (as kopf hands them out), and skipping the client's pydantic
models avoids both the cost and the silent dropping of unknown fields.
The Job body, in contrast, goes through ``create_namespaced_job``'s
client-side validation (``V1Job``, ``extra="forbid"``), which the unit tests
mirror. Every call carries a request timeout: a hung API connection must not
pin one of kopf's worker threads forever.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pydantic
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from customjob_controller import contract, reconcile

TIMEOUT = 30.0
"""Seconds per API request (connect + read)."""
FIELD_MANAGER = contract.MANAGED_BY


def _json(resp: Any) -> dict[str, Any]:
    data = json.loads(resp.data)
    return data if isinstance(data, dict) else {}


def _message(exc: ApiException) -> str:
    """The Status message of an API error (the field errors), else its reason."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    return str(body.get("message") or exc.reason or exc.status) if isinstance(body, dict) else str(exc.reason)


class KubeApi:
    """Thin, typed wrapper; translates 404 to ``None`` and 409 to :class:`Conflict`."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    def get_customjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                self._custom.get_namespaced_custom_object(
                    contract.GROUP,
                    contract.VERSION,
                    namespace,
                    contract.PLURAL,
                    name,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                self._batch.read_namespaced_job(name, namespace, _preload_content=False, _request_timeout=TIMEOUT)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            model = client.V1Job.model_validate(dict(body))
        except pydantic.ValidationError as exc:
            raise reconcile.Rejected(str(exc)) from exc
        try:
            return _json(
                self._batch.create_namespaced_job(
                    namespace,
                    model,
                    field_manager=FIELD_MANAGER,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                )
            )
        except ApiException as exc:
            if exc.status == 409:
                raise reconcile.Conflict(str(exc.reason)) from exc
            if exc.status in (400, 422):
                raise reconcile.Rejected(_message(exc)) from exc
            raise

    def delete_job(self, namespace: str, name: str, *, foreground: bool = False) -> None:
        try:
            self._batch.delete_namespaced_job(
                name,
                namespace,
                propagation_policy="Foreground" if foreground else "Background",
                _request_timeout=TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def release_job(self, namespace: str, name: str, finalizer: str) -> None:
        """Remove ``finalizer`` from the Job with a JSON patch that first tests it is still at that index."""
        job = self.get_job(namespace, name)
        if job is None:
            return
        finalizers = list((job.get("metadata") or {}).get("finalizers") or ())
        if finalizer not in finalizers:
            return
        index = finalizers.index(finalizer)
        patch = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        try:
            self._batch.patch_namespaced_job(
                name,
                namespace,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type="application/json-patch+json",
                _preload_content=False,
                _request_timeout=TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            if exc.status in (409, 422):  # the list moved underneath us: the caller's next event retries
                raise reconcile.Conflict(_message(exc)) from exc
            raise

    def list_job_events(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        data = _json(
            self._core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.uid={job_uid},type=Warning",
                _preload_content=False,
                _request_timeout=TIMEOUT,
            )
        )
        return [e for e in data.get("items") or [] if isinstance(e, dict)]

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        data = _json(
            self._core.list_namespaced_pod(
                namespace, label_selector=label_selector, _preload_content=False, _request_timeout=TIMEOUT
            )
        )
        items = data.get("items") or []
        return [p for p in items if isinstance(p, dict)]

    def read_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str | None:
        try:
            resp = self._core.read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                tail_lines=int(lines),
                _preload_content=False,
                _request_timeout=TIMEOUT,
            )
            raw = getattr(resp, "data", resp)  # urllib3 response (typed as str upstream)
            return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        except ApiException:
            return None  # logs are a nicety; the status is still written

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return _json(
                self._custom.patch_namespaced_custom_object_status(
                    contract.GROUP,
                    contract.VERSION,
                    namespace,
                    contract.PLURAL,
                    name,
                    body,
                    field_manager=FIELD_MANAGER,
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                )
            )
        except ApiException as exc:
            if exc.status == 409:
                raise reconcile.Conflict(str(exc.reason)) from exc
            raise
