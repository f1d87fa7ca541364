"""Who owns what a session starts outside itself: owner tokens, and records of spawned process groups.

A session's *owner token* is the pid, kernel start time and pid-namespace scope of
its process: no later process shares it, so "its owner is gone" can be proven.
:mod:`harness._exec` records every process group it spawns here, and
:mod:`harness.leftovers` reaps the records (and labelled containers) of owners
that are gone. This module sits below both, so neither imports the other in a
circle. Stdlib only (the registry-less builders use it too).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from pathlib import Path

from harness.cachedir import cache_dir

__all__ = ["OWNER_LABEL", "forget", "is_alive", "owner_token", "record", "records_dir", "start_time"]

OWNER_LABEL = "mlflow-crd-harness/owner"
"""Docker label on containers a session makes and removes itself (value: :func:`owner_token`)."""


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None where /proc has none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may contain spaces


@functools.cache
def _scope() -> str:
    """This process's pid namespace and boot: where its pids mean something (``?`` where /proc has none)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "?"
    return f"{namespace}-{boot}"


@functools.cache
def owner_token() -> str:
    """``<pid>:<start time>:<pid namespace and boot>`` of this process: unique even after its pid is reused.

    The scope matters where several pid namespaces share one Docker engine (a
    CI job in a container beside another's): a pid that looks dead from here
    may run there, so only tokens of this scope can be proven dead.
    """
    return f"{os.getpid()}:{start_time(os.getpid()) or '?'}:{_scope()}"


def is_alive(token: str) -> bool:
    """False only if the process ``token`` names provably ended (same pid namespace and boot, pid gone or reused)."""
    pid_text, _, rest = token.partition(":")
    started, _, scope = rest.partition(":")
    if scope and scope != _scope():
        return True  # another pid namespace or boot: its pids are not ours to judge, so it is never reaped
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = start_time(pid)
    return now is None or started in ("", "?") or now == started


def records_dir() -> Path:
    return cache_dir("sessions")


def record(proc: subprocess.Popen[bytes], what: str) -> None:
    """Remember a spawned process group of this session (see :func:`reap`)."""
    data = {"pid": proc.pid, "token": f"{proc.pid}:{start_time(proc.pid) or '?'}:{_scope()}", "owner": owner_token(),
            "what": what, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (records_dir() / f"proc-{proc.pid}.json").write_text(json.dumps(data))


def forget(proc: subprocess.Popen[bytes]) -> None:
    (records_dir() / f"proc-{proc.pid}.json").unlink(missing_ok=True)
