"""Registry-less kind node images, built from Debian packages and Go modules.

Public API (everything else in this package is internal):

* :func:`ensure_node_image` -> local image tag, building only what is missing
  and reloading a cached archive if the image was removed from Docker;
* :func:`ensure_kind_binary` / :func:`ensure_kubectl_binary` -> paths of the
  pinned CLIs, compiled into the cache; :func:`built_tool` -> one already
  compiled (here or in the machine's cache), or None;
* :func:`node_image_tag` -> the tag ``ensure_node_image`` would return, without
  building;
* :func:`host_needs_runtime_fix` / :func:`runtime_status` -> whether Docker on
  this host needs (and has) the capability-dropping runc wrapper.

CLI: ``python -m harness.nodeimage build|print-tag|kind-path|kubectl-path``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness import cachedir as _cachedir
from harness import dockercli
from harness.debian import debian_mirror
from harness.nodeimage import cache as _cache
from harness.nodeimage import gobuild as _gobuild
from harness.nodeimage import nodebase as _nodebase
from harness.nodeimage import pipeline as _pipeline
from harness.nodeimage import versions as _versions
from harness.nodeimage.hostcheck import (
    RuntimeStatus,
    host_needs_runtime_fix,
    runtime_status,
)
from harness.timing import Phases

__all__ = [
    "KIND_VERSION",
    "KUBERNETES_VERSION",
    "RuntimeStatus",
    "built_tool",
    "ensure_kind_binary",
    "ensure_kubectl_binary",
    "ensure_node_image",
    "host_needs_runtime_fix",
    "node_image_tag",
    "runtime_status",
]

KUBERNETES_VERSION = _versions.KUBERNETES_VERSION
KIND_VERSION = _versions.KIND_VERSION

Log = Callable[[str], None]


def _plan(cache_dir: Path | None, kubernetes_version: str | None = None,
          ) -> tuple[_pipeline.BuildPlan, _gobuild.GoToolchain]:
    root = _cache.resolve_cache_dir(cache_dir)
    go = _gobuild.GoToolchain.discover(root)
    plan = _pipeline.BuildPlan.for_release(
        _versions.release_for(kubernetes_version),
        cache_dir=root,
        go_version=go.version,
        mirror=debian_mirror(),
        files_hash=_nodebase.node_files_hash(),
    )
    return plan, go


def node_image_tag(cache_dir: Path | None = None, *, kubernetes_version: str | None = None) -> str:
    """The tag of the node image for the current pins and node files (no build)."""
    plan, _ = _plan(cache_dir, kubernetes_version)
    return plan.tag


def ensure_node_image(
    cache_dir: Path | None = None,
    *,
    kubernetes_version: str | None = None,
    force: bool = False,
    log: Log = print,
    timings: Phases | None = None,
) -> str:
    """Return a local kind node image tag, building or reloading it if needed.

    Fast paths, in order: the tag is in Docker (seconds); the cached
    ``.tar.zst`` archive exists and is loaded (~30 s); otherwise every missing
    artefact is built (cold: ~8 min measured on 2 cores; binaries, Debian roots
    and component archives are reused when cached). ``kubernetes_version``
    (``1.35``, ``v1.35.4``; default: the table's default) picks the row of
    :data:`harness.nodeimage.versions.RELEASES`. ``force`` ignores the cached
    image, its archive and component image archives, but still reuses the
    compiled binaries and Debian roots (which are keyed by their inputs).
    """
    steps = timings if timings is not None else Phases(sink=log, label="node image")
    with steps.phase("plan (go env, mirror, file hash)"):
        plan, go = _plan(cache_dir, kubernetes_version)
    if not force and dockercli.image_exists(plan.tag):
        log(f"node image {plan.tag}: present in Docker")
        return plan.tag
    with _cache.build_lock(plan.cache_dir, what=f"node image {plan.tag}", log=log):
        # Re-check under the lock: a concurrent builder may have just finished.
        if not force:
            if dockercli.image_exists(plan.tag):
                return plan.tag
            with steps.phase("load cached archive"):
                if _pipeline.load_cached_archive(plan, log):
                    return plan.tag
        return _pipeline.build_node_image(plan, go, log, steps, force=force)


def built_tool(name: str, *, kubernetes_version: str | None = None, cache_dir: Path | None = None) -> Path | None:
    """``kind`` or ``kubectl`` pinned for that minor, already compiled: in this cache, else one readable elsewhere.

    ``kubectl`` is found among the node image's seven commands or built alone. The machine's cache is
    read (never written) by a user whose own cache is ``~/.cache`` (:func:`harness.cachedir.readable_elsewhere`),
    and only a file nobody else could have replaced is taken (:func:`harness.cachedir.trusted_file`).
    """
    root = _cache.resolve_cache_dir(cache_dir)
    return _built(name, _versions.release_for(kubernetes_version), root, _gobuild.GoToolchain.discover(root),
                  elsewhere=cache_dir is None)


def _built(name: str, row: _versions.Release, root: Path, go: _gobuild.GoToolchain, *, elsewhere: bool) -> Path | None:
    """:func:`built_tool` once the cache root and Go are known (the ``ensure_*`` functions build there on a miss)."""
    others = [r for r in _cachedir.readable_elsewhere() if r != root] if elsewhere else []
    for base in [root, *others]:
        if name == "kind":
            candidates = [_gobuild.kind_binary_path(go, base, row.kind)]
        else:
            candidates = [_gobuild.kubernetes_bin_dir(go, base, row.kubernetes, commands) / "kubectl"
                          for commands in (_gobuild.KUBERNETES_COMMANDS, ("kubectl",))]
        for path in candidates:
            found = path.is_file() if base == root else _cachedir.trusted_file(path, base)
            if found:
                return path
    return None


def ensure_kind_binary(cache_dir: Path | None = None, *, kubernetes_version: str | None = None,
                       log: Log = print) -> Path:
    """Path of the ``kind`` CLI pinned for that Kubernetes minor, ``go install``-ed into the cache if missing."""
    root = _cache.resolve_cache_dir(cache_dir)
    go = _gobuild.GoToolchain.discover(root)
    row = _versions.release_for(kubernetes_version)
    if (cached := _built("kind", row, root, go, elsewhere=cache_dir is None)) is not None:
        return cached  # no lock: a long node build holding it (another minor) must not stall this session
    # Its own lock: a node image building (another minor, ~10 min) must not hold up a session that needs kind.
    with _cache.build_lock(root, name=f".kind-{row.kind}.lock", what=f"kind {row.kind}", log=log):
        return _gobuild.build_kind(go, root, row.kind, log)


def ensure_kubectl_binary(cache_dir: Path | None = None, *, kubernetes_version: str | None = None,
                          log: Log = print) -> Path:
    """Path of ``kubectl`` matching the node's Kubernetes version: already built, else compiled alone."""
    root = _cache.resolve_cache_dir(cache_dir)
    go = _gobuild.GoToolchain.discover(root)
    row = _versions.release_for(kubernetes_version)
    if (cached := _built("kubectl", row, root, go, elsewhere=cache_dir is None)) is not None:
        return cached  # no lock, as for kind
    with _cache.build_lock(root, what=f"kubectl {row.kubernetes}", log=log):
        # The lock's holder was most likely a node image build of this minor, which compiles kubectl among its
        # seven commands: look again before compiling it alone (cold CI 33 linked kubectl a second time per minor).
        if (cached := _built("kubectl", row, root, go, elsewhere=False)) is not None:
            return cached
        return _gobuild.build_kubernetes(go, root, row.kubernetes, log, commands=("kubectl",)) / "kubectl"
