"""harness.registry, pure parts: references, node and cluster wiring texts, push accounting, cache keys.

The Docker and kind behaviour is exercised for real by ``scripts/try-registry``;
here only what can be decided without them.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import imagerefs as refs
from harness._errors import HarnessError, PreflightError
from harness.nodeimage.nodefiles import containerd_config
from harness.registry import image, pushlog, wiring
from harness.registry.local import LocalRegistry, _container_port_for

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


# -- references ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "domain", "path", "tag", "digest"),
    [
        ("mlflow-crd-example", None, "mlflow-crd-example", None, None),
        ("wine-quality:1a2b3c4", None, "wine-quality", "1a2b3c4", None),
        ("local/harness-registry:v0.22.1-0123", None, "local/harness-registry", "v0.22.1-0123", None),
        ("localhost:5001/foo/bar:1", "localhost:5001", "foo/bar", "1", None),
        ("localhost/foo", "localhost", "foo", None, None),
        ("ghcr.io/org/x@" + DIGEST, "ghcr.io", "org/x", None, DIGEST),
        ("ghcr.io/org/x:1.0@" + DIGEST, "ghcr.io", "org/x", "1.0", DIGEST),
        ("[::1]:5000/x:y", "[::1]:5000", "x", "y", None),
    ],
)
def test_parse_ref(ref: str, domain: str | None, path: str, tag: str | None, digest: str | None) -> None:
    parsed = refs.parse_ref(ref)
    assert (parsed.domain, parsed.path, parsed.tag, parsed.digest) == (domain, path, tag, digest)
    assert str(parsed) == ref


@pytest.mark.parametrize("bad", ["", " x", "Foo", "foo:", "foo@sha256:12", "foo//bar", "foo:bad tag", "a/B/c",
                                 "foo:" + "t" * 129])
def test_parse_ref_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        refs.parse_ref(bad)


def test_reference_prefers_digest_then_tag_then_latest() -> None:
    assert refs.parse_ref("x:1@" + DIGEST).reference == DIGEST
    assert refs.parse_ref("x:1").reference == "1"
    assert refs.parse_ref("x").reference == "latest"


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("wine-quality:1a2b3c4", "localhost:5001/wine-quality:1a2b3c4"),
        ("mlflow-crd-example", "localhost:5001/mlflow-crd-example:latest"),
        ("local/harness-registry:v1-abc", "localhost:5001/local/harness-registry:v1-abc"),
        ("docker.io/library/python:3.11", "localhost:5001/python:3.11"),
        ("docker.io/bitnami/redis:7", "localhost:5001/bitnami/redis:7"),
        ("ghcr.io/org/x:1", "localhost:5001/org/x:1"),
        ("localhost:5001/already:there", "localhost:5001/already:there"),
        ("other:5000/x@" + DIGEST, "localhost:5001/x:latest"),
    ],
)
def test_registry_ref_keeps_path_and_tag(local: str, expected: str) -> None:
    assert refs.registry_ref(local, "localhost:5001") == expected


def test_digest_ref_pins_and_drops_tag() -> None:
    assert refs.digest_ref("localhost:5001/a/b:t", DIGEST) == f"localhost:5001/a/b@{DIGEST}"
    with pytest.raises(ValueError):
        refs.digest_ref("localhost:5001/a:t", "sha256:short")


# -- node and cluster wiring ----------------------------------------------------------------------
def test_hosts_toml_sends_the_host_to_the_container() -> None:
    text = wiring.hosts_toml("localhost:5001", "http://harness-registry:5000")
    parsed = tomllib.loads(text)
    assert parsed == {"host": {"http://harness-registry:5000": {"capabilities": ["pull", "resolve"]}}}
    assert "server" not in parsed  # no fallback to localhost inside the node, which is not the registry
    assert wiring.hosts_toml_path("localhost:5001") == "/etc/containerd/certs.d/localhost:5001/hosts.toml"


@pytest.mark.parametrize("upstream", ["harness-registry:5000", 'http://x"]\n[evil', ""])
def test_hosts_toml_rejects_bad_upstream(upstream: str) -> None:
    with pytest.raises(ValueError):
        wiring.hosts_toml("localhost:5001", upstream)


def test_hosts_toml_path_rejects_paths() -> None:
    with pytest.raises(ValueError):
        wiring.hosts_toml_path("../etc")


def test_local_registry_addresses() -> None:
    reg = LocalRegistry("img", name="regtest-registry", host_port=5123)
    assert reg.host == "localhost:5123"
    assert reg.api_url == "http://127.0.0.1:5123"
    assert reg.upstream_for_nodes == "http://regtest-registry:5000"


@pytest.mark.parametrize(("address", "port"), [
    ("localhost:5001", 5001), ("127.0.0.1:5002", 5002), ("localhost", None), ("registry.corp:5000", None),
    ("localhost:0", None), ("localhost:65536", None), ("localhost:50x", None), (None, None), ("[::1]:5000", None),
])
def test_loopback_port_names_a_registry_container_on_this_host(address: str | None, port: int | None) -> None:
    assert wiring.loopback_port(address) == port


def test_a_users_registry_is_reached_on_the_port_it_listens_on_inside_its_container() -> None:
    info = {"HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5002"}],
                                            "9090/tcp": [{"HostIp": "", "HostPort": "9090"}]}}}
    assert _container_port_for(info, 5002) == 8080
    assert _container_port_for(info, 5001) is None
    reg = LocalRegistry(image="", name="kind-registry", host_port=5002, container_port=8080)
    assert (reg.host, reg.upstream_for_nodes) == ("localhost:5002", "http://kind-registry:8080")


def test_hosting_configmap_is_kep_1755() -> None:
    body = wiring.hosting_configmap("localhost:5001")
    assert (body["apiVersion"], body["kind"]) == ("v1", "ConfigMap")
    meta: Any = body["metadata"]
    assert (meta["namespace"], meta["name"]) == ("kube-public", "local-registry-hosting")
    data: Any = body["data"]
    assert list(data) == ["localRegistryHosting.v1"]
    assert yaml.safe_load(data["localRegistryHosting.v1"]) == {
        "host": "localhost:5001", "help": "https://kind.sigs.k8s.io/docs/user/local-registry/"}


def test_hosting_configmap_quotes_values() -> None:
    data: Any = wiring.hosting_configmap('a: b\nc: "d"', help_url="x")["data"]
    assert yaml.safe_load(data["localRegistryHosting.v1"]) == {"host": 'a: b\nc: "d"', "help": "x"}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """What kind does with a containerdConfigPatches entry: a recursive TOML table merge."""
    out = dict(base)
    for key, value in patch.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_kind_config_patches_give_the_local_node_image_a_config_path() -> None:
    patches = wiring.kind_config_patches(node_image_is_local=True)
    assert len(patches) == 1
    node = tomllib.loads(containerd_config("registry.k8s.io/pause:3.10.1"))
    assert wiring.containerd_config_paths(containerd_config("p")) == []  # why the patch exists
    merged = _merge(node, tomllib.loads(patches[0]))
    cri = merged["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"] == {"config_path": "/etc/containerd/certs.d"}
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"  # the node's own settings survive
    assert merged["version"] == 2


def test_kind_config_patches_leave_public_images_alone() -> None:
    assert wiring.kind_config_patches(node_image_is_local=False) == []


@pytest.mark.parametrize(
    ("dump", "expected"),
    [
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n',
         ["/etc/containerd/certs.d"]),
        ('version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n'
         '  config_path = "/a:/etc/containerd/certs.d"\n',
         ["/a", "/etc/containerd/certs.d"]),
        ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""\n', []),
        ("version = 2\n", []),
    ],
)
def test_containerd_config_paths(dump: str, expected: list[str]) -> None:
    assert wiring.containerd_config_paths(dump) == expected


def test_cri_registry_config_paths_reads_the_running_daemon() -> None:
    info = {"status": {}, "config": {"containerd": {"snapshotter": "overlayfs"},
                                     "registry": {"configPath": "/etc/containerd/certs.d", "mirrors": None}}}
    assert wiring.cri_registry_config_paths(json.dumps(info)) == ["/etc/containerd/certs.d"]
    info["config"]["registry"]["configPath"] = ""
    assert wiring.cri_registry_config_paths(json.dumps(info)) == []
    assert wiring.cri_registry_config_paths(json.dumps({"config": {}})) is None
    assert wiring.cri_registry_config_paths("not json") is None


# -- push accounting ------------------------------------------------------------------------------
FIRST_PUSH = """The push refers to repository [localhost:5001/demo]
aaaaaaaaaaaa: Preparing
bbbbbbbbbbbb: Preparing
bbbbbbbbbbbb: Pushing [==>     ]  1.2MB/5MB\r
aaaaaaaaaaaa: Layer already exists
bbbbbbbbbbbb: Pushed
v1: digest: sha256:%s size: 739
""" % ("cd" * 32)


def test_parse_push_output_keeps_final_states() -> None:
    log = pushlog.parse_push_output(FIRST_PUSH)
    assert log.layers == {"aaaaaaaaaaaa": "Layer already exists", "bbbbbbbbbbbb": "Pushed"}
    assert (log.digest, log.manifest_size) == ("sha256:" + "cd" * 32, 739)


def test_parse_push_output_needs_a_digest() -> None:
    with pytest.raises(ValueError, match="digest"):
        pushlog.parse_push_output("aaaaaaaaaaaa: Pushed\n")


def test_summarise_push_counts_bytes_by_layer() -> None:
    log = pushlog.PushLog(layers={"aaaaaaaaaaaa": "Layer already exists", "bbbbbbbbbbbb": "Pushed",
                                  "cccccccccccc": "Mounted from other/repo"}, digest=DIGEST, manifest_size=1)
    report = pushlog.summarise_push(
        log, tag_ref="h/x:1", digest_ref=f"h/x@{DIGEST}",
        diff_ids=["sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64, "sha256:" + "d" * 64],
        layer_sizes=[100, 20, 3, 4],
    )
    # d has no status line: counted as pushed, so savings are never overstated
    assert (report.layers_pushed, report.layers_present) == (2, 2)
    assert (report.bytes_pushed, report.bytes_present) == (24, 103)
    assert "2/4 layers uploaded" in report.summary()


def test_summarise_push_rejects_mismatched_tables() -> None:
    log = pushlog.PushLog(layers={}, digest=DIGEST, manifest_size=1)
    with pytest.raises(ValueError):
        pushlog.summarise_push(log, tag_ref="h/x:1", digest_ref="h/x@" + DIGEST, diff_ids=["sha256:a"],
                               layer_sizes=[])


# -- registry image -------------------------------------------------------------------------------
def test_cache_keys_are_stable_and_track_inputs() -> None:
    src = image.main_source()
    assert image.image_key("go1.26.8", src) == image.image_key("go1.26.8", src)
    assert image.binary_key("go1.26.8", src) != image.binary_key("go1.26.9", src)
    assert image.image_key("go1.26.8", src) != image.image_key("go1.26.8", src + "\n")
    tag = image.local_image_tag("go1.26.8", src)
    assert tag.startswith(f"local/harness-registry:{image.GGCR_VERSION}-")
    assert refs.parse_ref(tag).tag == tag.split(":", 1)[1]


class _RegistryImageHost:
    """What ensure_registry_image asks of Docker and Go, faked: which images exist, whether a pull works."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, present: set[str], pull_ok: bool, go: bool) -> None:
        from harness.nodeimage.gobuild import GoToolchain

        self.present, self.calls, self.logged = set(present), [], []
        self.built = image.local_image_tag("go1.26.8", image.main_source())
        monkeypatch.delenv(image.IMAGE_ENV, raising=False)
        monkeypatch.delenv(image.MODE_ENV, raising=False)

        def exists(ref: str) -> bool:
            self.calls.append(f"exists {ref}")
            return ref in self.present

        def obtain(ref: str, *, pull_timeout: float) -> tuple[str | None, str]:
            self.calls.append(f"obtain {ref}")
            if ref in self.present:
                return "present", ""
            return ("pulled", "") if pull_ok else (None, "no route to host")

        def discover(_root: Path) -> GoToolchain:
            self.calls.append("discover go")
            if not go:
                raise PreflightError("no Go toolchain found")
            return GoToolchain(go=Path("/usr/bin/go"), version="go1.26.8", env={})

        def build(_go: GoToolchain, _log: object) -> str:
            self.calls.append("build")
            return self.built

        monkeypatch.setattr(image.dockercli, "image_exists", exists)
        monkeypatch.setattr(image.dockercli, "obtain", obtain)
        monkeypatch.setattr(image.GoToolchain, "discover", staticmethod(discover))
        monkeypatch.setattr(image, "_build_image", build)
        monkeypatch.setattr(image, "cache_dir", lambda *_a: Path("/nonexistent"))

    def ensure(self, **kw: Any) -> str:
        return image.ensure_registry_image(self.logged.append, **kw)


def test_registry_image_auto_prefers_a_present_public_image_without_network_or_go(
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = _RegistryImageHost(monkeypatch, present={image.PUBLIC_IMAGE}, pull_ok=False, go=True)
    assert host.ensure() == image.PUBLIC_IMAGE
    assert host.calls == [f"exists {image.PUBLIC_IMAGE}"]
    assert host.logged == [f"registry image: {image.PUBLIC_IMAGE} (present)"]


def test_registry_image_auto_takes_an_earlier_build_before_any_pull(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _RegistryImageHost(monkeypatch, present=set(), pull_ok=True, go=True)
    host.present.add(host.built)
    assert host.ensure() == host.built
    assert host.calls == [f"exists {image.PUBLIC_IMAGE}", "discover go", f"exists {host.built}"]
    assert host.logged == [f"registry image: {host.built} (built earlier)"]


def test_registry_image_auto_pulls_then_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _RegistryImageHost(monkeypatch, present=set(), pull_ok=True, go=True)
    assert host.ensure() == image.PUBLIC_IMAGE
    assert host.logged == [f"registry image: {image.PUBLIC_IMAGE} (pulled)"]
    host = _RegistryImageHost(monkeypatch, present=set(), pull_ok=False, go=True)
    assert host.ensure() == host.built
    assert host.calls[-1] == "build"
    assert host.calls.index(f"exists {host.built}") < host.calls.index(f"obtain {image.PUBLIC_IMAGE}")
    assert "no route to host" in host.logged[0]
    assert host.calls.count("discover go") == 1


def test_registry_image_without_go_or_a_pull_names_both_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _RegistryImageHost(monkeypatch, present=set(), pull_ok=False, go=False)
    with pytest.raises(PreflightError, match=r"cannot be pulled \(no route to host\).*no Go toolchain"):
        host.ensure()
    with pytest.raises(PreflightError, match=r"cannot be pulled \(not tried\).*no Go toolchain"):
        host.ensure(mode="local")


def test_registry_image_modes_and_overrides_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _RegistryImageHost(monkeypatch, present={"mine:1"}, pull_ok=False, go=True)
    monkeypatch.setenv(image.IMAGE_ENV, "mine:1")
    assert host.ensure(mode="public") == "mine:1"
    assert host.logged == ["registry image: mine:1 (override)"]
    monkeypatch.setenv(image.IMAGE_ENV, "gone:1")
    with pytest.raises(PreflightError, match="docker pull gone:1"):
        host.ensure()
    monkeypatch.delenv(image.IMAGE_ENV)
    monkeypatch.setenv(image.MODE_ENV, "public")
    with pytest.raises(HarnessError, match=f"{image.MODE_ENV}=local"):
        host.ensure()
    assert "build" not in host.calls
    monkeypatch.setenv(image.MODE_ENV, "sideways")
    with pytest.raises(HarnessError, match=f"\\${image.MODE_ENV}.*'sideways'"):
        host.ensure()
    monkeypatch.setenv(image.MODE_ENV, "local")
    host.calls.clear()
    assert host.ensure() == host.built
    assert f"obtain {image.PUBLIC_IMAGE}" not in host.calls


def test_main_go_keeps_blobs_on_disk() -> None:
    src = image.main_source()
    for needle in ("NewDiskBlobHandler", "/var/lib/registry", '":5000"'):
        assert needle in src


def test_image_runs_our_binary_as_non_root() -> None:
    changes = image.import_changes()
    assert 'ENTRYPOINT ["/registry"]' in changes
    assert f"USER {image.RUN_UID}:{image.RUN_UID}" in changes
    assert image.RUN_UID != 0
    assert f"VOLUME {image.DATA_DIR}" in changes
    assert f"ENV GOMEMLIMIT={image.GO_MEMORY_LIMIT}" in changes  # uploads are buffered in memory


def test_rootfs_tar_holds_only_the_binary_and_its_user(tmp_path: Path) -> None:
    binary = tmp_path / "registry"
    binary.write_bytes(b"\x7fELF fake")
    with tarfile.open(fileobj=io.BytesIO(image.rootfs_tar(binary))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"etc", "etc/passwd", "etc/group", "tmp", "var", "var/lib", "var/lib/registry",
                                "registry"}
        data_dir, binary_entry = members["var/lib/registry"], members["registry"]
        assert (data_dir.isdir(), data_dir.uid, data_dir.gid) == (True, image.RUN_UID, image.RUN_UID)
        assert (binary_entry.mode, binary_entry.uid) == (0o755, 0)
        assert members["tmp"].mode == 0o1777
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None
        assert f":{image.RUN_UID}:{image.RUN_UID}:" in passwd.read().decode()
    assert image.rootfs_tar(binary) == image.rootfs_tar(binary)  # reproducible bytes


class _Manifests(http.server.BaseHTTPRequestHandler):
    """A loopback registry API with one image: ``app:1`` (two layers) and its config blob."""

    config = json.dumps({"rootfs": {"diff_ids": ["sha256:" + "a" * 64, "sha256:" + "b" * 64]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": config_digest, "size": len(config)},
                           "layers": [{"digest": "sha256:" + "1" * 64, "size": 1000},
                                      {"digest": "sha256:" + "2" * 64, "size": 234}]}).encode()

    def do_GET(self) -> None:
        body = {"/v2/app/manifests/1": self.manifest, f"/v2/app/blobs/{self.config_digest}": self.config}.get(self.path)
        self.send_response(200 if body else 404)
        if body is self.manifest:
            self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(body).hexdigest())
        self.end_headers()
        self.wfile.write(body or b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def manifests() -> Iterator[LocalRegistry]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Manifests)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalRegistry(image="", host_port=server.server_address[1], log=lambda _line: None)
    finally:
        server.shutdown()
        server.server_close()


def test_a_registry_holding_the_same_image_needs_no_push(manifests: LocalRegistry) -> None:
    held = manifests.holding(f"{manifests.host}/app:1", _Manifests.config_digest)
    assert held is not None
    assert (held.layers_pushed, held.layers_present, held.bytes_pushed, held.bytes_present) == (0, 2, 0, 1234)
    assert held.digest_ref == f"{manifests.host}/app@sha256:{hashlib.sha256(_Manifests.manifest).hexdigest()}"


def test_a_moved_tag_or_a_missing_image_is_pushed(manifests: LocalRegistry) -> None:
    assert manifests.holding(f"{manifests.host}/app:1", "sha256:" + "9" * 64) is None  # other content
    assert manifests.holding(f"{manifests.host}/app:2", _Manifests.config_digest) is None  # 404
