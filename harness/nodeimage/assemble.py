"""Turn the node base + binaries + component images into the final node image.

Mirrors what ``kind build node-image`` does, minus every registry pull:
start a throw-away container from the base, copy files in, run containerd
just long enough to import the image archives into its ``k8s.io``
namespace, verify that every image kubeadm will ask for is there, and
``docker commit``. The verification is the point: a missing or misnamed
image would otherwise surface minutes later as a kubelet pull timeout on an
offline machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness import _exec, owners
from harness._errors import HarnessError, WaitTimeout
from harness._waiting import Probe, wait_for

__all__ = ["MissingImagesError", "assemble_node_image", "missing_images"]

Log = Callable[[str], None]

_CONTAINERD_SOCK_WAIT = 60.0  # s; containerd starts in ~1 s, generous for a loaded CI box
_PIDFILE = "/tmp/harness-build-containerd.pid"


class MissingImagesError(HarnessError):
    """The node's containerd lacks images kubeadm will need; names them."""


def missing_images(required: Sequence[str], listed: str) -> list[str]:
    """Required references absent from ``ctr images ls -q`` output."""
    present = {line.strip() for line in listed.splitlines() if line.strip()}
    return [ref for ref in required if ref not in present]


def _docker_exec(container: str, *argv: str, check: bool = True) -> str:
    return _exec.run(["docker", "exec", container, *argv], check=check, timeout=900).stdout


def assemble_node_image(
    *,
    base_ref: str,
    target_ref: str,
    node_files: Mapping[str, Path | str],
    image_archives: Sequence[Path],
    required_images: Sequence[str],
    log: Log,
) -> str:
    """Build ``target_ref`` from ``base_ref``; return it.

    ``node_files`` maps absolute in-node paths to a host file (copied, mode
    kept) or to text (written 0644). ``image_archives`` are ``docker save``
    tarballs imported into containerd; ``required_images`` must all be
    listed afterwards or :class:`MissingImagesError` is raised before any
    commit happens.
    """
    name = f"nodeimg-build-{os.getpid()}-{int(time.time())}"
    # Labelled with its owner: if this process is killed before the finally below, the next session removes it.
    _exec.run(["docker", "run", "-d", "--privileged", "--name", name, "--label",
               f"{owners.OWNER_LABEL}={owners.owner_token()}", "--entrypoint", "sleep", base_ref, "infinity"])
    try:
        with tempfile.TemporaryDirectory(prefix="nodeimg-stage-") as stage_dir:
            stage = Path(stage_dir)
            _stage_files(stage, node_files, image_archives)
            log(f"assemble: copying {len(node_files)} files and {len(image_archives)} image archives")
            _exec.run(["docker", "cp", f"{stage}/.", f"{name}:/"], timeout=900)
        _import_images(name, image_archives, log)
        listed = _docker_exec(name, "ctr", "--namespace=k8s.io", "images", "ls", "-q")
        missing = missing_images(required_images, listed)
        _stop_containerd(name)
        if missing:
            raise MissingImagesError(
                "node containerd lacks required images (not committing): "
                + ", ".join(missing)
                + "\npresent:\n"
                + listed
            )
        _docker_exec(name, "sh", "-c", "rm -rf /kind/images /run/containerd /tmp/* /var/log/containerd-build.log")
        log(f"assemble: docker commit -> {target_ref}")
        _exec.run(
            [
                "docker",
                "commit",
                "--change",
                'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                "--change",
                "CMD []",
                # docker commit would copy the build container's owner label into the image, and so onto
                # every kind node run from it; blank it (leftovers also reaps only nodeimg-build-* names).
                "--change",
                f'LABEL {owners.OWNER_LABEL}=""',
                name,
                target_ref,
            ],
            timeout=900,
        )
    finally:
        _exec.run(["docker", "rm", "-f", name], check=False)
    return target_ref


def _stage_files(stage: Path, node_files: Mapping[str, Path | str], archives: Sequence[Path]) -> None:
    for dest, src in node_files.items():
        target = stage / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copy2(src, target)
        else:
            target.write_text(src)
            target.chmod(0o644)
    images_dir = stage / "kind" / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for i, archive in enumerate(archives):
        target = images_dir / f"{i:02d}.tar"
        try:
            os.link(archive, target)  # same filesystem: no 400 MB copy
        except OSError:
            shutil.copy2(archive, target)


def _import_images(name: str, archives: Sequence[Path], log: Log) -> None:
    # The pid file lets us stop exactly the daemon we started.
    _exec.run(
        [
            "docker",
            "exec",
            "-d",
            name,
            "sh",
            "-c",
            f"echo $$ > {_PIDFILE}; exec containerd > /var/log/containerd-build.log 2>&1",
        ]
    )
    def answers() -> Probe[None]:
        probe = _exec.run(["docker", "exec", name, "ctr", "version"], check=False)
        return Probe(probe.returncode == 0, "answers" if probe.returncode == 0 else "ctr version fails")

    try:
        wait_for(answers, what="containerd in the build container", timeout=_CONTAINERD_SOCK_WAIT, interval=0.5)
    except WaitTimeout as exc:
        log_tail = _docker_exec(name, "tail", "-n", "40", "/var/log/containerd-build.log", check=False)
        raise HarnessError(f"containerd did not start in the build container ({exc}):\n{log_tail}") from exc
    for i, _archive in enumerate(archives):
        _docker_exec(
            name,
            "ctr",
            "--namespace=k8s.io",
            "images",
            "import",
            "--label=io.cri-containerd.pinned=pinned",
            "--all-platforms",
            "--no-unpack",
            "--digests",
            f"/kind/images/{i:02d}.tar",
        )
    log(f"assemble: imported {len(archives)} archives")


def _stop_containerd(name: str) -> None:
    _docker_exec(name, "sh", "-c", f'kill "$(cat {_PIDFILE})"', check=False)

    def stopped() -> Probe[None]:
        alive = _exec.run(["docker", "exec", name, "sh", "-c", f'kill -0 "$(cat {_PIDFILE})"'], check=False)
        return Probe(alive.returncode != 0, "stopped" if alive.returncode != 0 else "still running")

    wait_for(stopped, what="containerd in the build container to stop", timeout=30, interval=0.5)
