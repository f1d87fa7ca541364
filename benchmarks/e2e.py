"""Benchmark the e2e tier cold and warm: wall time and the phase breakdown.

    python benchmarks/e2e.py [--cluster-name bench-e2e] [--skip-cold]

Cold: a fresh cluster (deleted first if this harness made it) with the stack
deployed and one training run through a CustomJob. Warm: the same again,
reusing the cluster whose fingerprint now matches. Each run is the real e2e
test (`pytest -m e2e -k trainer_runs_through_customjob`), so what is measured
is what CI does; the phase table comes from the harness's own timing.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

from harness import _exec


def run(label: str, extra: list[str], cluster: str) -> float:
    t0 = time.monotonic()
    proc = _exec.run(
        [sys.executable, "-m", "pytest", "-m", "e2e", "tests/e2e", "-k", "trainer_runs_through_customjob",
         "-p", "no:cacheprovider", "--harness-cluster-name", cluster, "--harness-keep-cluster=always",
         "--harness-no-skip", *extra],
        timeout=5400, check=False, extra_env={"CI": ""},
    )
    wall = time.monotonic() - t0
    text = proc.stdout
    table = text[text.find("harness phase timings"):] if "harness phase timings" in text else ""
    print(f"== {label}: {wall:.0f} s wall, pytest exit {proc.returncode}")
    print(re.sub(r"^=+.*$", "", table, flags=re.M).strip())
    if proc.returncode != 0:
        print(text[-4000:])
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster-name", default="bench-e2e")
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("pytest_args", nargs="*",
                        help="extra pytest options after --, e.g. -- --harness-kubectl-bin PATH")
    args = parser.parse_args()
    os.environ.pop("CI", None)
    if not args.skip_cold:
        _exec.run([sys.executable, "-m", "harness", "down", "--cluster-name", args.cluster_name], check=False)
        cold = run("cold (new cluster)", args.pytest_args, args.cluster_name)
    warm = run("warm (reused cluster)", args.pytest_args, args.cluster_name)
    if not args.skip_cold:
        print(f"\ncold {cold:.0f} s, warm {warm:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
