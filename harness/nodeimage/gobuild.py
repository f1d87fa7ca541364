"""Compile every node component from the Go module proxy.

Why wrapper modules: ``k8s.io/kubernetes`` pins its staging modules at
``v0.0.0`` and resolves them with ``replace => ./staging/...``; replace
directives of a *dependency* are ignored, so we build from a throw-away main
module that replaces each staging module with its published tag. etcd's
server module has the same problem (``replace => ../api``), so it gets a
two-line ``main`` calling ``etcdmain.Main``. CoreDNS gets a ``main`` that
links only the plugins kubeadm's Corefile uses, which skips the cloud SDKs
and roughly halves its compile time.

All builds are static (``CGO_ENABLED=0``), ``-trimpath`` and use the local
toolchain only (``GOTOOLCHAIN=local``): nothing but modules is downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import _exec
from harness._errors import PreflightError
from harness.nodeimage import cache, versions

__all__ = [
    "CONTAINERD_BINARIES",
    "COREDNS_PLUGINS",
    "KUBERNETES_COMMANDS",
    "GoToolchain",
    "build_containerd",
    "build_coredns",
    "build_etcd",
    "build_kind",
    "build_kubernetes",
    "build_netd",
    "build_pause",
    "build_runc",
    "containerd_ldflags",
    "coredns_main_source",
    "kubernetes_tools_source",
    "staging_replaces",
    "version_ldflags",
    "wrapper_module",
]

Log = Callable[[str], None]

#: The Kubernetes commands a kind node needs; kubeadm/kubelet/kubectl go on
#: the node itself, the rest into component images.
KUBERNETES_COMMANDS: tuple[str, ...] = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)

#: Import paths of the CoreDNS plugins behind every directive in the Corefile
#: kubeadm writes (errors, health, ready, kubernetes, prometheus, forward,
#: cache, loop, reload, loadbalance) plus ``log``, which users commonly add.
COREDNS_PLUGINS: tuple[str, ...] = (
    "cache",
    "errors",
    "forward",
    "health",
    "kubernetes",
    "loadbalance",
    "log",
    "loop",
    "metrics",  # provides the "prometheus" directive
    "ready",
    "reload",
)

_GO_FALLBACK_DIRS = ("/usr/local/go/bin", "/usr/lib/go/bin")
_PAUSE_SOURCE = Path(__file__).parent / "files" / "go" / "pause.go"
#: Our multi-node network daemon (outside ``files/``, whose hash keys the default node image).
NETD_SOURCE = Path(__file__).parent / "netd" / "main.go"
#: Its one dependency (route programming over netlink); also a dependency of the CNI plugins.
NETD_NETLINK_VERSION = "v1.3.1"


@dataclass(frozen=True)
class GoToolchain:
    """The local Go toolchain plus the environment every build runs with."""

    go: Path
    version: str
    env: Mapping[str, str]

    @classmethod
    def discover(cls, cache_dir: Path) -> GoToolchain:
        """Find ``go`` and pin its caches under ``cache_dir/go`` (outside any clone)."""
        go = _exec.which("go", *_GO_FALLBACK_DIRS)
        if go is None:
            raise PreflightError("no Go toolchain found; install Go >= 1.24 at /usr/local/go")
        env = {
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
            "GOFLAGS": "-mod=mod",
            "GOMODCACHE": str(cache_dir / "go" / "mod"),
            "GOCACHE": str(cache_dir / "go" / "build"),
            "GOPATH": str(cache_dir / "go" / "path"),
        }
        out = _exec.run([go, "env", "GOVERSION"], extra_env=env).stdout.strip()
        return cls(go=go, version=out, env=env)

    def run(self, *args: str | Path, cwd: Path | None = None, extra: Mapping[str, str] | None = None) -> str:
        """Run ``go <args>`` with the pinned environment; return stdout."""
        env = dict(self.env)
        if extra:
            env.update(extra)
        return _exec.run([self.go, *args], extra_env=env, cwd=cwd).stdout


def staging_replaces(gomod_text: str) -> list[str]:
    """List the ``k8s.io/*`` modules a kubernetes go.mod requires at ``v0.0.0``.

    Those are the staging modules that need a replace in our wrapper module.
    Handles both ``require (...)`` blocks and one-line ``require`` statements.
    """
    found: list[str] = []
    in_block = False
    for raw in gomod_text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line.startswith("require ("):
            in_block = True
            continue
        if in_block and line == ")":
            in_block = False
            continue
        if line.startswith("require "):
            line = line[len("require ") :].strip()
        elif not in_block:
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("k8s.io/") and parts[1] == "v0.0.0":
            found.append(parts[0])
    return sorted(set(found))


def version_ldflags(version: str, commit: str, build_date: str) -> str:
    """Build ``-ldflags`` stamping a Kubernetes version into both version packages.

    Both ``k8s.io/component-base/version`` and ``k8s.io/client-go/pkg/version``
    must be stamped: unstamped binaries report ``v0.0.0-master`` and kubeadm
    then rejects the requested ``kubernetesVersion`` and lists wrong tags.
    """
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)(?:[-+].*)?", version)
    if not match:
        raise ValueError(f"not a semantic version: {version!r}")
    values = {
        "gitVersion": version,
        "gitMajor": match.group(1),
        "gitMinor": match.group(2),
        "gitCommit": commit,
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags.extend(f"-X {pkg}.{name}={value}" for name, value in values.items())
    return " ".join(flags)


def kubernetes_tools_source(commands: Sequence[str] = KUBERNETES_COMMANDS) -> str:
    """A ``tools.go`` that makes ``go mod tidy`` keep every command's dependencies."""
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in commands)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def coredns_main_source(plugins: Sequence[str] = COREDNS_PLUGINS) -> str:
    """A CoreDNS ``main`` linking only ``plugins`` (directive order stays CoreDNS's own)."""
    imports = "\n".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"' for p in sorted(plugins))
    return (
        "// Generated by harness.nodeimage: CoreDNS with the kubeadm Corefile plugins only.\n"
        "package main\n\nimport (\n"
        '\t"github.com/coredns/coredns/coremain"\n'
        f"{imports}\n)\n\nfunc main() {{\n\tcoremain.Run()\n}}\n"
    )


_ETCD_MAIN = """// Generated by harness.nodeimage: etcd's server entry point as a main module.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
\tetcdmain.Main(os.Args)
}
"""


def _module_info(go: GoToolchain, module_at_version: str, workdir: Path) -> dict[str, str]:
    return dict(json.loads(go.run("mod", "download", "-json", module_at_version, cwd=workdir)))


def wrapper_module(go: GoToolchain, workdir: Path, name: str, files: Mapping[str, str]) -> None:
    """A throw-away main module ``name`` in ``workdir`` holding ``files``, rebuilt from nothing each time."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    go.run("mod", "init", name, cwd=workdir)
    for rel, text in files.items():
        (workdir / rel).write_text(text)


def _build(go: GoToolchain, workdir: Path, out: Path, packages: Sequence[str], ldflags: str = "-s -w") -> None:
    go.run(
        "build",
        "-p",
        str(versions.GO_BUILD_PARALLELISM),
        "-trimpath",
        "-ldflags",
        ldflags,
        "-o",
        f"{out}/",
        *packages,
        cwd=workdir,
    )


def kubernetes_bin_dir(go: GoToolchain, cache_dir: Path, version: str,
                       commands: Sequence[str] = KUBERNETES_COMMANDS) -> Path:
    """Where :func:`build_kubernetes` puts (or has put) ``commands`` of ``version``."""
    key = cache.input_key(
        {
            "what": "kubernetes",
            "version": version,
            "go": go.version,
            "commands": list(commands),
            "rev": versions.BUILDER_REVISION,
        }
    )
    return cache_dir / "bin" / f"kubernetes-{version}-{key}"


def build_kubernetes(go: GoToolchain, cache_dir: Path, version: str, log: Log,
                     commands: Sequence[str] = KUBERNETES_COMMANDS) -> Path:
    """Build Kubernetes' ``commands`` (the node image's seven by default); return the directory holding them.

    A machine that only needs ``kubectl`` (a user whose cache has no node image build) asks for it
    alone: one link instead of seven, minutes less on two cores.
    """
    final = kubernetes_bin_dir(go, cache_dir, version, commands)
    if all((final / c).is_file() for c in commands):
        log(f"kubernetes {version}: cached binaries in {final}")
        return final
    suffix = "" if tuple(commands) == KUBERNETES_COMMANDS else "-" + "-".join(commands)
    work = cache_dir / "work" / f"kubernetes-{version}{suffix}"
    wrapper_module(go, work, "offline-kubernetes-build", {"tools.go": kubernetes_tools_source(commands)})
    info = _module_info(go, f"k8s.io/kubernetes@{version}", work)
    staging = staging_replaces(Path(info["GoMod"]).read_text())
    if not staging:
        raise PreflightError(f"k8s.io/kubernetes@{version}: no staging modules found in its go.mod")
    sv = versions.staging_version(version)
    go.run("mod", "edit", *[f"-replace={m}={m}@{sv}" for m in staging], cwd=work)
    go.run("get", f"k8s.io/kubernetes@{version}", cwd=work)
    go.run("mod", "tidy", cwd=work)
    commit = _origin_commit(info)
    ldflags = version_ldflags(version, commit, info.get("Time", "1970-01-01T00:00:00Z"))
    log(f"kubernetes {version}: compiling {len(commands)} command(s) ({', '.join(commands)}; "
        f"cold: ~5 min on 2 cores for all seven)")
    with cache.publish_dir(final) as tmp:
        _build(go, work, tmp, [f"k8s.io/kubernetes/cmd/{c}" for c in commands], ldflags)
    return final


def _origin_commit(info: Mapping[str, object]) -> str:
    origin = info.get("Origin")
    if isinstance(origin, dict) and isinstance(origin.get("Hash"), str):
        return str(origin["Hash"])
    return "0" * 40


def _build_wrapped(
    go: GoToolchain, cache_dir: Path, *, name: str, module: str, version: str, main_source: str, log: Log,
) -> Path:
    """Build ``name`` from a wrapper main module requiring ``module@version``; cached by inputs.

    Both etcd (whose own go.mod uses local replaces) and our trimmed CoreDNS are
    built this way: a throwaway module with our ``main.go``, ``go get`` of the
    pinned upstream module, then a static, stripped build.
    """
    key = cache.input_key({"what": name, "version": version, "go": go.version, "main": main_source})
    final = cache_dir / "bin" / f"{name}-{version}-{key}"
    if (final / name).is_file():
        log(f"{name} {version}: cached")
        return final / name
    work = cache_dir / "work" / f"{name}-{version}"
    wrapper_module(go, work, f"offline-{name}-build", {"main.go": main_source})
    go.run("get", f"{module}@{version}", cwd=work)
    go.run("mod", "tidy", cwd=work)
    log(f"{name} {version}: compiling")
    with cache.publish_dir(final) as tmp:
        go.run("build", "-p", str(versions.GO_BUILD_PARALLELISM), "-trimpath", "-ldflags", "-s -w",
               "-o", str(tmp / name), ".", cwd=work)
    return final / name


def build_etcd(go: GoToolchain, cache_dir: Path, version: str, log: Log) -> Path:
    """Build ``etcd`` at ``version`` (e.g. ``v3.6.5``); return the binary."""
    return _build_wrapped(go, cache_dir, name="etcd", module="go.etcd.io/etcd/server/v3", version=version,
                          main_source=_ETCD_MAIN, log=log)


def build_coredns(go: GoToolchain, cache_dir: Path, version: str, log: Log) -> Path:
    """Build a trimmed CoreDNS at ``version`` (e.g. ``v1.12.1``); return the binary."""
    return _build_wrapped(go, cache_dir, name="coredns", module="github.com/coredns/coredns", version=version,
                          main_source=coredns_main_source(), log=log)

def build_pause(go: GoToolchain, cache_dir: Path, log: Log) -> Path:
    """Build our pause program (sleep, reap children, exit on SIGINT/SIGTERM)."""
    source = _PAUSE_SOURCE.read_text()
    key = cache.input_key({"what": "pause", "go": go.version, "main": source})
    final = cache_dir / "bin" / f"pause-{key}"
    if (final / "pause").is_file():
        log("pause: cached")
        return final / "pause"
    work = cache_dir / "work" / "pause"
    wrapper_module(go, work, "offline-pause", {"main.go": source})
    with cache.publish_dir(final) as tmp:
        go.run("build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "pause"), ".", cwd=work)
    return final / "pause"


def kind_binary_path(go: GoToolchain, cache_dir: Path, version: str) -> Path:
    """Where :func:`build_kind` puts (or has put) kind ``version``."""
    key = cache.input_key({"what": "kind", "version": version, "go": go.version})
    return cache_dir / "bin" / f"kind-{version}-{key}" / "kind"


def build_kind(go: GoToolchain, cache_dir: Path, version: str, log: Log) -> Path:
    """``go install sigs.k8s.io/kind@version`` into the cache; return the binary."""
    binary = kind_binary_path(go, cache_dir, version)
    final = binary.parent
    if binary.is_file():
        return binary
    log(f"kind {version}: go install")
    with cache.publish_dir(final) as tmp:
        go.run(
            "install",
            "-trimpath",
            "-ldflags",
            "-s -w",
            f"sigs.k8s.io/kind@{version}",
            extra={"GOBIN": str(tmp), "GOFLAGS": ""},
        )
    return final / "kind"


#: What the node needs from containerd: the daemon, the per-pod shim, and ``ctr``
#: (kind's image import and ``kind load`` call it).
CONTAINERD_BINARIES: tuple[str, ...] = ("containerd", "containerd-shim-runc-v2", "ctr")

#: containerd's own release tags minus the cgo snapshotters (btrfs) and what a node never uses.
_CONTAINERD_TAGS = "no_aufs no_zfs no_btrfs no_devmapper"


def containerd_ldflags(version: str) -> str:
    """Stamp ``containerd --version`` the way containerd's Makefile does."""
    pkg = "github.com/containerd/containerd/v2/version"
    return (f"-s -w -X {pkg}.Version={version} -X {pkg}.Revision=offline-build "
            f"-X {pkg}.Package=github.com/containerd/containerd/v2")


def _go_install(go: GoToolchain, final: Path, packages: Sequence[str], *, tags: str, ldflags: str,
                extra: Mapping[str, str]) -> None:
    """``go install pkg@version ...`` into ``final`` (modules without replace directives only)."""
    with cache.publish_dir(final) as tmp:
        go.run("install", "-p", str(versions.GO_BUILD_PARALLELISM), "-trimpath", "-tags", tags,
               "-ldflags", ldflags, *packages, extra={"GOBIN": str(tmp), "GOFLAGS": "", **extra})


def build_containerd(go: GoToolchain, cache_dir: Path, version: str, log: Log) -> Path:
    """containerd, its runc shim and ctr at ``version`` (static, no cgo); return their directory.

    containerd's module has no replace directives, so ``go install pkg@version``
    works; the btrfs snapshotter (the only cgo part) is left out.
    """
    ldflags = containerd_ldflags(version)
    key = cache.input_key({"what": "containerd", "version": version, "go": go.version,
                           "tags": _CONTAINERD_TAGS, "ldflags": ldflags, "bins": list(CONTAINERD_BINARIES)})
    final = cache_dir / "bin" / f"containerd-{version}-{key}"
    if all((final / b).is_file() for b in CONTAINERD_BINARIES):
        log(f"containerd {version}: cached")
        return final
    log(f"containerd {version}: compiling {', '.join(CONTAINERD_BINARIES)}")
    pkgs = [f"github.com/containerd/containerd/v2/cmd/{b}@{version}" for b in CONTAINERD_BINARIES]
    _go_install(go, final, pkgs, tags=_CONTAINERD_TAGS, ldflags=ldflags, extra={"CGO_ENABLED": "0"})
    return final


def _has_libseccomp() -> bool:
    return any(Path(d, "libseccomp.a").is_file() for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                                                           "/usr/lib64", "/usr/lib"))


def build_runc(go: GoToolchain, cache_dir: Path, version: str, tags: Sequence[str], log: Log) -> Path:
    """runc at ``version``, statically linked (cgo: nsenter is C; seccomp needs libseccomp).

    Static so the node needs no matching libseccomp. ``libpathrs`` (a Rust
    library runc's Makefile enables) is left out: runc then uses its pure-Go
    path resolver.
    """
    if "seccomp" in tags and not _has_libseccomp():
        raise PreflightError("building runc with seccomp needs libseccomp's static library: "
                             "apt-get install -y gcc libseccomp-dev (scripts/docker-up.sh does)")
    if _exec.which("gcc") is None:
        raise PreflightError("building runc needs a C compiler (its nsenter is C): apt-get install -y gcc")
    all_tags = " ".join([*tags, "netgo", "osusergo"])
    ldflags = "-s -w -X main.gitCommit=offline-build -linkmode external -extldflags -static"
    key = cache.input_key({"what": "runc", "version": version, "go": go.version, "tags": all_tags, "ldflags": ldflags})
    final = cache_dir / "bin" / f"runc-{version}-{key}"
    if (final / "runc").is_file():
        log(f"runc {version}: cached")
        return final / "runc"
    log(f"runc {version}: compiling (cgo, static, tags {all_tags})")
    _go_install(go, final, [f"github.com/opencontainers/runc@{version}"], tags=all_tags, ldflags=ldflags,
                extra={"CGO_ENABLED": "1"})
    return final / "runc"


def build_netd(go: GoToolchain, cache_dir: Path, log: Log) -> Path:
    """Build ``harness-netd`` (our multi-node pod network daemon); return the binary."""
    return _build_wrapped(go, cache_dir, name="harness-netd", module="github.com/vishvananda/netlink",
                          version=NETD_NETLINK_VERSION, main_source=NETD_SOURCE.read_text(), log=log)
