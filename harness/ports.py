"""The ports the test bed's parts agree on, kept below all of them.

The kind config maps :data:`MLFLOW_NODE_PORT` to a host port, and the stack's
in-cluster tracking Service listens on that node port; both sides read it from
here, so neither imports the other. :func:`free_port` picks the host side.
"""

from __future__ import annotations

import socket

__all__ = ["MLFLOW_NODE_PORT", "free_port"]

MLFLOW_NODE_PORT = 30500
"""The in-cluster MLflow Service's nodePort; kind clusters map it to a free host port on 127.0.0.1."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel says is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
