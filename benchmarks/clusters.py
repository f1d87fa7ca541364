"""Benchmark kind cluster creation: one node against two, per Kubernetes minor, side by side in one run.

    python benchmarks/clusters.py [--minors 1.35,1.37] [--rounds 1]

For each minor: the node image is resolved the way a session does (built or
reloaded on a registry-less machine, so run ``python -m harness node-image
build --kubernetes-version X`` first to keep build time out of the figures),
then a one-node and a two-node (control plane + one worker) cluster are
created with ``--wait`` until every node is Ready, timed, and deleted. The
host sysctls kind's kubelet changes are saved before and restored after, as
the harness does. Nothing is asserted: read the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import toolchain
from harness.clusters.kind import with_workers
from harness.clusters.kind_cli import KindCluster, kind_config


def _create_seconds(kind_bin: Path, image: str, workers: int, minor: str, workdir: Path) -> float:
    name = f"bench-nodes-{minor.replace('.', '')}-{workers}"
    cluster = KindCluster(name, kind_bin, workdir / name, log=print)
    config = kind_config(host_port=0, extra=with_workers(None, workers, kubernetes_version=minor, local=True))
    nodes: list[dict[str, object]] = config["nodes"]  # type: ignore[assignment]  # kind's config is plain YAML data
    config["nodes"] = [{k: v for k, v in n.items() if k != "extraPortMappings"} for n in nodes]
    started = time.monotonic()
    try:
        cluster.create(node_image=image, config=config, wait_seconds=300)
        return time.monotonic() - started
    finally:
        cluster.delete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minors", default="1.35,1.37")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
        for minor in args.minors.split(","):
            kind_bin = toolchain.resolve_kind(None, kubernetes_version=minor)
            image = toolchain.resolve_node_image(kubernetes_version=minor).image
            times = {n: [_create_seconds(kind_bin, image, n, minor, Path(tmp)) for _ in range(args.rounds)]
                     for n in (0, 1)}
            rows.append((minor, statistics.median(times[0]), statistics.median(times[1])))
            print(f"bench: {minor}: one node {rows[-1][1]:.1f} s, two nodes {rows[-1][2]:.1f} s", flush=True)
    print("\n| minor | one node (s) | two nodes (s) | two / one |\n|---|---|---|---|")
    for minor, one, two in rows:
        print(f"| {minor} | {one:.1f} | {two:.1f} | {two / one:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
