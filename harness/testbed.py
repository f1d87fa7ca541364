"""The test bed: a cluster, the configured images and the stack, brought up and torn down as one resource.

``with Testbed(settings) as bed:`` gives ``bed.cluster`` and ``bed.stack``;
the pytest fixtures and ``python -m harness up`` use the same class, so a
cluster kept by a test session is the one the CLI works against.

The bring-up is an ordered list of steps (:data:`STEPS`), kind's own create
is shaped the same way: each step is a small object with its own phase line,
that records on the test bed what it made and knows how to take it back
(:meth:`Step.undo`). A step that fails is undone with every step before it, in
reverse order, so a failed build never leaves a cluster behind and a failed
deploy never leaves a lock held; :meth:`Testbed.finish` undoes them the same
way at the end of a session. One step runs three things side by side: the
image builds, the cluster's start (a new kind cluster takes the stack's images
while kubeadm still starts its control plane, :class:`~harness.clusters.kind.KindProvider`
``preload``) and the registry container. An interrupt while they run stops
the builds at once (:func:`harness.images.cancel_builds`); ``kind create`` gets
the terminal's Ctrl-C itself, and a cluster it finishes anyway is deleted with
the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from harness import _exec, assets, baseimage, images, imagesource, leftovers, manifest, toolchain
from harness.clusters import Cluster, ClusterProvider, provider_class
from harness.delivery import Route
from harness.sessionlock import SessionLock
from harness.settings import ImageSpec, Settings
from harness.stack import Stack, deploy_stack, jobs_still_held, let_the_controller_release_its_jobs, render_stack
from harness.timing import Phases

if TYPE_CHECKING:
    from harness.registry import LocalRegistry

__all__ = ["STEPS", "Step", "Testbed", "jobs_still_held", "keep_cluster"]

TRACKING_REPOSITORY = "mlflow-server"

T = TypeVar("T")


def keep_cluster(settings: Settings, *, failed: bool) -> bool:
    """The ``keep-cluster`` policy: auto keeps locally and deletes under CI."""
    policy = settings.cluster.keep
    if policy == "auto":  # the provider's own default (kind: kept locally, deleted under CI)
        return provider_class(settings.cluster.provider).keep_by_default(settings)
    return policy == "always" or (policy == "on-failure" and failed)


class Step(Protocol):
    """One part of the bring-up: ``up`` does it (with its own phase line), ``undo`` takes back what ``up`` made.

    ``undo`` also runs after a failed ``up``, so it takes back what is there and
    no more; ``keep`` is the session's ``keep-cluster`` decision.
    """

    name: str
    """Its phase line, and what a failed undo names."""

    def up(self, bed: Testbed) -> None: ...

    def undo(self, bed: Testbed, *, keep: bool) -> None: ...


class _NothingToUndo:
    """A step whose result lives only in this process (a path, a choice): nothing to take back."""

    def undo(self, bed: Testbed, *, keep: bool) -> None:
        del bed, keep


class SessionLockStep:
    """The cluster is this session's until the end: keyed by the Docker engine (every user's kind clusters), or
    by what the provider names when it can do without Docker. Released last, once the cluster is settled."""

    name = "session lock"

    def up(self, bed: Testbed) -> None:
        lock_name, docker_optional = provider_class(bed.settings.cluster.provider).lock_key(bed.settings)
        with bed.phases.phase(self.name) as note:
            bed._lock = SessionLock(lock_name, log=bed.log, docker_optional=docker_optional).acquire()
            note["note"] = f"cluster {lock_name} is this session's until it ends"

    def undo(self, bed: Testbed, *, keep: bool) -> None:
        if bed._lock is not None:  # only after the cluster is settled may another session have it
            bed._lock.release()
            bed._lock = None


class ToolsStep(_NothingToUndo):
    """kubectl for the configured minor (kind is the kind provider's business)."""

    name = "tools (kubectl)"

    def up(self, bed: Testbed) -> None:
        s = bed.settings
        assets.materialise_stub(s.state_dir / "stub")
        with bed.phases.phase(self.name):
            bed.kubectl_bin = toolchain.resolve_kubectl(s.tools.kubectl_bin, log=bed.log,
                                                        kubernetes_version=s.cluster.release)


class BaseImageStep(_NothingToUndo):
    """What the harness's Dockerfiles build FROM: the public Python image, the registry-less one, or yours."""

    name = "base image"

    def up(self, bed: Testbed) -> None:
        with bed.phases.phase(self.name) as note:
            bed.base = baseimage.resolve_base_image(mode=bed.settings.build.base_mode,
                                                    override=bed.settings.build.base_image, log=bed.log)
            note["note"] = f"{bed.base.source}: {bed.base.image}"


class CheckStackStep(_NothingToUndo):
    """The stack's kustomize dirs, rendered once before any build or cluster: an image to deliver that no
    container uses (a misspelt ``repository``) stops the session now, not after minutes of bring-up."""

    name = "check the stack"

    def up(self, bed: Testbed) -> None:
        from harness import stacks

        kubectl = bed.kubectl_bin
        assert kubectl is not None
        bed.specs = list(bed.settings.images)
        dirs = []
        for entry in bed.settings.stack.entries:
            preset = stacks.PRESETS.get(entry)
            if entry == "stub":
                dirs.append(assets.stub_root())
            elif preset is not None:
                with bed.phases.phase(f"stack preset {entry} (manifests from {preset.module}@{preset.version})"):
                    dirs.append(stacks.materialise(preset, bed.settings.state_dir / "stacks" / entry, log=bed.log))
            else:
                dirs.append(Path(entry))
        with bed.phases.phase(self.name) as note:
            wanted = {sp.repository: f"{sp.repository}:to-be-built" for sp in bed.specs if sp.deliver}
            render_stack(lambda d: _exec.run([kubectl, "kustomize", str(d)], timeout=120).stdout, dirs, wanted)
            note["note"] = f"{len(dirs)} kustomize dir(s) use every image to deliver ({len(wanted)})"
        bed.stack_dirs = dirs
        if bed.settings.stack.tracking == "in-cluster":
            bed.specs.append(ImageSpec(name="MLflow server", context=assets.tracking_server_context(),
                                       repository=TRACKING_REPOSITORY))


class ClusterAndImagesStep:
    """The image builds ∥ the cluster's start ∥ the registry container; undone by finishing the cluster
    (deleted when this session created it, unless kept; a reused or existing one is left as found)."""

    name = "cluster ∥ images"

    def up(self, bed: Testbed) -> None:
        s, base, specs = bed.settings, bed.base, bed.specs
        assert base is not None
        assert bed.kubectl_bin is not None
        kubectl_bin = bed.kubectl_bin
        # The registry container images go through: the harness's (registry = local), or, where the provider
        # wires registries into its nodes, the one this engine publishes on a loopback registry = localhost:PORT.
        from harness.registry.wiring import loopback_port

        registry_at = s.build.registry
        adopt = provider_class(s.cluster.provider).wires_registries and loopback_port(registry_at) is not None

        def build(spec: ImageSpec) -> images.BuiltImage:
            with bed.phases.phase(f"build {spec.name} image") as note:
                built = images.build_spec(spec, base_image=base.image, log=bed.log)
                note["note"] = built.summary()
                return built

        def registry() -> LocalRegistry | None:
            from harness.registry import LocalRegistry, ensure_registry_image

            if adopt and registry_at is not None:
                with bed.phases.phase("registry container") as note:
                    reg = LocalRegistry.serving(registry_at, log=bed.log)
                    note["note"] = f"{reg.host}: {reg.name}"
                    return reg
            if registry_at != "local":
                return None
            with bed.phases.phase("local registry") as note:
                reg = LocalRegistry(ensure_registry_image(log=bed.log), log=bed.log)
                created = reg.ensure_running()
                note["note"] = f"{reg.host} ({'started' if created else 'running'})"
                return reg

        f_images: dict[str, Future[images.BuiltImage]] = {}

        def preload(route: Route) -> None:
            """The images the stack runs, into the nodes while kind still starts the control plane."""
            built = [f_images[sp.name].result() for sp in specs if sp.deliver]  # a failed build ends this
            with bed.phases.phase("deliver images beside kind create") as note:
                note["note"] = ", ".join(bed.deliver([b.tag for b in built], route))

        def cluster() -> Cluster:
            # Not with a registry container: a session with one delivers through it (attached after creation).
            early = preload if registry_at != "local" and not adopt else None
            provider = provider_class(s.cluster.provider).from_settings(s, kubectl_bin=kubectl_bin, log=bed.log,
                                                                        phases=bed.phases, preload=early,
                                                                        session=bed.session)
            bed._provider = provider
            with bed.phases.phase("cluster") as note:
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
                        bed.log(f"images: {type(exc).__name__}: stopping {stopped} build(s) in flight")
                errors.append(exc)
                return None

        def stop_the_cluster_if_failed(fut: Future[images.BuiltImage]) -> None:
            """A failed build ends the bring-up: a cluster still being created is not waited for."""
            if not fut.cancelled() and fut.exception() is not None:
                from harness.clusters.kind_cli import abort_creates

                bed.build_failed = True
                if abort_creates():
                    bed.log("cluster: an image build failed; stopping kind create (the half-made cluster is "
                            "deleted)")

        with ThreadPoolExecutor(max_workers=2 + len(specs)) as pool:
            try:
                f_images.update({spec.name: pool.submit(build, spec) for spec in specs})  # before the preload
                f_cluster, f_registry = pool.submit(cluster), pool.submit(registry)
                for fut in f_images.values():
                    fut.add_done_callback(stop_the_cluster_if_failed)
                bed.built = {name: b for name, fut in f_images.items() if (b := settle(fut)) is not None}
                bed.cluster = settle(f_cluster)
                bed.registry = settle(f_registry)
            except BaseException:
                # An interrupt outside settle(): the pool's exit waits for every thread, so a build left running
                # would hold the session for its whole length (a 10-minute RUN step, say). Stop them first.
                images.cancel_builds()
                raise
        if errors:
            raise errors[0]

    def undo(self, bed: Testbed, *, keep: bool) -> None:
        if bed.cluster is not None and bed._provider is not None:
            with bed.phases.phase("finish cluster") as note:
                note["note"] = bed._provider.finish(bed.cluster, keep=keep)


class AttachRegistryStep(_NothingToUndo):
    """Route images through the registry container, wired in by the provider where its nodes need it (the
    provider's finish takes back what it wired)."""

    name = "attach registry"

    def up(self, bed: Testbed) -> None:
        if bed.registry is None:
            return
        assert bed.cluster is not None
        assert bed._provider is not None
        with bed.phases.phase(self.name):
            bed.cluster = bed._provider.attach_registry(bed.cluster, bed.registry)


class ExtendedResourcesStep(_NothingToUndo):
    """The extended resources the settings give the nodes (they go with the nodes)."""

    name = "advertise extended resources"

    def up(self, bed: Testbed) -> None:
        wanted = bed.settings.cluster.extended_resources
        if wanted is None:
            return
        from harness.clusters import noderesources

        assert bed.cluster is not None
        with bed.phases.phase(self.name) as note:
            done = noderesources.advertise(bed.cluster.kube, wanted, log=bed.log)
            note["note"] = "; ".join(f"{n}: {', '.join(f'{k}={v}' for k, v in r.items())}" for n, r in done.items())


class DeliveryStep(_NothingToUndo):
    """Every image to deliver onto the cluster by its route, verified there (kind: on every node)."""

    name = "deliver images"

    def up(self, bed: Testbed) -> None:
        assert bed.cluster is not None
        with bed.phases.phase(self.name) as note:
            wanted = [sp for sp in bed.specs if sp.deliver]
            refs = bed.deliver([bed.built[sp.name].tag for sp in wanted], bed.cluster.images)
            bed.image_refs = dict(zip([sp.repository for sp in wanted], refs, strict=True))
            note["note"] = ", ".join(refs)


class StackStep:
    """The stack (CRDs, controllers, the tracking server), applied and waited for; undone by stopping its
    port-forward and, on a shared cluster this session is the last one out of, by removing it once the
    controller has released its Jobs."""

    name = "deploy stack (CRDs, controllers, tracking)"

    def up(self, bed: Testbed) -> None:
        s, cluster = bed.settings, bed.cluster
        assert cluster is not None
        refs = dict(bed.image_refs)
        tracking_image = refs.pop(TRACKING_REPOSITORY, None)
        with bed.phases.phase(self.name) as note:
            bed.stack = deploy_stack(cluster, stack_dirs=bed.stack_dirs, images=refs, tracking=s.stack.tracking,
                                     tracking_image=tracking_image, tracking_pod_uri=s.stack.tracking_pod_uri,
                                     timeout=s.stack.deploy_timeout, log=bed.log, cluster_objects=s.cluster.objects)
            note["note"] = "applied" if bed.stack.redeployed else "unchanged (warm)"

    def undo(self, bed: Testbed, *, keep: bool) -> None:
        stack, cluster = bed.stack, bed.cluster
        if stack is None or cluster is None:
            return
        if stack.forward is not None:
            _exec.stop(stack.forward)
        if not cluster.shared or keep or bed._provider is None:
            return
        others = bed._provider.others()
        if others:  # the last session out removes the shared stack; this one is not the last
            bed.log(f"stack: left in place: {len(others)} other session(s) on {cluster.name} use it "
                    f"({', '.join(sorted(others))}); the last one out removes it")
            return
        let_the_controller_release_its_jobs(cluster.kube)
        for ns in stack.namespaces:
            cluster.kube.delete_namespace(ns)


class ManifestStep(_NothingToUndo):
    """The run manifest of this test bed (versions and digests of everything that decides what runs), and,
    replaying one, the check that this machine reproduced it."""

    name = "run manifest"

    def up(self, bed: Testbed) -> None:
        from harness import dockercli

        s, cluster, base = bed.settings, bed.cluster, bed.base
        assert cluster is not None
        assert base is not None
        assert bed._provider is not None
        bed.manifest = manifest.describe(
            # The modes as resolved ("auto" would let a re-run pick the other source on another machine).
            settings={**{k: s[k] for k in manifest.PINNED_SETTINGS},
                      **({"base-mode": base.source} if base.source != "override" else {})},
            server_version=cluster.kube.server_version(),
            base_image={"ref": base.image, "id": dockercli.image_id(base.image), "source": base.source},
            images={name: {"id": b.id, "tag": b.tag} for name, b in bed.built.items()},
            cluster={"provider": cluster.provider, "nodes": _node_count(cluster)},
            provider_facts=bed._provider.describe(cluster, s), root=Path(__file__).resolve().parents[1])
        path = s.general.from_manifest
        if bed.recorded is not None and path is not None:
            manifest.check_reproduces(bed.recorded, bed.manifest, path)
            bed.log(f"manifest: reproduced {path}: kind, Kubernetes, node image, base image and "
                    f"{len(bed.manifest.get('images', {}))} image digest(s) match")


STEPS: tuple[type[Step], ...] = (SessionLockStep, ToolsStep, BaseImageStep, CheckStackStep, ClusterAndImagesStep,
                                 AttachRegistryStep, ExtendedResourcesStep, DeliveryStep, StackStep, ManifestStep)
"""The bring-up, in order; the teardown is the same list undone backwards."""


def _node_count(cluster: Cluster) -> int | None:
    """Nodes of the cluster, for the manifest; None where listing nodes is not allowed (an existing cluster)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return len(cluster.kube.core.list_node().items)
    except ApiException:
        return None


@dataclass
class Testbed:
    """The steps of :data:`STEPS` run in order, and undone backwards; a context manager that cleans up after
    itself. The steps record what they made here."""

    settings: Settings
    phases: Phases = field(default_factory=Phases)
    log: Callable[[str], None] = print
    cluster: Cluster | None = field(default=None, init=False)
    stack: Stack | None = field(default=None, init=False)
    built: dict[str, images.BuiltImage] = field(default_factory=dict, init=False)
    kubectl_bin: Path | None = field(default=None, init=False)
    registry: LocalRegistry | None = field(default=None, init=False)
    """The registry container images go through (the harness's for registry = local, kept running after)."""
    base: imagesource.Choice | None = field(default=None, init=False)
    manifest: dict[str, Any] = field(default_factory=dict, init=False)
    """What this test bed runs with (:mod:`harness.manifest`), filled in once it is up."""
    kept: bool = field(default=False, init=False)
    """After :meth:`finish`: whether the cluster was kept."""
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:8], init=False)
    """This session's id: the label of its test namespaces, its Lease on a shared cluster."""
    specs: list[ImageSpec] = field(default_factory=list, init=False)
    """The images to build: the settings' and, with an in-cluster tracking server, its image."""
    stack_dirs: list[Path] = field(default_factory=list, init=False)
    image_refs: dict[str, str] = field(default_factory=dict, init=False)
    """Repository -> the reference pods use, once delivered."""
    recorded: dict[str, Any] | None = field(default=None, init=False)
    """The ``from-manifest`` record this session must reproduce."""
    build_failed: bool = field(default=False, init=False)
    """An image build failed during the bring-up (nothing was deployed, no test ran)."""
    steps: tuple[type[Step], ...] = field(default=STEPS, init=False, repr=False)
    _done: list[Step] = field(default_factory=list, init=False, repr=False)
    _provider: ClusterProvider | None = field(default=None, init=False, repr=False)
    _lock: SessionLock | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(failed=exc is not None)

    def start(self) -> Self:
        """Run the steps in order; the one that fails is undone with every step before it, backwards."""
        path = self.settings.general.from_manifest
        if path is not None:  # before any work: a run that cannot be reproduced stops here
            self.recorded = manifest.check_reproducible(path)
            self.log(f"manifest: reproducing {path} (harness {self.recorded['harness'].get('version')})")
        leftovers.reap(self.log)  # what a killed session left: its servers, port-forwards, build containers
        try:
            for step_class in self.steps:
                step = step_class()
                self._done.append(step)  # undone even if up() fails half-way: undo takes back what is there
                step.up(self)
        except BaseException:
            self.finish(failed=True, build_failed=self.build_failed)
            raise
        return self

    def deliver(self, tags: list[str], route: Route) -> list[str]:
        """Every image onto the cluster by ``route``, side by side; the references pods must use, in order."""
        with ThreadPoolExecutor(max_workers=max(1, len(tags))) as pool:
            return list(pool.map(lambda tag: images.deliver(tag, route, log=self.log), tags))

    def finish(self, *, failed: bool = False, build_failed: bool = False) -> bool:
        """Undo the steps that ran, last first; return True if the cluster was kept.

        ``build_failed``: an image build failed during the bring-up, so nothing was
        deployed and no test ran. A cluster this session created is then deleted under
        ``keep-cluster = auto`` too: there is nothing on it to look at. ``always`` and
        ``on-failure`` still keep it; a reused cluster is always left as it was. Every
        step is undone even when one before it fails to (the first error is raised).
        """
        keep = keep_cluster(self.settings, failed=failed)
        if build_failed and self.settings.cluster.keep == "auto":
            keep = False
        self.kept = keep
        first: BaseException | None = None
        while self._done:
            step = self._done.pop()
            try:
                step.undo(self, keep=keep)
            except BaseException as exc:
                if first is None:
                    first = exc
                self.log(f"teardown: undoing {step.name!r} failed: {type(exc).__name__}: {exc}")
        if first is not None:
            raise first
        return keep
