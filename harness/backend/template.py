"""CustomJob template: load, check, render (pure; no cluster, no MLflow run).

MLflow PR #4317 proposed rendering the kubernetes job YAML with ``{placeholder}``
substitution. Doing that on the YAML *text* lets a value containing ``: `` or a
newline add keys, so here the YAML is parsed first and placeholders are replaced
only inside string scalars of the parsed tree (never in keys, never re-scanned).
The values that carry run-specific structure (the command, the environment, the
MLflow ids) are then written into the tree as data, not text.

The MLflow ids travel in ``spec.mlflow`` only. The controller turns them into
MLFLOW_RUN_ID / MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID, and the CRD refuses
any ``MLFLOW_*`` entry in ``spec.env`` next to ``spec.mlflow`` (a second source
could make the trainer log to another run than the one the controller
closes), so a template or MLproject that sets one is refused here, before any
image is built, rather than by the API server after it.

Placeholder syntax: ``{name}``; ``{{`` and ``}}`` are literal braces. Names:
``project_name``, ``entry_point``, ``image``, ``run_id``, ``experiment_id``,
``tracking_uri``, ``namespace``, ``job_name`` and ``params.<name>`` for every
parameter. An unknown name is an error that lists the known ones.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness import contract
from harness.backend import naming
from harness.backend.errors import TemplateError

__all__ = [
    "BASE_PLACEHOLDERS",
    "RESERVED_ENV_PREFIX",
    "build_manifest",
    "check_template",
    "load_template",
    "placeholders_in",
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
"""Env names the backend never writes into ``spec.env``: the controller injects them from ``spec.mlflow``."""

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def load_template(path: str | Path) -> dict[str, Any]:
    """Read and parse a template file; structural problems raise :class:`TemplateError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read CustomJob template {str(path)!r}: {exc}") from exc
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"CustomJob template {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise TemplateError(
            f"CustomJob template {str(path)!r} must be a YAML mapping (one CustomJob object), got {type(tree).__name__}"
        )
    return tree


def check_template(template: Mapping[str, Any], known: Sequence[str]) -> None:
    """Fail early on a template that can never render into a valid CustomJob."""
    if template.get("apiVersion") != contract.API_VERSION or template.get("kind") != contract.KIND:
        raise TemplateError(
            f"template must have apiVersion: {contract.API_VERSION} and kind: {contract.KIND}; got "
            f"apiVersion: {template.get('apiVersion')!r}, kind: {template.get('kind')!r}"
        )
    metadata = template.get("metadata")
    if not isinstance(metadata, dict):
        raise TemplateError("template is missing the 'metadata' mapping")
    if not isinstance(metadata.get("name"), str) or not metadata["name"]:
        raise TemplateError('template needs metadata.name (use "{job_name}")')
    spec = template.get("spec")
    if not isinstance(spec, dict):
        raise TemplateError("template is missing the 'spec' mapping")
    env = spec.get("env", [])
    if not isinstance(env, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in env):
        raise TemplateError("template spec.env must be a list of {name: ..., value: ...} mappings")
    _refuse_mlflow_env((e["name"] for e in env), "template spec.env")
    for key in ("command", "args"):
        if key in spec and not isinstance(spec[key], list):
            raise TemplateError(f"template spec.{key} must be a list when present")
    if "mlflow" in spec and not isinstance(spec["mlflow"], dict):
        raise TemplateError("template spec.mlflow must be a mapping when present")
    unknown = sorted({name for name, _ in placeholders_in(template)} - set(known))
    if unknown:
        where = {n: p for n, p in placeholders_in(template) if n in unknown}
        details = ", ".join(f"{{{n}}} at {where[n]}" for n in unknown)
        raise TemplateError(
            f"template uses unknown placeholder(s) {details}; known: "
            f"{', '.join('{' + k + '}' for k in known)} (write {{{{ and }}}} for literal braces)"
        )


def _refuse_mlflow_env(names: Iterable[str], where: str) -> None:
    """TemplateError naming the first ``MLFLOW_*`` name in ``names`` and what to do instead."""
    for index, name in enumerate(names):
        if name.startswith(RESERVED_ENV_PREFIX):
            raise TemplateError(
                f"{where}[{index}] sets {name}: the backend puts the run into spec.mlflow, from which the "
                "controller injects MLFLOW_RUN_ID, MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID, and the CRD "
                f"refuses every other {RESERVED_ENV_PREFIX}* env entry next to spec.mlflow (a second source could "
                "log to another run than the one the controller closes); remove the entry"
            )


def placeholders_in(tree: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(placeholder name, dotted path)`` for every placeholder in string values."""
    if isinstance(tree, str):
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
        return _substitute(tree, values)
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


def build_manifest(
    template: Mapping[str, Any],
    *,
    values: Mapping[str, str],
    argv: Sequence[str],
    env: Mapping[str, str],
    image: str,
    namespace: str,
    run_id: str,
    experiment_id: str,
    tracking_uri: str,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Render ``template`` and inject the run's command, env, image and MLflow ids.

    ``spec.command`` becomes ``argv`` (whatever the template had). ``spec.env`` is
    the template's entries minus any with the same names as ``env`` (the
    MLproject's ``docker_env`` pairs), then ``env`` in order. The MLflow ids go
    into ``spec.mlflow`` only, never into ``spec.env``: an ``MLFLOW_*`` name in
    either source raises :class:`TemplateError` (the controller injects them).
    """
    body: dict[str, Any] = render(template, values)
    metadata = body["metadata"]
    name = metadata["name"]
    if not naming.is_dns_label(name):
        raise TemplateError(
            f"metadata.name rendered to {name!r}, which is not a DNS-1123 label "
            f"(lower-case alphanumerics and '-', at most 63 chars); use \"{{job_name}}\""
        )
    rendered_ns = metadata.setdefault("namespace", namespace)
    if rendered_ns != namespace:
        raise TemplateError(
            f"metadata.namespace rendered to {rendered_ns!r} but the backend config "
            f'namespace is {namespace!r}; use "{{namespace}}" or drop the field'
        )
    metadata["labels"] = {**(metadata.get("labels") or {}), **(labels or {})}

    spec = body["spec"]
    rendered_image = spec.setdefault("image", image)
    if rendered_image != image:
        raise TemplateError(
            f"spec.image rendered to {rendered_image!r}, not the image built for this run "
            f'({image!r}); use "{{image}}" so the pod runs the project code'
        )
    spec["command"] = list(argv)
    _refuse_mlflow_env(env, "the run's environment (MLproject docker_env.environment)")
    kept = [e for e in spec.get("env", []) if e.get("name") not in env]
    _refuse_mlflow_env((str(e.get("name")) for e in kept), "spec.env (rendered from the template)")
    spec["env"] = kept + [{"name": k, "value": v} for k, v in env.items()]
    mlflow_spec = dict(spec.get("mlflow") or {})
    mlflow_spec.update(runId=run_id, experimentId=experiment_id, trackingUri=tracking_uri)
    spec["mlflow"] = mlflow_spec
    return body
