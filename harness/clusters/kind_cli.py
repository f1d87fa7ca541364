"""kind, driven by argv: create, export kubeconfig and logs, delete.

One :class:`KindCluster` per cluster name. Its kubeconfig is a private file
(mode 0600) under the harness state directory, never ``~/.kube/config``; every
kind call gets it explicitly. Loading images (verified on every node) is
:mod:`harness.delivery`'s job, shared with the MLflow backend.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness import _exec
from harness.cachedir import cache_dir
from harness.ports import MLFLOW_NODE_PORT

__all__ = ["KindCluster", "abort_creates", "kind_config", "node_container_ids",
           "thaw_frozen_cgroups"]

#: The NodePort the in-cluster MLflow server listens on; kind maps it to a host port.

#: Host sysctls the kubelet in a privileged kind node rewrites (panic on oops,
#: reboot after 10 s). Saved before create and restored after delete, so a test
#: cluster does not leave the host set to reboot on the next kernel oops.
KUBELET_HOST_SYSCTLS = ("kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
                        "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
"""Every host-wide value the kubelet (protectKernelDefaults off) rewrites in a privileged kind node."""

PROC_SYS = Path("/proc/sys")
FREEZER_ROOT = Path("/sys/fs/cgroup/freezer")


class _Creates:
    """The ``kind create`` children this process has in flight, so another thread can stop them.

    Cluster creation runs beside the image builds; when a build fails there is no
    reason to wait half a minute for a cluster nobody will use. The caller of
    :meth:`KindCluster.create` sees the stopped child fail and removes the
    half-made cluster as after any failed create.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: list[_exec.Popen[str]] = []

    def add(self, child: _exec.Popen[str]) -> None:
        with self._lock:
            self._children = [c for c in self._children if c.poll() is None] + [child]

    def abort(self) -> int:
        """SIGTERM every ``kind create`` still running; return how many."""
        with self._lock:
            running = [c for c in self._children if c.poll() is None]
        for child in running:
            child.terminate()
        return len(running)


_creating = _Creates()


def abort_creates() -> int:
    """Stop this process's ``kind create`` runs in flight (see :class:`_Creates`); return how many."""
    return _creating.abort()


def node_container_ids(name: str) -> list[str]:
    """Full ids of the node containers of kind cluster ``name`` (kind labels every node with it)."""
    proc = _exec.run(["docker", "ps", "-a", "--no-trunc", "--filter", f"label=io.x-k8s.kind.cluster={name}",
                      "--format", "{{.ID}}"], check=False, timeout=30)
    return sorted(proc.stdout.split()) if proc.returncode == 0 else []


def thaw_frozen_cgroups(container_ids: list[str], root: Path = FREEZER_ROOT) -> list[Path]:
    """Write THAWED to every FROZEN cgroup v1 freezer at or below these containers' cgroups.

    Docker puts a container under ``docker/<id>`` (cgroupfs driver) or
    ``system.slice/docker-<id>.scope`` (systemd driver). Only those subtrees
    are touched: nothing of the host's own, nothing of another container's.
    """
    thawed: list[Path] = []
    if not root.is_dir():
        return thawed  # cgroup v2: no freezer hierarchy (its freeze does not block SIGKILL)
    for cid in container_ids:
        for top in (root / "docker" / cid, root / "system.slice" / f"docker-{cid}.scope"):
            if not top.is_dir():
                continue
            for state in sorted(top.rglob("freezer.state")):
                try:
                    if state.read_text().strip() != "THAWED":
                        state.write_text("THAWED")
                        thawed.append(state.parent)
                except OSError:
                    continue  # gone meanwhile, or not ours to write (not root): the retry says the rest
    return thawed


def kind_config(*, host_port: int, extra: dict[str, object] | None = None) -> dict[str, object]:
    """The kind cluster config: one control-plane node with the MLflow port mapped to loopback.

    A port mapping, not ``kubectl port-forward``: it needs no supervising
    process and survives pod restarts. ``extra`` merges top-level keys (e.g.
    ``kubeadmConfigPatches`` a node image needs).
    """
    config: dict[str, object] = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [
            {
                "role": "control-plane",
                "extraPortMappings": [
                    {"containerPort": MLFLOW_NODE_PORT, "hostPort": host_port,
                     "listenAddress": "127.0.0.1", "protocol": "TCP"},
                ],
            }
        ],
    }
    if extra:
        config.update(extra)
    return config


@dataclass
class KindCluster:
    """A named kind cluster and the files the harness keeps for it."""

    name: str
    kind_bin: Path
    state_dir: Path
    log: Callable[[str], None] = print

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def control_plane(self) -> str:
        return f"{self.name}-control-plane"

    def _kind(self, *args: str, timeout: float = 600, check: bool = True) -> _exec.CompletedProcess[str]:
        return _exec.run([self.kind_bin, *args], timeout=timeout, check=check)

    def version(self) -> str:
        return self._kind("version", timeout=30).stdout.strip()

    def all_clusters(self) -> list[str]:
        """Every kind cluster on this Docker engine (``kind get clusters``), this one included if it exists."""
        return self._kind("get", "clusters", timeout=60).stdout.split()

    def exists(self) -> bool:
        return self.name in self.all_clusters()

    def _private_kubeconfig(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.touch(mode=0o600, exist_ok=True)
        os.chmod(self.kubeconfig, 0o600)

    def create(self, *, node_image: str, config: dict[str, object], wait_seconds: int = 300) -> None:
        """``kind create cluster`` with our config and image; waits until the node is Ready."""
        self._private_kubeconfig()
        self.save_host_sysctls()
        config_path = self.state_dir / "kind-config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        _exec.run([self.kind_bin, "create", "cluster", "--name", self.name, "--image", node_image,
                   "--config", str(config_path), "--kubeconfig", str(self.kubeconfig), "--wait", f"{wait_seconds}s"],
                  timeout=wait_seconds + 300, started=_creating.add)
        os.chmod(self.kubeconfig, 0o600)

    def export_kubeconfig(self) -> None:
        """(Re)write our private kubeconfig for an existing cluster."""
        self._private_kubeconfig()
        self._kind("export", "kubeconfig", "--name", self.name, "--kubeconfig", str(self.kubeconfig), timeout=60)
        os.chmod(self.kubeconfig, 0o600)

    def delete(self) -> None:
        args = ("delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig))
        first = self._kind(*args, timeout=300, check=False)
        if first.returncode != 0:
            # cgroup v1: a pod's `runc init` caught in a FROZEN freezer cgroup (runc freezes while it sets
            # device rules) cannot take SIGKILL, so `docker rm -f` of its node fails ("did not receive an
            # exit event"). Thaw what is frozen inside our nodes, then delete again.
            thawed = thaw_frozen_cgroups(node_container_ids(self.name))
            self.log(f"kind: delete of {self.name} failed ({(first.stderr or '').strip().splitlines()[-1:]}); "
                     f"thawed {len(thawed)} frozen cgroup(s) in its nodes; retrying")
            self._kind(*args, timeout=300)
        self.restore_host_sysctls()

    @staticmethod
    def _sysctl_file() -> Path:
        # On the host, not per cluster: the values to restore are the host's own,
        # recorded while no kind node was running to have changed them.
        return cache_dir("host") / "sysctls-before-kind.json"

    @staticmethod
    def _kind_nodes_running() -> bool:
        out = _exec.run(["docker", "ps", "-q", "--filter", "label=io.x-k8s.kind.cluster"],
                        check=False, timeout=30).stdout or ""
        return bool(out.strip())

    def save_host_sysctls(self) -> None:
        """Record the host values the kubelet will rewrite, unless a kind node already runs (then they are not ours)."""
        path = self._sysctl_file()
        if path.exists() or self._kind_nodes_running():
            return
        values = {}
        for key in KUBELET_HOST_SYSCTLS:
            try:
                values[key] = (PROC_SYS / key).read_text().strip()
            except OSError:
                continue
        path.write_text(json.dumps(values))

    def restore_host_sysctls(self) -> None:
        """Put the recorded host values back once no kind node runs; forget the record when that worked."""
        if self._kind_nodes_running():
            return  # another cluster's kubelet still relies on them
        try:
            saved = json.loads(self._sysctl_file().read_text())
        except (OSError, ValueError):
            return
        failed = False
        for key, value in saved.items():
            path = PROC_SYS / key
            try:
                if path.read_text().strip() != value:
                    path.write_text(value)
                    self.log(f"kind: restored host sysctl {key.replace('/', '.')}={value}")
            except OSError as exc:  # not root, or a read-only /proc/sys: say so, do not fail the delete
                failed = True
                self.log(f"kind: could not restore {key.replace('/', '.')}={value}: {exc}")
        if not failed:
            # Restored: forget the values, so an admin's later change is never "restored" away months on.
            self._sysctl_file().unlink(missing_ok=True)

    def export_logs(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self._kind("export", "logs", str(dest), "--name", self.name, timeout=300, check=False)
