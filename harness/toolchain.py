"""Which kind, kubectl and node image the e2e tier uses, chosen the same way everywhere.

Internet users get the pinned public node image (by digest: a tag alone can
point at an image built for another kind release) and the kind on their PATH.
Machines with no container registry cannot pull it; there the registry-less
node image is built from Debian packages and Go modules (:mod:`harness.nodeimage`),
as are kind and kubectl when they are not installed. One code path; the mode
(``auto``/``public``/``local``) or an explicit image overrides the choice.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness import dockercli
from harness._errors import HarnessError

__all__ = ["PUBLIC_KIND_VERSION", "PUBLIC_NODE_IMAGE", "NodeChoice", "resolve_kind", "resolve_kubectl",
           "resolve_node_image"]

#: kind release and its pre-built 1.34 node image, pinned by digest (kind v0.30.0 release notes).
PUBLIC_KIND_VERSION = "v0.30.0"
PUBLIC_NODE_IMAGE = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"

Mode = Literal["auto", "public", "local"]


@dataclass(frozen=True)
class NodeChoice:
    image: str
    source: Literal["override", "public", "local"]
    reason: str


def resolve_node_image(
    *, mode: Mode = "auto", override: str | None = None, pull_timeout: float = 300,
    log: Callable[[str], None] = print,
) -> NodeChoice:
    """Pick the kind node image; build the registry-less one when the public one is out of reach."""
    if override:
        how, why = dockercli.obtain(override, pull_timeout=pull_timeout)
        if how is None:
            raise HarnessError(f"node image {override} is neither local nor pullable: {why}")
        return NodeChoice(override, "override", "--node-image given")
    if mode in ("auto", "public"):
        how, why = dockercli.obtain(PUBLIC_NODE_IMAGE, pull_timeout=pull_timeout)
        if how is not None:
            return NodeChoice(PUBLIC_NODE_IMAGE, "public", how)
        if mode == "public":
            raise HarnessError(f"cannot pull {PUBLIC_NODE_IMAGE}: {why}\n"
                               "fix: --node-image-mode local builds a registry-less node image")
        log(f"node image: {PUBLIC_NODE_IMAGE} cannot be pulled ({why}); using the registry-less build")
    from harness import nodeimage

    return NodeChoice(nodeimage.ensure_node_image(log=log), "local", "built from Debian packages + Go modules")


def _resolve_tool(name: str, override: str | None, build: Callable[[], Path]) -> Path:
    """``override``, else ``name`` on PATH, else ``build()`` (compiled into the cache)."""
    if override:
        return Path(override)
    found = shutil.which(name)
    return Path(found) if found else build()


def resolve_kind(override: str | None = None, *, log: Callable[[str], None] = print) -> Path:
    """``--kind-bin``, else ``kind`` on PATH, else the pinned kind compiled into the cache."""
    from harness import nodeimage

    return _resolve_tool("kind", override, lambda: nodeimage.ensure_kind_binary(log=log))


def resolve_kubectl(override: str | None = None, *, log: Callable[[str], None] = print) -> Path:
    """``--kubectl-bin``, else ``kubectl`` on PATH, else the kubectl built with the node binaries."""
    from harness import nodeimage

    return _resolve_tool("kubectl", override, lambda: nodeimage.ensure_kubectl_binary(log=log))
