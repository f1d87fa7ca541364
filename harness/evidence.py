"""Failure evidence: everything needed to debug a red e2e test without re-running it.

One directory per failed test under the bundle root (default
``build/e2e-bundles/<test id>/``, uploaded by GitHub Actions): the CustomJobs,
Jobs and Pods as YAML, the namespace's events in time order, every container's
current and previous log, the controller's and the MLflow server's logs, and
``kind export logs``. Collection never raises: a half-broken cluster still
yields what could be read, and ``errors.txt`` says what could not.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from harness import contract
from harness.kubeapi import Kube

__all__ = ["bundle_dir_for", "collect_bundle"]


def bundle_dir_for(root: Path, nodeid: str) -> Path:
    """A predictable, filesystem-safe directory name for a test id."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
    return root / safe[:150]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def collect_bundle(
    dest: Path,
    kube: Kube,
    *,
    namespaces: list[str],
    export_logs: Callable[[Path], None] | None = None,
    system_namespaces: tuple[str, ...] = ("customjob-system", "mlflow"),
    log: Callable[[str], None] = print,
) -> Path:
    """Write the bundle for ``namespaces`` (the test's) plus the system components; return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []

    def attempt(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # evidence collection must never mask the real failure
            errors.append(f"{what}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=2)}")

    for ns in namespaces:
        out = dest / ns
        attempt(f"{ns} customjobs", partial(_customjobs, kube, ns, out))
        attempt(f"{ns} jobs", partial(_jobs, kube, ns, out))
        attempt(f"{ns} events", partial(_events_file, kube, ns, out))
        attempt(f"{ns} pods", partial(_pods_and_logs, kube, ns, out))
    for ns in system_namespaces:
        out = dest / "system" / ns
        attempt(f"{ns} events", partial(_events_file, kube, ns, out))
        attempt(f"{ns} pods", partial(_pods_and_logs, kube, ns, out))
    if export_logs is not None:
        attempt("node logs (kind export logs)", partial(export_logs, dest / "kind-logs"))
    if errors:
        _write(dest / "errors.txt", "\n".join(errors))
    log(f"evidence bundle: {dest}")
    return dest


def _customjobs(kube: Kube, namespace: str, out: Path) -> None:
    found = kube.custom.list_namespaced_custom_object(contract.GROUP, contract.VERSION, namespace, contract.PLURAL)
    _write(out / "customjobs.yaml", _yaml(found))


def _jobs(kube: Kube, namespace: str, out: Path) -> None:
    jobs = kube.batch.list_namespaced_job(namespace)
    _write(out / "jobs.yaml", _yaml(kube.api.sanitize_for_serialization(jobs)))


def _events_file(kube: Kube, namespace: str, out: Path) -> None:
    _write(out / "events.txt", _events(kube, namespace))


def _events(kube: Kube, namespace: str) -> str:
    events = kube.core.list_namespaced_event(namespace).items

    def when(e: Any) -> str:
        t = e.last_timestamp or e.event_time or e.first_timestamp or e.metadata.creation_timestamp
        return t.isoformat() if t else ""

    lines = []
    for e in sorted(events, key=when):
        obj = e.involved_object
        lines.append(f"{when(e)}  {e.type:<7} {e.reason:<24} {obj.kind}/{obj.name}  x{e.count or 1}  {e.message}")
    return "\n".join(lines) + "\n"


def _pods_and_logs(kube: Kube, namespace: str, out: Path) -> None:
    pods = kube.core.list_namespaced_pod(namespace)
    _write(out / "pods.yaml", _yaml(kube.api.sanitize_for_serialization(pods)))
    for pod in pods.items:
        containers = [c.name for c in (pod.spec.init_containers or []) + pod.spec.containers]
        for c in containers:
            for previous in (False, True):
                try:
                    text = kube.core.read_namespaced_pod_log(pod.metadata.name, namespace, container=c,
                                                            previous=previous, timestamps=True)
                except ApiException as exc:
                    if previous:
                        continue  # no previous instance: the normal case
                    text = f"<no log: HTTP {exc.status} {exc.reason}>"
                suffix = ".previous.log" if previous else ".log"
                _write(out / "logs" / f"{pod.metadata.name}.{c}{suffix}", text)
