"""A registry container started the way a user starts one by kind's guide, for the matrix tier.

``python -m tests.support.userregistry up`` runs it (not the harness's: no
harness label, its own name, another host port, and a port inside the
container other than the registry's usual 5000, so nothing is found by
default values) and prints its address; ``down`` removes it. Its blobs live in
a named volume that outlives the container, as a user's registry keeps what
was pushed to it (kind's guide starts one with ``--restart=always``): a warm
run pushes only changed layers, as it would on that user's machine; ``purge``
removes the volume too. The matrix tier
gives that address as ``registry = localhost:PORT`` with ``cluster = kind``:
the test bed must find the container by the port it publishes, wire it into
the nodes, and push every image there (its multinode test checks that the pods
run digests from it).
"""

from __future__ import annotations

import sys

from harness import _exec
from harness.registry import ensure_registry_image
from harness.registry.image import DATA_DIR

__all__ = ["ADDRESS", "NAME", "VOLUME", "down", "purge", "up"]

NAME = "harness-test-user-registry"
HOST_PORT = 5002
INNER_PORT = 5500
ADDRESS = f"localhost:{HOST_PORT}"
#: The blobs, kept between runs (a cache: ``purge`` removes it). Pushing 1.2 GB into an empty registry made the
#: matrix tier gzip and send every layer on every run: 30-42 s of its bring-up (CI 20).
VOLUME = f"{NAME}-data"
#: Ours to remove (this module's own test container), unlike the harness's registry label.
MARK = "io.mlflow-crd-harness.test-user-registry"


def up() -> str:
    """Start the container afresh (a leftover of an earlier run is removed first) on the kept blobs; its address."""
    down()
    image = ensure_registry_image()
    _exec.run(["docker", "run", "--detach", "--name", NAME, "--label", f"{MARK}=1",
               "--publish", f"127.0.0.1:{HOST_PORT}:{INNER_PORT}",
               "--volume", f"{VOLUME}:{DATA_DIR}",
               # The harness's built registry reads REGISTRY_ADDR, the public registry:2 REGISTRY_HTTP_ADDR.
               "--env", f"REGISTRY_ADDR=:{INNER_PORT}", "--env", f"REGISTRY_HTTP_ADDR=:{INNER_PORT}", image],
              timeout=120)
    return ADDRESS


def down() -> str | None:
    """Remove the container (not its blobs' volume), if this module started it; what the harness failed to undo.

    The harness joined the container to the ``kind`` network (it is not the harness's) and must take it off
    again when a session (any session: with lanes, often another) deletes the last kind cluster: still joined
    with no kind node left is a leak to report.
    """
    found = _exec.run(["docker", "ps", "--all", "--filter", f"name=^{NAME}$", "--filter", f"label={MARK}=1",
                       "--format", "{{.Names}}"], timeout=60).stdout.split()
    if not found:
        return None
    networks = _exec.run(["docker", "inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} "
                          "{{end}}", NAME], timeout=60).stdout.split()
    kind_nodes = _exec.run(["docker", "ps", "--all", "--filter", "label=io.x-k8s.kind.cluster", "--format",
                            "{{.Names}}"], timeout=60).stdout.split()
    _exec.run(["docker", "rm", "--force", "--volumes", NAME], timeout=60)
    if "kind" in networks and not kind_nodes:
        return f"{NAME} was still on the kind network after the last kind cluster went (networks: {networks})"
    return None


def purge() -> None:
    """Remove the container and the volume of its blobs: nothing of this module is left on the host."""
    down()
    _exec.run(["docker", "volume", "rm", "--force", VOLUME], check=False, timeout=60)


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    if action == "up":
        print(f"user registry: {NAME} on {up()} (port {INNER_PORT} inside)")
    elif action == "down":
        leak = down()
        print(f"user registry: {NAME} removed")
        if leak:
            sys.exit(f"user registry: the harness did not undo its change: {leak}")
    elif action == "purge":
        purge()
        print(f"user registry: {NAME} and its volume {VOLUME} removed")
    else:
        sys.exit("usage: python -m tests.support.userregistry up|down|purge")
