"""A real MLflow tracking server on this host, for the docker tier and benchmarks.

It is the setup the MLflow 3 notes recommend for containers: a sqlite backend,
proxied artifacts (``--serve-artifacts``, so containers need no shared
filesystem to store models) and an explicit ``--allowed-hosts`` list — never
``*``. The in-cluster server for the e2e tier is :mod:`harness.tracking.incluster`.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from harness import _exec, dockercli
from harness._waiting import Probe, wait_for
from harness.ports import free_port
from harness.tracking.serverenv import SERVER_ENV

__all__ = ["LocalTrackingServer"]


@dataclass
class LocalTrackingServer:
    """``mlflow server`` in a child process; a context manager that never leaks it.

    ``workdir`` holds the sqlite file, the artifact root and the server log
    (kept after stop, as evidence).
    """

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    startup_timeout: float = 90.0
    #: ``mlflow run -A …`` arguments a docker-env project needs to reach this server (see :meth:`for_containers`).
    docker_args: tuple[str, ...] = ()
    _proc: _exec.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @classmethod
    def for_containers(cls, workdir: Path) -> Self:
        """A server that ``mlflow run`` containers reach with the same URI as the host, without host networking.

        It listens on the Docker bridge's gateway when the engine runs on this
        host (reachable from the host and the bridge only), else on loopback
        with host networking for the container (see :func:`dockercli.host_reach`).
        """
        reach = dockercli.host_reach()
        return cls(workdir, host=reach.bind, docker_args=reach.docker_args)

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process (its own process group), while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "mlflow-server.log"

    @property
    def artifacts_dir(self) -> Path:
        return self.workdir / "artifacts"

    def allowed_hosts(self) -> str:
        # The exact Host headers our clients send; the middleware compares literally.
        return f"{self.host}:{self.port},localhost:{self.port}"

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        argv = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination", str(self.artifacts_dir),
            "--serve-artifacts",
            "--host", self.host,
            "--port", str(self.port),
            "--workers", "1",
            "--allowed-hosts", self.allowed_hosts(),
        ]
        self._proc = _exec.spawn(argv, log_path=self.log_path, cwd=self.workdir, extra_env=SERVER_ENV)
        try:
            wait_for(
                self._probe,
                what=f"MLflow server at {self.uri} to answer /health",
                timeout=self.startup_timeout,
                interval=0.5,
                hint=f"see {self.log_path}",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _probe(self) -> Probe[None]:
        proc = self._proc
        assert proc is not None, "probe runs only after start()"
        if proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:  # noqa: S310 - our own server's URL
                return Probe(resp.status == 200, f"HTTP {resp.status}")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            return Probe(False, f"not answering ({type(exc).__name__})")

    def stop(self) -> None:
        if self._proc is not None:
            _exec.stop(self._proc)
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
