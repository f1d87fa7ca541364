"""Benchmark the e2e path, every ratio of the speed issue side by side in one run.

    python benchmarks/e2e.py [--only session,loop,runs,tier] [--rounds 5] [--loop-rounds 3] [--workers 2,3]
                             [--registry local] [--cluster-name bench-e2e]

``session``  a cold session (the cluster deleted first; caches warm) and a warm
             one (the cluster reused) of the trainer e2e test: wall times, their
             ratio, and the cold session's image delivery and stack deploy.
``runs``     on the warm cluster, rounds of the trainer: ``mlflow run --backend customjob``
             until the MLflow run reads FINISHED, the harness's ``ProjectRunner.run``
             (that, plus the workload's own end and its pods' logs), and MLflow's local
             docker backend on the same project and tracking server: medians, ratios,
             and the breakdown of the last ``ProjectRunner.run`` (build, delivery, pod
             scheduled, container started, first metric, MLflow run closed) from the
             objects' stamps.
``loop``     the platform developer's loop on the warm cluster: the trainer's e2e test
             unchanged, then after a one-line controller edit, a one-line train.py edit
             and a CRD description edit: wall time from the command to green, split into
             start and checks, build, deliver, roll and test (median of ``--loop-rounds``
             sessions each, 3 by default); once per delivery route
             (``kind load``, and the local registry on a cluster of its own).
``tier``     the whole e2e tier on the warm cluster, serial and with ``-n N`` for each N.

Everything runs the real thing (pytest and the harness as CI does); nothing is
asserted: read the figures. Kubernetes stamps have one-second resolution.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness import _exec, load_settings
from harness.clusters import MANAGED_BY, MANAGED_BY_LABEL
from harness.runs import ProjectRunner, mlflow_run, only_run_id
from harness.testbed import Testbed
from harness.timing import Phases
from harness.waits import wait_run_terminal, wait_workload

ROOT = Path(__file__).resolve().parents[1]
RESULTS: list[tuple[str, str]] = []


def say(line: str) -> None:
    print(line, flush=True)


def pytest_session(label: str, cluster: str, args: list[str]) -> tuple[float, dict[str, float]]:
    """One pytest session of the e2e tests: wall seconds and its phase seconds (from the JUnit file)."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        t0 = time.monotonic()
        proc = _exec.run(
            [sys.executable, "-m", "pytest", "-m", "e2e and not multinode and not kubeflow", "tests/e2e",
             "-p", "no:cacheprovider", "-q",
             "--harness-cluster-name", cluster, "--harness-keep-cluster=always", "--harness-no-skip",
             f"--junitxml={junit}", *args],
            timeout=5400, check=False, extra_env={"CI": ""}, cwd=ROOT,
        )
        wall = time.monotonic() - t0
        tree = ET.parse(junit) if junit.exists() else None  # noqa: S314 - the file pytest just wrote
        props = tree.iter("property") if tree is not None else iter(())
        phases = {p.get("name", "").removeprefix("phase.").removesuffix(".seconds"): float(p.get("value", 0))
                  for p in props if p.get("name", "").startswith("phase.")}
    tail = (proc.stdout or "").strip().splitlines()[-1:] or ["?"]
    say(f"== {label}: {wall:.0f} s wall, pytest exit {proc.returncode}: {tail[0]}")
    if proc.returncode != 0:
        say((proc.stdout or "")[-4000:])
        raise SystemExit(f"{label} failed")
    return wall, phases


def down(cluster: str) -> None:
    """Delete one of the benchmark's clusters (``python -m harness down``); absent is fine."""
    _exec.run([sys.executable, "-m", "harness", "down", "--cluster-name", cluster], check=False, cwd=ROOT)


def bench_session(cluster: str, extra: list[str]) -> None:
    down(cluster)
    only = ["-k", "trainer_runs_through_customjob", *extra]
    cold, cold_phases = pytest_session("cold session (new cluster, warm caches)", cluster, only)
    warm, _ = pytest_session("warm session (cluster reused)", cluster, only)
    # After the cluster, until the stack answers. Images loaded beside kind create are listed on their own:
    # that time overlaps the cluster's, and the "deliver images" phase then only verifies the nodes.
    deploy = sum(v for k, v in cold_phases.items() if k == "deliver images" or k.startswith("deploy stack"))
    RESULTS.append(("cold session", f"{cold:.0f} s"))
    RESULTS.append(("warm session", f"{warm:.0f} s = {warm / cold:.0%} of cold (target <= 25 %)"))
    RESULTS.append(("cold stack deploy (deliver + deploy)", f"{deploy:.0f} s = {deploy / 60:.0%} of the 60 s "
                                                             "measured before (target <= 50 %)"))
    for name in ("cluster", "deliver images beside kind create", "deliver images",
                 "deploy stack (CRDs, controllers, tracking)"):
        if name in cold_phases:
            RESULTS.append((f"  cold: {name}", f"{cold_phases[name]:.1f} s"))


def _stamp(text: str | None) -> float | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def breakdown(runner: ProjectRunner, run: Any, started: float) -> list[tuple[str, float | None]]:
    """Seconds after ``started`` (epoch) at which each step of one CustomJob run was done."""
    kube = runner.stack.cluster.kube
    cj = run.customjob
    job_name = (cj.get("status") or {}).get("jobName")
    pods = kube.core.list_namespaced_pod(runner.namespace, label_selector=f"job-name={job_name}").items
    pod = pods[0] if pods else None
    scheduled = container_started = container_done = None
    if pod is not None:
        cond = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)
        scheduled = cond.last_transition_time.timestamp() if cond and cond.last_transition_time else None
        term = pod.status.container_statuses[0].state.terminated if pod.status.container_statuses else None
        if term is not None:
            container_started, container_done = term.started_at.timestamp(), term.finished_at.timestamp()
    completed = None
    if job_name:
        try:
            job = kube.batch.read_namespaced_job(job_name, runner.namespace)
        except Exception:  # gone (TTL): the line says n/a
            job = None
        done_at = job.status.completion_time if job is not None else None
        completed = done_at.timestamp() if done_at else None
    info = run.client.get_run(run.run_id).info
    history = run.client.get_metric_history(run.run_id, "rmse")
    first_metric = min((m.timestamp for m in history), default=None)
    built = delivered = None
    for line in run.output.splitlines():
        if m := re.search(r"=== Built \S+ in ([\d.]+) s", line):
            built = float(m.group(1))
        elif m := re.search(r"=== Delivered \S+ \(\S+\) in ([\d.]+) s", line):
            delivered = float(m.group(1))
    rel = [
        ("project image build (cached)", built),
        ("delivery to the nodes", delivered),
        ("CustomJob created", (_stamp(cj["metadata"]["creationTimestamp"]) or started) - started),
        ("pod scheduled", scheduled - started if scheduled else None),
        ("container started", container_started - started if container_started else None),
        ("first metric logged", first_metric / 1000 - started if first_metric else None),
        ("container finished", container_done - started if container_done else None),
        ("MLflow run closed", info.end_time / 1000 - started if info.end_time else None),
        ("Job complete (kubelet, then the Job controller)", completed - started if completed else None),
    ]
    return rel


def bench_runs(cluster: str, rounds: int, registry: str | None) -> None:
    """Rounds of the trainer: through a CustomJob, timed two ways, and with MLflow's local docker backend.

    What each figure times, all against the same tracking server on the same warm cluster:

    * ``mlflow run --backend customjob`` from the command until the MLflow run reads FINISHED (the
      user's view of the run: that is when its params, metrics and model are all there);
    * the harness's ``ProjectRunner.run`` (what a test waits for): the above, plus the workload's own
      terminal status (which waits on the kubelet and the Job controller) and its pods' logs attached;
    * ``mlflow run`` with the local docker backend, synchronous, until it returns and the run reads FINISHED.
    """
    explicit: dict[str, Any] = {"cluster-name": cluster, "keep-cluster": "always", "no-skip": True}
    if registry:
        explicit["registry"] = registry
    settings = load_settings(root=ROOT, explicit=explicit)
    phases = Phases(sink=say)
    bed = Testbed(settings, phases=phases, log=phases.log).start()
    assert bed.stack is not None
    stack = bed.stack
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    stack.cluster.kube.ensure_namespace(ns, labels={MANAGED_BY_LABEL: MANAGED_BY})
    trainer = settings.project("trainer")
    submitted, harnessed, local = [], [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            runner = ProjectRunner(stack, ns, Path(tmp), projects=settings.projects,
                                   job_timeout=settings.runs.job_timeout)
            for i in range(rounds + 1):  # round 0 warms the project image and the node
                t0 = time.monotonic()
                experiment, _ = runner.mlflow_run("alpha=0.5", project=trainer)
                run_id = runner.only_run_id(experiment)
                status = wait_run_terminal(runner.client, run_id, timeout=600)
                took_submitted = time.monotonic() - t0
                if status != "FINISHED":
                    raise SystemExit(f"customjob run {run_id}: {status}")
                client = runner.workloads(trainer.workload)
                found = client.for_run(run_id)
                if found is not None:  # let its job end before the next round starts
                    wait_workload(client, str(found["metadata"]["name"]), timeout=600)
                t0, epoch = time.monotonic(), time.time()
                run = runner.run(trainer, alpha=0.5)
                took = time.monotonic() - t0
                if run.status != "FINISHED":
                    raise SystemExit(f"customjob run {run.run_id}: {run.status}\n{run.output[-3000:]}")
                t1 = time.monotonic()
                experiment = f"bench-local-{uuid.uuid4().hex[:6]}"
                # The same tracking server: the in-cluster one, port-mapped to this host's loopback.
                mlflow_run(trainer.path, "-P", "alpha=0.5", "--build-image", "-A", "network=host",
                           "--experiment-name", experiment, tracking_uri=stack.tracking_uri, cwd=Path(tmp),
                           timeout=900)
                took_local = time.monotonic() - t1
                status = runner.client.get_run(only_run_id(runner.client, experiment)).info.status
                label = "warm-up" if i == 0 else f"round {i}"
                say(f"{label}: customjob until FINISHED {took_submitted:.1f} s, through the harness {took:.1f} s, "
                    f"local docker {took_local:.1f} s ({status})")
                if i:
                    submitted.append(took_submitted)
                    harnessed.append(took)
                    local.append(took_local)
            steps = breakdown(runner, run, epoch)
    finally:
        stack.cluster.kube.delete_namespace(ns)
        bed.finish()
    c, h, lo = statistics.median(submitted), statistics.median(harnessed), statistics.median(local)
    RESULTS.append(("customjob: mlflow run until FINISHED, median",
                    f"{c:.1f} s over {rounds} (min {min(submitted):.1f})"))
    RESULTS.append(("customjob: ProjectRunner.run, median", f"{h:.1f} s over {rounds} (min {min(harnessed):.1f})"))
    RESULTS.append(("local docker: mlflow run, median", f"{lo:.1f} s over {rounds} (min {min(local):.1f})"))
    RESULTS.append(("customjob / local docker (until FINISHED)", f"{c / lo:.2f}x (target <= 1.10x)"))
    RESULTS.append(("ProjectRunner.run / local docker", f"{h / lo:.2f}x (adds the workload's end and its logs)"))
    for name, at in steps:
        RESULTS.append((f"  last ProjectRunner.run: {name}", "n/a" if at is None else
                        (f"{at:.1f} s" if "build" in name or "delivery" in name else f"at +{at:.1f} s")))
    RESULTS.append(("  last ProjectRunner.run: returned", f"at +{harnessed[-1]:.1f} s"))


EDITS: dict[str, tuple[str, str, str]] = {
    # label: (file, text to find, what to put after it); each edit is a real change to what is built or applied.
    "controller edit": ("crds/controller/customjob_controller/handlers.py", "", "\n# benchmark edit {token}\n"),
    "project edit (train.py)": ("trainer/train.py", "", "\n# benchmark edit {token}\n"),
    "CRD edit (a description)": ("crds/bases/customjob.yaml",
                                 "description: CustomJob runs one training container to completion as a batch/v1 Job.",
                                 " (benchmark edit {token})"),
}
"""The platform developer's loop (user story 2): one edit, then the trainer's e2e test on the kept cluster."""


def _edit(path: Path, find: str, add: str) -> None:
    text = path.read_text()
    if find:
        assert find in text, f"{path}: the text the benchmark edits is gone: {find!r}"
        path.write_text(text.replace(find, find + add, 1))
    else:
        path.write_text(text + add)


def bench_loop(cluster: str, extra: list[str], route: str, rounds: int = 3) -> None:
    """Edit, then green: wall time from the command to the trainer's test passing, with its breakdown.

    Each scenario runs ``rounds`` times and reports its median (and the range): one session's wall swings by
    seconds on two busy cores. Each round of an edit is a new edit on top of the previous one (a new token), so
    every round changes exactly one thing against the cluster as the last session left it; every file is
    restored at the end and one more session (not timed) puts the cluster back.
    """
    only = ["-k", "trainer_runs_through_customjob", *extra]
    pytest_session("loop warm-up (cluster made or reused)", cluster, only)
    originals = {rel: (ROOT / rel).read_text() for rel, _find, _add in EDITS.values()}
    try:
        for label in ("unchanged", *EDITS):
            samples: list[tuple[float, float, float, float, float, float]] = []
            for round_ in range(1, rounds + 1):
                if label in EDITS:
                    rel, find, add = EDITS[label]
                    _edit(ROOT / rel, find, add.format(token=uuid.uuid4().hex[:8]))
                wall, phases = pytest_session(f"loop: {label} (round {round_}/{rounds})", cluster, only)
                build = sum(v for k, v in phases.items() if k.startswith("build ") and k.endswith(" image"))
                deliver = phases.get("deliver images", 0.0)
                roll = phases.get("deploy stack (CRDs, controllers, tracking)", 0.0)
                test = phases.get("test test_trainer_runs_through_customjob", 0.0)
                samples.append((wall, wall - build - deliver - roll - test, build, deliver, roll, test))
            samples.sort()
            wall, start, build, deliver, roll, test = samples[len(samples) // 2]
            RESULTS.append((f"edit-to-green ({route}): {label}",
                            f"{wall:.1f} s wall, median of {rounds} (range {samples[0][0]:.1f}-{samples[-1][0]:.1f}; "
                            f"target <= 25 s): start and checks {start:.1f}, build {build:.1f}, deliver "
                            f"{deliver:.1f}, roll {roll:.1f}, test {test:.1f}"))
    finally:
        for rel, text in originals.items():
            (ROOT / rel).write_text(text)
    pytest_session("loop: back to the checkout as it was (not timed)", cluster, only)


def bench_tier(cluster: str, workers: list[int], extra: list[str]) -> None:
    pytest_session("warm-up session (cluster reused)", cluster, ["-k", "trainer_runs_through_customjob", *extra])
    serial, _ = pytest_session("e2e tier, serial", cluster, extra)
    RESULTS.append(("e2e tier warm, serial", f"{serial:.0f} s"))
    for n in workers:  # as tox runs it: worksteal, so a long test does not hold a queue behind it
        parallel, _ = pytest_session(f"e2e tier, -n {n}", cluster, ["-n", str(n), "--dist", "worksteal", *extra])
        RESULTS.append((f"e2e tier warm, -n {n}", f"{parallel:.0f} s = {parallel / serial:.0%} of serial "
                                                   "(target <= 60 %)"))


def _with_byte_code() -> None:
    """Re-run as tox runs the tiers when this host turns byte code off.

    With ``PYTHONDONTWRITEBYTECODE`` every child ``mlflow run`` compiles MLflow
    and the kubernetes client from source again (seconds per run, on both
    backends), which measures the host, not the harness. tox's envs write byte
    code to ``<env>/pycache``; so does this.
    """
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(sys.prefix) / "pycache"))
        say(f"benchmark: PYTHONDONTWRITEBYTECODE is set; running with byte code in {env['PYTHONPYCACHEPREFIX']}, "
            "as tox does")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)  # noqa: S606 (replacing this process is the point)


def main() -> int:
    _with_byte_code()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="session,loop,runs,tier")
    parser.add_argument("--cluster-name", default="bench-e2e")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", default="2", help="xdist worker counts for the tier, comma-separated")
    parser.add_argument("--loop-rounds", type=int, default=3,
                        help="sessions per loop scenario (the median is reported)")
    parser.add_argument("--loop-routes", default="kind-load,local",
                        help="delivery routes for the loop, comma-separated: kind-load, or a registry setting")
    parser.add_argument("--registry", default=None, help="settings 'registry' for every part (e.g. local)")
    args = parser.parse_args()
    os.environ.pop("CI", None)
    extra = [f"--harness-registry={args.registry}"] if args.registry else []
    parts = args.only.split(",")
    started = time.monotonic()
    if "session" in parts:
        bench_session(args.cluster_name, extra)
    if "runs" in parts:
        bench_runs(args.cluster_name, args.rounds, args.registry)
    if "loop" in parts:
        # Both delivery routes side by side: `kind load` sends whole images, a registry only changed layers.
        routes = args.loop_routes.split(",")
        up = args.cluster_name if {"session", "runs"} & set(parts) else None
        for route in routes:
            if route == "kind-load":
                cluster, route_args, label = args.cluster_name, [], route
            else:
                cluster, route_args = f"{args.cluster_name}-reg", [f"--harness-registry={route}"]
                label = f"registry {route}"
            if up is not None and up != cluster:
                # Each route is timed alone, as a developer runs it: a cluster idling beside the loop's took ~10 %
                # of two cores (2026-12-07, the runs' one: each loop median ~3 s slower with it up).
                down(up)
            bench_loop(cluster, route_args, label, args.loop_rounds)
            up = cluster
    if "tier" in parts:
        bench_tier(args.cluster_name, [int(n) for n in args.workers.split(",")], extra)
    say(f"\n== benchmark results ({time.monotonic() - started:.0f} s in all; registry: {args.registry or 'none'})")
    width = max(len(k) for k, _ in RESULTS)
    for key, value in RESULTS:
        say(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
