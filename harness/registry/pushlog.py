"""What a ``docker push`` actually uploaded (pure parsing, no I/O).

``docker push`` without a terminal prints one line per layer state change
(``<id>: Pushed``, ``<id>: Layer already exists``, ``<id>: Mounted from …``)
but no sizes; ``<id>`` is the first 12 hex digits of the layer's uncompressed
digest (its diff id). The image config lists the diff ids in layer order and
the manifest lists the uploaded (compressed) sizes in the same order, so
together they turn the status lines into bytes sent versus bytes the
registry already had.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["PushLog", "PushReport", "parse_push_output", "summarise_push"]

_LAYER_LINE = re.compile(r"^([0-9a-f]{12}): (.+?)\s*$")
_DIGEST_LINE = re.compile(r"^(\S+): digest: (sha256:[0-9a-f]{64}) size: (\d+)\s*$")

_PRESENT_PREFIXES = ("Layer already exists", "Mounted from")


@dataclass(frozen=True)
class PushLog:
    """Final state per layer id, and the manifest digest and size the push ended with."""

    layers: Mapping[str, str]
    digest: str
    manifest_size: int


@dataclass(frozen=True)
class PushReport:
    """One push: where the image is now and how much of it had to travel."""

    tag_ref: str
    digest_ref: str
    layers_pushed: int
    layers_present: int
    bytes_pushed: int
    bytes_present: int

    def summary(self) -> str:
        total = self.layers_pushed + self.layers_present
        return (f"{self.digest_ref}: {self.layers_pushed}/{total} layers uploaded "
                f"({self.bytes_pushed / 1e6:.1f} MB), {self.layers_present} already present "
                f"({self.bytes_present / 1e6:.1f} MB not sent)")


def parse_push_output(text: str) -> PushLog:
    """Read ``docker push`` output; raise ``ValueError`` if it has no final digest line.

    Progress lines (``Pushing [=>  ] 1MB/5MB``) and carriage-return updates
    are ignored: only the last status of each layer counts.
    """
    layers: dict[str, str] = {}
    digest = ""
    size = 0
    for raw in text.replace("\r", "\n").splitlines():
        line = raw.strip()
        if m := _DIGEST_LINE.match(line):
            digest, size = m.group(2), int(m.group(3))
        elif (m := _LAYER_LINE.match(line)) and not m.group(2).startswith("Pushing"):
            layers[m.group(1)] = m.group(2)
    if not digest:
        raise ValueError("docker push output has no 'digest: sha256:… size: N' line")
    return PushLog(layers=layers, digest=digest, manifest_size=size)


def summarise_push(
    log: PushLog, *, tag_ref: str, digest_ref: str, diff_ids: Sequence[str], layer_sizes: Sequence[int],
) -> PushReport:
    """Combine the status lines with the config's diff ids and the manifest's layer sizes.

    A layer whose status says neither pushed nor present (an interrupted
    push would not get here) counts as pushed, so savings are never
    overstated. Sizes are compressed bytes as stored in the registry.
    """
    if len(diff_ids) != len(layer_sizes):
        raise ValueError(f"config lists {len(diff_ids)} layers but the manifest {len(layer_sizes)}")
    pushed = present = bytes_pushed = bytes_present = 0
    for diff_id, size in zip(diff_ids, layer_sizes, strict=True):
        status = log.layers.get(diff_id.removeprefix("sha256:")[:12], "")
        if status.startswith(_PRESENT_PREFIXES):
            present += 1
            bytes_present += size
        else:
            pushed += 1
            bytes_pushed += size
    return PushReport(tag_ref=tag_ref, digest_ref=digest_ref, layers_pushed=pushed, layers_present=present,
                      bytes_pushed=bytes_pushed, bytes_present=bytes_present)
