"""The machine's own ``HARNESS_*`` variables: one table, each read when it is used, never at import.

Not settings (:mod:`harness.options`), because they belong to the machine, not
to a project: a cache, a lock directory or a mirror is shared by every project
that drives the same Docker engine, so ``HARNESS_LOCK_DIR`` in one project's
``pyproject.toml`` would split the session lock between projects that use the
same kind cluster. Being in a table still matters: settings loading knows them
(a misspelt one is an error, not a silent default), ``python -m harness config``
and the reference page list them, and :func:`get` refuses a name that is not
here, so no module can grow a variable nobody documented.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CACHE_DIR", "DEBIAN_MIRROR", "HOST_VARS", "KIND_DOWNLOAD_BASE", "KUBECTL_DOWNLOAD_BASE", "LOCK_DIR",
           "REGISTRY_IMAGE", "REGISTRY_IMAGE_MODE", "TOOLS_VENV", "HostVar", "get"]


@dataclass(frozen=True)
class HostVar:
    """One machine variable: its name, what it changes, and what applies when it is unset."""

    name: str
    help: str
    default: str


CACHE_DIR = "HARNESS_CACHE_DIR"
DEBIAN_MIRROR = "HARNESS_DEBIAN_MIRROR"
REGISTRY_IMAGE = "HARNESS_REGISTRY_IMAGE"
REGISTRY_IMAGE_MODE = "HARNESS_REGISTRY_IMAGE_MODE"
KIND_DOWNLOAD_BASE = "HARNESS_KIND_DOWNLOAD_BASE"
KUBECTL_DOWNLOAD_BASE = "HARNESS_KUBECTL_DOWNLOAD_BASE"
TOOLS_VENV = "HARNESS_TOOLS_VENV"
LOCK_DIR = "HARNESS_LOCK_DIR"

HOST_VARS: tuple[HostVar, ...] = (
    HostVar(CACHE_DIR, "cache root: node images' inputs, Go modules and builds, downloaded and built kind/kubectl "
            "(outside any clone, so git clean never costs a rebuild)",
            "/var/cache/mlflow-crd-harness (root), else ~/.cache/mlflow-crd-harness"),
    HostVar(DEBIAN_MIRROR, "Debian mirror the registry-less base and node images bootstrap from",
            "apt's own (sources.list, sources.list.d), else deb.debian.org"),
    HostVar(REGISTRY_IMAGE, "image the harness's local registry runs, used as is", "chosen by the mode below"),
    HostVar(REGISTRY_IMAGE_MODE, "where the local registry's image comes from: auto (present, else pulled, else "
            "built from Go modules), public, local", "auto"),
    HostVar(KIND_DOWNLOAD_BASE, "base URL of kind release binaries (a mirror of its GitHub releases)",
            "https://kind.sigs.k8s.io/dl"),
    HostVar(KUBECTL_DOWNLOAD_BASE, "base URL of kubectl release binaries (a mirror of dl.k8s.io)",
            "https://dl.k8s.io/release"),
    HostVar(TOOLS_VENV, "virtualenv scripts/tox installs tox into", "<clone>/.venv-tools"),
    HostVar(LOCK_DIR, "where every user of a Docker engine finds its session locks (all of them must give the same "
            "one)", "/tmp/mlflow-crd-harness-locks"),
)
"""Every machine variable the harness or its scripts read."""

_NAMES = frozenset(v.name for v in HOST_VARS)


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value now (``environ``, else the process environment); None when unset or empty.

    A name missing from :data:`HOST_VARS` is a ``KeyError``: add it to the table first.
    """
    if name not in _NAMES:
        raise KeyError(f"{name} is not in harness.hostenv.HOST_VARS")
    value = (os.environ if environ is None else environ).get(name)
    return value or None
