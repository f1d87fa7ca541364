"""Image delivery (harness.delivery): kind load verified per node, docker push, the routes (fake kind/docker)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness import delivery
from harness._errors import DeliveryError

REF = "wine-quality:0f594988209c"


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`kind` logs its argv; `docker exec <node> ctr ...` lists the image only on node c-control-plane."""
    log = tmp_path / "calls.log"
    _script(
        tmp_path / "kind",
        f'echo "kind $*" >> {log}\n'
        'if [ "$1" = get ]; then printf "c-control-plane\\nc-worker\\n"; exit 0; fi\n'
        'if [ "$3" = broken:1 ]; then echo "ERROR: image not present locally" >&2; exit 1; fi\n',
    )
    _script(
        tmp_path / "docker",
        f'echo "docker $*" >> {log}\n'
        'if [ "$2" = c-control-plane ]; then echo docker.io/library/' + REF + "; fi\n"
        "echo sha256:abc\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return log


def test_load_then_verify_names_the_node_without_the_image(fake_tools: Path) -> None:
    delivery.kind_load("kind", "c", REF)
    nodes = delivery.kind_nodes("kind", "c")
    assert nodes == ["c-control-plane", "c-worker"]
    with pytest.raises(DeliveryError, match=r"c-worker") as info:
        delivery.verify_on_kind_nodes(nodes, REF)
    assert "c-control-plane" not in str(info.value).split("node(s)")[1].split("after")[0]
    calls = fake_tools.read_text().splitlines()
    assert calls[0] == f"kind load docker-image {REF} --name c"
    assert "docker exec c-worker ctr -n k8s.io images ls -q" in calls


def test_verify_passes_when_every_node_has_it(fake_tools: Path) -> None:
    delivery.verify_on_kind_nodes(["c-control-plane"], REF)


def test_kind_load_failure_carries_kinds_output(fake_tools: Path) -> None:
    with pytest.raises(DeliveryError, match="image not present locally"):
        delivery.kind_load("kind", "c", "broken:1")


def test_a_failed_kind_load_falls_back_to_a_platform_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kind #3795: `kind load docker-image` breaks under the containerd image store; the archive path works."""
    log = tmp_path / "calls.log"
    state = tmp_path / "loaded"
    _script(tmp_path / "kind", f'echo "kind $*" >> {log}\n'
            'if [ "$1" = get ]; then echo c-control-plane; exit 0; fi\n'
            'if [ "$2" = docker-image ]; then echo "ERROR: content digest sha256:1 not found" >&2; exit 1; fi\n'
            f'touch {state}\n')
    _script(tmp_path / "docker", f'echo "docker $*" >> {log}\n'
            'if [ "$2" = inspect ]; then echo linux/arm64; exit 0; fi\n'
            f'if [ "$1" = exec ] && [ -e {state} ]; then echo docker.io/library/{REF}; fi\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    said: list[str] = []
    delivery.load_verified("kind", "c", REF, log=said.append)
    calls = log.read_text().splitlines()
    save = next(c for c in calls if c.startswith("docker image save"))
    assert "--platform linux/arm64" in save
    assert any(c.startswith("kind load image-archive ") and c.endswith("--name c") for c in calls)
    assert said[0] == f"image: kind load {REF} into c"
    assert "content digest" in said[1]
    assert "retrying as docker save --platform" in said[1]


def test_an_image_every_node_has_is_not_loaded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Content-addressed tags: the same tag on every node means the same bytes; a warm re-run moves nothing."""
    log = tmp_path / "calls.log"
    _script(tmp_path / "kind", f'echo "kind $*" >> {log}\nif [ "$1" = get ]; then echo c-control-plane; fi\n')
    _script(tmp_path / "docker", f'echo "docker $*" >> {log}\necho docker.io/library/{REF}\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    said: list[str] = []
    delivery.load_verified("kind", "c", REF, log=said.append)
    assert said == []
    assert not [c for c in log.read_text().splitlines() if c.startswith("kind load")]


def test_missing_kind_binary_is_a_delivery_error(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="not found"):
        delivery.kind_load(str(tmp_path / "no-kind"), "c", REF)


class _FakeImages:
    def __init__(self, lines: list[dict[str, object]]) -> None:
        self.lines = lines
        self.pushed: list[tuple[str, str | None, object]] = []

    def push(self, repository: str, tag: str | None = None, **kwargs: object) -> list[dict[str, object]]:
        self.pushed.append((repository, tag, kwargs.get("auth_config")))
        return self.lines


class _FakeDocker:
    def __init__(self, lines: list[dict[str, object]]) -> None:
        self.images = _FakeImages(lines)


DIGEST = "sha256:" + "1" * 64


def test_push_uses_the_pushed_digest() -> None:
    client = _FakeDocker([{"status": "Pushed"}, {"aux": {"Tag": "t", "Digest": DIGEST, "Size": 1}}])
    got = delivery.push_to_registry(client, "localhost:5001/wine", "t", {"username": "u", "password": "p"})
    assert got == delivery.DeliveredImage(ref=f"localhost:5001/wine@{DIGEST}", digest=DIGEST)
    assert client.images.pushed == [("localhost:5001/wine", "t", {"username": "u", "password": "p"})]


def test_push_error_line_fails_with_the_registry_message() -> None:
    client = _FakeDocker([{"status": "Preparing"}, {"error": "denied: requested access is denied"}])
    with pytest.raises(DeliveryError, match="denied: requested access"):
        delivery.push_to_registry(client, "localhost:5001/wine", "t")


def test_a_push_stream_says_which_layers_moved() -> None:
    """The SDK's push stream, as docker sends it: one changed layer of three, the rest already there."""
    from harness.delivery import PushedLayers

    layers = PushedLayers()
    for line in [
        {"status": "The push refers to repository [localhost:5001/wine-quality]"},
        {"status": "Preparing", "progressDetail": {}, "id": "aaa"},
        {"status": "Preparing", "progressDetail": {}, "id": "bbb"},
        {"status": "Preparing", "progressDetail": {}, "id": "ccc"},
        {"status": "Layer already exists", "progressDetail": {}, "id": "bbb"},
        {"status": "Mounted from library/base", "progressDetail": {}, "id": "ccc"},
        {"status": "Pushing", "progressDetail": {"current": 512, "total": 2048}, "id": "aaa"},
        {"status": "Pushing", "progressDetail": {"current": 2048, "total": 2048}, "id": "aaa"},
        {"status": "Pushed", "progressDetail": {}, "id": "aaa"},
        {"status": "4f1c2d3: digest: sha256:" + "0" * 64 + " size: 1234"},
        {"progressDetail": {}, "aux": {"Tag": "4f1c2d3", "Digest": "sha256:" + "0" * 64, "Size": 1234}},
    ]:
        layers.update(line)
    assert layers.sent == ["aaa"]
    assert sorted(layers.present) == ["bbb", "ccc"]
    assert layers.summary() == "1/3 layers sent (0.0 MB), 2 already present"
    assert layers.sizes == {"aaa": 2048}


# --- routes: one shape for the test bed, the backend's config and the xdist record -------------------------


class _TaggingImages(_FakeImages):
    def __init__(self, lines: list[dict[str, object]]) -> None:
        super().__init__(lines)
        self.tagged: list[tuple[str, str]] = []

    def get(self, ref: str) -> object:
        images = self

        class _Image:
            def tag(self, repository: str, tag: str) -> None:
                images.tagged.append((f"{repository}:{tag}", ref))

        return _Image()


def test_a_registry_route_tags_the_stacks_images_into_the_registry_and_pushes_the_backends_as_they_are() -> None:
    lines: list[dict[str, object]] = [{"aux": {"Digest": DIGEST}}]
    client = _FakeDocker(lines)
    client.images = _TaggingImages(lines)
    route = delivery.RegistryPush(registry="registry.corp:5000/team", client=client)
    assert route.deliver("customjob-controller:abc").ref == f"registry.corp:5000/team/customjob-controller@{DIGEST}"
    assert route.deliver("registry.corp:5000/team/trainer:def").ref == f"registry.corp:5000/team/trainer@{DIGEST}"
    assert client.images.tagged == [("registry.corp:5000/team/customjob-controller:abc", "customjob-controller:abc")]
    assert [p[:2] for p in client.images.pushed] == [("registry.corp:5000/team/customjob-controller", "abc"),
                                                     ("registry.corp:5000/team/trainer", "def")]


@pytest.mark.parametrize("route", [
    delivery.KindLoad(kind_cluster="c", kind_bin=Path("/opt/kind")),
    delivery.RegistryPush(registry="registry.corp:5000", auth={"username": "u", "password": "s3cr3t"}),
    delivery.NoDelivery(),
], ids=["kind", "registry", "none"])
def test_a_route_survives_its_record_without_credentials_and_tells_the_backend_the_same(
        route: delivery.Route) -> None:
    import json

    from harness.backend.config import BackendConfig

    record = json.loads(json.dumps(route.to_record()))
    assert "s3cr3t" not in json.dumps(record), "no credentials in a record"
    assert delivery.route_from_record(record) == route
    told = {"template-path": "t.yaml", **route.backend_config("trainer")}
    cfg = BackendConfig.from_dict(told)
    back = cfg.route(f"{route.registry}/trainer" if route.registry else "trainer")
    assert (back.mode, back.kind_cluster, back.registry if route.mode == "registry" else None) == \
        (route.mode, route.kind_cluster, route.registry)


def test_the_registry_containers_route_is_restored_as_itself_and_an_unknown_one_is_named() -> None:
    from harness.registry.route import LocalRegistryPush

    route = LocalRegistryPush(registry="localhost:5002")
    assert delivery.route_from_record(route.to_record()) == route
    assert type(delivery.route_from_record(route.to_record())) is LocalRegistryPush
    with pytest.raises(ValueError, match="unknown image route 'carrier-pigeon'"):
        delivery.route_from_record({"route": "carrier-pigeon"})
