"""Where built artefacts live and how they are keyed.

Every artefact (binaries, root filesystem tarballs, component image archives,
the final node image archive) sits in a directory named after a hash of its
inputs, so a warm run finds it by recomputing the key and never has to decide
whether something is "stale". Directories are filled under a temporary name
and renamed into place last, so an interrupted build leaves no half artefact
that a later run would trust.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from harness import cachedir as _cachedir
from harness import hostenv

__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE_DIR",
    "build_lock",
    "hash_tree",
    "input_key",
    "publish_dir",
    "resolve_cache_dir",
]

#: Default cache root (one for the whole package, see :mod:`harness.cachedir`): outside any clone,
#: so ``git clean`` never costs a 30-minute rebuild; ``~/.cache/...`` for non-root users.
DEFAULT_CACHE_DIR = _cachedir.DEFAULT_CACHE_DIR

#: Environment variable overriding :data:`DEFAULT_CACHE_DIR`.
CACHE_ENV = hostenv.CACHE_DIR

_KEY_LEN = 16  # hex chars: collisions are irrelevant at our scale, names stay readable


def resolve_cache_dir(explicit: Path | str | None = None) -> Path:
    """Pick the cache root: the argument, else the package's one cache root (:func:`harness.cachedir.cache_dir`)."""
    if explicit is not None:
        return Path(explicit)
    return _cachedir.cache_dir()


def input_key(inputs: Mapping[str, object]) -> str:
    """Hash a mapping of inputs into a short stable key.

    JSON with sorted keys makes the key independent of dict order; values must
    be JSON-serialisable (strings, numbers, lists, nested mappings).
    """
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:_KEY_LEN]


def hash_tree(root: Path) -> str:
    """Hash every regular file under ``root`` (relative path, mode bit x, bytes).

    Used for our node files: editing, adding, renaming or chmod-ing any of
    them changes the node image key.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel:
            continue
        executable = os.access(path, os.X_OK)
        h.update(f"{rel}\0{int(executable)}\0".encode())
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:_KEY_LEN]


@contextmanager
def publish_dir(final: Path) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``final`` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


#: A cold node-image build is the longest holder (~25 min on 2 cores, beside other work).
BUILD_LOCK_TIMEOUT = 3600.0


@contextmanager
def build_lock(cache_dir: Path, *, name: str = ".build.lock", what: str = "a build",
               log: Callable[[str], None] | None = None, timeout: float = BUILD_LOCK_TIMEOUT) -> Iterator[None]:
    """Serialise builds sharing ``cache_dir/name`` (parallel CI jobs, xdist workers).

    The second builder waits, then finds everything cached. An advisory
    ``flock`` is released by the kernel if the holder dies, so a killed build
    never leaves a stale lock behind. A waiter is never silent: it says who
    holds the lock (``<name>.holder``: pid and ``what``) and how to check, and
    gives up after ``timeout`` (:data:`BUILD_LOCK_TIMEOUT` unless a holder is known to be shorter: the e2e
    tests' one disruption of a shared stack at a time takes it too). Artefacts built from separate
    inputs take separate names (kind's binary is not held up by a node image).
    """
    from harness._waiting import Probe, wait_for

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / name
    holder = path.with_name(path.name + ".holder")
    with path.open("a") as handle:

        def take() -> Probe[None]:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return Probe(False, f"held by {_read_holder(holder)}")
            return Probe(True, "taken")

        if not take().done:
            if log is not None:
                log(f"{what}: waiting for {_read_holder(holder)} to finish (one build at a time in {path})")
            wait_for(take, what=f"the build lock {path} (for {what})", timeout=timeout,
                     interval=1.0, hint=f"held by {_read_holder(holder)}; if that process is gone or stuck, "
                                        "stop it (the kernel releases the lock when it exits)")
        holder.write_text(f"pid {os.getpid()} ({what})")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_holder(holder: Path) -> str:
    try:
        return holder.read_text().strip() or "another build"
    except OSError:
        return "another build"
