"""Does this host need the runc wrapper runtime, and is it active?

Some VMs (Firecracker) run Docker with a capability bounding set lacking
e.g. CAP_SYS_RESOURCE. Docker 20.10 requests every capability it knows for
``--privileged`` containers, so runc fails with "unable to apply caps" and
kind cannot create a node. ``scripts/docker-up.sh`` then registers a wrapper
runtime that drops the missing capabilities as Docker's default runtime. The
doctor reports both facts so a failure names its fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import _exec

__all__ = ["RuntimeStatus", "host_needs_runtime_fix", "missing_capabilities", "runtime_status"]

#: Capability names in kernel bit order (linux/capability.h).
_CAP_NAMES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]

#: Name under which scripts/docker-up.sh registers the wrapper.
WRAPPER_RUNTIME = "nosr"


@dataclass(frozen=True)
class RuntimeStatus:
    """What the doctor prints about Docker's ability to run kind nodes."""

    missing_caps: tuple[str, ...]
    default_runtime: str | None

    @property
    def needs_fix(self) -> bool:
        """True if ``--privileged`` containers fail without a wrapper runtime."""
        return bool(self.missing_caps)

    @property
    def fix_active(self) -> bool:
        """True if Docker's default runtime is the capability-dropping wrapper."""
        return self.default_runtime == WRAPPER_RUNTIME

    @property
    def ok(self) -> bool:
        """Nodes can start: either nothing is missing or the wrapper is in place."""
        return not self.needs_fix or self.fix_active


def missing_capabilities(status_text: str, cap_last_cap: int) -> tuple[str, ...]:
    """Capabilities up to ``cap_last_cap`` absent from the ``CapBnd`` line of /proc/*/status."""
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            bounding = int(line.split(":", 1)[1].strip(), 16)
            break
    else:
        return ()
    names = _CAP_NAMES + [f"CAP_{i}" for i in range(len(_CAP_NAMES), cap_last_cap + 1)]
    return tuple(
        (n if n.startswith("CAP_") else f"CAP_{n}")
        for i, n in enumerate(names[: cap_last_cap + 1])
        if not (bounding >> i) & 1
    )


def _cap_last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text().strip())
    except (OSError, ValueError):
        return len(_CAP_NAMES) - 1


def _proc_status(path: Path = Path("/proc/self/status")) -> str:
    """This process's status text; empty where there is no /proc (macOS: Docker runs in a VM we cannot see)."""
    try:
        return path.read_text()
    except OSError:
        return ""


def runtime_status() -> RuntimeStatus:
    """Inspect this host: missing capabilities and Docker's default runtime."""
    missing = missing_capabilities(_proc_status(), _cap_last_cap())
    proc = _exec.run(["docker", "info", "--format", "{{.DefaultRuntime}}"], check=False, timeout=30)
    default = proc.stdout.strip() or None if proc.returncode == 0 else None
    return RuntimeStatus(missing_caps=missing, default_runtime=default)


def host_needs_runtime_fix() -> bool:
    """True if this host's bounding set lacks capabilities Docker asks for under --privileged."""
    return bool(missing_capabilities(_proc_status(), _cap_last_cap()))
