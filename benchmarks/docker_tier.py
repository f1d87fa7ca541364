"""Benchmark the docker tier: trainer image size and the wall time of one `mlflow run`.

    python benchmarks/docker_tier.py [--runs 3]

Prints one line per run and a summary. Measures, never asserts: timing belongs
here, not in tests.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import baseimage, images
from harness.runs import mlflow_run
from harness.settings import load_settings
from harness.tracking import LocalTrackingServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    settings = load_settings(root=Path(__file__).resolve().parents[1])
    trainer = settings.project("trainer")
    base = baseimage.resolve_base_image(mode=settings.build.base_mode, override=settings.build.base_image).image
    t0 = time.monotonic()
    built = images.build_spec(next(i for i in settings.images if i.name == "trainer"), base_image=base)
    print(f"trainer image {built.tag}: {built.size_bytes / 1e6:.0f} MB "
          f"({'reused' if built.reused else f'built in {time.monotonic() - t0:.0f} s'}); base {base}")

    walls = []
    with tempfile.TemporaryDirectory() as tmp, LocalTrackingServer.for_containers(Path(tmp)) as server:
        for i in range(args.runs):
            t = time.monotonic()
            mlflow_run(trainer.path, "-P", "alpha=0.5", "--build-image", *server.docker_args,
                       "--experiment-name", f"bench-{i}", tracking_uri=server.uri, timeout=900)
            walls.append(time.monotonic() - t)
            print(f"run {i + 1}: {walls[-1]:.1f} s")
    print(f"mlflow run wall time: median {statistics.median(walls):.1f} s, min {min(walls):.1f} s, "
          f"max {max(walls):.1f} s over {len(walls)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
