"""The build pipeline: an ordered list of cached steps, each timed.

Order: Go toolchain -> Kubernetes binaries -> image names from kubeadm ->
etcd/CoreDNS/pause -> Debian roots -> component images -> node base ->
assembly -> ``docker save | zstd`` archive. Every step returns early when its
keyed artefact exists, so a warm run costs seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness import _exec, dockercli
from harness.nodeimage import (
    assemble,
    cache,
    gobuild,
    images,
    nodebase,
    nodefiles,
    rootfs,
    versions,
)
from harness.timing import Phases

__all__ = ["BuildPlan", "build_node_image", "load_cached_archive"]

Log = Callable[[str], None]

#: Local repository of our multi-node network daemon's image (never pulled: ``imagePullPolicy: Never``).
NETD_IMAGE_REPO = "local/harness-netd"


@dataclass(frozen=True)
class BuildPlan:
    """The primary inputs of one node image and the tag/paths derived from them."""

    cache_dir: Path
    go_version: str
    mirror: str
    files_hash: str
    #: The field defaults are the 1.34 row's plan (Debian runtime, static CNI), whose tag
    #: predates the version table; every other row comes from :meth:`for_release`.
    kubernetes_version: str = versions.RELEASES["1.34"].kubernetes
    #: ``None``: Debian's containerd 1.6; else containerd/runc compiled from Go modules.
    runtime: versions.ContainerRuntime | None = None
    #: Ship the kubelet drop-in ``failCgroupV1: false`` (Kubernetes >= 1.35).
    fail_cgroup_v1_off: bool = False
    #: Pod network: ``static`` = a baked ptp conflist (one node only); ``netd`` = our
    #: harness-netd DaemonSet (bridge per node, routes between nodes: multi-node).
    cni: Literal["static", "netd"] = "static"

    @classmethod
    def for_release(cls, release: versions.Release, *, cache_dir: Path, go_version: str, mirror: str,
                    files_hash: str) -> BuildPlan:
        """The plan of one row of the version table."""
        # The new path (compiled runtime, 1.35+) gets the multi-node network; the default keeps its static one.
        return cls(cache_dir=cache_dir, go_version=go_version, mirror=mirror, files_hash=files_hash,
                   kubernetes_version=release.kubernetes, runtime=release.runtime,
                   fail_cgroup_v1_off=release.fail_cgroup_v1_off,
                   cni="static" if release.runtime is None else "netd")

    @property
    def node_packages(self) -> tuple[str, ...]:
        """Debian packages of the node root: without containerd/runc when those are compiled."""
        return rootfs.NODE_PACKAGES if self.runtime is None else rootfs.NODE_PACKAGES_BUILT_RUNTIME

    def containerd_config(self, sandbox_image: str) -> str:
        """The node's containerd config: v2 syntax for Debian's 1.6, v3 for a compiled 2.x."""
        if self.runtime is None:
            return nodefiles.containerd_config(sandbox_image)
        return nodefiles.containerd2_config(sandbox_image)

    def base_extra_files(self) -> dict[str, str]:
        """Files laid into the node base (units that ``systemctl enable`` must see)."""
        return {} if self.runtime is None else {nodefiles.CONTAINERD_UNIT_PATH: nodefiles.containerd_unit()}

    def kubelet_files(self) -> dict[str, str]:
        """Kubelet drop-ins: ``failCgroupV1: false`` for the minors that need it."""
        if not self.fail_cgroup_v1_off:
            return {}
        return {
            nodefiles.KUBELET_CONFIG_DIR_DROPIN_PATH: nodefiles.kubelet_config_dir_unit_dropin(),
            nodefiles.KUBELET_CGROUP_V1_DROPIN_PATH: nodefiles.kubelet_cgroup_v1_dropin(),
        }

    @property
    def key(self) -> str:
        """Hash of everything that can change the image's content.

        etcd/CoreDNS/pause versions are functions of the Kubernetes version,
        so they need not (and cannot, before building kubeadm) be included.
        The rendered generated files are hashed instead of our module sources
        so that editing a docstring does not invalidate the image.
        """
        cidr = nodefiles.node_pod_cidr(versions.POD_SUBNET)
        inputs: dict[str, object] = {
            "kubernetes": self.kubernetes_version,
            "go": self.go_version,
            "suite": versions.DEBIAN_SUITE,
            "mirror": self.mirror,
            "node_packages": sorted(self.node_packages),
            "net_packages": sorted(rootfs.NET_BASE_PACKAGES),
            "files": self.files_hash,
            "coredns_plugins": sorted(gobuild.COREDNS_PLUGINS),
            "generated": [
                self.containerd_config("PAUSE"),
                nodefiles.cni_conflist(cidr),
                nodefiles.default_cni_manifest(cidr),
            ],
            "rev": versions.BUILDER_REVISION,
        }
        # Added only when set, so the 1.34 row (Debian runtime) keeps its pre-table key and tag.
        if self.runtime is not None:
            inputs["runtime"] = {"containerd": self.runtime.containerd, "runc": self.runtime.runc,
                                 "runc_tags": list(self.runtime.runc_tags), "base": self.base_extra_files()}
        if self.fail_cgroup_v1_off:
            inputs["kubelet_files"] = self.kubelet_files()
        if self.cni != "static":
            inputs["cni"] = {"kind": self.cni, "manifest": nodefiles.netd_manifest("IMAGE"),
                             "source": cache.input_key({"netd": gobuild.NETD_SOURCE.read_text(),
                                                        "netlink": gobuild.NETD_NETLINK_VERSION})}
            inputs["generated"] = [self.containerd_config("PAUSE")]
        return cache.input_key(inputs)

    @property
    def tag(self) -> str:
        """Local image reference, e.g. ``local/kind-node-offline:v1.34.4-1a2b3c4d``."""
        return f"{versions.NODE_IMAGE_REPO}:{self.kubernetes_version}-{self.key[:8]}"

    @property
    def archive(self) -> Path:
        """Where the ``docker save | zstd`` copy of the final image lives."""
        return self.cache_dir / "node" / f"kind-node-offline-{self.kubernetes_version}-{self.key}.tar.zst"


def load_cached_archive(plan: BuildPlan, log: Log) -> bool:
    """``zstd -dc archive | docker load`` if the archive exists; True if loaded."""
    if not plan.archive.is_file():
        return False
    log(f"loading cached node image archive {plan.archive}")
    _exec.run(
        ["bash", "-o", "pipefail", "-c", 'zstd -dc -- "$1" | docker load', "load-node", str(plan.archive)], timeout=1800
    )
    return dockercli.image_exists(plan.tag)


def build_node_image(
    plan: BuildPlan, go: gobuild.GoToolchain, log: Log, timings: Phases, *, force: bool = False
) -> str:
    """Build every missing artefact and the final image; return its tag."""
    cache_dir = plan.cache_dir
    version = plan.kubernetes_version
    with timings.phase("kubernetes binaries"):
        k8s_bin = gobuild.build_kubernetes(go, cache_dir, version, log)
    with timings.phase("kubeadm config images list"):
        listed = _exec.run([k8s_bin / "kubeadm", "config", "images", "list", "--kubernetes-version", version]).stdout
        wanted = images.parse_kubeadm_images(listed)
        log("kubeadm wants: " + " ".join(wanted.all))
    with timings.phase(f"etcd {wanted.etcd_version}"):
        etcd = gobuild.build_etcd(go, cache_dir, wanted.etcd_version, log)
    with timings.phase(f"coredns {wanted.coredns_version}"):
        coredns = gobuild.build_coredns(go, cache_dir, wanted.coredns_version, log)
    with timings.phase("pause"):
        pause = gobuild.build_pause(go, cache_dir, log)
    runtime_files: dict[str, Path | str] = {}
    if plan.runtime is not None:
        with timings.phase(f"containerd {plan.runtime.containerd}"):
            ctrd = gobuild.build_containerd(go, cache_dir, plan.runtime.containerd, log)
        with timings.phase(f"runc {plan.runtime.runc}"):
            runc = gobuild.build_runc(go, cache_dir, plan.runtime.runc, plan.runtime.runc_tags, log)
        runtime_files = {f"/usr/local/bin/{b}": ctrd / b for b in gobuild.CONTAINERD_BINARIES}
        runtime_files["/usr/local/sbin/runc"] = runc
    rootfs_name = "node" if plan.runtime is None else "node-noruntime"
    with timings.phase("debootstrap node rootfs"):
        node_tar = rootfs.build_rootfs_tarball(cache_dir, rootfs_name, plan.node_packages, log)
    with timings.phase("debootstrap net base"):
        net_tar = rootfs.build_rootfs_tarball(cache_dir, "netbase", rootfs.NET_BASE_PACKAGES, log)
    with timings.phase("component images"):
        archives = _component_images(cache_dir, wanted, k8s_bin, etcd, coredns, pause, net_tar, log, force)
    required = list(wanted.all)
    cidr = nodefiles.node_pod_cidr(versions.POD_SUBNET)
    cni_files: dict[str, Path | str] = {
        nodefiles.CNI_CONFLIST_PATH: nodefiles.cni_conflist(cidr),
        nodefiles.DEFAULT_CNI_MANIFEST_PATH: nodefiles.default_cni_manifest(cidr),
    }
    if plan.cni == "netd":
        with timings.phase("harness-netd"):
            netd = gobuild.build_netd(go, cache_dir, log)
            net_ref = images.import_rootfs_image(
                net_tar, f"local/kind-netbase-offline:{rootfs.tarball_key(net_tar)[:12]}", log)
            netd_ref = f"{NETD_IMAGE_REPO}:{cache.input_key({'binary': str(netd), 'base': net_ref})[:12]}"
            archives.append(images.build_component_image(
                cache_dir, netd_ref, {netd.name: netd},
                images.scratch_dockerfile(netd.name, "/usr/local/bin/harness-netd", base=net_ref), log,
                inputs={"binary": str(netd), "base": net_ref}, force=force))
        required.append(f"docker.io/{netd_ref}")  # containerd lists Docker Hub short names in full
        cni_files = {nodefiles.DEFAULT_CNI_MANIFEST_PATH: nodefiles.netd_manifest(netd_ref)}
    with timings.phase("node base image"):
        base = nodebase.build_node_base(node_tar, rootfs.tarball_key(node_tar), log, force=force,
                                        extra_files=plan.base_extra_files())
    with timings.phase("assemble + commit"):
        node_files: dict[str, Path | str] = {
            "/usr/bin/kubeadm": k8s_bin / "kubeadm",
            "/usr/bin/kubelet": k8s_bin / "kubelet",
            "/usr/bin/kubectl": k8s_bin / "kubectl",
            nodefiles.KIND_VERSION_PATH: nodefiles.kind_version_file(version),
            nodefiles.CONTAINERD_CONFIG_PATH: plan.containerd_config(wanted.pause),
            **cni_files,
            **runtime_files,
            **plan.kubelet_files(),
        }
        assemble.assemble_node_image(
            base_ref=base,
            target_ref=plan.tag,
            node_files=node_files,
            image_archives=archives,
            required_images=required,
            log=log,
        )
    with timings.phase("save archive (zstd)"):
        plan.archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = plan.archive.with_name(plan.archive.name + ".tmp")
        _exec.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                'docker save "$1" | zstd -q -T0 -3 -f -o "$2"',
                "save-node",
                plan.tag,
                str(tmp),
            ],
            timeout=1800,
        )
        tmp.rename(plan.archive)
    return plan.tag


def _component_images(
    cache_dir: Path,
    wanted: images.ComponentImages,
    k8s_bin: Path,
    etcd: Path,
    coredns: Path,
    pause: Path,
    net_tar: Path,
    log: Log,
    force: bool,
) -> list[Path]:
    net_ref = images.import_rootfs_image(net_tar, f"local/kind-netbase-offline:{rootfs.tarball_key(net_tar)[:12]}", log)
    specs: list[tuple[str, Path, str, str]] = [
        (wanted.apiserver, k8s_bin / "kube-apiserver", "/usr/local/bin/kube-apiserver", "scratch"),
        (
            wanted.controller_manager,
            k8s_bin / "kube-controller-manager",
            "/usr/local/bin/kube-controller-manager",
            "scratch",
        ),
        (wanted.scheduler, k8s_bin / "kube-scheduler", "/usr/local/bin/kube-scheduler", "scratch"),
        (wanted.proxy, k8s_bin / "kube-proxy", "/usr/local/bin/kube-proxy", net_ref),
        (wanted.etcd, etcd, "/usr/local/bin/etcd", "scratch"),
        (wanted.coredns, coredns, "/coredns", "scratch"),
        (wanted.pause, pause, "/pause", "scratch"),
    ]
    out: list[Path] = []
    for ref, binary, dest, base in specs:
        dockerfile = images.scratch_dockerfile(binary.name, dest, base=base)
        out.append(
            images.build_component_image(
                cache_dir,
                ref,
                {binary.name: binary},
                dockerfile,
                log,
                inputs={"binary": str(binary), "base": base},
                force=force,
            )
        )
    return out
