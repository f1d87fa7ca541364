"""The one place this package starts child processes.

Every external tool (docker, kind, kubectl, go, debootstrap) is called with an
argv list, never a shell string, and a failure raises :class:`CommandError`
carrying the pasteable command, exit code and both streams, so a red CI log
says what failed without a re-run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness._errors import CommandError, WaitTimeout

__all__ = ["CompletedProcess", "Popen", "run", "spawn", "stop", "which"]

CompletedProcess = subprocess.CompletedProcess
Popen = subprocess.Popen


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = True,
    started: Callable[[subprocess.Popen[str]], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` and return the completed process (text mode).

    ``env`` replaces the environment; ``extra_env`` is layered on top of
    ``env`` (or of ``os.environ``) for this call only, so callers never have
    to mutate the process-wide environment. ``capture=False`` streams output
    to the terminal (for long builds) and keeps nothing. ``started`` is given
    the child as soon as it runs, so another thread can stop it (a ``kind
    create`` that is no longer wanted because an image build failed).
    """
    args = [os.fspath(a) for a in argv]
    full_env = dict(os.environ if env is None else env)
    if extra_env:
        full_env.update(extra_env)
    data = input.decode() if isinstance(input, bytes) else input
    pipe = subprocess.PIPE if capture else None
    try:
        with subprocess.Popen(args, env=full_env, cwd=cwd, text=True, stdout=pipe, stderr=pipe,
                              stdin=subprocess.PIPE if data is not None else None) as child:
            if started is not None:
                started(child)
            try:
                out, err = child.communicate(data, timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                out, err = child.communicate()
                raise subprocess.TimeoutExpired(args, timeout or 0, out, err) from None
            except BaseException:  # an interrupt: the child must not outlive the call that owns it
                child.kill()
                raise
        proc = subprocess.CompletedProcess(args, child.returncode, out, err)
    except FileNotFoundError as exc:
        raise CommandError(args, 127, "", f"{args[0]}: not found on PATH ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise CommandError(args, -1, out, f"timed out after {timeout:.0f} s\n{err}") from exc
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stdout or "", proc.stderr or "")
    return proc


def which(name: str, *extra_dirs: str | os.PathLike[str]) -> Path | None:
    """Find ``name`` on PATH, then in ``extra_dirs`` (e.g. our tool cache)."""
    import shutil

    found = shutil.which(name)
    if found:
        return Path(found)
    for d in extra_dirs:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running process in its own session, output to ``log_path``.

    Its own session (process group) lets :func:`stop` end it together with
    every child it forks (MLflow's server runs uvicorn workers and job runners).
    It is recorded as this session's (:mod:`harness.owners`), so if the
    session is killed before it can stop it, the next session does.
    """
    from harness import owners

    env = dict(os.environ)
    if extra_env:
        env.update(extra_env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    owners.record(proc, " ".join(os.fspath(a) for a in argv[:4]))
    return proc


def stop(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """Stop a process started by :func:`spawn` and its whole process group.

    The group is signalled even when its leader has already exited: its
    members (a server's workers) may live on, and the group's id stays theirs
    (Linux does not hand out a pid that is still a live group's id), so
    ``killpg`` can reach nothing else. SIGTERM, then SIGKILL after ``grace`` s.
    """
    import signal

    from harness import owners
    from harness._waiting import Probe, wait_for

    def group_gone() -> Probe[None]:
        with contextlib.suppress(ChildProcessError, OSError):
            proc.poll()  # reap the leader, or it stays a zombie member of its group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return Probe(True, "gone")
        except PermissionError:  # cannot signal it: nothing of ours
            return Probe(True, "not ours")
        return Probe(False, "members alive")

    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                return  # nothing of the group is left
            try:
                wait_for(group_gone, what=f"process group {proc.pid} to exit after {sig.name}", timeout=grace,
                         interval=0.1)
                return
            except WaitTimeout:
                continue
    finally:
        owners.forget(proc)
