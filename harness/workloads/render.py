"""A workload template: load, check, render into the object one run submits (pure; no cluster, no run).

MLflow PR #4317 proposed rendering the kubernetes job YAML with ``{placeholder}``
substitution. Doing that on the YAML *text* lets a value containing ``: `` or a
newline add keys, so here the YAML is parsed first and placeholders are replaced
only inside string scalars of the parsed tree (never in keys, never re-scanned).
What carries run-specific structure (the argv, the environment, the MLflow ids)
is then written into the tree as data, not text, at the places the workload
kind names (:class:`~harness.workloads.kind.WorkloadKind`).

Fields the backend writes itself are never rendered: each run container's argv
field, and with ``template-style = "mlflow"`` (MLflow's own kubernetes backend)
also ``metadata.name`` and the container's name and image, whatever the
template holds there (MLflow's example says ``"{replaced with ...}"``). With the
default ``placeholders`` style, ``metadata.name`` and ``image`` must be absent
or render to what the backend would write (``{job_name}``, ``{image}``): a
literal there would silently not be what runs.

Placeholder syntax: ``{name}``; ``{{`` and ``}}`` are literal braces. Names:
``project_name``, ``entry_point``, ``image``, ``run_id``, ``experiment_id``,
``tracking_uri``, ``namespace``, ``job_name`` and ``params.<name>`` for every
parameter. An unknown name is an error that lists the known ones.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness._errors import HarnessError
from harness.workloads import paths
from harness.workloads.kind import ENV_NAMES, WorkloadKind

__all__ = [
    "BASE_PLACEHOLDERS",
    "RESERVED_ENV_PREFIX",
    "RunValues",
    "TemplateError",
    "build",
    "check",
    "load",
    "placeholders_in",
    "refuse_reserved",
    "render",
]

BASE_PLACEHOLDERS: tuple[str, ...] = (
    "project_name",
    "entry_point",
    "image",
    "run_id",
    "experiment_id",
    "tracking_uri",
    "namespace",
    "job_name",
)
"""Placeholders every template may use; ``params.<name>`` are added per run."""

RESERVED_ENV_PREFIX = "MLFLOW_"
"""With a field identity (the stub), no ``MLFLOW_*`` env may sit beside it: the controller injects them."""

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_BLANK = "\x00backend-writes-this\x00"


class TemplateError(HarnessError):
    """The template is not YAML, not of its kind, or uses an unknown placeholder; the message says where."""


@dataclass(frozen=True)
class RunValues:
    """What one run writes into its object."""

    job_name: str
    namespace: str
    image: str
    argv: Sequence[str]
    run_id: str
    experiment_id: str
    tracking_uri: str
    project_name: str
    env: Mapping[str, str]
    """The MLproject's ``docker_env`` ``[NAME, value]`` pairs."""
    placeholders: Mapping[str, str]
    """Every placeholder value (``image``, ``params.alpha``, ...)."""
    labels: Mapping[str, str]


def load(path: str | Path) -> dict[str, Any]:
    """Read and parse a template file; structural problems raise :class:`TemplateError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read workload template {str(path)!r}: {exc}") from exc
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"workload template {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise TemplateError(f"workload template {str(path)!r} must be a YAML mapping (one object), "
                            f"got {type(tree).__name__}")
    return tree


def _containers(tree: Any, kind: WorkloadKind) -> list[tuple[str, MutableMapping[str, Any]]]:
    found = [(where, node) for where, node in paths.find(tree, kind.containers) if isinstance(node, MutableMapping)]
    if not found:
        raise TemplateError(f"the template has no container at {str(kind.containers)!r} (workload '{kind.name}' "
                            f"puts the run's image and argv there); add it, or fix the definition's 'containers'")
    return found


def _blanked(template: Mapping[str, Any], kind: WorkloadKind) -> dict[str, Any]:
    """A copy of ``template`` with every field the backend writes replaced by a marker (never rendered)."""
    tree = copy.deepcopy(dict(template))
    for _where, container in _containers(tree, kind):
        container[kind.argv_field] = _BLANK
        if kind.template_style == "mlflow":
            container["image"] = _BLANK
        if kind.template_style == "mlflow" or kind.container_name is not None:
            container["name"] = _BLANK
    if kind.template_style == "mlflow" and isinstance(tree.get("metadata"), MutableMapping):
        tree["metadata"]["name"] = _BLANK
    return tree


def check(template: Mapping[str, Any], kind: WorkloadKind, known: Sequence[str], *, placeholders: bool = True) -> None:
    """Fail early, naming the field and the fix, on a template that can never render into a valid object.

    ``placeholders=False`` skips the unknown-placeholder check (the settings look at a
    template before the MLproject's parameters are known).
    """
    if template.get("apiVersion") != kind.api_version or template.get("kind") != kind.kind:
        raise TemplateError(
            f"template must have apiVersion: {kind.api_version} and kind: {kind.kind} (workload '{kind.name}'); "
            f"got apiVersion: {template.get('apiVersion')!r}, kind: {template.get('kind')!r}")
    metadata = template.get("metadata")
    if not isinstance(metadata, dict):
        raise TemplateError("template is missing the 'metadata' mapping")
    if kind.template_style == "placeholders" and "name" in metadata and (
            not isinstance(metadata["name"], str) or not metadata["name"]):
        raise TemplateError('template metadata.name must be a string (use "{job_name}")')
    namespace = metadata.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or ("{" in namespace and namespace != "{namespace}")):
        raise TemplateError(f"template metadata.namespace {namespace!r} must be absent, \"{{namespace}}\" or a literal "
                            "namespace (the run's namespace is decided before anything is built)")
    tree = _blanked(template, kind)
    gaps = paths.unmatched_branches(tree, kind.containers)
    if gaps:
        raise TemplateError(f"the template has no container at {str(kind.containers)!r} under {', '.join(gaps)} "
                            f"(workload '{kind.name}' runs the project in every one of them); add it there")
    for where, container in _containers(tree, kind):
        image = container.get("image")
        if image is not None and image not in (_BLANK, "{image}"):
            raise TemplateError(f"template {where}.image is {image!r}: it must be \"{{image}}\" or absent (the pod "
                                "runs the image built for the run, with the project code inside)")
        env = container.get("env", [])
        if not isinstance(env, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in env):
            raise TemplateError(f"template {where}.env must be a list of {{name: ..., value: ...}} mappings")
        refuse_reserved((e["name"] for e in env), kind, f"template {where}.env")
        other = "args" if kind.argv_field == "command" else "command"
        if other in container and not isinstance(container[other], list):
            raise TemplateError(f"template {where}.{other} must be a list when present")
    if kind.identity.field is not None:
        found = paths.find(tree, kind.identity.field)
        if found and not isinstance(found[0][1], dict):
            raise TemplateError(f"template {kind.identity.field} must be a mapping when present")
    unknown = sorted({name for name, _ in placeholders_in(tree)} - set(known)) if placeholders else []
    if unknown:
        where_of = {n: p for n, p in placeholders_in(tree) if n in unknown}
        details = ", ".join(f"{{{n}}} at {where_of[n]}" for n in unknown)
        raise TemplateError(
            f"template uses unknown placeholder(s) {details}; known: "
            f"{', '.join('{' + k + '}' for k in known)} (write {{{{ and }}}} for literal braces)")
    name = metadata.get("name")
    if kind.template_style == "placeholders" and isinstance(name, str) and not (
            "{job_name}" in name or "{run_id}" in name):
        raise TemplateError(f"template metadata.name {name!r} is the same for every run, so the second one would "
                            "be refused as a duplicate: use \"{job_name}\" (or drop it)")


def refuse_reserved(names: Iterable[str], kind: WorkloadKind, where: str, fix: str = "remove the entry") -> None:
    """TemplateError naming the first env name that would fight the run's identity, and ``fix``."""
    for index, name in enumerate(names):
        if kind.identity.mode == "field" and name.startswith(RESERVED_ENV_PREFIX):
            raise TemplateError(
                f"{where}[{index}] sets {name}: the backend puts the run into {kind.identity.field}, from which the "
                "controller injects MLFLOW_RUN_ID, MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID, and no other "
                f"{RESERVED_ENV_PREFIX}* env entry may sit next to it (a second source could log to another run "
                f"than the one the controller closes); {fix}")
        if kind.identity.mode == "env" and name in ENV_NAMES.values():
            raise TemplateError(
                f"{where}[{index}] sets {name}: the backend writes MLFLOW_RUN_ID, MLFLOW_TRACKING_URI and "
                f"MLFLOW_EXPERIMENT_ID for the run itself (a second value could log to another run); {fix} (set the "
                "pods' tracking URI with 'tracking-uri' or KUBE_MLFLOW_TRACKING_URI)")


def placeholders_in(tree: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(placeholder name, dotted path)`` for every placeholder in string values."""
    if isinstance(tree, str):
        if tree == _BLANK:
            return
        for match in _TOKEN.finditer(tree):
            if match.group(1) is not None:
                yield match.group(1), path or "<root>"
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from placeholders_in(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from placeholders_in(value, f"{path}[{index}]")


def render(tree: Any, values: Mapping[str, str]) -> Any:
    """Return a copy of ``tree`` with placeholders replaced in string scalars only.

    Keys, numbers, booleans and nulls are untouched, and a substituted value is
    never scanned again, so no value can create keys, change types or expand
    another placeholder.
    """
    if isinstance(tree, str):
        return tree if tree == _BLANK else _substitute(tree, values)
    if isinstance(tree, dict):
        return {key: render(value, values) for key, value in tree.items()}
    if isinstance(tree, list):
        return [render(value, values) for value in tree]
    return copy.deepcopy(tree)


def _substitute(text: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        matched = match.group(0)
        if matched in ("{{", "}}"):
            return matched[0]
        name = match.group(1)
        if name not in values:
            raise TemplateError(f"unknown placeholder {{{name}}} in {text!r}")
        return values[name]

    return _TOKEN.sub(replace, text)


def _container_name(kind: WorkloadKind, values: Mapping[str, str]) -> str:
    assert kind.container_name is not None
    name = re.sub(r"[^a-z0-9]+", "-", _substitute(kind.container_name, values).lower()).strip("-")[:63].strip("-")
    return name or "main"


def build(template: Mapping[str, Any], kind: WorkloadKind, run: RunValues) -> dict[str, Any]:
    """Render ``template`` and write the run's name, image, argv, env and identity where ``kind`` says."""
    body: dict[str, Any] = render(_blanked(template, kind), run.placeholders)
    metadata = body.setdefault("metadata", {})
    name = metadata.get("name")
    if name in (None, _BLANK):
        metadata["name"] = run.job_name
    elif not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
        raise TemplateError(f"metadata.name rendered to {name!r}, which is not a DNS-1123 label "
                            f"(lower-case alphanumerics and '-', at most 63 chars); use \"{{job_name}}\"")
    rendered_ns = metadata.setdefault("namespace", run.namespace)
    if rendered_ns != run.namespace:
        raise TemplateError(f"metadata.namespace rendered to {rendered_ns!r} but the run goes to namespace "
                            f"{run.namespace!r}; use \"{{namespace}}\", drop the field, or set 'namespace' to match")
    metadata["labels"] = {**(metadata.get("labels") or {}), **run.labels}

    refuse_reserved(run.env, kind, "the run's environment (MLproject docker_env.environment)")
    identity_env = ({ENV_NAMES["run-id"]: run.run_id, ENV_NAMES["tracking-uri"]: run.tracking_uri,
                     ENV_NAMES["experiment-id"]: run.experiment_id} if kind.identity.mode == "env" else {})
    for where, container in _containers(body, kind):
        image = container.get("image")
        if image in (None, _BLANK):
            container["image"] = run.image
        elif image != run.image:
            raise TemplateError(f"{where}.image rendered to {image!r}, not the image built for this run "
                                f"({run.image!r}); use \"{{image}}\" so the pod runs the project code")
        if container.get("name") == _BLANK or kind.container_name is not None:
            container["name"] = _container_name(kind, run.placeholders) if kind.container_name else run.job_name
        container[kind.argv_field] = list(run.argv)
        kept = [e for e in container.get("env") or [] if e.get("name") not in run.env]
        refuse_reserved((str(e.get("name")) for e in kept), kind, f"{where}.env (rendered from the template)")
        container["env"] = (kept + [{"name": k, "value": v} for k, v in run.env.items()]
                            + [{"name": k, "value": v} for k, v in identity_env.items()])
    if kind.identity.field is not None:
        target = _mapping_at(body, kind.identity.field)
        keys = kind.identity.keys
        target.update({keys["run-id"]: run.run_id, keys["experiment-id"]: run.experiment_id,
                       keys["tracking-uri"]: run.tracking_uri})
    return body


def _mapping_at(tree: dict[str, Any], path: paths.Path) -> dict[str, Any]:
    """The mapping at ``path`` (plain keys only), created on the way if absent."""
    node: dict[str, Any] = tree
    for seg in str(path).split("."):
        child = node.get(seg)
        if not isinstance(child, dict):
            child = {} if child is None else dict(child)
            node[seg] = child
        node = child
    return node
