"""Facts about the host's Debian setup that registry-less builds depend on.

Both the Python base image and the kind node image are bootstrapped from the
host's own Debian mirror (the only package source our CI reaches), and both
must trust the host's CA bundle, because egress may go through a TLS-inspecting
proxy whose CA only the host knows.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness import hostenv

__all__ = ["DEFAULT_MIRROR", "HOST_CA_BUNDLE", "MIRROR_ENV", "debian_mirror", "host_ca_bundle", "parse_mirror"]

DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MIRROR_ENV = hostenv.DEBIAN_MIRROR
"""Overrides the mirror apt's sources name (a setting of the builders, read where they start)."""

_SOURCES_D = Path("/etc/apt/sources.list.d")
_SOURCES = (_SOURCES_D / "debian.sources", Path("/etc/apt/sources.list"))


def debian_mirror(env: dict[str, str] | None = None, sources: tuple[Path, ...] = _SOURCES,
                  sources_d: Path = _SOURCES_D) -> str:
    """The Debian mirror to bootstrap from: ``HARNESS_DEBIAN_MIRROR``, else apt's own, else the public one.

    The one reading of apt's configuration for both registry-less builders (the
    base image and the node image), so they can never pick different mirrors on
    one host: the two main files first, then every ``*.sources`` and ``*.list``
    in ``sources.list.d``; a machine behind a local mirror keeps using it.
    """
    given = hostenv.get(MIRROR_ENV, env)
    if given:
        return given.rstrip("/")
    extra = (sorted(sources_d.glob("*.sources")) + sorted(sources_d.glob("*.list"))) if sources_d.is_dir() else []
    for path in (*sources, *extra):
        try:
            text = path.read_text()
        except OSError:
            continue
        found = parse_mirror(text)
        if found:
            return found
    return DEFAULT_MIRROR


def parse_mirror(text: str) -> str | None:
    """The first plain Debian archive URI in an apt sources text (deb822 or one-line form), else None.

    Security archives are skipped (debootstrap wants the main archive), and so is
    anything that is not an http(s) or file URI.
    """
    candidates: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("URIs:"):
            candidates.extend(line.split(":", 1)[1].split())
        elif line.startswith("deb "):
            parts = re.sub(r"\[[^\]]*\]", " ", line).split()
            if len(parts) >= 2:
                candidates.append(parts[1])
    for uri in candidates:
        if "security" not in uri and uri.startswith(("http://", "https://", "file:/")):
            return uri.rstrip("/")
    return None


def host_ca_bundle() -> Path | None:
    """The host's CA bundle, if it has one (it is copied into built images)."""
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None
