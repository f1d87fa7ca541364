"""Facts about the host's Debian setup that registry-less builds depend on.

Both the Python base image and the kind node image are bootstrapped from the
host's own Debian mirror (the only package source our CI reaches), and both
must trust the host's CA bundle, because egress may go through a TLS-inspecting
proxy whose CA only the host knows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["DEFAULT_MIRROR", "HOST_CA_BUNDLE", "debian_mirror", "host_ca_bundle"]

DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


def debian_mirror(env: dict[str, str] | None = None, sources: tuple[Path, ...] = _SOURCES) -> str:
    """The Debian mirror to bootstrap from: ``HARNESS_DEBIAN_MIRROR``, else apt's own.

    apt's configuration is read (deb822 ``URIs:`` or one-line ``deb URL``) so that
    a machine behind a local mirror keeps using it; the public mirror is the
    last resort.
    """
    env = dict(os.environ) if env is None else env
    if env.get("HARNESS_DEBIAN_MIRROR"):
        return env["HARNESS_DEBIAN_MIRROR"].rstrip("/")
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        found = parse_mirror(text)
        if found:
            return found
    return DEFAULT_MIRROR


def parse_mirror(text: str) -> str | None:
    """First main-archive mirror in an apt sources text (deb822 or one-line form)."""
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^URIs:\s*(\S+)", line) or re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", line)
        if m and "security" not in m.group(1):
            return m.group(1).rstrip("/")
    return None


def host_ca_bundle() -> Path | None:
    """The host's CA bundle, if it has one (it is copied into built images)."""
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None
