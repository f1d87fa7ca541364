"""The few Docker questions asked before any build: is an image here, can it be pulled, its id.

Kept on the ``docker`` CLI and the stdlib (no SDK), because the registry-less
node-image builder and ``.ci/run`` use it with a bare system Python.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from harness import _exec
from harness._errors import HarnessError

__all__ = ["HostReach", "bridge_gateway", "choose_host_reach", "docker_env", "docker_host", "engine_id", "host_reach",
           "image_exists", "image_id", "obtain", "sdk_client"]

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def context_host(inspect_output: str, returncode: int) -> str | None:
    """The endpoint ``docker context inspect`` names, unless it is the default socket."""
    host = inspect_output.strip()
    return host if returncode == 0 and host and host != DEFAULT_SOCKET else None


@functools.cache
def _current_context_host() -> str | None:
    proc = _exec.run(["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"],
                     check=False, timeout=30)
    return context_host(proc.stdout or "", proc.returncode)


def docker_host(environ: Mapping[str, str] | None = None) -> str | None:
    """The engine every Docker client must talk to: ``DOCKER_HOST``, else the current docker context's.

    The CLI honours ``docker context use`` (Docker Desktop, Colima, OrbStack);
    the Python SDK does not, so without this the SDK and the CLI would talk to
    two different engines (or the SDK to none).
    """
    env = os.environ if environ is None else environ
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"]
    if env.get("DOCKER_CONTEXT") == "default":
        return None
    return _current_context_host()


def docker_env() -> dict[str, str]:
    """Extra env for child processes that use the SDK (``mlflow run``): the engine of the current context."""
    host = docker_host()
    return {"DOCKER_HOST": host} if host and "DOCKER_HOST" not in os.environ else {}


def sdk_client(timeout: int = 600) -> Any:
    """A Docker SDK client of the same engine the ``docker`` CLI uses."""
    import docker

    host = docker_host()
    return docker.DockerClient(base_url=host, timeout=timeout) if host else docker.from_env(timeout=timeout)


def engine_id(timeout: float = 20.0) -> str:
    """The id of the Docker engine the CLI talks to (``docker info``'s ``ID``); raises if it does not answer.

    Whoever asks (root, another user, through another socket path or
    ``DOCKER_HOST`` that reaches the same daemon) gets the same id, so it names
    what kind clusters belong to: the engine, not the user. Bounded, because a
    hung daemon must not hang whoever asks; the CLI resolves ``docker context``
    itself, so no :func:`docker_host` is needed here.
    """
    proc = _exec.run(["docker", "info", "--format", "{{.ID}}"], timeout=timeout)
    found = (proc.stdout or "").strip()
    if not found or found == "<no value>":
        raise HarnessError(f"docker info names no engine ID (stdout {proc.stdout!r}, stderr {proc.stderr!r})")
    return found


def image_exists(ref: str) -> bool:
    """True if the local Docker engine has ``ref``."""
    return _exec.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref],
                     check=False, timeout=60).returncode == 0


def image_id(ref: str) -> str:
    """The local image id (``sha256:…``) of ``ref``; raises if it is not there."""
    return _exec.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], timeout=60).stdout.strip()


def obtain(ref: str, *, pull_timeout: float) -> tuple[Literal["present", "pulled"] | None, str]:
    """Make ``ref`` local if possible: ("present"|"pulled", "") or (None, the pull's last error line)."""
    if image_exists(ref):
        return "present", ""
    proc = _exec.run(["docker", "pull", "--quiet", ref], check=False, timeout=pull_timeout)
    if proc.returncode == 0:
        return "pulled", ""
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return None, lines[-1] if lines else "no answer"


@dataclass(frozen=True)
class HostReach:
    """How a container that ``mlflow run`` starts reaches a server on this host.

    ``bind`` is the address the server must listen on (its URI names it, so
    the host-side MLflow client and the container use the same URI, as MLflow's
    docker backend passes the host's tracking URI into the container);
    ``docker_args`` are the ``mlflow run -A`` arguments that make it work.
    """

    bind: str
    docker_args: tuple[str, ...]
    why: str


def _bindable(address: str) -> bool:
    """True if ``address`` is one of this host's own interfaces (a bind to it succeeds)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


def choose_host_reach(gateway: str | None, bindable: Callable[[str], bool] = _bindable) -> HostReach:
    """The pure decision behind :func:`host_reach`, given the default bridge's gateway address.

    A Linux engine on this host owns the bridge's gateway (``docker0``), so a
    server bound there is reachable from the host and from every container on
    the default bridge, without host networking and without listening on any
    outside interface. An engine in a VM (Docker Desktop, Colima, OrbStack,
    rootless Docker) has its bridge elsewhere: there the only address the host
    and a container share is the host network, which Docker Desktop offers from
    4.34 when "Enable host networking" is on.
    """
    if gateway and bindable(gateway):
        return HostReach(gateway, (), f"containers on Docker's default bridge reach this host at its gateway {gateway}")
    return HostReach("127.0.0.1", ("-A", "network=host"),
                     f"the engine's bridge gateway ({gateway or 'none'}) is not an address of this host (an engine "
                     "in a VM or rootless): the container uses host networking (Docker Desktop >= 4.34: Settings > "
                     "Resources > Network > Enable host networking)")


def bridge_gateway(ipam_configs: list[dict[str, str]]) -> str | None:
    """The IPv4 gateway of Docker's default bridge from its IPAM config.

    Docker 20.10 (Debian 12's) lists only the subnet for the default bridge;
    its gateway is then the subnet's first address, as Docker assigns it.
    """
    import ipaddress

    for cfg in ipam_configs:
        if cfg.get("Gateway") and ":" not in cfg["Gateway"]:
            return cfg["Gateway"]
        subnet = cfg.get("Subnet") or ""
        if subnet and ":" not in subnet:
            return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    return None


@functools.cache
def host_reach() -> HostReach:
    """How containers of the current engine reach this host (asked of ``docker network inspect bridge``)."""
    import json

    proc = _exec.run(["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
                     check=False, timeout=30)
    try:
        configs = json.loads(proc.stdout or "null") if proc.returncode == 0 else None
    except ValueError:
        configs = None
    return choose_host_reach(bridge_gateway(configs or []))
