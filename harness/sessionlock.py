"""One session per cluster at a time: a lock held from bring-up to teardown.

Two sessions naming the same cluster (two CI jobs on one machine, a teammate,
a second terminal) would otherwise delete and recreate each other's cluster
mid-run (``--no-reuse``, a fingerprint change) or tear it down under a running
test. The lock is an ``flock`` on a file in the cache directory: the kernel
drops it when its process dies, even by SIGKILL, so a crashed session never
leaves a stale lock. A second session waits, saying whom it waits for, and
gives up after ``timeout`` seconds with the holder's pid and start time.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from harness._errors import HarnessError
from harness._waiting import Probe, wait_for
from harness.cachedir import cache_dir

__all__ = ["ClusterBusy", "SessionLock"]


class ClusterBusy(HarnessError):
    """Another session holds the cluster for longer than we may wait."""


@dataclass
class SessionLock:
    """Exclusive use of cluster ``name`` by this process; a context manager."""

    name: str
    timeout: float = 600.0
    log: Callable[[str], None] = print
    directory: Path | None = None
    _fh: IO[str] | None = field(default=None, init=False, repr=False)

    @property
    def path(self) -> Path:
        return (self.directory or cache_dir("locks")) / f"cluster-{self.name}.lock"

    def holder(self) -> str:
        """Who holds it, as its lock file says (best effort)."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "another session"
        return f"pid {info.get('pid', '?')} since {info.get('since', '?')}"

    def _try(self) -> bool:
        assert self._fh is not None
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        if not self._try():
            self.log(f"cluster {self.name}: in use by {self.holder()}; waiting up to {self.timeout:.0f} s")

            def probe() -> Probe[None]:
                return Probe(self._try(), f"held by {self.holder()}")

            try:
                wait_for(probe, what=f"the other session on cluster {self.name} to end", timeout=self.timeout,
                         interval=2.0, hint="pick another cluster-name to run side by side")
            except HarnessError as exc:
                self.release()
                raise ClusterBusy(f"cluster {self.name} is in use by {self.holder()}; not touching it. "
                                  f"Use another cluster-name to run both at once.\n{exc}") from exc
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        self._fh.flush()
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
