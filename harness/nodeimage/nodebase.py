"""The node base image: Debian rootfs + our boot files, no Kubernetes yet.

Kept separate from the final image so that changing the Kubernetes pin
reuses it, and changing a unit file does not re-run debootstrap.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from harness import _exec, dockercli
from harness.nodeimage import cache, images, versions

__all__ = ["FILES_DIR", "build_node_base", "node_base_dockerfile", "node_files_hash"]

Log = Callable[[str], None]

#: Our static node files (entrypoint, units, setup script, Go sources).
FILES_DIR = Path(__file__).parent / "files"

_ENTRYPOINT = '["/usr/local/bin/entrypoint", "/sbin/init"]'


def node_files_hash(files_dir: Path = FILES_DIR) -> str:
    """Hash of every file under ``files/``: part of every node image key."""
    return cache.hash_tree(files_dir)


def node_base_dockerfile(rootfs_ref: str) -> str:
    """Dockerfile turning the imported rootfs into a bootable kind node base.

    ``STOPSIGNAL SIGRTMIN+3`` makes ``docker stop`` a clean systemd shutdown
    (``docker import --change`` cannot set it on Docker 20.10, hence a build).
    """
    return (
        f"FROM {rootfs_ref}\n"
        "COPY rootfs/ /\n"
        "COPY setup-node.sh /tmp/setup-node.sh\n"
        "RUN sh /tmp/setup-node.sh && rm -f /tmp/setup-node.sh\n"
        "ENV container=docker\n"
        "STOPSIGNAL SIGRTMIN+3\n"
        f"ENTRYPOINT {_ENTRYPOINT}\n"
    )


def build_node_base(rootfs_tarball: Path, rootfs_key: str, log: Log, *, force: bool = False,
                    extra_files: Mapping[str, str] | None = None) -> str:
    """Return the tag of the node base image, building it if Docker lacks it.

    ``extra_files`` (absolute in-node path -> text) are laid over ``files/rootfs``
    before ``setup-node.sh`` runs: e.g. the unit of a containerd we compiled,
    which ``systemctl enable`` needs to find. They enter the key only when given,
    so the default base keeps its key.
    """
    rootfs_ref = f"local/kind-rootfs-offline:{rootfs_key[:12]}"
    inputs: dict[str, object] = {"rootfs": rootfs_key, "files": node_files_hash(), "rev": versions.BUILDER_REVISION}
    if extra_files:
        inputs["extra"] = dict(sorted(extra_files.items()))
    key = cache.input_key(inputs)
    ref = f"local/kind-base-offline:{key[:12]}"
    if not force and dockercli.image_exists(ref):
        log(f"node base {ref}: present")
        return ref
    images.import_rootfs_image(rootfs_tarball, rootfs_ref, log)
    log(f"node base {ref}: docker build")
    with tempfile.TemporaryDirectory(prefix="nodeimg-base-") as ctx:
        context = Path(ctx)
        shutil.copytree(FILES_DIR / "rootfs", context / "rootfs", symlinks=True)
        for dest, text in (extra_files or {}).items():
            target = context / "rootfs" / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        shutil.copy2(FILES_DIR / "setup-node.sh", context / "setup-node.sh")
        (context / "Dockerfile").write_text(node_base_dockerfile(rootfs_ref))
        _exec.run(["docker", "build", "-q", "-t", ref, context], extra_env={"DOCKER_BUILDKIT": "0"}, timeout=900)
    return ref
