"""Component images (apiserver, etcd, CoreDNS, pause...) built without a registry.

Kubeadm's static pods and add-ons reference images such as
``registry.k8s.io/kube-apiserver:v1.34.4``. Nothing can be pulled here, so
we build images under exactly those names with classic ``docker build``
(``FROM scratch`` for the static binaries, a debootstrapped base for
kube-proxy) and ``docker save`` them for import into the node's containerd.
The names come from ``kubeadm config images list``, never from a table of
our own, so a kubeadm patch release that bumps etcd cannot leave a stale tag.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness import _exec, dockercli
from harness._errors import HarnessError
from harness.nodeimage import cache, versions

__all__ = [
    "ComponentImages",
    "build_component_image",
    "import_rootfs_image",
    "parse_kubeadm_images",
    "scratch_dockerfile",
]

Log = Callable[[str], None]

_BUILD_ENV = {"DOCKER_BUILDKIT": "0"}  # classic builder: never contacts a registry for FROM scratch


@dataclass(frozen=True)
class ComponentImages:
    """Image references kubeadm will ask containerd for, parsed from its list."""

    apiserver: str
    controller_manager: str
    scheduler: str
    proxy: str
    etcd: str
    coredns: str
    pause: str

    @property
    def all(self) -> tuple[str, ...]:
        """Every reference, in a stable order (used for the pre-commit check)."""
        return (
            self.apiserver,
            self.controller_manager,
            self.scheduler,
            self.proxy,
            self.etcd,
            self.coredns,
            self.pause,
        )

    @property
    def etcd_version(self) -> str:
        """Go module tag of etcd: ``registry.k8s.io/etcd:3.6.5-0`` -> ``v3.6.5``."""
        tag = _tag(self.etcd)
        match = re.fullmatch(r"v?(\d+\.\d+\.\d+)(?:-\d+)?", tag)
        if not match:
            raise HarnessError(f"cannot read an etcd version from {self.etcd!r}")
        return "v" + match.group(1)

    @property
    def coredns_version(self) -> str:
        """Go module tag of CoreDNS: ``.../coredns:v1.12.1`` -> ``v1.12.1``."""
        tag = _tag(self.coredns)
        return tag if tag.startswith("v") else "v" + tag


def _tag(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    if ":" not in name:
        raise HarnessError(f"image reference without a tag: {ref!r}")
    return name.split(":", 1)[1]


def _repo_basename(ref: str) -> str:
    return ref.rsplit("/", 1)[-1].split(":", 1)[0]


def parse_kubeadm_images(text: str) -> ComponentImages:
    """Parse ``kubeadm config images list`` output (one reference per line).

    Lines that are not image references (kubeadm may print warnings) are
    ignored; a missing component is an error naming it.
    """
    refs = [ln.strip() for ln in text.splitlines() if re.fullmatch(r"[\w.\-/]+:[\w.\-]+", ln.strip())]
    by_name: dict[str, str] = {}
    for ref in refs:
        by_name.setdefault(_repo_basename(ref), ref)
    wanted = {
        "apiserver": "kube-apiserver",
        "controller_manager": "kube-controller-manager",
        "scheduler": "kube-scheduler",
        "proxy": "kube-proxy",
        "etcd": "etcd",
        "coredns": "coredns",
        "pause": "pause",
    }
    missing = [name for name in wanted.values() if name not in by_name]
    if missing:
        raise HarnessError(f"kubeadm image list lacks {', '.join(missing)}:\n{text}")
    return ComponentImages(**{field: by_name[name] for field, name in wanted.items()})


def scratch_dockerfile(binary: str, dest: str, *, base: str = "scratch") -> str:
    """Dockerfile text for one static binary at ``dest``, run as the entrypoint.

    ``PATH`` is set because static pods call ``kube-apiserver``/``etcd`` by
    bare name and a ``FROM scratch`` image has no environment at all.
    """
    return (
        f"FROM {base}\n"
        f"COPY {binary} {dest}\n"
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        f'ENTRYPOINT ["{dest}"]\n'
    )


def import_rootfs_image(tarball: Path, ref: str, log: Log) -> str:
    """``docker import`` a rootfs tarball as ``ref`` unless it is already there."""
    if not dockercli.image_exists(ref):
        log(f"docker import {tarball.name} -> {ref}")
        _exec.run(["docker", "import", tarball, ref], timeout=900)
    return ref


def build_component_image(
    cache_dir: Path,
    ref: str,
    files: Mapping[str, Path],
    dockerfile: str,
    log: Log,
    *,
    inputs: Mapping[str, object],
    force: bool = False,
) -> Path:
    """Build ``ref`` from ``dockerfile`` + ``files`` and return its cached ``docker save`` tar.

    ``inputs`` (binary paths, base image key...) key the archive; the tag
    itself is removed from Docker again afterwards, so the host engine never
    holds images that look like upstream ones.
    """
    key = cache.input_key(
        {"ref": ref, "dockerfile": dockerfile, "inputs": dict(inputs), "rev": versions.BUILDER_REVISION}
    )
    final = cache_dir / "images" / f"{_repo_basename(ref)}-{key}"
    archive = final / "image.tar"
    if archive.is_file() and not force:
        log(f"image {ref}: cached")
        return archive
    log(f"image {ref}: docker build")
    with cache.publish_dir(final) as out, tempfile.TemporaryDirectory(prefix="nodeimg-ctx-") as ctx:
        context = Path(ctx)
        for name, src in files.items():
            shutil.copy2(src, context / name)
        (context / "Dockerfile").write_text(dockerfile)
        _exec.run(["docker", "build", "-q", "-t", ref, context], extra_env=_BUILD_ENV, timeout=900)
        _exec.run(["docker", "save", "-o", out / "image.tar", ref], timeout=900)
        _exec.run(["docker", "image", "rm", ref], check=False)
    return archive
