"""Preflight checks: find what will break before minutes are spent, and name the fix.

Each check returns a :class:`Finding` (ok / warn / fail, what was seen, the
fix). ``python -m harness doctor`` prints them for the settings it is given
(the same flags, ``HARNESS_*`` variables and file as every other command): the
host, then what *this* configuration needs — kind, kubectl and the node image
for its Kubernetes minor, or the existing cluster's kubeconfig, context and API
server, and the registry. It exits 1 when a check fails. The e2e session runs
the blocking host checks first so a missing Docker or a full disk fails in a
second with an instruction, not after a long build.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness import _exec
from harness.cachedir import cache_dir
from harness.findings import Finding

if TYPE_CHECKING:
    from harness.settings import Settings

__all__ = ["Finding", "render", "run_checks", "settings_checks"]

DOCKER_FIX = "install and start Docker (Debian, as root, from a clone of the harness: scripts/docker-up.sh)"

#: A cold registry-less build keeps Go caches, a node image and its archive: ~15 GB.
COLD_BUILD_FREE_GB = 20.0
RUN_FREE_GB = 8.0


def check_docker() -> Finding:
    proc = _exec.run(["docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"],
                     check=False, timeout=20)
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["docker not found"]
        return Finding("docker", "fail", why[0], DOCKER_FIX)
    return Finding("docker", "ok", f"server {proc.stdout.strip()}")


def check_runtime() -> Finding:
    from harness.nodeimage.hostcheck import runtime_status

    st = runtime_status()
    if not st.needs_fix:
        return Finding("privileged containers", "ok", "capability bounding set is complete")
    if st.fix_active:
        return Finding("privileged containers", "ok",
                       f"host lacks {', '.join(st.missing_caps)}; runc wrapper runtime active")
    return Finding("privileged containers", "fail", f"host lacks {', '.join(st.missing_caps)}: kind nodes cannot start",
                   "register the capability-dropping runc wrapper: scripts/docker-up.sh from a clone of the harness "
                   "(undo: --undo)")


def check_disk(path: Path | None = None, *, need_gb: float = COLD_BUILD_FREE_GB) -> Finding:
    where = path or cache_dir()
    free = shutil.disk_usage(where).free / 1e9
    docker_root = Path("/var/lib/docker")
    if docker_root.exists():
        free = min(free, shutil.disk_usage(docker_root).free / 1e9)
    if free < RUN_FREE_GB:
        return Finding("disk", "fail", f"{free:.1f} GB free", f"free at least {RUN_FREE_GB:.0f} GB "
                       "(docker system prune; remove old node images: docker images local/kind-node-offline)")
    if free < need_gb:
        return Finding("disk", "warn", f"{free:.1f} GB free",
                       f"a cold registry-less node build wants ~{need_gb:.0f} GB")
    return Finding("disk", "ok", f"{free:.1f} GB free")


def check_tool(name: str, version_args: list[str], fix: str) -> Finding:
    found = shutil.which(name)
    if not found:
        return Finding(name, "warn", "not on PATH", fix)
    proc = _exec.run([found, *version_args], check=False, timeout=20)
    return Finding(name, "ok" if proc.returncode == 0 else "warn", (proc.stdout or proc.stderr).strip()[:120])


def cgroup_v1_summary() -> str:
    """Per minor of the version table: which node image can run on a cgroup v1 host."""
    from harness.versions import RELEASES, cgroup_v1_verdict

    parts = []
    for row in RELEASES.values():
        if cgroup_v1_verdict(row, public=True)[0]:
            parts.append(f"{row.minor} any node image")
        elif cgroup_v1_verdict(row, public=False)[0]:
            parts.append(f"{row.minor} registry-less build only (its kubelet sets failCgroupV1: false; "
                         "kind's published image exits)")
        else:
            parts.append(f"{row.minor} not at all")
    return "; ".join(parts)


def check_cgroups(v2: bool | None = None) -> Finding:
    if v2 is None:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    if v2:
        return Finding("cgroups", "ok", "cgroup v2")
    return Finding("cgroups", "ok", f"cgroup v1 (deprecated by the kubelet and containerd 2): {cgroup_v1_summary()}")


def check_registry(image: str) -> Finding:
    proc = _exec.run(["docker", "manifest", "inspect", image], check=False, timeout=60)
    if proc.returncode == 0:
        return Finding("registry", "ok", f"{image.split('@')[0]} reachable: the public node image will be used")
    return Finding("registry", "warn", "public node image not reachable: the registry-less node image will be built",
                   "nothing to do: the harness builds it (cold: ~10-15 min on 2 cores, cached afterwards); "
                   "python -m harness node-image build prebuilds it")


def check_registry_setting(settings: Settings) -> Finding:
    """The ``registry`` setting: the harness's local registry, or a host[:port] answering the registry API."""
    import urllib.error
    import urllib.request

    registry = settings.build.registry
    host = "127.0.0.1:5001" if registry == "local" else registry
    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=5) as resp:
            return Finding("registry", "ok", f"{registry}: HTTP {resp.status} from /v2/")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:  # answers, wants credentials (docker login)
            return Finding("registry", "ok", f"{registry}: answers (HTTP 401: docker login needed to push)")
        return Finding("registry", "fail", f"{registry}: HTTP {exc.code} from /v2/", "check the registry's address")
    except (urllib.error.URLError, OSError) as exc:
        if registry == "local":
            return Finding("registry", "ok", "local: not running now; the session starts it (python -m harness "
                           "registry up)")
        return Finding("registry", "fail", f"{registry}: {exc}", "start it, or fix the registry setting")


def settings_checks(settings: Settings) -> list[Finding]:
    """What the configuration itself needs, beyond the host."""
    from harness.clusters import provider_class

    findings = provider_class(settings.cluster.provider).preflight(settings)
    if settings.build.registry is not None:
        findings.append(check_registry_setting(settings))
    return findings


def check_inotify() -> Finding:
    try:
        watches = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return Finding("inotify", "warn", "unreadable")
    if watches < 256:
        return Finding("inotify", "warn", f"max_user_instances={watches}",
                       "sysctl fs.inotify.max_user_instances=512 (kubelet and kind nodes use many)")
    return Finding("inotify", "ok", f"max_user_instances={watches}")


def check_platform(system: str | None = None, machine: str | None = None) -> Finding:
    """Which host checks apply: Linux runs kind nodes on this kernel; macOS runs them in Docker's VM."""
    sysname, arch = (system or platform.system()), (machine or platform.machine())
    if sysname == "Linux":
        return Finding("platform", "ok", f"Linux {arch}: kind nodes run on this kernel (cgroups, inotify, caps)")
    if sysname == "Darwin":
        return Finding("platform", "ok", f"macOS {arch}: kind nodes run in the Docker VM (Docker Desktop, Colima, "
                       "OrbStack); host kernel checks do not apply. The registry-less builders need Linux: the "
                       "public base and node images are used (base-mode/node-image-mode public)")
    return Finding("platform", "warn", f"{sysname} {arch}: untested", "use Linux or macOS with Docker")


def run_checks(*, public_node_image: str, system: str | None = None,
               settings: Settings | None = None) -> list[Finding]:
    """The host's checks, then (``settings`` given) what that configuration needs."""
    docker = check_docker()
    linux = (system or platform.system()) == "Linux"
    checks: list[Callable[[], Finding]] = [lambda: check_platform(system), check_disk,
                                           lambda: check_tool("go", ["version"], "needed only to build kind "
                                                              "or the registry-less node image: install Go >= 1.24")]
    if linux:
        checks += [check_cgroups, check_inotify]
    findings = [docker]
    if docker.level != "fail":
        if linux:
            checks.append(check_runtime)
        if settings is None:
            checks.append(lambda: check_registry(public_node_image))
    findings += [c() for c in checks]
    if settings is not None and docker.level != "fail":
        findings += settings_checks(settings)
    if linux and os.geteuid() != 0:
        findings.append(Finding("user", "warn", "not root",
                                "building registry-less images needs root (debootstrap); the public path does not"))
    return findings


def render(findings: list[Finding]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for f in findings:
        lines.append(f"[{marks[f.level]}] {f.name:<22} {f.seen}")
        if f.fix and f.level != "ok":
            lines.append(f"       fix: {f.fix}")
    return "\n".join(lines)


def preflight_e2e() -> list[Finding]:
    """The checks whose failure makes the e2e tier pointless; run before any build or cluster work."""
    docker = check_docker()
    if docker.level == "fail":
        return [docker]
    checks = [check_disk(need_gb=RUN_FREE_GB)]
    if platform.system() == "Linux":  # elsewhere the nodes run in Docker's own VM
        checks.append(check_runtime())
    return [f for f in checks if f.level == "fail"]
