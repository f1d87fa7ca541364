"""Unit tier: pinned tools: version checks, and checksum-verified downloads against loopback servers."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import toolchain
from harness.tooldownload import DownloadError, download_verified, host_platform, kind_release, kubectl_release

BINARY = b"#!/bin/sh\necho kind v0.30.0\n"


@pytest.fixture
def release_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server serving whatever the test puts in ``files`` (path -> bytes)."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()


def test_release_urls_follow_the_upstream_layout() -> None:
    kind = kind_release("v0.30.0", ("linux", "arm64"), base="https://k/dl")
    assert (kind.url, kind.checksum_url) == ("https://k/dl/v0.30.0/kind-linux-arm64",
                                             "https://k/dl/v0.30.0/kind-linux-arm64.sha256sum")
    kubectl = kubectl_release("v1.34.4", ("darwin", "amd64"), base="https://d/release")
    assert kubectl.url == "https://d/release/v1.34.4/bin/darwin/amd64/kubectl"
    assert kubectl.checksum_url.endswith("kubectl.sha256")


@pytest.mark.parametrize(("system", "machine", "expected"), [
    ("Linux", "x86_64", ("linux", "amd64")), ("Linux", "aarch64", ("linux", "arm64")),
    ("Darwin", "arm64", ("darwin", "arm64")), ("Darwin", "x86_64", ("darwin", "amd64")),
])
def test_host_platform_names(system: str, machine: str, expected: tuple[str, str]) -> None:
    assert host_platform(system, machine) == expected


def test_unsupported_platform_says_what_to_do() -> None:
    with pytest.raises(DownloadError, match="pass kind-bin / kubectl-bin"):
        host_platform("Windows", "AMD64")


def test_verified_download_lands_executable_in_the_cache(release_server: tuple[str, dict[str, bytes]],
                                                         tmp_path: Path) -> None:
    base, files = release_server
    files["/v0.30.0/kind-linux-amd64"] = BINARY
    files["/v0.30.0/kind-linux-amd64.sha256sum"] = f"{hashlib.sha256(BINARY).hexdigest()}  kind-linux-amd64\n".encode()
    path = download_verified(kind_release("v0.30.0", ("linux", "amd64"), base=base), tmp_path, timeout=5)
    assert path.read_bytes() == BINARY
    assert path.stat().st_mode & 0o111
    assert path.parent == tmp_path / "bin"
    files.clear()  # cached: no second request
    assert download_verified(kind_release("v0.30.0", ("linux", "amd64"), base=base), tmp_path, timeout=5) == path


def test_checksum_mismatch_installs_nothing(release_server: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    base, files = release_server
    files["/v0.30.0/kind-linux-amd64"] = BINARY + b"tampered"
    files["/v0.30.0/kind-linux-amd64.sha256sum"] = f"{hashlib.sha256(BINARY).hexdigest()}  kind\n".encode()
    with pytest.raises(DownloadError, match="does not match the published"):
        download_verified(kind_release("v0.30.0", ("linux", "amd64"), base=base), tmp_path, timeout=5)
    assert not list(tmp_path.rglob("kind*")), "a binary that failed its checksum must not be left in the cache"


def test_missing_checksum_file_is_refused(release_server: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    base, files = release_server
    files["/v0.30.0/kind-linux-amd64"] = BINARY
    with pytest.raises(DownloadError, match="HTTP Error 404"):
        download_verified(kind_release("v0.30.0", ("linux", "amd64"), base=base), tmp_path, timeout=5)


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections into the backlog, never replies
    try:
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(DownloadError, match="cannot download"):
            download_verified(kind_release("v0.30.0", ("linux", "amd64"), base=base), tmp_path, timeout=1)
        assert time.monotonic() - started < 10
    finally:
        silent.close()


@pytest.mark.parametrize(("text", "version"), [
    ("kind v0.30.0 go1.26.8 linux/amd64", (0, 30, 0)),
    ('{"clientVersion": {"gitVersion": "v1.32.3", "major": "1"}}', (1, 32, 3)),
    ("garbage", None),
])
def test_parse_version(text: str, version: tuple[int, int, int] | None) -> None:
    assert toolchain.parse_version(text) == version


@pytest.mark.parametrize(("client", "ok"), [((1, 33, 0), True), ((1, 34, 9), True), ((1, 35, 1), True),
                                            ((1, 32, 3), False), ((1, 36, 0), False), (None, False)])
def test_kubectl_skew_is_one_minor(client: tuple[int, int, int] | None, ok: bool) -> None:
    assert toolchain.kubectl_skew_ok(client, 34) is ok


def test_an_old_kubectl_on_path_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "kubectl"
    old.write_text('#!/bin/sh\necho \'{"clientVersion": {"gitVersion": "v1.32.3"}}\'\n')
    old.chmod(0o755)
    pinned = tmp_path / "pinned-kubectl"
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(toolchain, "cached_tool", lambda *_a: None)  # not this machine's cache
    monkeypatch.setattr(toolchain, "_download", lambda *_a: pinned)
    said: list[str] = []
    assert toolchain.resolve_kubectl(log=said.append) == pinned
    assert "outside ±1 minor of the server" in said[0]


def test_a_tool_already_on_the_machine_is_used_before_any_download(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No "cannot download ... building it instead" when the pinned binary is in the cache already."""
    cached = tmp_path / "kind"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(toolchain, "cached_tool", lambda name, version=None: cached if name == "kind" else None)
    monkeypatch.setattr(toolchain, "_download", lambda *_a: pytest.fail("a cached tool was downloaded again"))
    assert toolchain.resolve_kind() == cached


def test_a_download_mirror_set_after_import_is_obeyed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mirror variables are read when a release is asked for, not when the harness is imported (issue #23)."""
    from harness import tooldownload

    monkeypatch.setenv(tooldownload.KIND_BASE_ENV, "https://mirror.corp/kind")
    monkeypatch.setenv(tooldownload.KUBECTL_BASE_ENV, "https://mirror.corp/k8s")
    assert kind_release("v0.30.0", ("linux", "amd64")).url == "https://mirror.corp/kind/v0.30.0/kind-linux-amd64"
    assert kubectl_release("v1.35.4", ("linux", "amd64")).url.startswith("https://mirror.corp/k8s/v1.35.4/")
    monkeypatch.delenv(tooldownload.KIND_BASE_ENV)
    assert kind_release("v0.30.0", ("linux", "amd64")).url.startswith("https://kind.sigs.k8s.io/dl/")


# --- tools a normal user finds in the machine's cache ---------------------------------------------


class _Go:
    """Stands for the Go toolchain: the build paths depend on its version only."""

    version = "go1.26.0"


def _put(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


@pytest.fixture
def two_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A user's own cache (empty) and the machine's (root's), as a user who is not root sees them."""
    from harness import cachedir, hostenv
    from harness.nodeimage import gobuild

    own, machine = tmp_path / "home-cache", tmp_path / "machine-cache"
    own.mkdir()
    machine.mkdir(mode=0o755)
    monkeypatch.delenv(hostenv.CACHE_DIR, raising=False)
    monkeypatch.setattr(cachedir, "DEFAULT_CACHE_DIR", machine)
    monkeypatch.setattr(cachedir.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cachedir, "cache_dir", lambda *parts: own.joinpath(*parts))
    monkeypatch.setattr(gobuild.GoToolchain, "discover", classmethod(lambda cls, root: _Go()))
    return own, machine


def test_a_users_cache_reads_the_machines_finished_tools(two_caches: tuple[Path, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Root's runs left kubectl (among the node image's seven commands) and kind; a user compiles neither."""
    from harness import cachedir, nodeimage
    from harness.nodeimage import gobuild, versions

    own, machine = two_caches
    row = versions.release_for(None)
    # The files here belong to whoever runs the tests: trusted as "this user's" (root's, in the real cache).
    monkeypatch.setattr(cachedir.os, "geteuid", lambda: machine.stat().st_uid)
    monkeypatch.setattr(cachedir, "readable_elsewhere", lambda: [machine])
    kubectl = _put(gobuild.kubernetes_bin_dir(_Go(), machine, row.kubernetes) / "kubectl")
    kind = _put(gobuild.kind_binary_path(_Go(), machine, row.kind))
    assert nodeimage.built_tool("kubectl") == kubectl
    assert nodeimage.built_tool("kind") == kind
    # The user's own build comes first; a kubectl built alone is found too.
    alone = _put(gobuild.kubernetes_bin_dir(_Go(), own, row.kubernetes, ("kubectl",)) / "kubectl")
    assert nodeimage.built_tool("kubectl") == alone
    # An explicit cache directory is the only one looked at.
    assert nodeimage.built_tool("kind", cache_dir=own) is None


def test_a_tool_another_user_could_have_replaced_is_not_taken(tmp_path: Path) -> None:
    from harness.cachedir import trusted_file

    root = tmp_path / "cache"
    root.mkdir(mode=0o755)
    tool = _put(root / "bin" / "kubernetes-x" / "kubectl")
    (root / "bin").chmod(0o755)
    (root / "bin" / "kubernetes-x").chmod(0o755)
    assert trusted_file(tool, root)
    (root / "bin").chmod(0o775)  # group-writable: someone in the group could swap the directory below
    assert not trusted_file(tool, root)
    (root / "bin").chmod(0o755)
    tool.chmod(0o757)  # world-writable file
    assert not trusted_file(tool, root)
    tool.chmod(0o644)  # not executable
    assert not trusted_file(tool, root)
    tool.chmod(0o755)
    link = root / "bin" / "kubernetes-x" / "link"
    link.symlink_to(tool)
    assert not trusted_file(link, root)
    assert not trusted_file(tool, tmp_path / "elsewhere")  # not under the root it is said to be in


def test_only_a_user_without_a_cache_of_choice_reads_the_machines(two_caches: tuple[Path, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import cachedir, hostenv

    _own, machine = two_caches
    assert cachedir.readable_elsewhere() == [machine]
    monkeypatch.setattr(cachedir.os, "geteuid", lambda: 0)
    assert cachedir.readable_elsewhere() == []  # root's cache is the machine's
    monkeypatch.setattr(cachedir.os, "geteuid", lambda: 1000)
    monkeypatch.setenv(hostenv.CACHE_DIR, str(_own))
    assert cachedir.readable_elsewhere() == []  # HARNESS_CACHE_DIR: that cache only


def test_kubectl_alone_has_a_key_of_its_own_and_the_seven_keep_theirs() -> None:
    from harness.nodeimage import gobuild

    seven = gobuild.kubernetes_bin_dir(_Go(), Path("/c"), "v1.35.4")
    assert seven == gobuild.kubernetes_bin_dir(_Go(), Path("/c"), "v1.35.4", gobuild.KUBERNETES_COMMANDS)
    assert gobuild.kubernetes_bin_dir(_Go(), Path("/c"), "v1.35.4", ("kubectl",)) != seven


def test_kubectl_built_by_the_node_image_while_waiting_for_the_lock_is_not_built_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session waits for the build lock that a node image build of its minor holds; that build compiles
    kubectl among its seven commands, so once the lock is free there is nothing left to compile."""
    import contextlib

    from harness import nodeimage
    from harness.nodeimage import cache, gobuild, versions

    row = versions.release_for(None)
    monkeypatch.setattr(gobuild.GoToolchain, "discover", classmethod(lambda cls, root: _Go()))
    seven = gobuild.kubernetes_bin_dir(_Go(), tmp_path, row.kubernetes) / "kubectl"

    @contextlib.contextmanager
    def held_by_a_node_image_build(*_args: object, **_kwargs: object) -> Iterator[None]:
        _put(seven)  # what the holder left when it let go
        yield

    def build_kubernetes(*_args: object, **_kwargs: object) -> Path:
        raise AssertionError("kubectl compiled a second time")

    monkeypatch.setattr(cache, "build_lock", held_by_a_node_image_build)
    monkeypatch.setattr(gobuild, "build_kubernetes", build_kubernetes)
    assert nodeimage.ensure_kubectl_binary(tmp_path, log=lambda _line: None) == seven
