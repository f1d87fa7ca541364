"""Image references, parsed once the way Docker does: the one place that knows their grammar.

Used for containerd's spelling on kind nodes (``docker.io/library/x:tag``),
for matching a stack's images by repository, and for rewriting references onto
the local registry. Pure functions, standard library only (the backend and the
registry-less builders use it). A reference pushed to the local registry keeps its
repository path and tag and only changes its host, so ``wine-quality:1a2b3c4``
becomes ``localhost:5001/wine-quality:1a2b3c4`` and a log line or a pod spec
still says which project image it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ImageRef", "containerd_name", "digest_ref", "parse_ref", "registry_ref", "repository"]

# Docker's grammar (distribution/reference), restated: lowercase path
# components separated by "/", an optional tag, an optional digest.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DOMAIN = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9A-Fa-f:]+\](?::[0-9]+)?")

#: The implicit registry of a reference without a host, and its aliases.
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference: ``domain`` is ``None`` when the reference names no registry host."""

    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in the registry API: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.domain}/{self.path}" if self.domain else self.path
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _looks_like_domain(first: str) -> bool:
    # Docker's rule: the first component is a host if it has a dot or a port,
    # is "localhost", or contains uppercase (which a repository name cannot).
    return "." in first or ":" in first or first == "localhost" or first.lower() != first


def parse_ref(ref: str) -> ImageRef:
    """Split ``ref`` into host, repository path, tag and digest; raise ``ValueError`` if it is not one."""
    text = ref.strip()
    if not text or text != ref or any(c.isspace() for c in text):
        raise ValueError(f"not an image reference: {ref!r}")
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise ValueError(f"{ref!r}: digest must be sha256:<64 hex>")
    domain: str | None = None
    first, slash, remainder = rest.partition("/")
    if slash and _looks_like_domain(first):
        if not _DOMAIN.fullmatch(first):
            raise ValueError(f"{ref!r}: bad registry host {first!r}")
        domain, rest = first, remainder
    tag: str | None = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ValueError(f"{ref!r}: bad tag {tag!r}")
    components = rest.split("/")
    if not rest or not all(_COMPONENT.fullmatch(c) for c in components):
        raise ValueError(f"{ref!r}: repository path {rest!r} must be lowercase [a-z0-9._-] components")
    return ImageRef(domain=domain, path=rest, tag=tag, digest=digest or None)


def registry_ref(local_ref: str, host: str) -> str:
    """The tag ``local_ref`` gets in the registry at ``host``: same path and tag, new host.

    Docker Hub's implicit ``library/`` prefix is dropped (``docker.io/library/python:3``
    and ``python:3`` both become ``<host>/python:3``); any other host is replaced.
    A digest cannot be a tag, so a digest-only reference is tagged ``latest``.
    """
    parsed = parse_ref(local_ref)
    path = parsed.path
    if parsed.domain in _DOCKER_HUB and path.startswith("library/") and path.count("/") == 1:
        path = path.removeprefix("library/")
    return f"{host}/{path}:{parsed.tag or 'latest'}"


def digest_ref(tagged_ref: str, digest: str) -> str:
    """``host/path:tag`` plus ``sha256:…`` -> ``host/path@sha256:…`` (what a pod spec should pin)."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    parsed = parse_ref(tagged_ref)
    base = f"{parsed.domain}/{parsed.path}" if parsed.domain else parsed.path
    return f"{base}@{digest}"


def repository(ref: str) -> str:
    """``localhost:5000/a/b:tag@sha256:...`` -> ``localhost:5000/a/b``: host and path, no tag or digest.

    A string that is not a reference (a template placeholder in a manifest) is returned as it is.
    """
    try:
        parsed = parse_ref(ref)
    except ValueError:
        return ref
    return f"{parsed.domain}/{parsed.path}" if parsed.domain else parsed.path


def containerd_name(ref: str) -> str:
    """How containerd on a node lists ``ref``: Docker Hub spelled out, ``latest`` made explicit."""
    parsed = parse_ref(ref)
    domain, path = parsed.domain or "docker.io", parsed.path
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    tag = parsed.tag or (None if parsed.digest else "latest")
    return str(ImageRef(domain, path, tag, parsed.digest))
