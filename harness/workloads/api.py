"""One workload kind's objects on one cluster: discovery, create, read, watch, delete, and their pods.

Used by the MLflow backend (which wraps errors into messages a user acts on)
and by the harness (run driver, waits, evidence). Every call goes through the
``ApiClient`` it is given (never the kubernetes package's process-global
configuration) with a request timeout, so an unreachable cluster fails in
seconds. Any group's objects are reached through ``CustomObjectsApi``, which
speaks the generic ``/apis/<group>/<version>`` paths: ``batch/v1`` Jobs as well
as custom resources. The plural is found by API discovery.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client as k8s_client
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from harness._errors import HarnessError
from harness.workloads.kind import WorkloadKind

__all__ = [
    "REQUEST_TIMEOUT",
    "KindNotServed",
    "Owners",
    "Served",
    "WorkloadClient",
    "discover",
    "not_found_kind",
    "owner_refs",
    "pause_until_changed",
]

REQUEST_TIMEOUT: tuple[float, float] = (10.0, 60.0)
"""(connect, read) seconds for one API request."""


class KindNotServed(HarnessError):
    """The cluster does not serve the workload's group/version/kind; the message says what it serves."""


@dataclass(frozen=True)
class Served:
    """What discovery says about a kind: its plural and whether it is namespaced."""

    plural: str
    namespaced: bool


def not_found_kind(exc: ApiException) -> str | None:
    """The ``details.kind`` of a 404 Status body (``customjobs``, ``namespaces``), if any."""
    try:
        details = json.loads(exc.body or "").get("details") or {}
    except (TypeError, ValueError, AttributeError):
        return None
    kind = details.get("kind") if isinstance(details, Mapping) else None
    return str(kind) if kind else None


def discover(objects: k8s_client.CustomObjectsApi, kind: WorkloadKind) -> Served:
    """Find ``kind``'s plural by API discovery; :class:`KindNotServed` with the fix when the cluster lacks it."""
    try:
        listing = objects.get_api_resources(kind.group, kind.version, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            raise KindNotServed(
                f"the cluster serves no API group/version {kind.api_version} for {kind.describe()}: install its "
                "CRD and controller (the settings' 'stack', e.g. kubectl apply -k <its config>), or fix the "
                "template's apiVersion") from exc
        raise
    resources = getattr(listing, "resources", None) or []
    for res in resources:
        if res.kind == kind.kind and "/" not in str(res.name):
            return Served(plural=str(res.name), namespaced=bool(res.namespaced))
    offered = sorted({str(r.kind) for r in resources if "/" not in str(r.name)})
    raise KindNotServed(f"{kind.api_version} is served but has no kind {kind.kind} (it has: {', '.join(offered)}); "
                        "fix the template's kind or install the CRD that defines it")


class WorkloadClient:
    """One kind's objects in one namespace, plus their pods; raw ``ApiException``s (callers translate)."""

    def __init__(self, objects: k8s_client.CustomObjectsApi, core: k8s_client.CoreV1Api | None, kind: WorkloadKind,
                 namespace: str, served: Served | None = None, *,
                 api_client: k8s_client.ApiClient | None = None) -> None:
        self.kind = kind
        self.namespace = namespace
        self.objects = objects
        self._core = core
        self._api_client = api_client
        self._served = served

    @classmethod
    def of(cls, api_client: k8s_client.ApiClient, kind: WorkloadKind, namespace: str) -> WorkloadClient:
        """A client of ``kind`` in ``namespace`` over ``api_client`` (the harness's :class:`Kube` has one)."""
        return cls(k8s_client.CustomObjectsApi(api_client), None, kind, namespace, api_client=api_client)

    @property
    def core(self) -> k8s_client.CoreV1Api:
        """The core API (pods, logs), made on first use.

        Lazily, because its module alone takes about 0.7 s to import and the
        MLflow backend, a process per run, reads no pod on a run that goes well.
        """
        if self._core is None:
            self._core = k8s_client.CoreV1Api(self._api_client)
        return self._core

    @property
    def served(self) -> Served:
        if self._served is None:
            self._served = discover(self.objects, self.kind)
        return self._served

    def _args(self) -> tuple[str, str, str, str]:
        return self.kind.group, self.kind.version, self.namespace, self.served.plural

    def list_objects(self, *, label_selector: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        extra: dict[str, Any] = {}
        if label_selector:
            extra["label_selector"] = label_selector
        if limit:
            extra["limit"] = limit
        found = self.objects.list_namespaced_custom_object(*self._args(), _request_timeout=REQUEST_TIMEOUT, **extra)
        return cast(list[dict[str, Any]], found.get("items", []))

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create with strict field validation: a misspelt template field is refused, never pruned."""
        created = self.objects.create_namespaced_custom_object(
            *self._args(), dict(body), field_validation="Strict", _request_timeout=REQUEST_TIMEOUT)
        return cast(dict[str, Any], created)

    def get(self, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist (any other error raises)."""
        try:
            obj = self.objects.get_namespaced_custom_object(*self._args(), name, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404 and not_found_kind(exc) == self.served.plural:
                return None
            raise
        return cast(dict[str, Any], obj)

    def for_run(self, run_id: str) -> dict[str, Any] | None:
        """The object labelled with ``run_id`` (None if there is none yet; several is an error)."""
        items = self.list_objects(label_selector=f"{self.kind.run_label}={run_id}")
        if len(items) > 1:
            raise HarnessError(f"{len(items)} {self.kind.kind}s carry run id {run_id}: "
                               f"{[i['metadata']['name'] for i in items]}")
        return items[0] if items else None

    def delete(self, name: str) -> bool:
        """Delete with background propagation (its pods go too); False if it was absent."""
        try:
            self.objects.delete_namespaced_custom_object(*self._args(), name, propagation_policy="Background",
                                                         _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404 and not_found_kind(exc) == self.served.plural:
                return False
            raise
        return True

    def wait_change(self, name: str, resource_version: str, timeout: float) -> bool:
        """Block until ``name`` changes after ``resource_version`` or ``timeout`` s pass; False if it cannot watch.

        A watch instead of a sleep: the end is seen the moment the controller
        writes it, not up to a poll interval later. Callers sleep their
        interval when this returns False (e.g. 410 Gone for an old version).
        """
        watcher = k8s_watch.Watch()
        try:
            for _event in watcher.stream(
                self.objects.list_namespaced_custom_object, *self._args(),
                field_selector=f"metadata.name={name}", resource_version=resource_version,
                timeout_seconds=max(1, int(timeout)),
                _request_timeout=(REQUEST_TIMEOUT[0], timeout + REQUEST_TIMEOUT[1]),
            ):
                return True
        except Exception:
            return False
        finally:
            watcher.stop()
        return True

    def pods(self, obj: Mapping[str, Any]) -> list[Any]:
        """The object's pods: by the kind's label selector, else by walking ownerReferences down from it."""
        name = str(obj["metadata"]["name"])
        selector = self.kind.pod_selector(name)
        if selector is not None:
            return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                      _request_timeout=REQUEST_TIMEOUT).items)
        uid = (obj.get("metadata") or {}).get("uid")
        owners = Owners(self.objects, self.namespace)
        return [p for p in self.core.list_namespaced_pod(self.namespace, _request_timeout=REQUEST_TIMEOUT).items
                if uid in owners.chain(owner_refs(p))]

    def logs(self, pod: Any) -> Iterator[tuple[str, bool, str]]:
        """``(container, previous, text)`` for every init and app container of ``pod``, current then previous."""
        containers = [c.name for c in (pod.spec.init_containers or [])] + [c.name for c in pod.spec.containers]
        restarted = {s.name for s in [*(pod.status.init_container_statuses or []),
                                      *(pod.status.container_statuses or [])] if (s.restart_count or 0) > 0}
        for container in containers:
            for previous in (False, True):
                if previous and container not in restarted:
                    continue
                try:
                    text = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace, container=container,
                                                             previous=previous, timestamps=True,
                                                             _request_timeout=REQUEST_TIMEOUT)
                except ApiException as exc:
                    text = f"<no log: HTTP {exc.status} {exc.reason}>"
                except Exception as exc:  # a read timeout or a broken stream: say so, keep the other logs
                    text = f"<no log: {type(exc).__name__}: {exc}>"
                yield container, previous, str(text or "")


def pause_until_changed(wait_change: Callable[[str, str, float], bool], name: str, obj: Mapping[str, Any] | None,
                        seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Until ``obj`` (named ``name``) changes, or ``seconds`` pass: the sleep of a ``wait_for`` on an object.

    ``wait_change`` is a watch from the object's resourceVersion
    (:meth:`WorkloadClient.wait_change`, or the backend's wrapper of it). A poll
    loop sees an end up to a whole interval late; this sees it as the controller
    writes it. Without a version to watch from, or when the watch cannot run,
    it sleeps.
    """
    version = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    if version is None or not wait_change(name, str(version), seconds):
        sleep(seconds)


def owner_refs(pod: Any) -> list[dict[str, Any]]:
    """A typed pod's ownerReferences as the dicts an object read from the API carries."""
    return [{"uid": r.uid, "apiVersion": r.api_version, "kind": r.kind, "name": r.name,
             "controller": r.controller} for r in pod.metadata.owner_references or []]


class Owners:
    """Reads the objects ownerReferences name, in one namespace; plurals by discovery, cached per reader."""

    def __init__(self, objects: k8s_client.CustomObjectsApi, namespace: str) -> None:
        self._objects = objects
        self._namespace = namespace
        self._plurals: dict[tuple[str, str], str | None] = {}
        self._read: dict[str, dict[str, Any] | None] = {}

    def plural(self, api_version: str, kind: str) -> str | None:
        """The plural of ``kind`` in ``api_version`` (None for core-group kinds and kinds not served)."""
        if (api_version, kind) not in self._plurals:
            group, _, version = api_version.rpartition("/")
            found = None
            if group:
                try:
                    listing = self._objects.get_api_resources(group, version, _request_timeout=REQUEST_TIMEOUT)
                    found = next((r.name for r in listing.resources if r.kind == kind and "/" not in r.name), None)
                except ApiException:
                    found = None
            self._plurals[(api_version, kind)] = found
        return self._plurals[(api_version, kind)]

    def read(self, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        """The object ``ref`` (an ownerReference) names, or None if it cannot be read."""
        uid = str(ref.get("uid"))
        if uid not in self._read:
            plural = self.plural(str(ref.get("apiVersion")), str(ref.get("kind")))
            obj = None
            if plural is not None:
                group, _, version = str(ref["apiVersion"]).rpartition("/")
                try:
                    obj = self._objects.get_namespaced_custom_object(group, version, self._namespace, plural,
                                                                     ref["name"], _request_timeout=REQUEST_TIMEOUT)
                except ApiException:
                    obj = None
            self._read[uid] = obj
        return self._read[uid]

    def chain(self, refs: list[dict[str, Any]]) -> set[str]:
        """Every uid up the ownerReference chains starting at ``refs`` (pod -> Job -> CustomJob ...)."""
        seen: set[str] = set()
        pending = list(refs)
        while pending:
            ref = pending.pop()
            if str(ref.get("uid")) in seen:
                continue
            seen.add(str(ref.get("uid")))
            pending.extend(((self.read(ref) or {}).get("metadata") or {}).get("ownerReferences") or [])
        return seen
