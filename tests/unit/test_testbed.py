"""Unit tier: the test bed's policies and the existing provider's namespace rule (fakes, no cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness._errors import HarnessError
from harness.clusters import Cluster
from harness.clusters.kind import merge_kind_config, with_workers
from harness.clusters.kind_cli import kind_config
from harness.delivery import RegistryPush
from harness.settings import ConfigError, load_settings
from harness.stack import _check_namespaces_are_ours
from harness.testbed import keep_cluster


def _settings(tmp_path: Path, **env: str) -> Any:
    return load_settings(root=tmp_path, environ={f"HARNESS_{k.upper()}": v for k, v in env.items()})


@pytest.mark.parametrize(("policy", "ci", "failed", "kept"), [
    ("auto", False, False, True), ("auto", True, False, False), ("always", True, False, True),
    ("never", False, True, False), ("on-failure", True, True, True), ("on-failure", False, False, False),
])
def test_keep_cluster_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, ci: bool,
                             failed: bool, kept: bool) -> None:
    monkeypatch.setenv("CI", "true") if ci else monkeypatch.delenv("CI", raising=False)
    assert keep_cluster(_settings(tmp_path, keep_cluster=policy), failed=failed) is kept


def test_an_existing_cluster_is_left_as_found_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "kubeconfig").write_text("")
    settings = _settings(tmp_path, cluster="existing", kubeconfig=str(tmp_path / "kubeconfig"), registry="local")
    assert keep_cluster(settings, failed=False) is False


@dataclass
class FakeKube:
    labels: dict[str, dict[str, str] | None] = field(default_factory=dict)

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        return self.labels.get(name)


def _cluster(kube: FakeKube) -> Cluster:
    return Cluster(name="staging", provider="existing", kube=kube, created=False,  # type: ignore[arg-type]
                   images=RegistryPush(registry="r:5000"), fingerprint="f", mlflow_host_port=None)


DOCS = [{"kind": "Namespace", "metadata": {"name": "team-a"}},
        {"kind": "Deployment", "metadata": {"name": "c", "namespace": "team-a"}}]


def test_existing_cluster_accepts_absent_or_labelled_namespaces() -> None:
    _check_namespaces_are_ours(_cluster(FakeKube({"team-a": None})), DOCS)
    ours = {"app.kubernetes.io/managed-by": "mlflow-crd-harness"}
    _check_namespaces_are_ours(_cluster(FakeKube({"team-a": ours})), DOCS)


def test_existing_cluster_refuses_a_namespace_it_does_not_own() -> None:
    with pytest.raises(HarnessError, match="namespace team-a exists on staging without the label"):
        _check_namespaces_are_ours(_cluster(FakeKube({"team-a": {"owner": "someone"}})), DOCS)


def test_existing_needs_a_kubeconfig_and_a_registry(tmp_path: Path) -> None:
    from harness.settings import ConfigError

    with pytest.raises(ConfigError, match="needs a kubeconfig"):
        _settings(tmp_path, cluster="existing")
    with pytest.raises(ConfigError, match="needs a registry"):
        _settings(tmp_path, cluster="existing", kubeconfig="/x")
    with pytest.raises(ConfigError, match=r"kubeconfig /x .* does not exist"):
        _settings(tmp_path, cluster="existing", kubeconfig="/x", registry="local")


def test_workers_setting_adds_worker_nodes_and_keeps_our_port_mapping(tmp_path: Path) -> None:
    s = _settings(tmp_path, workers="2")
    extra = with_workers(None, s["workers"], kubernetes_version="1.35", local=True)
    merged = merge_kind_config(kind_config(host_port=30123), extra)
    assert [n["role"] for n in merged["nodes"]] == ["control-plane", "worker", "worker"]
    assert merged["nodes"][0]["extraPortMappings"][0]["hostPort"] == 30123
    assert with_workers({"featureGates": {"X": True}}, 0, kubernetes_version="1.35", local=True) == {
        "featureGates": {"X": True}}


@pytest.mark.parametrize("raw", ["-1", "10", "two", "1.5"])
def test_workers_setting_refuses_bad_counts_at_startup(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="workers"):
        _settings(tmp_path, workers=raw)


def test_workers_refused_where_they_cannot_work() -> None:
    with pytest.raises(HarnessError, match="kind-config lists nodes"):
        with_workers({"nodes": [{"role": "control-plane"}]}, 1, kubernetes_version="1.35", local=True)
    with pytest.raises(HarnessError, match=r"single-node CNI; use kubernetes-version 1\.35"):
        with_workers(None, 1, kubernetes_version="1.34", local=True)
    assert with_workers(None, 1, kubernetes_version="1.34", local=False) == {
        "nodes": [{"role": "control-plane"}, {"role": "worker"}]}


def test_thaw_touches_only_frozen_cgroups_of_the_given_containers(tmp_path: Path) -> None:
    from harness.clusters.kind_cli import thaw_frozen_cgroups

    def cgroup(rel: str, state: str) -> Path:
        d = tmp_path / rel
        d.mkdir(parents=True)
        (d / "freezer.state").write_text(state + "\n")
        return d / "freezer.state"

    ours = cgroup("docker/abc/kubelet.slice/pod1/cri-containerd-1.scope", "FROZEN")
    ours_ok = cgroup("docker/abc/kubelet.slice/pod2", "THAWED")
    systemd = cgroup("system.slice/docker-abc.scope/x", "FREEZING")
    other = cgroup("docker/def/y", "FROZEN")
    host = cgroup("user.slice/z", "FROZEN")
    thawed = thaw_frozen_cgroups(["abc"], root=tmp_path)
    assert sorted(thawed) == sorted([ours.parent, systemd.parent])
    assert ours.read_text() == "THAWED"
    assert systemd.read_text() == "THAWED"
    assert ours_ok.read_text().strip() == "THAWED"
    assert other.read_text().strip() == "FROZEN"
    assert host.read_text().strip() == "FROZEN"
    assert thaw_frozen_cgroups(["abc"], root=tmp_path / "absent") == []


def test_the_controller_stays_while_a_job_of_a_terminating_namespace_holds_its_finalizer() -> None:
    """The namespace controller marks a Terminating namespace's Jobs deleted only later: such a Job counts before
    it is marked (issue #24: only already-deleted Jobs were counted, so the controller could go first)."""
    from types import SimpleNamespace as NS

    from harness.testbed import jobs_still_held
    from harness.workloads import stub

    def job(ns: str, name: str, *, deleted: bool = False, held: bool = True) -> NS:
        return NS(metadata=NS(namespace=ns, name=name, deletion_timestamp="t" if deleted else None,
                              finalizers=[stub.OUTCOME_FINALIZER] if held else []))

    namespaces = [NS(metadata=NS(name="e2e-going", deletion_timestamp="t")),
                  NS(metadata=NS(name="e2e-live", deletion_timestamp=None))]
    jobs = [job("e2e-going", "unmarked"), job("e2e-live", "running"), job("e2e-live", "deleted", deleted=True),
            job("e2e-going", "released", held=False)]
    kube = NS(core=NS(list_namespace=lambda: NS(items=namespaces)),
              batch=NS(list_job_for_all_namespaces=lambda label_selector: NS(items=jobs)))
    probe = jobs_still_held(kube)
    assert not probe.done
    assert probe.state == "held by the controller: e2e-going/unmarked, e2e-live/deleted"
    jobs[:] = [job("e2e-live", "running")]
    assert jobs_still_held(kube).done, "a running Job of a live namespace is not waited for"


def _recording_steps(log: list[str], fail_up: str = "", fail_undo: str = "") -> tuple[type, ...]:
    def make(step_name: str) -> type:
        class Recorded:
            name = step_name

            def up(self, bed: object) -> None:
                log.append(f"up {step_name}")
                if step_name == fail_up:
                    raise RuntimeError(f"{step_name} failed")

            def undo(self, bed: object, *, keep: bool) -> None:
                log.append(f"undo {step_name}")
                if step_name == fail_undo:
                    raise OSError(f"undoing {step_name} failed")

        return Recorded

    return tuple(make(n) for n in ("lock", "cluster", "delivery", "stack"))


def test_a_failing_step_is_undone_with_every_step_before_it_backwards(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import leftovers, testbed

    monkeypatch.setattr(leftovers, "reap", lambda *_a, **_k: [])
    log: list[str] = []
    bed = testbed.Testbed(load_settings(root=tmp_path, environ={"HARNESS_KEEP_CLUSTER": "never"}),
                          log=lambda _line: None)
    bed.steps = _recording_steps(log, fail_up="delivery")
    with pytest.raises(RuntimeError, match="delivery failed"):
        bed.start()
    assert log == ["up lock", "up cluster", "up delivery", "undo delivery", "undo cluster", "undo lock"]
    assert bed.finish() is False
    assert log[-1] == "undo lock", "nothing is undone twice"


def test_a_failing_undo_does_not_stop_the_rest_of_the_teardown(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import leftovers, testbed

    monkeypatch.setattr(leftovers, "reap", lambda *_a, **_k: [])
    log: list[str] = []
    bed = testbed.Testbed(load_settings(root=tmp_path, environ={"HARNESS_KEEP_CLUSTER": "never"}),
                          log=log.append)
    bed.steps = _recording_steps(log, fail_undo="stack")
    bed.start()
    with pytest.raises(OSError, match="undoing stack failed"):
        bed.finish()
    assert [line for line in log if line.startswith("undo")] == ["undo stack", "undo delivery", "undo cluster",
                                                                 "undo lock"]
    assert "teardown: undoing 'stack' failed: OSError: undoing stack failed" in log
