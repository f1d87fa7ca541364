"""The run manifest: what one session ran with, written next to its JUnit report, and re-run from.

A CI failure is only useful if it can be reproduced: the same kind, the same
node image, the same Kubernetes, the same images, the same Python packages.
Each session writes those facts (versions *and* digests) as JSON, next to the
JUnit report (``build/junit-e2e.xml`` -> ``build/junit-e2e.manifest.json``)
and into every failure bundle. ``--harness-from-manifest FILE`` re-runs with
exactly that record: its settings become this session's (an explicit setting
that disagrees is refused), and whatever this machine produces differently
(another harness release, other package versions, a node image or built image
with another digest) stops the session with the field, both values and the fix,
instead of running something else under the old name.

Only facts that decide what runs are compared; timings, paths and the cluster
name are not. This module imports nothing of the harness but its errors (and
its version, when asked), so settings, the plugin, the test bed and the CLI can
all use it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from harness._errors import HarnessError

__all__ = [
    "KEY_DISTRIBUTIONS",
    "PINNED_SETTINGS",
    "SCHEMA",
    "ManifestError",
    "check_reproduces",
    "check_reproducible",
    "compare",
    "describe",
    "environment_differences",
    "load",
    "lock_sha256",
    "manifest_path_for",
    "merge",
    "pinned_settings",
    "python_environment",
    "write",
]

SCHEMA = 1
"""Bumped when a field changes meaning; a manifest of another schema is refused, not guessed at."""

PINNED_SETTINGS = ("cluster", "kubernetes-version", "workers", "node-image-mode", "base-mode", "tracking")
"""The settings a manifest records and a re-run takes over (the rest do not change what runs)."""

KEY_DISTRIBUTIONS = ("mlflow-crd-harness", "mlflow", "mlflow-skinny", "kubernetes", "docker", "kopf", "pytest",
                     "pytest-xdist", "scikit-learn", "pandas", "numpy")
"""Python distributions whose versions must match on a re-run (others are hashed, and only reported)."""

#: Sections compared field by field between a recorded and a new run, in this order.
_COMPARED = ("harness", "kind", "kubernetes", "node_image", "base_image", "images")
#: Recorded for the reader, never compared: a patch release of Python, an unrelated package, the lock file of a
#: source checkout (a wheel has none) may differ without changing what runs.
_NOT_COMPARED = ("all_packages_sha256", "lock_sha256", "python_patch")


class ManifestError(HarnessError):
    """A manifest cannot be read, or this run cannot reproduce it; the message names the field and the fix."""


def python_environment() -> dict[str, Any]:
    """This interpreter's version, the key distributions' versions, and a hash of every installed one."""
    every = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in metadata.distributions()})
    key: dict[str, str] = {}
    for name in KEY_DISTRIBUTIONS:
        try:
            key[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    major, minor, *_ = platform.python_version_tuple()
    return {
        "python": f"{major}.{minor}",
        "python_patch": platform.python_version(),
        "packages": key,
        "all_packages_sha256": hashlib.sha256("\n".join(every).encode()).hexdigest(),
    }


def lock_sha256(root: Path) -> str | None:
    """sha256 of ``requirements/constraints.txt`` under ``root`` (a source checkout), else None."""
    lock = root / "requirements" / "constraints.txt"
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None


def manifest_path_for(junit_xml: str | Path | None, state_dir: Path) -> Path:
    """``build/junit-e2e.xml`` -> ``build/junit-e2e.manifest.json``; without JUnit, in the state dir."""
    if junit_xml:
        return Path(junit_xml).with_suffix(".manifest.json")
    return state_dir / "run-manifest.json"


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it; ``images`` tables are united (xdist workers' projects)."""
    out = {**base, **{k: v for k, v in extra.items() if k != "images"}}
    out["images"] = {**(base.get("images") or {}), **(extra.get("images") or {})}
    return out


def write(path: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest`` as stable, sorted JSON (a diff between two runs is then readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": SCHEMA, **manifest}, indent=2, sort_keys=True) + "\n")
    return path


def load(path: Path) -> dict[str, Any]:
    """Read a manifest written by :func:`write`; refuse anything else with the reason."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ManifestError(f"run manifest {path}: cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ManifestError(f"run manifest {path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"run manifest {path}: schema {got!r}, this harness reads schema {SCHEMA}; "
                            "use the harness release that wrote it (its 'harness.version' field)")
    return data


def pinned_settings(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a re-run takes over from ``manifest`` (see :data:`PINNED_SETTINGS`)."""
    recorded = manifest.get("settings") or {}
    return {k: recorded[k] for k in PINNED_SETTINGS if k in recorded}


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def environment_differences(recorded: Mapping[str, Any], now: Mapping[str, Any] | None = None) -> list[str]:
    """What of the recorded harness release and Python packages this interpreter does not have."""
    if now is None:
        from harness._version import __version__

        now = {"harness": {"version": __version__, "python": python_environment()}}
    return _differences(recorded, now, sections=("harness",), skip=_NOT_COMPARED)


def compare(recorded: Mapping[str, Any], now: Mapping[str, Any], *, images_in_both_only: bool = False) -> list[str]:
    """Every compared field whose value differs: ``'node_image.id: recorded sha256:a…, now sha256:b…'``.

    ``images_in_both_only``: an image role recorded but not built in this run
    (or the reverse) is not a difference (a session that ran other projects).
    Hashes of the whole package set and of the lock file are reported as
    notes by the caller, not compared: an unrelated package may differ.
    """
    return _differences(recorded, now, sections=_COMPARED, skip=_NOT_COMPARED,
                        images_in_both_only=images_in_both_only)


def _differences(recorded: Mapping[str, Any], now: Mapping[str, Any], *, sections: tuple[str, ...],
                 skip: tuple[str, ...], images_in_both_only: bool = False) -> list[str]:
    out: list[str] = []
    for section in sections:
        old = _flatten(recorded.get(section) or {}, section)
        new = _flatten(now.get(section) or {}, section)
        for key in sorted(set(old) | set(new)):
            if key.rsplit(".", 1)[-1] in skip:
                continue
            if section == "images" and images_in_both_only and (key not in old or key not in new):
                continue
            if old.get(key) != new.get(key):
                out.append(f"{key}: recorded {_show(old.get(key))}, now {_show(new.get(key))}")
    return out


def _show(value: Any) -> str:
    return "(absent)" if value is None else repr(value)


def check_reproducible(path: Path) -> dict[str, Any]:
    """The record at ``path``, once this interpreter is shown able to reproduce it (else the pins to install)."""
    recorded = load(path)
    diffs = environment_differences(recorded)
    if diffs:
        wanted = recorded.get("harness", {})
        pins = " ".join(f"{k}=={v}" for k, v in (wanted.get("python", {}).get("packages") or {}).items())
        raise ManifestError(
            f"from-manifest {path}: this Python environment cannot reproduce that run:\n  "
            + "\n  ".join(diffs) + f"\nfix: run under Python {wanted.get('python', {}).get('python')} with "
            f"pip install {pins}")
    return recorded


def check_reproduces(recorded: Mapping[str, Any], now: Mapping[str, Any], path: Path) -> None:
    """Refuse a session whose kind, Kubernetes, node image, base image or built images differ from the record."""
    diffs = compare(recorded, now, images_in_both_only=True)
    if diffs:
        raise ManifestError(
            f"from-manifest {path}: this machine built or found something else:\n  " + "\n  ".join(diffs)
            + "\nfix: load the recorded images (docker load) or the recorded node image, or re-run without "
            "--harness-from-manifest to record a new baseline")


def describe(*, settings: Mapping[str, Any], server_version: str, base_image: Mapping[str, Any],
             images: Mapping[str, Any], cluster: Mapping[str, Any],
             provider_facts: Mapping[str, Mapping[str, Any]], root: Path) -> dict[str, Any]:
    """A session's manifest from what its test bed found: versions and digests of everything that decides what
    runs; ``provider_facts`` (kind's version, the node image...) are merged in section by section."""
    from harness._version import __version__

    out: dict[str, Any] = {
        "harness": {"version": __version__, "python": python_environment(), "lock_sha256": lock_sha256(root)},
        "settings": dict(settings),
        "kubernetes": {"server": server_version},
        "base_image": dict(base_image),
        "images": dict(images),
        "cluster": dict(cluster),
    }
    for key, value in provider_facts.items():
        out[key] = {**out.get(key, {}), **value}
    return out

