"""One session per cluster at a time: a lock held from bring-up to teardown.

Two sessions naming the same cluster (two CI jobs on one machine, a teammate,
a second terminal) would otherwise delete and recreate each other's cluster
mid-run (``--no-reuse``, a fingerprint change) or tear it down under a running
test. The lock is an ``flock`` on a file in the cache directory: the kernel
drops it when its process dies, even by SIGKILL, so a crashed session never
leaves a stale lock. A second session waits, saying whom it waits for, and
gives up after ``timeout`` seconds with the holder's pid and start time.

Both sides leave a record next to the lock, so other tools (and the fault
tier) can see who holds a cluster and who waits for it without parsing logs:
the lock file itself holds the holder's pid, owner token and start time; a
session waiting for it writes ``cluster-<name>.wait-<pid>.json`` and removes
it once it has the lock or gives up (a waiter killed meanwhile leaves a record
whose owner is gone, which :meth:`SessionLock.waiters` drops).
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
from typing import IO, Any, Self

from harness import owners
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

    def holder_record(self) -> dict[str, Any]:
        """What the lock file says of its holder (pid, owner token, since); ``{}`` if unreadable or empty.

        The last holder's record stays after it released the lock; only the flock says it is held.
        """
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def holder(self) -> str:
        """Who holds it, as its lock file says (best effort)."""
        info = self.holder_record()
        if not info:
            return "another session"
        return f"pid {info.get('pid', '?')} since {info.get('since', '?')}"

    def _wait_record(self, pid: int) -> Path:
        return self.path.with_name(f"cluster-{self.name}.wait-{pid}.json")

    def waiters(self) -> list[dict[str, Any]]:
        """The sessions waiting for this cluster now (their records; those of gone processes are dropped)."""
        found = []
        for path in sorted(self.path.parent.glob(f"cluster-{self.name}.wait-*.json")):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(info, dict) and owners.is_alive(str(info.get("owner", ""))):
                found.append(info)
            else:
                path.unlink(missing_ok=True)
        return found

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

            waiting = self._wait_record(os.getpid())
            waiting.write_text(json.dumps({**self._me(), "holder": self.holder_record()}))
            try:
                wait_for(probe, what=f"the other session on cluster {self.name} to end", timeout=self.timeout,
                         interval=2.0, hint="pick another cluster-name to run side by side")
            except HarnessError as exc:
                self.release()
                raise ClusterBusy(f"cluster {self.name} is in use by {self.holder()}; not touching it. "
                                  f"Use another cluster-name to run both at once.\n{exc}") from exc
            except BaseException:
                self.release()  # interrupted while waiting: nothing of the cluster was touched
                raise
            finally:
                waiting.unlink(missing_ok=True)
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(json.dumps(self._me()))
        self._fh.flush()
        return self

    @staticmethod
    def _me() -> dict[str, Any]:
        return {"pid": os.getpid(), "owner": owners.owner_token(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}

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
