"""Registry containers of the user's that the harness joined to kind's network, recorded across sessions.

For kind nodes to pull from a registry container that is not the harness's
(kind's guide starts one as ``kind-registry``), the container must join the
``kind`` Docker network: a change to the user's host, so it is recorded here
as it is made and undone when the last kind cluster goes, by whichever
session deletes that cluster. That need not be the session that made it:
with two sessions side by side (CI's two lanes), the one that lent the
registry may end while the other's cluster still runs, and the other learns
of the registry only from this record.

Stdlib and :mod:`harness._exec` only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from harness import _exec
from harness.cachedir import cache_dir

__all__ = ["lent", "note_lent", "return_lent"]

Log = Callable[[str], None]


def _records() -> Path:
    return cache_dir("lent-registries")


def note_lent(container: str, network: str) -> None:
    """Record that ``container`` (not the harness's) was joined to ``network`` by the harness."""
    record = {"container": container, "network": network, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (_records() / f"{container}.json").write_text(json.dumps(record))


def lent() -> list[str]:
    """The containers recorded as lent, by name."""
    return sorted(path.stem for path in _records().glob("*.json"))


def return_lent(log: Log) -> list[str]:
    """Take every recorded container off the network it was joined to; forget the records; return their names.

    Call it only once no kind cluster is left: a cluster may still pull through a lent registry.
    A container that has gone since, or has already left, needs nothing (``docker network
    disconnect`` fails and is ignored).
    """
    returned: list[str] = []
    for path in sorted(_records().glob("*.json")):
        try:
            record = json.loads(path.read_text())
            container, network = str(record["container"]), str(record["network"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # a torn record: nothing it names can be undone
            continue
        _exec.run(["docker", "network", "disconnect", network, container], check=False, timeout=60)
        log(f"registry: {container} left Docker network {network} (no kind cluster is left to pull from it)")
        path.unlink(missing_ok=True)
        returned.append(container)
    return returned
