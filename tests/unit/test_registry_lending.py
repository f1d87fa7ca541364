"""harness.registry.lending: a user's registry joined to kind's network is recorded, and every record is undone once.

The Docker side is real in the matrix tier (a registry of the user's, two lanes of sessions whose
clusters come and go: ``tests.support.userregistry down`` reports one left on the network); here
only the records and the commands they turn into.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import _exec
from harness.registry import lending

pytestmark = pytest.mark.unit


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[list[str]] = []

    def fake(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append([str(a) for a in args])
        return subprocess.CompletedProcess(args, 1, "", "not connected")  # a failure is ignored

    monkeypatch.setattr(_exec, "run", fake)
    return calls


def test_a_lent_registry_is_recorded_until_it_is_returned_once(docker: list[list[str]]) -> None:
    lending.note_lent("kind-registry", "kind")
    lending.note_lent("kind-registry", "kind")  # a second session lending it again: still one record
    lending.note_lent("team-registry", "kind")
    assert lending.lent() == ["kind-registry", "team-registry"]
    said: list[str] = []
    assert lending.return_lent(said.append) == ["kind-registry", "team-registry"]
    assert docker == [["docker", "network", "disconnect", "kind", "kind-registry"],
                      ["docker", "network", "disconnect", "kind", "team-registry"]]
    assert len(said) == 2  # each undo says so
    assert lending.lent() == []
    assert lending.return_lent(said.append) == []  # nothing is undone twice
    assert len(docker) == 2


def test_a_torn_record_is_dropped_without_a_command(docker: list[list[str]], tmp_path: Path) -> None:
    records = tmp_path / "cache" / "lent-registries"
    records.mkdir(parents=True)
    (records / "half.json").write_text('{"container": "hal')
    (records / "nameless.json").write_text('{"network": "kind"}')
    assert lending.return_lent(print) == []
    assert docker == []
    assert lending.lent() == []
