"""Field paths into a parsed manifest: ``spec.pytorchReplicaSpecs.*.template.spec.containers[0]`` (pure).

A workload definition says where the run's container(s) live in its template
with one of these paths, in the spirit of ``kubectl get -o jsonpath`` but only
what a definition needs:

====================  ==========================================================
segment               selects
====================  ==========================================================
``name``              the mapping key ``name``
``[3]``               list item 3
``[*]`` or ``.*``     every list item / every mapping value (in template order)
``[name=pytorch]``    the list item(s) whose ``name`` is ``pytorch``
====================  ==========================================================

Paths are parsed once (:func:`parse`, errors say where the syntax broke) and
resolved against a tree with :func:`find`, which returns every match with its
concrete path, so an error can say ``spec.pytorchReplicaSpecs.Worker.template``
instead of the pattern. Nothing here writes: callers change the matched
mappings themselves, so what is written stays visible at the call site.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Path", "PathError", "find", "get", "parse", "unmatched_branches"]


class PathError(ValueError):
    """A path does not parse; the message shows where."""


@dataclass(frozen=True)
class _Key:
    name: str


@dataclass(frozen=True)
class _Index:
    index: int


@dataclass(frozen=True)
class _Every:
    pass


@dataclass(frozen=True)
class _Where:
    field: str
    value: str


_Segment = _Key | _Index | _Every | _Where
_NAME = r"[A-Za-z0-9_$@-]+"
_BRACKET = re.compile(r"\[(\*|\d+|[A-Za-z0-9_-]+=[^\]]+)\]")


@dataclass(frozen=True)
class Path:
    """A parsed path; ``str()`` gives it back as written."""

    text: str
    segments: tuple[_Segment, ...]

    def __str__(self) -> str:
        return self.text

    @property
    def has_wildcard(self) -> bool:
        return any(isinstance(s, (_Every, _Where)) for s in self.segments)

    @property
    def plain(self) -> bool:
        """Only mapping keys (``spec.mlflow``): a place one can create, not only find."""
        return bool(self.segments) and all(isinstance(s, _Key) for s in self.segments)


def parse(text: str) -> Path:
    """Parse ``text``; :class:`PathError` names the offending position."""
    if not isinstance(text, str) or not text.strip():
        raise PathError("a path must be a non-empty string such as 'spec.template.spec.containers[0]'")
    text = text.strip().removeprefix(".")
    segments: list[_Segment] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "[":
            match = _BRACKET.match(text, pos)
            if match is None:
                raise PathError(f"path {text!r}: bad [...] at position {pos}; use [0], [*] or [name=value]")
            inner = match.group(1)
            if inner == "*":
                segments.append(_Every())
            elif inner.isdigit():
                segments.append(_Index(int(inner)))
            else:
                field, value = inner.split("=", 1)
                segments.append(_Where(field, value))
            pos = match.end()
        elif text[pos] == ".":
            if pos + 1 >= len(text) or text[pos + 1] in ".[":
                raise PathError(f"path {text!r}: empty segment at position {pos}")
            pos += 1
            continue
        elif text[pos] == "*":
            segments.append(_Every())
            pos += 1
        else:
            end = pos
            while end < len(text) and text[end] not in ".[":
                end += 1
            name = text[pos:end]
            if not re.fullmatch(_NAME, name) or "*" in name:
                raise PathError(f"path {text!r}: {name!r} at position {pos} is not a field name")
            segments.append(_Key(name))
            pos = end
        if pos < len(text) and text[pos] not in ".[":
            raise PathError(f"path {text!r}: expected '.' or '[' at position {pos}")
    return Path(text, tuple(segments))


def _step(node: Any, seg: _Segment, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(seg, _Key):
        if isinstance(node, Mapping) and seg.name in node:
            yield (f"{where}.{seg.name}" if where else seg.name), node[seg.name]
    elif isinstance(seg, _Index):
        if isinstance(node, list) and seg.index < len(node):
            yield f"{where}[{seg.index}]", node[seg.index]
    elif isinstance(seg, _Every):
        if isinstance(node, list):
            for i, item in enumerate(node):
                yield f"{where}[{i}]", item
        elif isinstance(node, Mapping):
            for key, item in node.items():
                yield (f"{where}.{key}" if where else str(key)), item
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, Mapping) and str(item.get(seg.field)) == seg.value:
                yield f"{where}[{i}]", item


def find(tree: Any, path: Path) -> list[tuple[str, Any]]:
    """Every node ``path`` selects in ``tree``, with its concrete path, in tree order (may be empty)."""
    current: list[tuple[str, Any]] = [("", tree)]
    for seg in path.segments:
        current = [found for where, node in current for found in _step(node, seg, where)]
    return current


def get(tree: Any, path: Path | str, default: Any = None) -> Any:
    """The first node ``path`` selects, else ``default``."""
    found = find(tree, parse(path) if isinstance(path, str) else path)
    return found[0][1] if found else default


def unmatched_branches(tree: Any, path: Path) -> list[str]:
    """Where a ``*``/``[*]`` branch of ``path`` leads to no match (a replica without its container).

    ``find`` is satisfied by one match; a definition that says "every replica's
    ``pytorch`` container" means every branch a wildcard opens must have one.
    """
    missing: list[str] = []

    def walk(node: Any, segs: tuple[_Segment, ...], where: str) -> bool:
        if not segs:
            return True
        seg, rest = segs[0], segs[1:]
        children = list(_step(node, seg, where))
        if isinstance(seg, _Every) and rest:
            found = False
            for child_where, child in children:
                if walk(child, rest, child_where):
                    found = True
                else:
                    missing.append(child_where)
            return found
        return any([walk(child, rest, child_where) for child_where, child in children])

    walk(tree, path.segments, "")
    return missing
