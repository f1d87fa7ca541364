"""One session per cluster at a time: a lock held from bring-up to teardown.

Two sessions naming the same cluster (two CI jobs on one machine, a teammate,
a second terminal) would otherwise delete and recreate each other's cluster
mid-run (``--no-reuse``, a fingerprint change) or tear it down under a running
test. The lock is an ``flock`` on a file: the kernel drops it when its process
dies, even by SIGKILL, so a crashed session never leaves a stale lock. A second
session waits, saying whom it waits for, and gives up after ``timeout`` seconds
with the holder's pid and start time.

The lock is per Docker engine, not per user: kind clusters belong to the engine,
and root, alice and a CI runner account that share one engine share its cluster
names too. A lock in each user's cache directory would let two of them drive
the same cluster at once, each holding "its" lock. So the lock files live in
one directory per engine id (``docker info``'s ``ID``) under
``$HARNESS_LOCK_DIR`` (default ``/tmp/mlflow-crd-harness-locks``), every level
mode 1777 like /tmp, each lock file 0666: any user's session can open and lock
it. The directory is per machine: an engine that several machines reach
(``DOCKER_HOST=tcp://…``) is locked only among the sessions of each machine.
An ``existing`` cluster (no kind) keys its lock the same way when Docker
answers; without Docker it falls back to the user's cache directory, as its
Leases (:mod:`harness.sessionlease`) are what see sessions elsewhere anyway.

Both sides leave a record next to the lock, so other tools (and the fault
tier) can see who holds a cluster and who waits for it without parsing logs:
the lock file itself holds the holder's pid, owner token, engine id and start
time; a session waiting for it writes ``cluster-<name>.wait-<pid>.json``
(readable by every user) and removes it once it has the lock or gives up (a
waiter killed meanwhile leaves a record whose owner is gone, which
:meth:`SessionLock.waiters` drops when it may).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from harness import dockercli, hostenv, owners
from harness._errors import HarnessError
from harness._waiting import Probe, wait_for
from harness.cachedir import cache_dir

__all__ = ["DEFAULT_LOCK_DIR", "LOCK_DIR_ENV", "ClusterBusy", "SessionLock", "engine_dir", "lock_base"]

DEFAULT_LOCK_DIR = Path("/tmp/mlflow-crd-harness-locks")
"""Where the per-engine lock directories go: /tmp, because every user can reach it (``TMPDIR`` is per user)."""

LOCK_DIR_ENV = hostenv.LOCK_DIR
"""Environment variable that moves :data:`DEFAULT_LOCK_DIR`; every user of an engine must give the same one."""

SHARED_DIR_MODE = 0o1777
"""Everyone may add a lock file; only its owner (or root) may remove or rename it (sticky, like /tmp)."""

LOCK_FILE_MODE = 0o666
"""Any user's session opens the lock file read-write to write its holder record."""

RECORD_MODE = 0o644
"""A waiter's record: its owner writes it, every user's session reads it."""

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
"""A shared directory may hold another user's symlink: never follow it to write somewhere else."""


class ClusterBusy(HarnessError):
    """Another session holds the cluster for longer than we may wait."""


def lock_base(environ: Mapping[str, str] | None = None) -> Path:
    """``$HARNESS_LOCK_DIR``, else :data:`DEFAULT_LOCK_DIR`; read when a lock is used, never at import."""
    return Path(hostenv.get(LOCK_DIR_ENV, environ) or DEFAULT_LOCK_DIR)


def engine_dir(engine: str, base: Path | None = None) -> Path:
    """The lock directory of Docker engine ``engine`` (not created).

    Characters a path must not carry are replaced; ids of real engines
    (``ASV2:OSPI:…`` or a UUID) stay as ``docker info`` shows them.
    """
    safe = re.sub(r"[^A-Za-z0-9._:-]", "_", engine).lstrip(".")
    if not safe:
        raise HarnessError(f"Docker engine id {engine!r} cannot name a lock directory")
    return (base or lock_base()) / safe


def _make_shared(directory: Path) -> None:
    """Create ``directory`` and its parent mode 1777, each only if missing.

    ``mkdir``'s mode passes through the umask, so the mode is set again; a
    directory another user made is left as it is (its owner set its mode).
    """
    directory.parent.parent.mkdir(parents=True, exist_ok=True)
    for level in (directory.parent, directory):
        try:
            level.mkdir(mode=SHARED_DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(level, SHARED_DIR_MODE)


def _describe(path: Path) -> str:
    """Owner uid and mode of ``path``, for an error that says what to fix."""
    try:
        st = os.lstat(path)
    except OSError:
        return f"{path} (missing)"
    return f"{path} (uid {st.st_uid}, mode {stat.filemode(st.st_mode)})"


def _leave_record(path: Path, record: Mapping[str, Any]) -> bool:
    """Write ``record`` to a new file every user can read; False if it cannot be written (it is only a record).

    A file already there with this pid's name is an earlier process's left-over:
    ours is removed first; another user's stays (the sticky directory protects
    it) and this session then waits without a record.
    """
    with contextlib.suppress(OSError):
        path.unlink()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, RECORD_MODE)
    except OSError:
        return False
    try:
        os.fchmod(fd, RECORD_MODE)
        os.write(fd, json.dumps(record).encode())
    finally:
        os.close(fd)
    return True


@dataclass
class SessionLock:
    """Exclusive use of cluster ``name`` by this process, among every user of the Docker engine; a context manager."""

    name: str
    timeout: float = 600.0
    log: Callable[[str], None] = print
    directory: Path | None = None
    """The lock files' directory, used as is (tests); default: the shared one of the engine, :func:`engine_dir`."""
    engine: str | None = None
    """The Docker engine's id; default: asked of ``docker info`` when the lock is first used (tests give one)."""
    docker_optional: bool = False
    """True for an ``existing`` cluster: if Docker does not answer, lock in the user's cache directory instead."""
    _fd: int | None = field(default=None, init=False, repr=False)
    _resolved: tuple[Path, str | None, bool] | None = field(default=None, init=False, repr=False)

    def _where(self) -> tuple[Path, str | None, bool]:
        """(directory, engine id or None, whether it is the shared per-engine one); asked of Docker once."""
        if self._resolved is None:
            self._resolved = self._resolve()
        return self._resolved

    def _resolve(self) -> tuple[Path, str | None, bool]:
        if self.directory is not None:
            return self.directory, self.engine, False
        engine = self.engine
        if engine is None:
            try:
                engine = dockercli.engine_id()
            except HarnessError as exc:
                if not self.docker_optional:
                    raise HarnessError(f"cluster {self.name}: the session lock is per Docker engine, and Docker "
                                       f"does not say which engine it is: {exc}") from exc
                fallback = cache_dir("locks")
                self.log(f"cluster {self.name}: Docker does not answer, so the session lock is this user's only "
                         f"({fallback}), not every user's of the engine; the cluster's Leases still see the others")
                return fallback, None, False
        return engine_dir(engine), engine, True

    @property
    def path(self) -> Path:
        return self._where()[0] / f"cluster-{self.name}.lock"

    def holder_record(self) -> dict[str, Any]:
        """What the lock file says of its holder (pid, owner token, engine, since); ``{}`` if unreadable or empty.

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
        """The sessions waiting for this cluster now (their records; those of gone processes are dropped).

        A gone waiter's record that belongs to another user stays on disk (the
        sticky directory lets only its owner remove it) but is not listed.
        """
        found = []
        for path in sorted(self.path.parent.glob(f"cluster-{self.name}.wait-*.json")):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(info, dict) and owners.is_alive(str(info.get("owner", ""))):
                found.append(info)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
        return found

    def _try(self) -> bool:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _open(self) -> tuple[int, bool]:
        """The lock file's descriptor, and whether this session may write its holder record into it.

        Created 0666 (``O_EXCL``, then ``fchmod`` past the umask) so any user's
        session can open it; one already there is opened without ``O_CREAT``,
        which ``fs.protected_regular`` never refuses for another user's file in
        a sticky directory. If that file can only be opened read-only (made by
        hand, or by a user whose mode was not 0666), the ``flock`` still works
        on the read-only descriptor: the lock holds, and only the holder record
        is not written (the file then still names an earlier holder).
        """
        path = self.path
        directory, _engine, shared = self._where()
        if shared:
            _make_shared(directory)
        else:
            directory.mkdir(parents=True, exist_ok=True)
        try:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, LOCK_FILE_MODE)
            except FileExistsError:
                pass
            else:
                os.fchmod(fd, LOCK_FILE_MODE)
                return fd, True
            try:
                fd, writable = os.open(path, os.O_RDWR | _NOFOLLOW), True
            except PermissionError:
                fd, writable = os.open(path, os.O_RDONLY | _NOFOLLOW), False
        except OSError as exc:
            raise HarnessError(f"cluster {self.name}: cannot open its session lock {_describe(path)} in "
                               f"{_describe(directory)}: {exc}. Lock files must be 0666 in a 1777 directory (as "
                               f"their owner or root: chmod 1777 the directory, chmod 666 the file)") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise HarnessError(f"cluster {self.name}: its session lock {_describe(path)} is not a regular file; "
                               "remove it (as its owner or root)")
        return fd, writable

    def acquire(self) -> Self:
        self._fd, writable = self._open()
        if not self._try():
            self.log(f"cluster {self.name}: in use by {self.holder()}; waiting up to {self.timeout:.0f} s")

            def probe() -> Probe[None]:
                return Probe(self._try(), f"held by {self.holder()}")

            waiting = self._wait_record(os.getpid())
            recorded = _leave_record(waiting, {**self._me(), "holder": self.holder_record()})
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
                if recorded:
                    with contextlib.suppress(OSError):
                        waiting.unlink()
        if writable:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(self._me()).encode(), 0)
        return self

    def _me(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "owner": owners.owner_token(), "engine": self._where()[1],
                "since": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
