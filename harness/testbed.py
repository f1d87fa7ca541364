"""The test bed: a cluster, the configured images and the stack, brought up and torn down as one resource.

``with Testbed(settings) as bed:`` gives ``bed.cluster`` and ``bed.stack``;
the pytest fixtures and ``python -m harness up`` use the same class, so a
cluster kept by a test session is the one the CLI works against. The cluster
starts while the images build (they do not depend on each other); a new kind
cluster takes the stack's images while kubeadm still starts its control plane
(:class:`harness.clusters.kind.KindProvider` ``preload``); then delivery is
verified on every node and the stack deployed. If anything after the cluster's
start fails, the cluster is finished like at the end of a session (deleted
when this session created it, unless kept), so a failed build never leaves a
cluster behind. An interrupt while they run stops the image builds at once
(:func:`harness.images.cancel_builds`); ``kind create`` gets the terminal's
Ctrl-C itself, and a cluster it finishes anyway is deleted with the rest.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from harness import _exec, assets, baseimage, images, leftovers, manifest, toolchain
from harness._waiting import Probe, wait_for
from harness.clusters import Cluster, ClusterProvider, provider_class
from harness.delivery import Route
from harness.sessionlock import SessionLock
from harness.settings import ImageSpec, Settings
from harness.stack import Stack, deploy_stack, render_stack
from harness.timing import Phases
from harness.workloads import stub

if TYPE_CHECKING:
    from harness.registry import LocalRegistry

__all__ = ["Testbed", "jobs_still_held", "keep_cluster"]

TRACKING_REPOSITORY = "mlflow-server"

T = TypeVar("T")


def jobs_still_held(kube: Any) -> Probe[None]:
    """The controller's Jobs that are going (deleted, or in a namespace being deleted) but still hold its
    outcome finalizer: while there are any, the controller must stay."""
    terminating = {n.metadata.name for n in kube.core.list_namespace().items if n.metadata.deletion_timestamp}
    jobs = kube.batch.list_job_for_all_namespaces(label_selector=stub.CUSTOMJOB_JOB_LABEL).items
    held = [f"{j.metadata.namespace}/{j.metadata.name}" for j in jobs
            if stub.OUTCOME_FINALIZER in (j.metadata.finalizers or ())
            and (j.metadata.deletion_timestamp or j.metadata.namespace in terminating)]
    return Probe(not held, f"held by the controller: {', '.join(sorted(held)) or 'none'}")


def keep_cluster(settings: Settings, *, failed: bool) -> bool:
    """The ``keep-cluster`` policy: auto keeps locally and deletes under CI."""
    policy = settings.cluster.keep
    if policy == "auto":  # the provider's own default (kind: kept locally, deleted under CI)
        return provider_class(settings.cluster.provider).keep_by_default(settings)
    return policy == "always" or (policy == "on-failure" and failed)


def _node_count(cluster: Cluster) -> int | None:
    """Nodes of the cluster, for the manifest; None where listing nodes is not allowed (an existing cluster)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return len(cluster.kube.core.list_node().items)
    except ApiException:
        return None


@dataclass
class Testbed:
    """Cluster ∥ image builds, then delivery and the stack; a context manager that cleans up after itself."""

    settings: Settings
    phases: Phases = field(default_factory=Phases)
    log: Callable[[str], None] = print
    cluster: Cluster | None = field(default=None, init=False)
    stack: Stack | None = field(default=None, init=False)
    built: dict[str, images.BuiltImage] = field(default_factory=dict, init=False)
    kubectl_bin: Path | None = field(default=None, init=False)
    registry: LocalRegistry | None = field(default=None, init=False)
    """The harness's local registry when settings registry = local (kept running after the session)."""
    base: baseimage.BaseChoice | None = field(default=None, init=False)
    manifest: dict[str, Any] = field(default_factory=dict, init=False)
    """What this test bed runs with (:mod:`harness.manifest`), filled in once it is up."""
    _provider: ClusterProvider | None = field(default=None, init=False, repr=False)
    _lock: SessionLock | None = field(default=None, init=False, repr=False)
    kept: bool = field(default=False, init=False)
    """After :meth:`finish`: whether the cluster was kept."""
    _build_failed: bool = field(default=False, init=False, repr=False)
    _stack_dirs: list[Path] = field(default_factory=list, init=False, repr=False)
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:8], init=False)
    """This session's id: the label of its test namespaces, its Lease on a shared cluster."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(failed=exc is not None)

    def start(self) -> Self:
        """Bring everything up; whatever fails after the session lock is held is finished at once."""
        s = self.settings
        name, docker_optional = provider_class(s.cluster.provider).lock_key(s)
        recorded = self._recorded_manifest()  # before any work: a run that cannot be reproduced stops here
        leftovers.reap(self.log)  # what a killed session left: its servers, port-forwards, build containers
        with self.phases.phase("session lock") as note:
            # Keyed by the Docker engine (every user's kind clusters); a provider may say it can do without Docker.
            self._lock = SessionLock(name, log=self.log, docker_optional=docker_optional).acquire()
            note["note"] = f"cluster {name} is this session's until it ends"
        try:
            self._start()
            self.manifest = self._describe()
            if recorded is not None:
                self._check_reproduces(recorded)
        except BaseException:
            self.finish(failed=True, build_failed=self._build_failed)
            raise
        return self

    def _recorded_manifest(self) -> dict[str, Any] | None:
        """The ``from-manifest`` record, after checking this interpreter can reproduce it."""
        path = self.settings.general.from_manifest
        if path is None:
            return None
        recorded = manifest.load(path)
        diffs = manifest.environment_differences(recorded)
        if diffs:
            wanted = recorded.get("harness", {})
            pins = " ".join(f"{k}=={v}" for k, v in (wanted.get("python", {}).get("packages") or {}).items())
            raise manifest.ManifestError(
                f"from-manifest {path}: this Python environment cannot reproduce that run:\n  "
                + "\n  ".join(diffs) + f"\nfix: run under Python {wanted.get('python', {}).get('python')} with "
                f"pip install {pins}")
        self.log(f"manifest: reproducing {path} (harness {recorded['harness'].get('version')})")
        return recorded

    def _check_reproduces(self, recorded: dict[str, Any]) -> None:
        diffs = manifest.compare(recorded, self.manifest, images_in_both_only=True)
        if diffs:
            raise manifest.ManifestError(
                f"from-manifest {self.settings.general.from_manifest}: this machine built or found something else:\n  "
                + "\n  ".join(diffs) + "\nfix: load the recorded images (docker load) or the recorded node "
                "image, or re-run without --harness-from-manifest to record a new baseline")
        self.log(f"manifest: reproduced {self.settings.general.from_manifest}: kind, Kubernetes, node image, base "
                 f"image and {len(self.manifest.get('images', {}))} image digest(s) match")

    def _describe(self) -> dict[str, Any]:
        """The run manifest of this test bed: versions and digests of everything that decides what runs."""
        from harness import dockercli
        from harness._version import __version__

        s, cluster = self.settings, self.cluster
        assert cluster is not None
        assert self.stack is not None
        assert self.base is not None
        out: dict[str, Any] = {
            "harness": {"version": __version__, "python": manifest.python_environment(),
                        "lock_sha256": manifest.lock_sha256(Path(__file__).resolve().parents[1])},
            # The modes as resolved ("auto" would let a re-run pick the other source on another machine).
            "settings": {**{k: s[k] for k in manifest.PINNED_SETTINGS},
                         **({"base-mode": self.base.source} if self.base.source != "override" else {})},
            "kubernetes": {"server": cluster.kube.server_version()},
            "base_image": {"ref": self.base.image, "id": dockercli.image_id(self.base.image),
                           "source": self.base.source},
            "images": {name: {"id": b.id, "tag": b.tag} for name, b in self.built.items()},
            "cluster": {"provider": cluster.provider, "nodes": _node_count(cluster)},
        }
        assert self._provider is not None
        for key, value in self._provider.describe(cluster, s).items():
            out[key] = {**out.get(key, {}), **value}
        return out

    def _start(self) -> None:
        s = self.settings
        assets.materialise_stub(s.state_dir / "stub")
        with self.phases.phase("tools (kubectl)"):
            self.kubectl_bin = toolchain.resolve_kubectl(s.tools.kubectl_bin, log=self.log,
                                                         kubernetes_version=s.cluster.kubernetes_version)
        with self.phases.phase("base image") as note:
            base = baseimage.resolve_base_image(mode=s.build.base_mode, override=s.build.base_image, log=self.log)
            note["note"] = f"{base.source}: {base.image}"
        self.base = base
        specs = list(s.images)
        self._stack_dirs = self._check_stack_uses_the_images(specs)
        if s.stack.tracking == "in-cluster":
            specs.append(ImageSpec(name="MLflow server", context=assets.tracking_server_context(),
                                   repository=TRACKING_REPOSITORY))

        def build(spec: ImageSpec) -> images.BuiltImage:
            with self.phases.phase(f"build {spec.name} image") as note:
                built = images.build_spec(spec, base_image=base.image, log=self.log)
                note["note"] = built.summary()
                return built

        # The registry container images go through: the harness's (registry = local), or, where the provider wires
        # registries into its nodes, the one this engine publishes on a loopback registry = localhost:PORT.
        from harness.registry.wiring import loopback_port

        registry_at = s.build.registry
        adopt = provider_class(s.cluster.provider).wires_registries and loopback_port(registry_at) is not None

        def registry() -> LocalRegistry | None:
            from harness.registry import LocalRegistry, ensure_registry_image

            if adopt and registry_at is not None:
                with self.phases.phase("registry container") as note:
                    reg = LocalRegistry.serving(registry_at, log=self.log)
                    note["note"] = f"{reg.host}: {reg.name}"
                    return reg
            if s.build.registry != "local":
                return None
            with self.phases.phase("local registry") as note:
                reg = LocalRegistry(ensure_registry_image(log=self.log), log=self.log)
                created = reg.ensure_running()
                note["note"] = f"{reg.host} ({'started' if created else 'running'})"
                return reg

        f_images: dict[str, Future[images.BuiltImage]] = {}

        def preload(route: Route) -> None:
            """The images the stack runs, into the nodes while kind still starts the control plane."""
            wanted = [sp for sp in specs if sp.deliver]
            built = [f_images[sp.name].result() for sp in wanted]  # a failed build ends this; it is reported
            with self.phases.phase("deliver images beside kind create") as note:
                note["note"] = ", ".join(self._deliver([b.tag for b in built], route))

        def cluster() -> Cluster:
            assert self.kubectl_bin is not None
            # Not with a registry container: a session with one delivers through it (attached after creation).
            early = preload if s.build.registry != "local" and not adopt else None
            provider = provider_class(s.cluster.provider).from_settings(s, kubectl_bin=self.kubectl_bin, log=self.log,
                                                                  phases=self.phases, preload=early,
                                                                  session=self.session)
            self._provider = provider
            with self.phases.phase("cluster") as note:
                found = provider.start()
                note["note"] = f"{found.provider}: {'created' if found.created else 'reused'} {found.name}"
                return found

        errors: list[BaseException] = []

        def settle(fut: Future[T]) -> T | None:
            """The result, or None with the error kept: every branch settles before any is acted on."""
            try:
                return fut.result()
            except BaseException as exc:
                if not fut.done():
                    # Interrupted while waiting (Ctrl-C, SIGTERM reach the main thread only): stop the builds
                    # now, or their threads would run them to the end before the teardown could start.
                    stopped = images.cancel_builds()
                    if stopped:
                        self.log(f"images: {type(exc).__name__}: stopping {stopped} build(s) in flight")
                errors.append(exc)
                return None

        def stop_the_cluster_if_failed(fut: Future[images.BuiltImage]) -> None:
            """A failed build ends the bring-up: a cluster still being created is not waited for."""
            if not fut.cancelled() and fut.exception() is not None:
                from harness.clusters.kind_cli import abort_creates

                self._build_failed = True
                if abort_creates():
                    self.log("cluster: an image build failed; stopping kind create (the half-made cluster is "
                             "deleted)")

        with ThreadPoolExecutor(max_workers=2 + len(specs)) as pool:
            try:
                f_images.update({spec.name: pool.submit(build, spec) for spec in specs})  # before the preload
                f_cluster, f_registry = pool.submit(cluster), pool.submit(registry)
                for fut in f_images.values():
                    fut.add_done_callback(stop_the_cluster_if_failed)
                self.built = {name: b for name, fut in f_images.items() if (b := settle(fut)) is not None}
                self.cluster = settle(f_cluster)
                self.registry = settle(f_registry)
            except BaseException:
                # An interrupt outside settle(): the pool's exit waits for every thread, so a build left running
                # would hold the session for its whole length (a 10-minute RUN step, say). Stop them first.
                images.cancel_builds()
                raise
        if errors:
            raise errors[0]
        if self.registry is not None:
            self._attach_registry(self.registry)
        if s.cluster.extended_resources is not None:
            from harness.clusters import noderesources

            assert self.cluster is not None
            with self.phases.phase("advertise extended resources") as note:
                done = noderesources.advertise(self.cluster.kube, s.cluster.extended_resources, log=self.log)
                note["note"] = "; ".join(f"{n}: {', '.join(f'{k}={v}' for k, v in r.items())}" for n, r in done.items())
        self.stack = self._deploy(specs)

    def _attach_registry(self, reg: LocalRegistry) -> None:
        """Route images through the registry container, wired in by the provider where its nodes need it."""
        assert self.cluster is not None
        assert self._provider is not None
        with self.phases.phase("attach registry"):
            self.cluster = self._provider.attach_registry(self.cluster, reg)

    def _deploy(self, specs: list[ImageSpec]) -> Stack:
        s, cluster = self.settings, self.cluster
        assert cluster is not None
        with self.phases.phase("deliver images") as note:
            wanted = [sp for sp in specs if sp.deliver]
            refs = dict(zip([sp.repository for sp in wanted],
                            self._deliver([self.built[sp.name].tag for sp in wanted], cluster.images), strict=True))
            note["note"] = ", ".join(refs.values())
        stack_dirs = self._stack_dirs
        tracking_image = refs.pop(TRACKING_REPOSITORY, None)
        with self.phases.phase("deploy stack (CRDs, controllers, tracking)") as note:
            stack = deploy_stack(cluster, stack_dirs=stack_dirs, images=refs, tracking=s.stack.tracking,
                                 tracking_image=tracking_image, tracking_pod_uri=s.stack.tracking_pod_uri,
                                 timeout=s.stack.deploy_timeout, log=self.log, cluster_objects=s.cluster.objects)
            note["note"] = "applied" if stack.redeployed else "unchanged (warm)"
        return stack

    def _check_stack_uses_the_images(self, specs: list[ImageSpec]) -> list[Path]:
        """The stack's kustomize dirs, rendered once before any build or cluster: an image to deliver that no
        container uses (a misspelt ``repository``) stops the session now, not after minutes of bring-up."""
        assert self.kubectl_bin is not None
        kubectl = self.kubectl_bin
        with self.phases.phase("check the stack") as note:
            dirs = [self._stack_dir(d) for d in self.settings.stack.entries]
            wanted = {sp.repository: f"{sp.repository}:to-be-built" for sp in specs if sp.deliver}
            render_stack(lambda d: _exec.run([kubectl, "kustomize", str(d)], timeout=120).stdout, dirs, wanted)
            note["note"] = f"{len(dirs)} kustomize dir(s) use every image to deliver ({len(wanted)})"
        return dirs

    def _stack_dir(self, entry: str) -> Path:
        """A ``stack`` entry as a kustomize directory: the stub, a stack preset (materialised), or a path."""
        from harness import stacks

        if entry == "stub":
            return assets.stub_root()
        preset = stacks.PRESETS.get(entry)
        if preset is not None:
            with self.phases.phase(f"stack preset {entry} (manifests from {preset.module}@{preset.version})"):
                return stacks.materialise(preset, self.settings.state_dir / "stacks" / entry, log=self.log)
        return Path(entry)

    def _deliver(self, tags: list[str], route: Route) -> list[str]:
        """Every image onto the cluster by ``route``, side by side; the references pods must use, in order."""
        with ThreadPoolExecutor(max_workers=max(1, len(tags))) as pool:
            return list(pool.map(lambda tag: images.deliver(tag, route, log=self.log), tags))

    def _let_the_controller_release_its_jobs(self, timeout: float = 180) -> None:
        """Before the controller goes: wait until no Job being deleted, or in a namespace being deleted, still
        holds its finalizer.

        Test namespaces are deleted in the background; a Job there keeps the
        controller's finalizer until the controller has recorded its outcome
        (and closed its run). Removing the controller first would leave those
        namespaces Terminating on a cluster that is not ours. The namespace
        controller marks their Jobs deleted only some time after the namespace
        itself, so a Job of a Terminating namespace counts before it is marked.
        """
        assert self.cluster is not None
        kube = self.cluster.kube
        probe = functools.partial(jobs_still_held, kube)

        wait_for(probe, what="the controller to release the Jobs of deleted namespaces", timeout=timeout,
                 interval=2.0, hint="the customjob controller must be running; its log says why it holds them")

    def finish(self, *, failed: bool = False, build_failed: bool = False) -> bool:
        """Tear down what this test bed started; return True if the cluster was kept.

        ``build_failed``: an image build failed during the bring-up, so nothing was
        deployed and no test ran. A cluster this session created is then deleted under
        ``keep-cluster = auto`` too: there is nothing on it to look at. ``always`` and
        ``on-failure`` still keep it; a reused cluster is always left as it was.
        """
        keep = keep_cluster(self.settings, failed=failed)
        if build_failed and self.settings.cluster.keep == "auto":
            keep = False
        self.kept = keep
        try:
            if self.stack is not None and self.stack.forward is not None:
                _exec.stop(self.stack.forward)
            if self.cluster is not None and self._provider is not None:
                if self.cluster.shared and not keep and self.stack is not None:
                    others = self._provider.others()
                    if others:  # the last session out removes the shared stack; this one is not the last
                        self.log(f"stack: left in place: {len(others)} other session(s) on {self.cluster.name} use "
                                 f"it ({', '.join(sorted(others))}); the last one out removes it")
                    else:
                        self._let_the_controller_release_its_jobs()
                        for ns in self.stack.namespaces:
                            self.cluster.kube.delete_namespace(ns)
                with self.phases.phase("finish cluster") as note:
                    note["note"] = self._provider.finish(self.cluster, keep=keep)
        finally:
            if self._lock is not None:  # only after the cluster is settled may another session have it
                self._lock.release()
                self._lock = None
        return keep
