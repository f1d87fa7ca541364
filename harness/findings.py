"""A preflight finding: what ``python -m harness doctor`` and a provider's own preflight report.

Low in the layers so that a cluster provider can say what it needs
(:meth:`harness.clusters.ProviderClass.preflight`) without importing the
doctor, which asks every provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Finding", "Level"]

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    name: str
    level: Level
    seen: str
    fix: str = ""
