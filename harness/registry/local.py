"""A local registry container for kind clusters, following kind's local-registry pattern.

One long-lived container (default ``harness-registry``) publishes the
registry on ``127.0.0.1:<port>`` only, so nothing outside this machine can
push to or read from it. It joins the ``kind`` Docker network, and each
node gets a containerd host file that sends ``localhost:<port>/…`` to the
container by name, so the same reference works for ``docker push`` on the
host and for pulls on the nodes.

The container outlives clusters: deleting or re-creating a cluster never
touches it (layers already pushed stay, and a re-push sends only what is
new). Only :meth:`LocalRegistry.stop` and :meth:`LocalRegistry.remove` end
it, and only a container carrying our label is ever reused or removed.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from harness import _exec, dockercli
from harness import imagerefs as refs
from harness._errors import CommandError, HarnessError
from harness._waiting import Probe, wait_for
from harness.delivery import kind_nodes
from harness.registry import wiring
from harness.registry.image import CONTAINER_PORT
from harness.registry.pushlog import PushReport, parse_push_output, summarise_push

if TYPE_CHECKING:
    from harness.registry.route import LocalRegistryPush

__all__ = ["DEFAULT_NAME", "DEFAULT_PORT", "LABEL", "LocalRegistry"]

Log = Callable[[str], None]

DEFAULT_NAME = "harness-registry"
#: kind's guide uses 5001: 5000 is taken by AirPlay on macOS and by ``mlflow server`` here.
DEFAULT_PORT = 5001
#: Marks containers this module created; nothing without it is reused or removed.
LABEL = "io.mlflow-crd-harness.registry"
KIND_NETWORK = "kind"

_MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
))
_INDEX_TYPES = ("application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json")
_START_TIMEOUT = 60.0  # s; the registry answers within a second of starting
_HTTP_TIMEOUT = 10.0  # s per request to the registry on loopback


@dataclass
class LocalRegistry:
    """The registry container ``name`` running ``image``, published on ``127.0.0.1:host_port``.

    Use as a context manager (``with LocalRegistry(image) as reg:``) to get
    it running; leaving the block keeps it running unless ``remove_on_exit``.
    """

    image: str
    name: str = DEFAULT_NAME
    host_port: int = DEFAULT_PORT
    log: Log = print
    remove_on_exit: bool = False
    container_port: int = CONTAINER_PORT
    """The port the registry listens on inside its container (ours: 5000; a user's: whatever it publishes)."""

    @classmethod
    def serving(cls, address: str, *, log: Log = print) -> LocalRegistry:
        """The registry container this Docker engine publishes on loopback ``address`` (``localhost:PORT``).

        Ours or a user's (kind's documented script starts one as ``kind-registry`` on
        ``127.0.0.1:5001``): either way it is found by the port it publishes, checked to
        answer the registry API, and then wired into kind nodes like ours. A container
        without our label is never started, stopped or removed here (:meth:`stop` and
        :meth:`remove` refuse it); only joining the ``kind`` network touches it.
        """
        port = wiring.loopback_port(address)
        if port is None:
            raise HarnessError(f"registry {address!r} is not a loopback address (localhost:PORT or 127.0.0.1:PORT)")
        names = _exec.run(["docker", "ps", "--filter", f"publish={port}", "--format", "{{.Names}}"],
                          timeout=60).stdout.split()
        for name in names:
            probe = cls(image="", name=name, host_port=port, log=log)
            info = probe._inspect()
            container_port = _container_port_for(info or {}, port)
            if info is None or container_port is None:
                continue
            found = cls(image=str((info.get("Config") or {}).get("Image") or ""), name=name, host_port=port,
                        log=log, container_port=container_port)
            found._wait_ready()
            whose = "the harness's" if found._is_ours(info) else "not the harness's: only wired in, never changed"
            log(f"registry: {address} is container {name} (port {container_port} inside; {whose})")
            return found
        raise HarnessError(f"registry = {address!r}: no running container on this Docker engine publishes port "
                           f"{port} (docker ps --filter publish={port}), so kind nodes could not be pointed at it. "
                           "Start the registry (kind's guide: docker run -d -p 127.0.0.1:"
                           f"{port}:5000 --name kind-registry registry:2), or use registry = \"local\" for the "
                           "harness's own")

    # -- addresses ---------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """The registry host in image references, on the host and (through hosts.toml) on nodes."""
        return f"localhost:{self.host_port}"

    @property
    def api_url(self) -> str:
        """Base URL of the registry API for this process (loopback, no name resolution)."""
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def upstream_for_nodes(self) -> str:
        """How kind nodes reach the registry: the container's name on the ``kind`` network."""
        return f"http://{self.name}:{self.container_port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalRegistry:
        self.ensure_running()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.remove_on_exit:
            self.remove()

    def _inspect(self) -> dict[str, Any] | None:
        proc = _exec.run(["docker", "container", "inspect", self.name], check=False, timeout=60)
        if proc.returncode != 0:
            return None
        found = json.loads(proc.stdout or "[]")
        return found[0] if found else None

    def _probe_exists(self) -> Probe[dict[str, Any]]:
        info = self._inspect()
        return Probe(info is not None, "present" if info else "not inspectable yet", info)

    def _is_ours(self, info: dict[str, Any]) -> bool:
        return ((info.get("Config") or {}).get("Labels") or {}).get(LABEL) == "1"

    def _published(self, info: dict[str, Any]) -> list[str]:
        bindings = ((info.get("HostConfig") or {}).get("PortBindings") or {}).get(f"{self.container_port}/tcp") or []
        # An empty HostIp means every interface; shown as "*" so it never matches our loopback-only want.
        return [f"{b.get('HostIp') or '*'}:{b.get('HostPort')}" for b in bindings]

    def ensure_running(self) -> bool:
        """Start the registry, or reuse our container of that name; idempotent. True if it created one.

        A container of that name without our label is someone else's and is
        refused, never touched. If this call created the container and then
        fails, that container (by id, never by name) is removed again, so a
        retry starts clean; losing a creation race to a parallel worker just
        means reusing the winner's container.
        """
        info = self._inspect()
        if info is None:
            container_id = self._create()
            if container_id is not None:
                try:
                    self._start(container_id)
                    self._wait_ready()
                except BaseException:
                    _exec.run(["docker", "rm", "--force", "--volumes", container_id], check=False, timeout=60)
                    raise
                self.log(f"registry: started {self.name} ({self.image}) on {self.host}")
                return True
            # Docker reserves the name before the winner's container is inspectable.
            info = wait_for(self._probe_exists, what=f"container {self.name} (created by a parallel caller)",
                            timeout=30, interval=0.2, hint="re-run; if it persists: docker ps -a")
            if info is None:  # unreachable: a done probe carries the inspect result
                raise HarnessError(f"container {self.name} vanished while starting; retry")
        self._check_reusable(info)
        if not (info.get("State") or {}).get("Running"):
            self.log(f"registry: starting stopped container {self.name}")
            self._start(self.name)
        else:
            self.log(f"registry: reusing {self.name} on {self.host}")
        self._wait_ready()
        return False

    def _check_reusable(self, info: dict[str, Any]) -> None:
        if not self._is_ours(info):
            raise HarnessError(
                f"a container named {self.name!r} exists but was not created by the harness "
                f"(no label {LABEL}=1); it is left alone. Pass another name "
                f"(LocalRegistry(name=...)), or remove it yourself if it is yours: docker rm -f {self.name}")
        want = f"127.0.0.1:{self.host_port}"
        published = self._published(info)
        if want not in published:
            raise HarnessError(
                f"registry container {self.name} publishes {published or 'no port'}, not {want}; "
                f"use host_port={published[0].rsplit(':', 1)[1] if published else '...'} "
                f"or recreate it: docker rm -f {self.name}")
        image = (info.get("Config") or {}).get("Image")
        if image != self.image:
            self.log(f"registry: {self.name} runs {image}, not {self.image}; reusing it "
                     f"(`docker rm -f {self.name}` to switch images, which drops its blobs)")

    def _create(self) -> str | None:
        """``docker create`` our container; its id, or None if the name was taken meanwhile."""
        argv = [
            "docker", "create", "--name", self.name,
            "--restart", "unless-stopped",
            "--publish", f"127.0.0.1:{self.host_port}:{CONTAINER_PORT}",
            "--label", f"{LABEL}=1",
            "--label", f"{LABEL}.port={self.host_port}",
            # One log line per request; cap what json-file keeps for a long-lived container.
            "--log-opt", "max-size=10m", "--log-opt", "max-file=2",
            self.image,
        ]
        try:
            return _exec.run(argv, timeout=120).stdout.strip().splitlines()[-1]
        except CommandError as exc:
            if "is already in use" in exc.stderr:  # a parallel caller created it first
                return None
            raise

    def _start(self, container: str) -> None:
        try:
            _exec.run(["docker", "start", container], timeout=120)
        except CommandError as exc:
            if "address already in use" in exc.stderr or "port is already allocated" in exc.stderr:
                raise HarnessError(
                    f"127.0.0.1:{self.host_port} is taken, so the registry cannot listen there; "
                    f"pick another port (LocalRegistry(host_port=...)) or free it "
                    f"(`ss -ltnp 'sport = :{self.host_port}'` shows who holds it)") from exc
            raise

    def _wait_ready(self) -> None:
        def probe() -> Probe[None]:
            info = self._inspect()
            state = (info or {}).get("State") or {}
            if not state.get("Running"):
                logs = _exec.run(["docker", "logs", "--tail", "30", self.name], check=False, timeout=30)
                raise HarnessError(
                    f"registry container {self.name} is {state.get('Status', 'gone')} "
                    f"(exit {state.get('ExitCode')}); its last log lines:\n{logs.stdout}{logs.stderr}")
            with urllib.request.urlopen(f"{self.api_url}/v2/", timeout=_HTTP_TIMEOUT) as resp:  # noqa: S310
                return Probe(resp.status == 200, f"HTTP {resp.status}")

        wait_for(probe, what=f"registry {self.name} to answer on {self.api_url}/v2/", timeout=_START_TIMEOUT,
                 interval=0.25, transient=(OSError,),
                 hint=f"docker logs {self.name}; is another process answering on 127.0.0.1:{self.host_port}?")

    def stop(self) -> None:
        """Stop the container (kept, with its blobs; ``ensure_running`` starts it again)."""
        info = self._inspect()
        if info is None:
            return
        self._refuse_foreign(info, "stop")
        _exec.run(["docker", "stop", "--time", "10", self.name], timeout=60)

    def remove(self) -> None:
        """Remove the container and its data volume; no-op if there is none."""
        info = self._inspect()
        if info is None:
            return
        self._refuse_foreign(info, "remove")
        _exec.run(["docker", "rm", "--force", "--volumes", self.name], timeout=60)
        self.log(f"registry: removed {self.name}")

    def _refuse_foreign(self, info: dict[str, Any], verb: str) -> None:
        if not self._is_ours(info):
            raise HarnessError(f"will not {verb} container {self.name!r}: it lacks label {LABEL}=1, "
                               "so the harness did not create it")

    # -- kind wiring -------------------------------------------------------------------------
    def connect_to_kind_network(self, network: str = KIND_NETWORK) -> bool:
        """Join ``network`` (created by kind with the first cluster); True if it was not joined yet."""
        info = self._inspect()
        if info is None:
            raise HarnessError(f"registry container {self.name} does not exist; call ensure_running() first")
        if network in ((info.get("NetworkSettings") or {}).get("Networks") or {}):
            return False
        if _exec.run(["docker", "network", "inspect", network], check=False, timeout=60).returncode != 0:
            raise HarnessError(f"Docker network {network!r} does not exist: kind creates it with the first "
                               "cluster, so create the cluster before wiring the registry")
        _exec.run(["docker", "network", "connect", network, self.name], timeout=60)
        self.log(f"registry: {self.name} joined Docker network {network}")
        return True

    def configure_kind_nodes(self, cluster_name: str, kind_bin: Path | str, *,
                             kubeconfig: Path | None = None) -> list[str]:
        """Point every node of ``cluster_name`` at this registry; return the node names.

        Writes ``/etc/containerd/certs.d/localhost:<port>/hosts.toml`` on each
        node (containerd reads it at every pull, no restart needed) after
        checking that the node's containerd reads that directory at all. With
        ``kubeconfig``, also applies the KEP-1755 ConfigMap.
        """
        nodes = kind_nodes(str(kind_bin), cluster_name)
        path = wiring.hosts_toml_path(self.host)
        text = wiring.hosts_toml(self.host, self.upstream_for_nodes)
        for node in nodes:
            self._check_node_reads_certs_dir(node)
            _exec.run(["docker", "exec", "-i", node, "sh", "-c",
                       'mkdir -p "$(dirname "$1")" && cat > "$1.tmp" && mv "$1.tmp" "$1"', "sh", path],
                      input=text, timeout=60)
        self.log(f"registry: {len(nodes)} node(s) of {cluster_name} pull {self.host}/... from {self.name}")
        if kubeconfig is not None:
            self.apply_hosting_configmap(kubeconfig)
        return nodes

    def _check_node_reads_certs_dir(self, node: str) -> None:
        info = _exec.run(["docker", "exec", node, "crictl", "info"], check=False, timeout=60)
        paths = wiring.cri_registry_config_paths(info.stdout or "") if info.returncode == 0 else None
        source = "the running containerd (crictl info)"
        if paths is None:
            dump = _exec.run(["docker", "exec", node, "containerd", "config", "dump"], timeout=60).stdout
            paths, source = wiring.containerd_config_paths(dump), "containerd config dump"
        if wiring.CERTS_DIR not in paths:
            raise HarnessError(
                f"containerd on node {node} does not read {wiring.CERTS_DIR} (registry config_path per "
                f"{source}: {paths or 'unset'}), so it would ignore the registry host file. Re-create the "
                "cluster with the patch in its kind config: "
                "containerdConfigPatches: harness.registry.kind_config_patches(node_image_is_local=True)")

    def apply_hosting_configmap(self, kubeconfig: Path) -> None:
        """Create or replace ``kube-public/local-registry-hosting`` through the Kubernetes API."""
        # Imported here so the image and push parts work with a bare Python (no client installed).
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException

        body = wiring.hosting_configmap(self.host)
        api = config.new_client_from_config(config_file=str(kubeconfig))
        try:
            core = client.CoreV1Api(api)
            ns, name = wiring.HOSTING_CONFIGMAP_NAMESPACE, wiring.HOSTING_CONFIGMAP_NAME
            try:
                core.create_namespaced_config_map(ns, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise HarnessError(f"cannot create ConfigMap {ns}/{name} (HTTP {exc.status}): "
                                       f"{exc.body or exc.reason}; check the kubeconfig {kubeconfig}") from exc
                core.replace_namespaced_config_map(name, ns, body)
        finally:
            api.close()
        self.log(f"registry: ConfigMap {ns}/{name} announces {self.host}")

    def attach_to_cluster(self, cluster_name: str, kind_bin: Path | str, kubeconfig: Path) -> bool:
        """Everything a new cluster needs: network, node host files, the ConfigMap; True if it joined the network."""
        joined = self.connect_to_kind_network()
        self.configure_kind_nodes(cluster_name, kind_bin, kubeconfig=kubeconfig)
        return joined

    def route(self) -> LocalRegistryPush:
        """The image route through this container (what a cluster it is attached to delivers by)."""
        from harness.registry.route import LocalRegistryPush

        return LocalRegistryPush(registry=self.host)

    def created_by_harness(self) -> bool:
        """The container carries our label (it is ours to stop, remove, or leave on networks)."""
        info = self._inspect()
        return info is not None and self._is_ours(info)

    # -- images ------------------------------------------------------------------------------
    def push(self, local_ref: str) -> str:
        """Push ``local_ref`` as ``localhost:<port>/<repo>:<tag>``; return ``…/<repo>@sha256:…``."""
        return self.push_with_report(local_ref).digest_ref

    def push_with_report(self, local_ref: str) -> PushReport:
        """:meth:`push`, plus how many layers and bytes were sent versus already there."""
        tag_ref = refs.registry_ref(local_ref, self.host)
        _exec.run(["docker", "tag", local_ref, tag_ref], timeout=60)
        if (held := self.holding(tag_ref, dockercli.image_id(local_ref))) is not None:
            self.log(f"registry: already holds {held.summary()}")
            return held
        started = time.monotonic()
        out = _exec.run(["docker", "push", tag_ref], timeout=3600).stdout
        pushed = parse_push_output(out)
        digest_ref = refs.digest_ref(tag_ref, pushed.digest)
        manifest, served_digest = self._get_manifest(refs.parse_ref(digest_ref))
        if served_digest != pushed.digest:
            raise HarnessError(f"registry serves {served_digest} for {digest_ref} right after the push; "
                               f"is another registry answering on {self.api_url}? (docker logs {self.name})")
        diff_ids, sizes = self._layer_table(refs.parse_ref(tag_ref).path, manifest)
        report = summarise_push(pushed, tag_ref=tag_ref, digest_ref=digest_ref, diff_ids=diff_ids,
                                layer_sizes=sizes)
        self.log(f"registry: pushed in {time.monotonic() - started:.1f} s: {report.summary()}")
        return report

    def holding(self, tag_ref: str, image_id: str) -> PushReport | None:
        """The registry's copy of ``tag_ref`` if it is exactly local image ``image_id``, else None.

        Same config digest, same image: then nothing needs to move, not even
        the per-layer HEAD requests ``docker push`` makes (a warm delivery costs
        one manifest and one config read). A tag that moved to other content,
        or a registry that lost it (re-created), answers None and is pushed.
        """
        parsed = refs.parse_ref(tag_ref)
        try:
            manifest, digest = self._get_manifest(parsed)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise HarnessError(f"registry {self.api_url} answered HTTP {exc.code} for {tag_ref}") from exc
        if (manifest.get("config") or {}).get("digest") != image_id:
            return None
        _diff_ids, sizes = self._layer_table(parsed.path, manifest)
        return PushReport(tag_ref=tag_ref, digest_ref=refs.digest_ref(tag_ref, digest), layers_pushed=0,
                          layers_present=len(sizes), bytes_pushed=0, bytes_present=sum(sizes))

    def layer_digests(self, ref: str) -> list[str]:
        """The layer digests of the manifest ``ref`` names, in order (what a pull of it fetches)."""
        manifest, _digest = self._get_manifest(refs.parse_ref(ref))
        return [str(layer["digest"]) for layer in manifest.get("layers", [])]

    def has(self, ref: str) -> bool:
        """True if the registry holds a manifest for ``ref`` (``[localhost:<port>/]repo[:tag|@digest]``)."""
        parsed = refs.parse_ref(ref)
        if parsed.domain not in (None, self.host, f"127.0.0.1:{self.host_port}"):
            raise ValueError(f"{ref!r} names registry {parsed.domain}, not {self.host}")
        try:
            self._get_manifest(parsed)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise HarnessError(f"registry {self.api_url} answered HTTP {exc.code} for {ref}") from exc
        return True

    def _get(self, path: str, accept: str | None = None) -> tuple[bytes, dict[str, str]]:
        request = urllib.request.Request(f"{self.api_url}{path}")  # noqa: S310 - our loopback URL
        if accept:
            request.add_header("Accept", accept)
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as resp:  # noqa: S310
            return resp.read(), dict(resp.headers.items())

    def _get_manifest(self, ref: refs.ImageRef) -> tuple[dict[str, Any], str]:
        body, headers = self._get(f"/v2/{ref.path}/manifests/{ref.reference}", _MANIFEST_TYPES)
        digest = headers.get("Docker-Content-Digest") or f"sha256:{hashlib.sha256(body).hexdigest()}"
        return json.loads(body), digest

    def _layer_table(self, path: str, manifest: dict[str, Any]) -> tuple[list[str], list[int]]:
        """Diff ids (from the config blob) and stored sizes (from the manifest), in layer order."""
        if manifest.get("mediaType") in _INDEX_TYPES or "layers" not in manifest:
            return [], []  # an index has no layers of its own; docker push never sends one
        config_body, _ = self._get(f"/v2/{path}/blobs/{manifest['config']['digest']}")
        diff_ids = list(json.loads(config_body).get("rootfs", {}).get("diff_ids", []))
        sizes = [int(layer["size"]) for layer in manifest["layers"]]
        return diff_ids, sizes


def _container_port_for(info: dict[str, Any], host_port: int) -> int | None:
    """The container port that ``docker inspect`` output ``info`` publishes on ``host_port`` (TCP), if any."""
    bindings = (info.get("HostConfig") or {}).get("PortBindings") or {}
    for key, hosts in bindings.items():
        port, _, proto = key.partition("/")
        if proto in ("", "tcp") and port.isdigit() and any(str(b.get("HostPort")) == str(host_port)
                                                             for b in hosts or []):
            return int(port)
    return None
