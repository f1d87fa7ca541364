"""Unit tier: the host values a kind node's kubelet rewrites are recorded, restored, and then forgotten."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.clusters import kind_cli
from harness.clusters.kind_cli import KUBELET_HOST_SYSCTLS, KindCluster

ORIGINAL = {"kernel/panic": "0", "kernel/panic_on_oops": "0", "vm/overcommit_memory": "0", "vm/panic_on_oom": "0",
            "kernel/keys/root_maxkeys": "1000000", "kernel/keys/root_maxbytes": "25000000"}
KUBELET = {"kernel/panic": "10", "kernel/panic_on_oops": "1", "vm/overcommit_memory": "1", "vm/panic_on_oom": "0",
           "kernel/keys/root_maxkeys": "1000000", "kernel/keys/root_maxbytes": "25000000"}


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    proc = tmp_path / "proc-sys"
    for key, value in ORIGINAL.items():
        (proc / key).parent.mkdir(parents=True, exist_ok=True)
        (proc / key).write_text(value + "\n")
    monkeypatch.setattr(kind_cli, "PROC_SYS", proc)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(KindCluster, "_kind_nodes_running", staticmethod(lambda: False))
    return proc


def _read(proc: Path) -> dict[str, str]:
    return {k: (proc / k).read_text().strip() for k in KUBELET_HOST_SYSCTLS}


def test_every_kubelet_touched_value_is_restored_and_the_record_removed(host: Path, tmp_path: Path) -> None:
    said: list[str] = []
    kind = KindCluster("c", Path("kind"), tmp_path / "state", log=said.append)
    kind.save_host_sysctls()
    record = KindCluster._sysctl_file()
    assert record.is_file()
    for key, value in KUBELET.items():  # what a running node's kubelet does to the host
        (host / key).write_text(value)
    kind.restore_host_sysctls()
    assert _read(host) == ORIGINAL
    assert not record.exists(), "a restored record must be forgotten"
    assert any("vm.overcommit_memory=0" in s for s in said)
    (host / "vm/overcommit_memory").write_text("2")  # an admin's later choice
    kind.restore_host_sysctls()
    assert (host / "vm/overcommit_memory").read_text() == "2", "nothing is restored without a fresh record"


def test_a_failed_restore_keeps_the_record(host: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kind = KindCluster("c", Path("kind"), tmp_path / "state", log=lambda _m: None)
    kind.save_host_sysctls()
    (host / "kernel/panic").write_text("10")
    (host / "kernel/panic").chmod(0o444)
    monkeypatch.setattr(Path, "write_text", _refuse_writes(Path.write_text, host / "kernel/panic"))
    kind.restore_host_sysctls()
    assert KindCluster._sysctl_file().is_file(), "keep it, so a later (root) run can still restore"


def _refuse_writes(original, target: Path):  # type: ignore[no-untyped-def]
    def write_text(self: Path, *args: object, **kwargs: object) -> int:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    return write_text
