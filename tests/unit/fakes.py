"""Test doubles shared by unit tests (pure logic only; never a stand-in for a real component)."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that advances only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
