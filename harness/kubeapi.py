"""Small, typed helpers over the Kubernetes API of one cluster (one kubeconfig and context).

Reads go through the official client; applies go through ``kubectl apply
--server-side`` with the manifest on stdin (kustomize output included), which
is what a user types and gives the API server's own error text on rejection.
Waits are bounded and report the object's state history on timeout.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from harness import _exec
from harness._waiting import Probe, wait_for

__all__ = ["Kube"]


@dataclass
class Kube:
    """The API of one cluster, reached through a private kubeconfig file."""

    kubeconfig: Path
    kubectl_bin: Path
    context: str | None = None
    """kubeconfig context; None = the file's current context."""

    def __post_init__(self) -> None:
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ext = client.ApiextensionsV1Api(self.api)

    # -- kubectl -------------------------------------------------------------------------------
    def server_version(self) -> str:
        """The API server's ``gitVersion`` (``v1.35.4``): what the cluster really runs, whatever was asked for."""
        return str(client.VersionApi(self.api).get_code().git_version)

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 300,
                check: bool = True) -> _exec.CompletedProcess[str]:
        ctx = ["--context", self.context] if self.context else []
        return _exec.run([self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *ctx, *args],
                         input=input, timeout=timeout, check=check)

    def apply(self, manifest: str, *, field_manager: str = "mlflow-crd-harness", force: bool = True) -> str:
        """Server-side apply of a multi-document YAML manifest (from stdin).

        ``force`` takes fields another manager owns (``--force-conflicts``): right on a cluster the
        harness made, never on a shared one, where a conflict must stop the session instead.
        """
        return self.kubectl("apply", "--server-side", *(["--force-conflicts"] if force else []),
                            f"--field-manager={field_manager}", "-f", "-", input=manifest).stdout or ""

    def get_object(self, api_version: str, kind: str, name: str, *,
                   managed_fields: bool = False) -> dict[str, Any] | None:
        """A cluster-scoped object by apiVersion, kind and name, as JSON; None when absent.

        ``managed_fields``: with ``metadata.managedFields`` (who applied what), which kubectl leaves out by default.
        """
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        resource = f"{kind.lower()}.{group}" if group else kind.lower()
        shown = ["--show-managed-fields"] if managed_fields else []
        out = self.kubectl("get", f"{resource}/{name}", "-o", "json", "--ignore-not-found", *shown,
                           timeout=60).stdout
        return json.loads(out) if out and out.strip() else None

    def kustomize(self, path: Path) -> str:
        return self.kubectl("kustomize", str(path)).stdout or ""

    # -- waits ---------------------------------------------------------------------------------
    def wait_crd_established(self, name: str, *, timeout: float = 60) -> None:
        def probe() -> Probe[None]:
            try:
                crd = self.ext.read_custom_resource_definition(name)
            except ApiException as exc:
                return Probe(False, f"HTTP {exc.status}")
            conds = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
            return Probe(conds.get("Established") == "True", f"conditions {conds}")

        wait_for(probe, what=f"CRD {name} to be Established", timeout=timeout, interval=0.5)

    def wait_deployment_available(self, namespace: str, name: str, *, timeout: float = 180) -> None:
        """Wait for a rollout to finish; the state names pods' waiting reasons (e.g. ErrImageNeverPull).

        Between probes it watches the Deployment from the version the probe read, so the probe runs
        again as the Deployment controller writes a new status, not up to a poll interval later (a
        controller's rollout in the edit-to-green loop is ~3 s); with no version, or no watch, it sleeps.
        """
        read: dict[str, str] = {}

        def probe() -> Probe[None]:
            try:
                dep = self.apps.read_namespaced_deployment(name, namespace)
            except ApiException as exc:
                return Probe(False, f"HTTP {exc.status}")
            read["version"] = dep.metadata.resource_version
            st = dep.status
            want = dep.spec.replicas or 1
            done = ((st.observed_generation or 0) >= (dep.metadata.generation or 0)
                    and (st.updated_replicas or 0) >= want and (st.available_replicas or 0) >= want
                    and (st.unavailable_replicas or 0) == 0)
            return Probe(done, f"updated={st.updated_replicas} available={st.available_replicas}/{want} "
                               f"pods: {self.pod_states(namespace, dep.spec.selector.match_labels)}")

        def until_changed(seconds: float) -> None:
            version = read.pop("version", None)
            if version is None or not self._deployment_changes(namespace, name, version, seconds):
                time.sleep(seconds)

        wait_for(probe, what=f"deployment {namespace}/{name} to be available", timeout=timeout, interval=1.0,
                 hint=f"kubectl --kubeconfig {self.kubeconfig} -n {namespace} describe deploy/{name}",
                 sleep=until_changed)

    def _deployment_changes(self, namespace: str, name: str, version: str, seconds: float) -> bool:
        """True once the Deployment changes after ``version`` or ``seconds`` pass; False if it cannot be watched."""
        watcher = watch.Watch()
        try:
            for _event in watcher.stream(self.apps.list_namespaced_deployment, namespace,
                                         field_selector=f"metadata.name={name}", resource_version=version,
                                         timeout_seconds=max(1, round(seconds)), _request_timeout=seconds + 5):
                break
        except Exception:  # 410 Gone for an old version, a dropped connection: the caller sleeps instead
            return False
        finally:
            watcher.stop()
        return True

    def pod_states(self, namespace: str, labels: dict[str, str] | None) -> str:
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items())
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        out = []
        for pod in pods:
            reasons = []
            for cs in pod.status.container_statuses or []:
                if cs.state and cs.state.waiting:
                    reasons.append(cs.state.waiting.reason or "Waiting")
                elif cs.state and cs.state.terminated:
                    reasons.append(f"Terminated:{cs.state.terminated.reason}")
                elif cs.ready:
                    reasons.append("Ready")
                else:
                    reasons.append("Running")
            out.append(f"{pod.metadata.name}={pod.status.phase}[{','.join(reasons)}]")
        return " ".join(out) or "none"

    # -- objects -------------------------------------------------------------------------------
    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels or {}))
        try:
            self.core.create_namespace(body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """The labels of namespace ``name``; None if it does not exist."""
        try:
            ns = self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(ns.metadata.labels or {})

    def list_namespaces(self, label_selector: str) -> list[str]:
        return [n.metadata.name for n in self.core.list_namespace(label_selector=label_selector).items]

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            cm = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.data or {})

    def write_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, namespace=namespace), data=data)
        try:
            self.core.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(name, namespace, body)

    def get_custom(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        return obj


