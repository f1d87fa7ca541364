"""On/off environment variables (``CI``, ``HARNESS_NO_SKIP``), read one way everywhere.

At the bottom of the layers: the settings read them, and so does a cluster
provider deciding its keep policy (a local kind cluster is kept, one under CI
is not) without importing the settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["env_flag"]


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """An on/off environment variable: unset, empty, ``0``, ``false`` and ``no`` mean off."""
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().lower() not in ("", "0", "false", "no")
