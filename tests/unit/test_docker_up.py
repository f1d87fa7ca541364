"""scripts/docker-up.sh: every host change is needed, recorded, and undone exactly.

The real script runs under bash against a scratch root (DOCKER_UP_ROOT) with shim executables first on
PATH for the commands that would touch the real host (dockerd, docker, systemctl, pgrep, apt-get, id).
The shims share a small "world" directory: whether Docker answers, which dockerd pids exist, whether
systemd runs docker.service, which containers run. Assertions are on the resulting files and on the
commands the shims saw, never on the script's messages.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "jq", "setsid", "nohup", "timeout")),
                       reason="needs bash, jq and util-linux/coreutils (setsid, nohup, timeout)"),
]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "docker-up.sh"

CAPS_FULL = "000001ffffffffff"
CAPS_NO_SYS_RESOURCE = "000001fffeffffff"  # bit 24 (CAP_SYS_RESOURCE) missing, as on Firecracker VMs
INOTIFY = {"fs/inotify/max_user_instances": "128", "fs/inotify/max_user_watches": "8192"}
RAISED = {"fs/inotify/max_user_instances": "512", "fs/inotify/max_user_watches": "524288"}

# Each shim appends one line to $SHIM_LOG: its name and its arguments, tab-separated, in one write (shims
# run concurrently: the script polls `docker info` while the dockerd shim starts).
LOG_ARGV = 'line=${0##*/}; for a in "$@"; do line+=$\'\\t\'$a; done; printf "%s\\n" "$line" >>"$SHIM_LOG"\n'
SHIMS = {
    "id": 'echo 0\n',
    # Only live pids (the test's stand-in processes): a killed stand-in is gone, as with real pgrep.
    "pgrep": 'found=1\nwhile read -r p; do kill -0 "$p" 2>/dev/null && { echo "$p"; found=0; }\n'
             'done < <(cat "$W/dockerd.pids" 2>/dev/null)\nexit $found\n',
    # $W/serving: Docker answers; it holds the pid of the dockerd serving it (gone once that pid exits),
    # or nothing when the dockerd shim or systemd started it.
    "docker": """\
case $1 in
  info) [ -e "$W/serving" ] || exit 1
        pid=$(cat "$W/serving"); [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null ;;
  ps) cat "$W/ps" 2>/dev/null || true ;;
  inspect) cat "$W/inspect" ;;
  version) echo "server 20.10.24, API 1.41" ;;
esac
""",
    "dockerd": ': >"$W/serving"\n',
    "systemctl": """\
case $1 in
  is-active) [ -e "$W/unit-active" ] ;;
  cat) [ -e "$W/unit-active" ] || [ -e "$W/unit-exists" ] ;;
  start|restart) : >"$W/serving"; : >"$W/unit-active" ;;
esac
""",
    "apt-get": "",
    "debootstrap": "",
    "zstd": "",
    "gcc": "",
    "dpkg": "",  # `dpkg -s libseccomp-dev` answers installed
}


class Host:
    """A scratch host: root prefix, /proc files, shims and the shims' shared state."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.proc = self.root / "proc"
        self.world = tmp / "world"
        self.bin = tmp / "bin"
        self.calls_log = tmp / "calls.log"
        self.daemon_json = self.root / "etc/docker/daemon.json"
        self.wrapper = self.root / "usr/local/bin/runc-nosr"
        self.state = self.root / "var/lib/mlflow-crd-harness/docker-up.json"
        self._procs: list[subprocess.Popen[bytes]] = []
        for d in (self.world, self.bin, self.proc / "1", self.proc / "self", self.proc / "sys/kernel"):
            d.mkdir(parents=True, exist_ok=True)
        for name, body in SHIMS.items():
            shim = self.bin / name
            shim.write_text("#!/bin/bash\n" + LOG_ARGV + body)
            shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
        self.calls_log.touch()
        self.set_caps(CAPS_NO_SYS_RESOURCE)
        (self.proc / "sys/kernel/cap_last_cap").write_text("40\n")
        (self.proc / "1/comm").write_text("init\n")
        self.write_sysctls(INOTIFY)

    # --- arranging the host -----------------------------------------------------------------------

    def set_caps(self, bnd: str) -> None:
        (self.proc / "self/status").write_text(f"Name:\tbash\nCapInh:\t0000000000000000\nCapBnd:\t{bnd}\n")

    def write_sysctls(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            (self.proc / "sys" / key).parent.mkdir(parents=True, exist_ok=True)
            (self.proc / "sys" / key).write_text(value + "\n")

    def sysctls(self) -> dict[str, str]:
        return {key: (self.proc / "sys" / key).read_text().strip() for key in INOTIFY}

    def dockerd_process(self) -> subprocess.Popen[bytes]:
        """A real process standing in for a running dockerd (reaped as soon as it is killed)."""
        proc = subprocess.Popen(["sleep", "300"])
        self._procs.append(proc)
        threading.Thread(target=proc.wait, daemon=True).start()
        return proc

    def own_dockerd_running(self) -> subprocess.Popen[bytes]:
        """Docker answers, served by a dockerd started outside systemd (as docker-up.sh does)."""
        proc = self.dockerd_process()
        (self.world / "dockerd.pids").write_text(f"{proc.pid}\n")
        (self.world / "serving").write_text(str(proc.pid))
        return proc

    def systemd_host(self, *, active: bool) -> None:
        (self.proc / "1/comm").write_text("systemd\n")
        (self.world / ("unit-active" if active else "unit-exists")).touch()

    def running_containers(self, *lines: str) -> None:
        """`docker inspect` lines: /name|runtime|kind cluster label|registry label."""
        (self.world / "ps").write_text("".join(f"c{i}\n" for i in range(len(lines))))
        (self.world / "inspect").write_text("".join(line + "\n" for line in lines))

    # --- running and observing -------------------------------------------------------------------

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "LANG": "C.UTF-8", "DOCKER_UP_ROOT": str(self.root),
               "W": str(self.world), "SHIM_LOG": str(self.calls_log)}
        return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    def calls(self, name: str | None = None) -> list[list[str]]:
        rows = [line.split("\t") for line in self.calls_log.read_text().splitlines() if line]
        return [row for row in rows if name is None or row[0] == name]

    def record(self) -> dict[str, Any]:
        data = json.loads(self.state.read_text())
        assert isinstance(data, dict)
        return data

    def daemon(self) -> dict[str, Any]:
        data = json.loads(self.daemon_json.read_text())
        assert isinstance(data, dict)
        return data

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path)
    yield h
    h.close()


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr


def nosr_daemon(h: Host, **rest: Any) -> dict[str, Any]:
    runtimes = {**rest.pop("runtimes", {}), "nosr": {"path": str(h.wrapper)}}
    return {**rest, "runtimes": runtimes, "default-runtime": "nosr"}


def test_fresh_host_lacking_caps_gets_nosr_default_and_the_previous_state_is_recorded(host: Host) -> None:
    ok(host.run())
    assert host.daemon() == nosr_daemon(host)
    assert host.wrapper.read_bytes() == (REPO / "scripts/runc-nosr").read_bytes()
    assert os.access(host.wrapper, os.X_OK)
    record = host.record()
    assert record["daemon_json"] == {"existed": False, "default_runtime": None, "runtimes_existed": False,
                                     "nosr_runtime": None}
    assert record["wrapper"] == str(host.wrapper)
    assert [c[1:] for c in host.calls("dockerd")] == [[]]  # Docker was down: our dockerd started it
    assert host.calls("systemctl") == []


def test_host_with_all_caps_gets_no_runtime_change(host: Host) -> None:
    host.set_caps(CAPS_FULL)
    host.write_sysctls(RAISED)
    host.own_dockerd_running()
    ok(host.run())
    assert not host.daemon_json.exists()
    assert not host.wrapper.exists()
    assert not host.state.exists()  # nothing changed, nothing recorded
    assert host.calls("dockerd") == []


def test_non_runc_default_runtime_is_refused_without_force(host: Host) -> None:
    original = '{\n  "default-runtime": "nvidia",\n  "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}\n}\n'
    host.daemon_json.parent.mkdir(parents=True)
    host.daemon_json.write_text(original)
    result = host.run()
    assert result.returncode != 0
    assert host.daemon_json.read_text() == original
    assert not host.wrapper.exists()
    assert host.sysctls() == INOTIFY  # refused before any change
    assert "daemon_json" not in (host.record() if host.state.exists() else {})
    assert host.calls("dockerd") == []


def test_force_replaces_nvidia_records_it_and_undo_puts_it_back(host: Host) -> None:
    original = {"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
    host.daemon_json.parent.mkdir(parents=True)
    host.daemon_json.write_text(json.dumps(original))
    host.own_dockerd_running()
    ok(host.run("--force"))
    assert host.daemon() == nosr_daemon(host, runtimes=original["runtimes"])
    assert host.record()["daemon_json"]["default_runtime"] == "nvidia"
    ok(host.run("--force"))  # again: nosr is now the default, and must not become "the previous value"
    assert host.record()["daemon_json"]["default_runtime"] == "nvidia"
    ok(host.run("--undo"))
    assert host.daemon() == original
    assert not host.state.exists()
    assert not host.wrapper.exists()


def test_second_run_keeps_the_original_record_and_changes_nothing(host: Host) -> None:
    ok(host.run())
    first = host.record()
    ok(host.run())
    assert host.record() == first
    assert host.record()["daemon_json"]["default_runtime"] is None
    assert host.record()["sysctl"]["fs.inotify.max_user_instances"] == {"was": "128", "set": "512"}
    assert len(host.calls("dockerd")) == 1  # no restart: daemon.json did not change


def test_daemon_json_from_an_older_version_is_not_recorded_as_the_previous_value(host: Host) -> None:
    # This machine's state before the record existed: nosr is the default already, no record.
    host.daemon_json.parent.mkdir(parents=True)
    host.daemon_json.write_text(json.dumps(nosr_daemon(host)))
    host.own_dockerd_running()
    ok(host.run())
    assert host.record()["daemon_json"]["default_runtime"] is None
    assert host.calls("dockerd") == []  # unchanged daemon.json: no restart
    ok(host.run("--undo"))
    assert not host.daemon_json.exists()  # held nothing but ours


def test_undo_restores_daemon_json_exactly_and_removes_the_record(host: Host) -> None:
    original = {"log-level": "warn", "runtimes": {"crun": {"path": "/usr/bin/crun"}}, "mtu": 1400}
    host.daemon_json.parent.mkdir(parents=True)
    host.daemon_json.write_text(json.dumps(original))
    dockerd = host.own_dockerd_running()
    ok(host.run())
    assert host.daemon() == nosr_daemon(host, **original)
    assert dockerd.wait(timeout=10) == -signal.SIGTERM  # restarted to pick up daemon.json
    ok(host.run("--undo"))
    assert host.daemon() == original
    assert list(host.daemon()) == list(original)  # key order kept too
    assert not host.state.exists()
    assert not host.state.parent.exists()
    assert not host.wrapper.exists()
    assert host.sysctls() == INOTIFY
    assert len(host.calls("dockerd")) == 2  # started after the change and again after the undo


def test_undo_removes_a_daemon_json_that_did_not_exist_before(host: Host) -> None:
    ok(host.run())
    ok(host.run("--undo"))
    assert not host.daemon_json.exists()
    assert not host.state.exists()


def test_undo_refuses_while_containers_use_nosr(host: Host) -> None:
    ok(host.run())
    before = host.daemon_json.read_text()
    host.running_containers("/mlflow-crd-e2e-control-plane|nosr|mlflow-crd-e2e|",
                            "/harness-registry|nosr||true", "/unrelated|runc||")
    result = host.run("--undo")
    assert result.returncode != 0
    assert host.daemon_json.read_text() == before
    assert host.state.exists()
    assert host.wrapper.exists()
    assert host.sysctls() == RAISED
    assert host.calls("docker")[-1][:3] == ["docker", "inspect", "--format"]
    assert host.calls("docker")[-1][4:] == ["c0", "c1", "c2"]
    assert len(host.calls("dockerd")) == 1  # not restarted

    host.running_containers("/unrelated|runc||")
    ok(host.run("--undo"))
    assert not host.daemon_json.exists()
    assert not host.state.exists()


def test_several_dockerd_refuse_before_daemon_json_is_written(host: Host) -> None:
    first, second = host.dockerd_process(), host.dockerd_process()
    (host.world / "dockerd.pids").write_text(f"{first.pid}\n{second.pid}\n")
    (host.world / "serving").write_text("")
    result = host.run()
    assert result.returncode != 0
    assert not host.daemon_json.exists()
    assert not host.wrapper.exists()
    assert not host.state.exists()
    assert host.sysctls() == INOTIFY
    assert first.poll() is None
    assert second.poll() is None
    assert host.calls("dockerd") == []


def test_systemd_host_restarts_docker_service_and_kills_nothing(host: Host) -> None:
    host.systemd_host(active=True)
    dockerd = host.own_dockerd_running()
    (host.world / "serving").write_text("")  # served by the unit's dockerd
    ok(host.run())
    assert host.daemon() == nosr_daemon(host)
    assert [c[1:] for c in host.calls("systemctl") if c[1] in ("start", "restart")] == [
        ["restart", "docker.service"]]
    assert dockerd.poll() is None  # the unit's dockerd was not killed by the script
    assert host.calls("dockerd") == []

    host.running_containers()
    ok(host.run("--undo"))
    assert [c[1:] for c in host.calls("systemctl") if c[1] in ("start", "restart")] == [
        ["restart", "docker.service"], ["restart", "docker.service"]]
    assert dockerd.poll() is None
    assert host.calls("dockerd") == []


def test_systemd_host_with_docker_stopped_is_started_through_systemctl(host: Host) -> None:
    host.systemd_host(active=False)
    ok(host.run())
    assert [c[1:] for c in host.calls("systemctl") if c[1] in ("start", "restart")] == [
        ["start", "docker.service"]]
    assert host.calls("dockerd") == []


def test_sysctls_are_raised_recorded_and_restored(host: Host) -> None:
    host.set_caps(CAPS_FULL)
    host.write_sysctls({"fs/inotify/max_user_watches": "1048576"})  # already higher: left alone
    host.own_dockerd_running()
    ok(host.run())
    assert host.sysctls() == {"fs/inotify/max_user_instances": "512", "fs/inotify/max_user_watches": "1048576"}
    assert host.record()["sysctl"] == {"fs.inotify.max_user_instances": {"was": "128", "set": "512"}}
    ok(host.run())
    assert host.record()["sysctl"] == {"fs.inotify.max_user_instances": {"was": "128", "set": "512"}}

    host.running_containers("/kind-control-plane|runc|kind|")
    assert host.run("--undo").returncode != 0  # a kind node still needs the raised limit
    assert host.sysctls()["fs/inotify/max_user_instances"] == "512"

    host.running_containers()
    ok(host.run("--undo"))
    assert host.sysctls() == {"fs/inotify/max_user_instances": "128", "fs/inotify/max_user_watches": "1048576"}
    assert not host.state.exists()
    assert not host.daemon_json.exists()
