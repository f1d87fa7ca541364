"""Unit tier: when a running kind cluster of ours is reused, and why not (pure logic; the e2e tiers reuse for real)."""

from __future__ import annotations

import pytest

from harness.clusters.kind import KIND_LOAD, reuse_refusal

pytestmark = pytest.mark.unit

MARKER = {"fingerprint": "abc", "delivery": KIND_LOAD, "mlflow-host-port": "31000"}


def test_the_same_fingerprint_and_route_is_reused() -> None:
    assert reuse_refusal(MARKER, fingerprint="abc", delivery=KIND_LOAD, reuse=True) is None


def test_a_marker_from_before_the_route_was_recorded_is_reused() -> None:
    old = {k: v for k, v in MARKER.items() if k != "delivery"}
    assert reuse_refusal(old, fingerprint="abc", delivery="registry local", reuse=True) is None


@pytest.mark.parametrize(("recorded", "wanted"), [(KIND_LOAD, "registry local"), ("registry local", KIND_LOAD),
                                                  ("registry local", "registry localhost:5002")])
def test_another_delivery_route_is_not_reused_and_says_why(recorded: str, wanted: str) -> None:
    why = reuse_refusal({**MARKER, "delivery": recorded}, fingerprint="abc", delivery=wanted, reuse=True)
    assert why is not None
    assert f"came by {recorded}," in why
    assert f"come by {wanted}:" in why
    assert "kind-loaded name" in why


@pytest.mark.parametrize(("marker", "reuse", "expected"), [
    (MARKER, False, "reuse disabled"),
    (None, True, "its marker cannot be read"),
    ({**MARKER, "fingerprint": "old"}, True, "fingerprint old != abc"),
])
def test_the_other_refusals(marker: dict[str, str] | None, reuse: bool, expected: str) -> None:
    assert reuse_refusal(marker, fingerprint="abc", delivery=KIND_LOAD, reuse=reuse) == expected
