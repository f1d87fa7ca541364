"""Unit tier: the registry-less base image is built by one builder at a time (docker tier workers, parallel jobs)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness import baseimage, dockercli

pytestmark = pytest.mark.unit


def test_two_builders_at_once_build_the_base_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    built: list[str] = []

    def exists(tag: str) -> bool:
        return tag in built

    def build(tag: str, *, log: object) -> str:
        time.sleep(0.5)  # long enough for the other builder to arrive while this one holds the lock
        built.append(tag)
        return tag

    monkeypatch.setattr(dockercli, "image_exists", exists)
    monkeypatch.setattr(baseimage, "_build_local_python_base", build)
    results: list[str] = []
    workers = [threading.Thread(target=lambda: results.append(baseimage.build_local_python_base(log=lambda _l: None)))
               for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert len(results) == 2
    assert results[0] == results[1]
    assert built == [results[0]], "the second builder waited and found the first one's image"
