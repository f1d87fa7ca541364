"""``python -m harness``: work against a kept cluster by hand.

    python -m harness doctor          preflight checks with fixes
    python -m harness up              cluster + images + CRD/controller + MLflow (reused when warm)
    python -m harness run -P alpha=0.5
                                      the trainer through `mlflow run --backend customjob`, waited for
    python -m harness down            delete the cluster (only one this harness created)
    python -m harness base-image      resolve/build the Python base image, print its tag
    python -m harness node-image ...  the registry-less node image builder (see --help)
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from harness import _exec, baseimage, doctor, toolchain
from harness._errors import HarnessError
from harness.cluster import MARKER_NAME, MARKER_NAMESPACE, forget_cluster, read_host_marker
from harness.kube import Kube
from harness.platform import TRAINER_DIR, PlatformSettings, bring_up_cluster, build_trainer_image, deploy, kind_for
from harness.stack import Stack
from harness.timing import Phases


def _platform_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster-name", default="mlflow-crd-e2e")
    p.add_argument("--node-image", default=None, help="kind node image to use as is")
    p.add_argument("--node-image-mode", choices=("auto", "public", "local"), default="auto")
    p.add_argument("--kind-bin", default=None)
    p.add_argument("--kubectl-bin", default=None)
    p.add_argument("--base-image", default=None)
    p.add_argument("--base-mode", choices=("auto", "public", "local"), default=None)


def _settings(ns: argparse.Namespace, reuse: bool = True) -> PlatformSettings:
    return PlatformSettings(cluster_name=ns.cluster_name, reuse=reuse and not getattr(ns, "no_reuse", False),
                            node_image=ns.node_image, node_image_mode=ns.node_image_mode,
                            kind_bin=ns.kind_bin, kubectl_bin=ns.kubectl_bin)


def _up(ns: argparse.Namespace, phases: Phases) -> Stack:
    base = baseimage.resolve_base_image(mode=ns.base_mode, override=ns.base_image).image
    with phases.phase("build trainer image"):
        build_trainer_image(base)
    platform = bring_up_cluster(_settings(ns), base_image=base, phases=phases)
    return deploy(platform, phases=phases)


def cmd_up(ns: argparse.Namespace) -> int:
    phases = Phases()
    stack = _up(ns, phases)
    print(phases.table())
    print(f"\nkubeconfig:   {stack.cluster.kube.kubeconfig}")
    print(f"MLflow (host): {stack.tracking_uri}")
    print(f"MLflow (pods): {stack.pod_tracking_uri}")
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    from harness.jobs import customjob_for_run, describe_customjob, wait_customjob

    phases = Phases()
    stack = _up(ns, phases)
    kube = stack.cluster.kube
    namespace = ns.namespace
    kube.ensure_namespace(namespace)
    cfg = {
        "kubeconfig": str(kube.kubeconfig), "namespace": namespace,
        "template-path": str(TRAINER_DIR / "customjob_template.yaml"),
        "image-delivery": "kind", "kind-cluster": ns.cluster_name,
        "kind-binary": str(stack.cluster.kind.kind_bin), "tracking-uri": stack.pod_tracking_uri,
    }
    cfg_path = kube.kubeconfig.parent / "backend-config.json"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    experiment = ns.experiment or f"harness-{uuid.uuid4().hex[:6]}"
    argv = [sys.executable, "-m", "mlflow", "run", str(TRAINER_DIR), "--backend", "customjob",
            "--backend-config", str(cfg_path), "--experiment-name", experiment]
    for p in ns.param:
        argv += ["-P", p]
    with phases.phase("mlflow run (submit)"):
        _exec.run(argv, extra_env={"MLFLOW_TRACKING_URI": stack.tracking_uri}, capture=False, timeout=1800)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    run = client.search_runs([exp.experiment_id], max_results=1)[0]
    cj = customjob_for_run(kube, namespace, run.info.run_id)
    if cj is None:
        raise HarnessError(f"no CustomJob found for run {run.info.run_id}")
    with phases.phase("run (CustomJob)"):
        done = wait_customjob(kube, namespace, cj["metadata"]["name"], timeout=ns.timeout)
    print(phases.table())
    print(f"\nCustomJob {namespace}/{cj['metadata']['name']}: {describe_customjob(done)}")
    url = f"{stack.tracking_uri}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}"
    print(f"MLflow run {run.info.run_id}: {url}")
    return 0 if done["status"]["phase"] == "Succeeded" else 1


def cmd_down(ns: argparse.Namespace) -> int:
    kind = kind_for(_settings(ns))
    if not kind.exists():
        print(f"no kind cluster named {ns.cluster_name}")
        return 0
    ours = read_host_marker(ns.cluster_name) is not None
    if not ours:
        try:
            kind.export_kubeconfig()
            kube = Kube(kind.kubeconfig, toolchain.resolve_kubectl(ns.kubectl_bin))
            ours = kube.read_config_map(MARKER_NAMESPACE, MARKER_NAME) is not None
        except Exception:  # unreachable API: cannot prove it is ours
            ours = False
    if not ours and not ns.force:
        raise HarnessError(f"cluster {ns.cluster_name} was not created by this harness; not deleting it "
                           "(--force to delete anyway)")
    kind.delete()
    forget_cluster(ns.cluster_name)
    print(f"deleted {ns.cluster_name}")
    return 0


def cmd_doctor(ns: argparse.Namespace) -> int:
    findings = doctor.run_checks(public_node_image=toolchain.PUBLIC_NODE_IMAGE)
    print(doctor.render(findings))
    return 1 if any(f.level == "fail" for f in findings) else 0


def cmd_base_image(ns: argparse.Namespace) -> int:
    choice = baseimage.resolve_base_image(mode=ns.base_mode, override=ns.base_image,
                                          log=lambda m: print(m, file=sys.stderr))
    print(choice.image)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["node-image"]:
        from harness.nodeimage.__main__ import main as node_main

        return int(node_main(args[1:]) or 0)
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="create/reuse the cluster and deploy the stack")
    _platform_args(p)
    p.add_argument("--no-reuse", action="store_true")
    p.set_defaults(fn=cmd_up)
    p = sub.add_parser("run", help="run the trainer through a CustomJob on the cluster")
    _platform_args(p)
    p.add_argument("-P", "--param", action="append", default=[], help="MLproject parameter NAME=VALUE")
    p.add_argument("--namespace", default="default")
    p.add_argument("--experiment", default=None)
    p.add_argument("--timeout", type=float, default=1800)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("down", help="delete the cluster (only one the harness created)")
    _platform_args(p)
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_down)
    p = sub.add_parser("doctor", help="preflight checks")
    p.set_defaults(fn=cmd_doctor)
    p = sub.add_parser("base-image", help="resolve or build the Python base image; print its tag")
    p.add_argument("--base-image", default=None)
    p.add_argument("--base-mode", choices=("auto", "public", "local"), default=None)
    p.set_defaults(fn=cmd_base_image)
    sub.add_parser("node-image", help="the registry-less kind node image builder (python -m harness node-image -h)")
    ns = parser.parse_args(args)
    try:
        return int(ns.fn(ns))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
