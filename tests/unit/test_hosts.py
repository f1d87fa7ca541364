"""Unit tier: laptops and CI alike: OS/arch branches of the doctor, the docker-context rule (fakes only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import dockercli, doctor
from harness.clusters import provider_class
from harness.clusters.kind import check_kind_tools, check_node_image
from harness.nodeimage import hostcheck


@pytest.mark.parametrize(("system", "machine", "level", "says"), [
    ("Linux", "x86_64", "ok", "kind nodes run on this kernel"),
    ("Linux", "aarch64", "ok", "Linux aarch64"),
    ("Darwin", "arm64", "ok", "Docker VM (Docker Desktop, Colima, OrbStack)"),
    ("Windows", "AMD64", "warn", "untested"),
])
def test_platform_finding(system: str, machine: str, level: str, says: str) -> None:
    found = doctor.check_platform(system, machine)
    assert found.level == level
    assert says in found.seen


def test_macos_doctor_skips_linux_host_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """No /proc, no cgroups, no inotify on a Mac: those checks are not run there (they would crash or mislead)."""
    ran: list[str] = []
    monkeypatch.setattr(doctor, "check_docker", lambda: doctor.Finding("docker", "ok", "server 28"))
    for name in ("check_cgroups", "check_inotify", "check_runtime"):
        monkeypatch.setattr(doctor, name, lambda n=name: ran.append(n) or doctor.Finding(n, "ok", ""))
    monkeypatch.setattr(doctor, "check_registry", lambda _i: doctor.Finding("registry", "ok", ""))
    monkeypatch.setattr(doctor, "check_tool", lambda *_a: doctor.Finding("go", "ok", ""))
    findings = doctor.run_checks(public_node_image="kindest/node:x", system="Darwin")
    assert ran == []
    assert "platform" in [f.name for f in findings]
    doctor.run_checks(public_node_image="kindest/node:x", system="Linux")
    assert sorted(ran) == ["check_cgroups", "check_inotify", "check_runtime"]


def test_no_proc_means_no_missing_capabilities(tmp_path: Path) -> None:
    assert hostcheck._proc_status(tmp_path / "no-such-proc" / "status") == ""
    assert hostcheck.missing_capabilities("", 40) == ()


@pytest.mark.parametrize(("output", "rc", "host"), [
    ("unix:///Users/me/.colima/default/docker.sock\n", 0, "unix:///Users/me/.colima/default/docker.sock"),
    ("unix:///Users/me/.docker/run/docker.sock", 0, "unix:///Users/me/.docker/run/docker.sock"),
    ("unix:///var/run/docker.sock", 0, None),
    ("", 1, None),
])
def test_current_context_endpoint(output: str, rc: int, host: str | None) -> None:
    assert dockercli.context_host(output, rc) == host


def test_docker_host_wins_over_the_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dockercli, "_current_context_host", lambda: "unix:///ctx.sock")
    assert dockercli.docker_host({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) == "tcp://127.0.0.1:2375"
    assert dockercli.docker_host({}) == "unix:///ctx.sock"
    assert dockercli.docker_host({"DOCKER_CONTEXT": "default"}) is None


def test_a_local_bridge_gateway_needs_no_host_network() -> None:
    reach = dockercli.choose_host_reach("172.17.0.1", bindable=lambda a: a == "172.17.0.1")
    assert (reach.bind, reach.docker_args) == ("172.17.0.1", ())


@pytest.mark.parametrize("gateway", ["192.168.65.1", None])
def test_an_engine_in_a_vm_falls_back_to_host_network(gateway: str | None) -> None:
    """Docker Desktop/Colima/OrbStack: the bridge is in the VM, the host cannot bind its gateway."""
    reach = dockercli.choose_host_reach(gateway, bindable=lambda a: False)
    assert (reach.bind, reach.docker_args) == ("127.0.0.1", ("-A", "network=host"))
    assert "Enable host networking" in reach.why


def test_this_hosts_loopback_is_bindable_and_a_foreign_address_is_not() -> None:
    assert dockercli._bindable("127.0.0.1")
    assert not dockercli._bindable("192.0.2.1")  # TEST-NET-1: never an address of this host


@pytest.mark.parametrize(("ipam", "gateway"), [
    ([{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}], "172.17.0.1"),
    ([{"Subnet": "172.17.0.0/16"}], "172.17.0.1"),  # Docker 20.10 lists no gateway for the default bridge
    ([{"Subnet": "fd00::/64"}, {"Subnet": "10.9.0.0/24"}], "10.9.0.1"),
    ([], None),
])
def test_the_bridge_gateway_is_read_or_derived(ipam: list[dict[str, str]], gateway: str | None) -> None:
    assert dockercli.bridge_gateway(ipam) == gateway


def _settings_in(tmp_path: Path, body: str = "") -> Any:
    from harness.settings import load_settings

    (tmp_path / "pyproject.toml").write_text("[tool.mlflow-crd-harness]\n" + body)
    return load_settings(root=tmp_path, environ={})


def test_doctor_checks_the_existing_clusters_context_and_api_server(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: closed\n"
                          "clusters: [{name: closed, cluster: {server: 'https://127.0.0.1:9'}}]\n"
                          "users: [{name: u, user: {token: t}}]\n"
                          "contexts: [{name: closed, context: {cluster: closed, user: u}}]\n")
    settings = _settings_in(tmp_path, 'cluster = "existing"\nkubeconfig = "kc"\nregistry = "local"\n')
    [found] = provider_class("existing").preflight(settings)
    assert (found.level, "the API server does not answer" in found.seen) == ("fail", True)
    other = _settings_in(tmp_path, 'cluster = "existing"\nkubeconfig = "kc"\nregistry = "local"\ncontext = "staging"\n')
    [found] = provider_class("existing").preflight(other)
    assert found.level == "fail"
    assert "context 'staging' is not in" in found.seen


def test_doctor_names_a_given_tool_that_is_not_there(tmp_path: Path) -> None:
    (kind_bin,) = [f for f in check_kind_tools(_settings_in(tmp_path, 'kind-bin = "nowhere/kind"\n'))
                   if f.name == "kind"]
    assert kind_bin.level == "fail"
    assert "does not exist" in kind_bin.fix


def test_doctor_refuses_the_public_node_image_where_it_cannot_run(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import toolchain

    monkeypatch.setattr(toolchain, "host_is_cgroup_v1", lambda: True)
    found = check_node_image(_settings_in(tmp_path, 'node-image-mode = "public"\nkubernetes-version = "1.35"\n'))
    assert found.level == "fail"
    assert "cannot run on this cgroup v1 host" in found.seen


@pytest.mark.parametrize(("level", "code"), [("fail", 1), ("warn", 0)])
def test_doctor_exits_1_on_a_failed_check_and_reads_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], level: str, code: int
) -> None:
    from harness import cli

    seen: list[Any] = []

    def checks(**kw: Any) -> list[doctor.Finding]:
        seen.append(kw["settings"])
        return [doctor.Finding("x", level, "seen", "the fix")]  # type: ignore[arg-type]

    monkeypatch.setattr(doctor, "run_checks", checks)
    (tmp_path / "pyproject.toml").write_text('[tool.mlflow-crd-harness]\nkubernetes-version = "1.37"\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["doctor"]) == code
    assert seen[0]["kubernetes-version"] == "1.37"
    (tmp_path / "pyproject.toml").write_text("[tool.mlflow-crd-harness\n")
    assert cli.main(["doctor"]) == 2, "a malformed settings file is a usage error, not a green doctor"
    assert "cannot read settings file" in capsys.readouterr().err
