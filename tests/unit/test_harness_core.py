"""Unit tier: the harness's own pure parts (waits, timing, fingerprints, manifests, paths)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import yaml

from harness import debian
from harness._errors import CommandError, HarnessError, WaitTimeout
from harness._exec import run
from harness._waiting import Probe, wait_for
from harness.clusters.kind import cluster_fingerprint, merge_kind_config
from harness.clusters.kind_cli import kind_config
from harness.evidence import bundle_dir_for
from harness.images import context_digest
from harness.ports import MLFLOW_NODE_PORT
from harness.stack import instances_of, render_stack, replace_images
from harness.timing import Phases
from harness.tracking.incluster import mlflow_allowed_hosts, mlflow_server_manifests
from tests.unit.fakes import FakeClock

REPO = Path(__file__).resolve().parents[2]



def test_wait_reports_every_distinct_state_on_timeout() -> None:
    clock = FakeClock()
    states = iter(["Pending", "Pending", "ContainerCreating", "ImagePullBackOff"] + ["ImagePullBackOff"] * 100)

    def probe() -> Probe[None]:
        return Probe(False, next(states))

    with pytest.raises(WaitTimeout) as info:
        wait_for(probe, what="job", timeout=10, interval=1, clock=clock, sleep=clock.sleep, hint="describe it")
    text = str(info.value)
    assert "timed out after 10 s waiting for job" in text
    assert [h.split()[-1] for h in info.value.history] == ["Pending", "ContainerCreating", "ImagePullBackOff"]
    assert "hint: describe it" in text


def test_wait_returns_the_value_and_tolerates_transient_errors() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    def probe() -> Probe[str]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionRefusedError("not yet")
        return Probe(calls["n"] >= 3, f"try {calls['n']}", "ready")

    assert wait_for(probe, what="server", timeout=30, clock=clock, sleep=clock.sleep,
                    transient=(ConnectionRefusedError,)) == "ready"
    assert calls["n"] == 3


def test_command_error_is_pasteable_and_keeps_streams() -> None:
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    err = info.value
    assert err.returncode == 3
    assert "exit 3" in str(err)
    assert "sh -c 'echo out; echo err >&2; exit 3'" in str(err)
    assert "err" in err.stderr
    assert "out" in err.stdout


def test_missing_tool_is_a_command_error_not_a_traceback() -> None:
    with pytest.raises(CommandError) as info:
        run(["definitely-not-a-tool-xyz"])
    assert info.value.returncode == 127


def test_phases_table_lists_each_phase_and_failures() -> None:
    phases = Phases()
    with phases.phase("cluster") as note:
        note["note"] = "reused"
    with pytest.raises(RuntimeError), phases.phase("deploy"):
        raise RuntimeError("boom")
    table = phases.table()
    assert "cluster" in table
    assert "reused" in table
    assert "deploy" in table
    assert "FAILED" in table
    assert "| cluster |" in phases.markdown()


def test_cluster_fingerprint_ignores_host_port_but_not_the_image() -> None:
    a = cluster_fingerprint("kind v0.30.0", "sha256:1", kind_config(host_port=1234))
    b = cluster_fingerprint("kind v0.30.0", "sha256:1", kind_config(host_port=4321))
    c = cluster_fingerprint("kind v0.30.0", "sha256:2", kind_config(host_port=1234))
    d = cluster_fingerprint("kind v0.31.0", "sha256:1", kind_config(host_port=1234))
    assert a == b
    assert len({a, c, d}) == 3


def test_kind_config_maps_the_mlflow_port_to_loopback_only() -> None:
    cfg = kind_config(host_port=40000)
    mapping = cfg["nodes"][0]["extraPortMappings"][0]  # type: ignore[index]
    assert mapping == {"containerPort": MLFLOW_NODE_PORT, "hostPort": 40000, "listenAddress": "127.0.0.1",
                       "protocol": "TCP"}


def test_mlflow_server_allows_explicit_hosts_only() -> None:
    hosts = mlflow_allowed_hosts(40000)
    assert "*" not in hosts
    assert "mlflow.mlflow.svc.cluster.local:5000" in hosts
    assert "127.0.0.1:40000" in hosts
    docs = mlflow_server_manifests("mlflow-server:abc", 40000)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--allowed-hosts") + 1] == ",".join(hosts)
    assert "--serve-artifacts" in args
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false", "no job runner or Huey consumers in the pod"
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["ports"][0]["nodePort"] == MLFLOW_NODE_PORT


def test_on_a_shared_cluster_every_session_renders_the_same_tracking_server() -> None:
    """Each session forwards from a loopback port of its own; none may roll the server under another."""
    import fnmatch

    hosts = mlflow_allowed_hosts(None)
    assert "*" not in hosts
    assert any(fnmatch.fnmatch("127.0.0.1:41234", h) for h in hosts)  # MLflow matches Host with fnmatch
    assert not any(fnmatch.fnmatch("evil.example:41234", h) for h in hosts)
    docs = mlflow_server_manifests("mlflow-server:abc", None)
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--allowed-hosts") + 1] == ",".join(hosts)


def test_replace_images_swaps_exactly_the_configured_repository() -> None:
    docs = [
        {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "customjob-controller:dev"}, {"name": "side", "image": "other:1"}]}}}},
        {"kind": "ServiceAccount"},
    ]
    assert replace_images(docs, {"customjob-controller": "localhost:5001/customjob-controller@sha256:ab"}) == 1
    containers = docs[0]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "localhost:5001/customjob-controller@sha256:ab"
    assert containers[0]["imagePullPolicy"] == "IfNotPresent"
    assert containers[1]["image"] == "other:1"
    assert replace_images(docs, {"registry.example:5000/other": "x:2"}) == 0  # repository, not a suffix


def test_render_stack_refuses_an_image_no_manifest_uses(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    docs = [{"kind": "Namespace", "metadata": {"name": "team-a"}},
            {"kind": "Deployment", "metadata": {"name": "c", "namespace": "team-a"},
             "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "ctrl:dev"}]}}}}]
    out = render_stack(lambda _d: yaml.safe_dump_all(docs), [tmp_path], {"ctrl": "ctrl:abc"})
    assert out[0]["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "mlflow-crd-harness"}
    assert out[1]["spec"]["template"]["spec"]["containers"][0]["image"] == "ctrl:abc"
    with pytest.raises(HarnessError, match=r"no container .* uses it"):
        render_stack(lambda _d: yaml.safe_dump_all(docs), [tmp_path], {"nope": "nope:1"})
    with pytest.raises(HarnessError, match=r"has no kustomization\.yaml"):
        render_stack(lambda _d: "", [tmp_path / "missing"], {})


def test_kind_config_extras_add_workers_and_keep_the_port_mapping() -> None:
    ours = kind_config(host_port=40000)
    extra = {"kind": "Cluster", "nodes": [{"role": "control-plane", "labels": {"a": "b"}}, {"role": "worker"}],
             "featureGates": {"X": True}, "containerdConfigPatches": ["theirs"]}
    merged = merge_kind_config({**ours, "containerdConfigPatches": ["ours"]}, extra)
    assert [n["role"] for n in merged["nodes"]] == ["control-plane", "worker"]
    assert merged["nodes"][0]["extraPortMappings"][0]["hostPort"] == 40000
    assert merged["nodes"][0]["labels"] == {"a": "b"}
    assert merged["featureGates"] == {"X": True}
    assert merged["containerdConfigPatches"] == ["ours", "theirs"]
    assert merge_kind_config(ours, None) == ours
    with pytest.raises(HarnessError, match="control-plane"):
        merge_kind_config(ours, {"nodes": [{"role": "worker"}]})


def test_bundle_dirs_are_predictable_and_safe(tmp_path: Path) -> None:
    path = bundle_dir_for(tmp_path, "tests/e2e/test_x.py::test_y[alpha=0.5 a/b]")
    assert path.parent == tmp_path
    assert "/" not in path.name
    assert path.name.startswith("tests_e2e_test_x.py_test_y")


def test_context_digest_follows_the_dockerignore(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / ".dockerignore").write_text("*\n!app.py\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "notes.md").write_text("ignored\n")
    before = context_digest(tmp_path, "base1")
    (tmp_path / "notes.md").write_text("changed, still ignored\n")
    assert context_digest(tmp_path, "base1") == before
    (tmp_path / "app.py").write_text("print(2)\n")
    assert context_digest(tmp_path, "base1") != before
    assert context_digest(tmp_path, "base2") != context_digest(tmp_path, "base1")


def test_context_digest_uses_dockers_own_ignore_rules(tmp_path: Path) -> None:
    """``*`` does not cross ``/`` in Docker's rules: ``src/*.py`` ignores src/a.py, not src/deep/b.py."""
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / ".dockerignore").write_text("src/*.py\n")
    (tmp_path / "src" / "deep").mkdir(parents=True)
    (tmp_path / "src" / "a.py").write_text("1\n")
    (tmp_path / "src" / "deep" / "b.py").write_text("1\n")
    before = context_digest(tmp_path)
    (tmp_path / "src" / "a.py").write_text("2\n")
    assert context_digest(tmp_path) == before, "src/a.py is ignored"
    (tmp_path / "src" / "deep" / "b.py").write_text("2\n")
    assert context_digest(tmp_path) != before, "src/deep/b.py is sent to docker build, so it must count"


@pytest.mark.parametrize(("text", "mirror"), [
    ("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n", "http://mirror.example/debian"),
    ("deb http://ftp.example.org/debian/ bookworm main\n", "http://ftp.example.org/debian"),
    ("deb [arch=amd64] http://a.example/debian bookworm main\n", "http://a.example/debian"),
    ("URIs: http://deb.debian.org/debian-security\n", None),
])
def test_debian_mirror_is_read_from_apt_sources(text: str, mirror: str | None) -> None:
    assert debian.parse_mirror(text) == mirror


def test_debian_mirror_env_override_wins() -> None:
    assert debian.debian_mirror({"HARNESS_DEBIAN_MIRROR": "http://m.example/debian/"}) == "http://m.example/debian"


def test_customjob_backend_is_registered_with_mlflow() -> None:
    eps = importlib.metadata.entry_points(group="mlflow.project_backend")
    found = [ep for ep in eps if ep.name == "customjob"]
    assert [ep.value for ep in found] == ["harness.backend:CustomJobBackend"]


def test_crd_group_is_defined_in_one_place() -> None:
    from harness import contract

    crd = yaml.safe_load((REPO / "crds" / "bases" / "customjob.yaml").read_text())
    assert crd["spec"]["group"] == contract.GROUP
    assert crd["spec"]["names"]["plural"] == contract.PLURAL
    assert crd["spec"]["names"]["kind"] == contract.KIND
    assert contract.VERSION in [v["name"] for v in crd["spec"]["versions"]]
    controller_copy = REPO / "crds" / "controller" / "customjob_controller" / "contract.py"
    assert controller_copy.read_bytes() == (REPO / "harness" / "contract.py").read_bytes(), (
        "the controller image's contract.py must be a byte-identical copy of harness/contract.py")


def test_the_sessions_tracking_server_is_added_to_the_controllers_allowlist_in_the_rendered_manifests() -> None:
    from harness.stack import trust_tracking_uri

    repo = Path(__file__).resolve().parents[2]
    deployment = yaml.safe_load((repo / "crds" / "manager" / "deployment.yaml").read_text())
    deployment["metadata"]["namespace"] = "customjob-system"
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CUSTOMJOB_ALLOWED_TRACKING_URIS"] == "http://mlflow.mlflow.svc.cluster.local:5000"
    docs = [deployment, {"kind": "Service", "metadata": {"name": "x"}}]
    assert trust_tracking_uri(docs, "http://mlflow.mlflow.svc.cluster.local:5000") == []  # already listed
    assert trust_tracking_uri(docs, "http://172.18.0.1:39001") == ["customjob-system/customjob-controller"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CUSTOMJOB_ALLOWED_TRACKING_URIS"] == ("http://mlflow.mlflow.svc.cluster.local:5000,"
                                                      "http://172.18.0.1:39001")
    assert trust_tracking_uri(docs, "http://172.18.0.1:39001/") == [], "idempotent"


def test_a_run_can_be_stopped_from_another_thread_through_started() -> None:
    """What stops a ``kind create`` nobody needs any more: the child is handed out as soon as it runs."""
    import signal
    import threading

    from harness import _exec
    from harness.clusters.kind_cli import _Creates

    creates = _Creates()
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            _exec.run(["sleep", "60"], timeout=120, started=creates.add)
            outcome.append(None)
        except CommandError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: Probe(bool(creates._children), "child started"), what="the child runs", timeout=30, interval=0.05)
    assert creates.abort() == 1
    thread.join(30)
    assert not thread.is_alive()
    [exc] = outcome
    assert isinstance(exc, CommandError)
    assert exc.returncode == -signal.SIGTERM
    assert creates.abort() == 0, "a child that ended is not stopped again"


def test_objects_of_the_stacks_own_crds_are_found_so_their_crds_go_first() -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"},
           "spec": {"group": "ml.example.com", "names": {"kind": "TrainingRun", "plural": "trainingruns"}}}
    own = {"apiVersion": "ml.example.com/v1", "kind": "TrainingRun", "metadata": {"name": "warm-up"}}
    same_kind_other_group = {"apiVersion": "other.example.com/v1", "kind": "TrainingRun", "metadata": {"name": "o"}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "controller"}}
    assert instances_of([crd], [deployment, same_kind_other_group]) == []
    assert instances_of([crd], [deployment, own]) == ["TrainingRun/warm-up"]
    assert instances_of([], [own]) == []
