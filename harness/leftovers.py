"""What a session starts outside its own process, recorded as it is made and reaped if the session dies.

A session that ends normally stops what it started (``finally`` blocks, and
SIGTERM/SIGHUP turned into ``KeyboardInterrupt`` by the pytest plugin so
those blocks run). One that is killed outright (SIGKILL, the OOM killer, a CI
runner's hard timeout) cannot: the ``mlflow server`` and ``kubectl
port-forward`` it spawned run in sessions of their own, and a node-image
build leaves a privileged container. So each of them is recorded with its
*owner* — the pid and kernel start time of the session's process, which no
later process shares — and the next session reaps whatever belongs to an
owner that is gone:

* processes: a JSON record per spawned process group in the cache
  (``sessions/proc-<pid>.json``), removed when the process is stopped;
* containers: the Docker label ``mlflow-crd-harness/owner``.

Owner tokens and the records are :mod:`harness.owners` (below :mod:`harness._exec`,
which writes a record for every group it spawns); this module only reaps.

Stdlib only (the registry-less builders use it too).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Sequence

from harness import _exec
from harness._errors import WaitTimeout
from harness._waiting import Probe, wait_for
from harness.owners import OWNER_LABEL, is_alive, records_dir

__all__ = ["reap"]

def _group_gone(pid: int) -> Probe[None]:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return Probe(True, "gone")
    return Probe(False, "still running")


def _kill_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_for(lambda: _group_gone(pid), what=f"process group {pid} to exit after SIGTERM", timeout=grace,
                 interval=0.1)
    except WaitTimeout:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def reap_processes(log: Callable[[str], None]) -> list[str]:
    """Stop process groups whose recording session is gone; drop records of ended ones."""
    reaped = []
    for path in sorted(records_dir().glob("proc-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if is_alive(str(data.get("owner", ""))):
            continue
        if is_alive(str(data.get("token", ""))):
            _kill_group(int(data["pid"]))
            reaped.append(f"{data.get('what', 'process')} (pid {data['pid']}, since {data.get('since', '?')})")
        path.unlink(missing_ok=True)
    for line in reaped:
        log(f"leftovers: stopped {line} of a session that is gone")
    return reaped


REAPABLE_CONTAINER_PREFIXES = ("nodeimg-build-",)
"""Names of the containers the harness labels with their owner (and only those may be reaped).

The label alone is not enough: ``docker commit`` copies a container's labels
into the image, so every container *run from* an image the harness committed
(a kind node of the registry-less node image) would carry its builder's dead
owner token. Matching the name as well keeps other sessions' clusters safe.
"""


def dead_owner_containers(listing: str) -> list[str]:
    """Names in ``docker ps -a --format '{{.Names}} {{.Label ...}}'`` output whose owner is gone."""
    names = []
    for line in listing.splitlines():
        name, _, token = line.strip().partition(" ")
        if name.startswith(REAPABLE_CONTAINER_PREFIXES) and token and not is_alive(token):
            names.append(name)
    return names


def reap_containers(log: Callable[[str], None]) -> list[str]:
    """Remove containers labelled with an owner that is gone (e.g. a killed node-image build's)."""
    proc = _exec.run(["docker", "ps", "-a", "--filter", f"label={OWNER_LABEL}", "--format",
                      f'{{{{.Names}}}} {{{{.Label "{OWNER_LABEL}"}}}}'], check=False, timeout=60)
    names = dead_owner_containers(proc.stdout or "") if proc.returncode == 0 else []
    if names:
        _exec.run(["docker", "rm", "-f", *names], check=False, timeout=120)
        log(f"leftovers: removed container(s) {', '.join(names)} of a session that is gone")
    return names


def reap(log: Callable[[str], None] = print, *, containers: bool = True) -> Sequence[str]:
    """Everything a dead session left that this machine still runs; what was reaped."""
    found = reap_processes(log)
    return [*found, *(reap_containers(log) if containers else [])]
