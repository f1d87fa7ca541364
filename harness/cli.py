"""``python -m harness`` (also ``mlflow-crd-harness``): the test bed by hand, with the plugin's settings.

    python -m harness doctor           preflight checks with fixes
    python -m harness config           every setting, its value and where it came from
    python -m harness up               cluster + images + stack (reused when warm); prints how to reach them
    python -m harness run [PROJECT] -P alpha=0.5
                                       a configured project through `mlflow run --backend customjob`, waited for
    python -m harness down             delete the kind cluster (only one this harness created)
    python -m harness stub DIR         copy the stub CustomJob stack's manifests to DIR (to overlay them)
    python -m harness registry up|attach|down   the local registry on 127.0.0.1:5001 (kind's pattern)
    python -m harness base-image       resolve/build the Python base image, print its tag
    python -m harness node-image ...   the registry-less node image builder (see its --help)

Every flag below is also a key of [tool.mlflow-crd-harness] and an env var
HARNESS_<KEY>, with the same defaults as the pytest options (--harness-<key>).
Exit codes: 0 ok, 1 a run or job failed, 2 usage or setup error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness import baseimage, doctor, hostenv, toolchain
from harness._errors import HarnessError
from harness._version import __version__
from harness.clusters import provider_class
from harness.settings import OPTIONS, Option, Settings, load_settings
from harness.timing import Phases

if TYPE_CHECKING:
    from harness.stack import Stack
    from harness.testbed import Testbed

__all__ = ["main"]

_EXIT_OK, _EXIT_FAILED, _EXIT_SETUP = 0, 1, 2


def _add_setting(p: argparse.ArgumentParser | argparse._ArgumentGroup, opt: Option, *, shown: bool) -> None:
    """One settings flag; its help (one default, the env name) only in ``--help-all``."""
    help_text = f"{opt.help} [env {opt.env}; default: {opt.describe_default()}]" if shown else argparse.SUPPRESS
    if opt.kind == "bool" and opt.key.startswith("no-"):  # no --no-no-skip
        p.add_argument(opt.cli_flag, dest=opt.dest, default=None, action="store_const", const=True, help=help_text)
    elif opt.kind == "bool":
        p.add_argument(opt.cli_flag, dest=opt.dest, default=None, action=argparse.BooleanOptionalAction,
                       help=help_text)
    elif opt.kind == "choice":
        p.add_argument(opt.cli_flag, dest=opt.dest, default=None, choices=opt.choices, help=help_text)
    else:
        p.add_argument(opt.cli_flag, dest=opt.dest, default=None, metavar=opt.key.upper().replace("-", "_"),
                       help=help_text)


def _settings(ns: argparse.Namespace) -> Settings:
    explicit = {o.key: getattr(ns, o.dest, None) for o in OPTIONS}
    return load_settings(root=Path.cwd(), explicit=explicit)


def _up(ns: argparse.Namespace) -> tuple[Testbed, Stack, Phases]:
    """The test bed, brought up by hand: never finished here, so a kind cluster stays for the next command."""
    from harness.testbed import Testbed

    phases = Phases(sink=lambda line: print(line, file=sys.stderr, flush=True))
    bed = Testbed(_settings(ns), phases=phases, log=phases.log)
    try:
        bed.start()
    except BaseException:
        # The ending on this path too: what ran, and what is left (start() has finished the cluster by now).
        print(phases.table(), file=sys.stderr)
        cluster = bed.cluster
        left = ("no cluster was created" if cluster is None
                else f"cluster {cluster.name}: left as found" if not cluster.created
                else f"cluster {cluster.name}: kept (python -m harness down --cluster-name {cluster.name})"
                if bed.kept else f"cluster {cluster.name}: deleted")
        print(f"bring-up failed; {left}", file=sys.stderr)
        raise
    assert bed.stack is not None  # start() returns only with the stack deployed
    return bed, bed.stack, phases


def _write_manifest(bed: Testbed) -> None:
    from harness import manifest

    path = manifest.write(bed.settings.state_dir / "run-manifest.json", bed.manifest)
    print(f"run manifest:     {path} (re-run with --from-manifest {path})")


def cmd_up(ns: argparse.Namespace) -> int:
    bed, stack, phases = _up(ns)
    print(phases.table())
    _write_manifest(bed)
    print(f"\nexport KUBECONFIG={stack.cluster.kube.kubeconfig}")
    print(f"MLflow UI (host): {stack.tracking_uri}")
    print(f"MLflow (pods):    {stack.pod_tracking_uri}")
    if stack.forward is not None:
        print(f"port-forward:     pid {stack.forward.pid} keeps the UI reachable; stop it: kill {stack.forward.pid}")
    if provider_class(stack.cluster.provider).deletes_clusters:
        print(f"delete it:        python -m harness down --cluster-name {stack.cluster.name}")
    return _EXIT_OK


def cmd_run(ns: argparse.Namespace) -> int:
    from harness import _exec
    from harness.clusters import MANAGED_BY, MANAGED_BY_LABEL
    from harness.runs import ProjectRunner
    from harness.workloads import state

    # Usage mistakes stop before any cluster work: an unknown project, a parameter without '=' or one the
    # entry point does not declare (exit 2, like any usage error).
    bad = [p for p in ns.param if "=" not in p]
    if bad:
        raise HarnessError(f"-P {bad[0]!r}: give parameters as NAME=VALUE (e.g. -P alpha=0.5)")
    params = dict(p.split("=", 1) for p in ns.param)
    settings = _settings(ns)
    spec = settings.project(ns.project) if ns.project else None
    if spec is None and not settings.projects:
        raise HarnessError("no project is configured: name a project directory (python -m harness run DIR) or "
                           "add [[tool.mlflow-crd-harness.projects]]")
    (spec or settings.projects[0]).check_params(params)
    bed, stack, phases = _up(ns)
    try:
        settings = bed.settings
        stack.cluster.kube.ensure_namespace(ns.namespace, labels={MANAGED_BY_LABEL: MANAGED_BY})
        workdir = settings.state_dir / "runs"
        workdir.mkdir(parents=True, exist_ok=True)
        def record(project: str, ref: str, image_id: str | None) -> None:
            bed.manifest.setdefault("images", {})[f"project {project}"] = {"ref": ref, "id": image_id}

        runner = ProjectRunner(stack, ns.namespace, workdir, projects=settings.projects,
                               job_timeout=settings.runs.job_timeout, on_image=record,
                               workload_kinds=settings.workloads)
        kind = (spec or runner.spec(None)).workload
        with phases.phase(f"project run (mlflow run -> {kind.kind} -> MLflow run ended)"):
            run = runner.run(spec, **params)
        print(phases.table())
        _write_manifest(bed)
        print(f"\n{kind.kind} {run.namespace}/{run.name}: {state.describe(kind, run.workload)} "
              f"(run closed by the {run.closed_by}; {len(run.logs)} log file(s) attached)")
        print(f"MLflow run {run.run_id}: {run.status}  {stack.tracking_uri}/#/experiments/"
              f"{run.client.get_run(run.run_id).info.experiment_id}/runs/{run.run_id}")
    finally:
        if stack.forward is not None:  # the run is over: nothing of ours keeps running
            _exec.stop(stack.forward)
    return _EXIT_OK if run.status == "FINISHED" else _EXIT_FAILED


def cmd_manifest(ns: argparse.Namespace) -> int:
    """Compare two run manifests: every version and digest that decides what runs."""
    from harness import manifest

    recorded, now = manifest.load(Path(ns.recorded)), manifest.load(Path(ns.now))
    diffs = manifest.compare(recorded, now, images_in_both_only=not ns.all_images)
    both = sorted(set(recorded.get("images") or {}) & set(now.get("images") or {}))
    for line in diffs:
        print(f"differs: {line}")
    print(f"{ns.recorded} vs {ns.now}: {'reproduced' if not diffs else f'{len(diffs)} difference(s)'} "
          f"(harness, kind, Kubernetes, node image, base image; images in both: {', '.join(both) or 'none'})")
    return _EXIT_OK if not diffs else _EXIT_FAILED


def cmd_down(ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    if not provider_class(settings.cluster.provider).deletes_clusters:
        raise HarnessError(f"down deletes clusters the harness creates; cluster = {settings.cluster.provider!r} is "
                           "never deleted by the harness")
    # The lock a session holds from bring-up to teardown: a cluster is never deleted under a running session
    # (or one still creating it). By default `down` does not wait; --wait SECONDS does.
    from harness.sessionlock import ClusterBusy, SessionLock

    lock = SessionLock(settings.cluster_name, timeout=ns.wait, log=print if ns.wait > 0 else lambda _line: None)
    try:
        lock.acquire()
    except ClusterBusy:
        raise HarnessError(f"cluster {settings.cluster_name} is in use by {lock.holder()}; not deleting it under a "
                           f"running session. Let that session end, or wait for it: down --wait SECONDS") from None
    try:
        return _down(settings, force=ns.force)
    finally:
        lock.release()


def _down(settings: Settings, *, force: bool) -> int:
    from harness.clusters.kind import delete_cluster, is_ours
    from harness.clusters.kind_cli import KindCluster

    row = settings.cluster.release
    kind_bin = toolchain.resolve_kind(settings.tools.kind_bin, kubernetes_version=row)
    kind = KindCluster(settings.cluster_name, kind_bin, settings.state_dir / "clusters" / settings.cluster_name)
    if not kind.exists():
        print(f"no kind cluster named {settings.cluster_name}")
        return _EXIT_OK
    kubectl = toolchain.resolve_kubectl(settings.tools.kubectl_bin, kubernetes_version=row)
    if not is_ours(kind, kubectl) and not force:
        raise HarnessError(f"cluster {settings.cluster_name} was not created by this harness; not deleting it "
                           "(--force to delete anyway)")
    delete_cluster(kind)
    print(f"deleted {settings.cluster_name}")
    return _EXIT_OK


def cmd_config(ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    print(f"# project root: {settings.root}")
    print(settings.describe())
    print("\n# resolved:")
    for spec in settings.projects:
        print(f"# project {spec.name}: {spec.path} (template {spec.template}, workload {spec.workload.name}, "
              f"params {dict(spec.params)})")
    for kind in settings.workloads:
        print(f"# workload {kind.name}: {kind.kind} ({kind.api_version}), run closed by the {kind.closes_run}")
    for image in settings.images:
        source = (f"go build {image.go.package} of {image.go.module}@{image.go.version}" if image.go
                  else str(image.context))
        public = f", or the published {image.public}" if image.public else ""
        print(f"# image {image.name}: {image.repository} from {source}{public} (deliver={image.deliver})")
    print("\n# this machine's variables (harness.hostenv; not project settings):")
    for var in hostenv.HOST_VARS:
        value = hostenv.get(var.name)
        print(f"# {var.name}={value or ''}  ({'set' if value else 'unset: ' + var.default})")
    return _EXIT_OK


def cmd_stub(ns: argparse.Namespace) -> int:
    from harness import assets

    print(assets.materialise_stub(Path(ns.dest).resolve()))
    return _EXIT_OK


def cmd_registry(ns: argparse.Namespace) -> int:
    """The harness's local registry, for kind clusters the harness did not create (kind's documented pattern)."""
    from harness.registry import LocalRegistry, ensure_registry_image

    if ns.action == "down":
        LocalRegistry(image="").remove()
        print("local registry removed")
        return _EXIT_OK
    reg = LocalRegistry(ensure_registry_image())
    reg.ensure_running()
    if ns.action == "attach":
        if not ns.cluster or not ns.kubeconfig:
            raise HarnessError("registry attach needs --cluster NAME and --kubeconfig FILE of that kind cluster")
        reg.attach_to_cluster(ns.cluster, toolchain.resolve_kind(None), Path(ns.kubeconfig))
    print(reg.host)
    return _EXIT_OK


def cmd_doctor(ns: argparse.Namespace) -> int:
    settings = _settings(ns)  # a malformed file or a bad value is a usage error (exit 2) here too
    findings = doctor.run_checks(public_node_image=toolchain.PUBLIC_NODE_IMAGE, settings=settings)
    print(doctor.render(findings))
    return _EXIT_FAILED if any(f.level == "fail" for f in findings) else _EXIT_OK


def cmd_base_image(ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    choice = baseimage.resolve_base_image(mode=settings.build.base_mode, override=settings.build.base_image,
                                          log=lambda m: print(m, file=sys.stderr))
    print(choice.image)
    return _EXIT_OK


def build_parser(*, help_all: bool = False) -> argparse.ArgumentParser:
    """The CLI; every command that takes settings lists them in ``--help-all`` (``-h`` stays short)."""
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mlflow-crd-harness {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)

    def command(name: str, fn: object, help_text: str, *, settings: bool = True) -> argparse.ArgumentParser:
        epilog = None
        if settings and not help_all:
            epilog = (f"Settings: every [tool.mlflow-crd-harness] key K is also a flag --K and the variable "
                      f"HARNESS_K (e.g. --cluster-name, HARNESS_CLUSTER_NAME). All {len(OPTIONS)} of them: "
                      f"python -m harness {name} --help-all")
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog)
        p.set_defaults(fn=fn)
        if settings:
            p.add_argument("--help-all", action="store_true", help="show every settings flag with its default")
            g = p.add_argument_group("settings (also [tool.mlflow-crd-harness] keys and HARNESS_* env vars)")
            for opt in OPTIONS:
                _add_setting(g, opt, shown=help_all)
        return p

    command("up", cmd_up, "create/reuse the cluster, build and deliver images, deploy the stack")
    p = command("run", cmd_run, "run a project through a CustomJob on the cluster and wait for it")
    p.add_argument("project", nargs="?", default=None, help="configured project name or a project directory "
                   "(default: the first configured project)")
    p.add_argument("-P", "--param", action="append", default=[], help="MLproject parameter NAME=VALUE")
    p.add_argument("--namespace", default="default", help="namespace of the CustomJob")
    p = command("down", cmd_down, "delete the kind cluster (only one the harness created)")
    p.add_argument("--force", action="store_true", help="delete even a cluster without the harness's marker")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for a session using the cluster to end (default: refuse at once)")
    command("config", cmd_config, "print every setting, its value and its source")
    p = command("stub", cmd_stub, "copy the stub CustomJob stack's manifests to DEST (to overlay them)",
                settings=False)
    p.add_argument("dest", help="directory to (re)write")
    p = command("registry", cmd_registry, "the local registry on 127.0.0.1:5001: up, attach (wire a kind cluster "
                "to it: network, containerd hosts.toml, kube-public/local-registry-hosting), down", settings=False)
    p.add_argument("action", choices=("up", "attach", "down"))
    p.add_argument("--cluster", help="kind cluster to attach")
    p.add_argument("--kubeconfig", help="that cluster's kubeconfig")
    p = command("manifest", cmd_manifest, "compare two run manifests (exit 1 if any version or digest differs)",
                settings=False)
    p.add_argument("recorded", help="the manifest of the first run")
    p.add_argument("now", help="the manifest of the run that should reproduce it")
    p.add_argument("--all-images", action="store_true", help="an image only one run built is a difference too")
    command("doctor", cmd_doctor, "preflight checks with fixes, for these settings (exit 1 if one fails)")
    command("base-image", cmd_base_image, "resolve or build the Python base image; print its tag")
    sub.add_parser("node-image", help="the registry-less kind node image builder (python -m harness node-image -h)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["node-image"]:
        from harness.nodeimage.__main__ import main as node_main

        return int(node_main(args[1:], prog="python -m harness node-image") or 0)
    if "--help-all" in args:
        build_parser(help_all=True).parse_args([a for a in args if a != "--help-all"] + ["--help"])
    ns = build_parser().parse_args(args)
    from harness import interrupts

    installed = interrupts.install(lambda line: print(line, file=sys.stderr, flush=True))
    try:
        return int(ns.fn(ns))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_SETUP
    except KeyboardInterrupt:
        installed.flush()  # what the handler saw ("SIGINT: stopping"), said first, from this thread
        print(f"interrupted ({installed.interrupted or 'SIGINT'})", file=sys.stderr)
        return 130
    finally:
        installed.restore()
