"""Validate CustomJob objects against ``crds/bases/customjob.yaml`` without a cluster.

What the API server does on create/update, and how it is reproduced here:

1. **Defaulting** from ``default:`` -- :func:`apply_defaults`.
2. **OpenAPI v3 schema** -- jsonschema's Draft 4 validator on a translated
   copy of the schema (:func:`to_json_schema`): unknown fields are errors (as
   with ``fieldValidation=Strict``, which the harness uses), ``anyOf`` with
   ``x-kubernetes-int-or-string`` already is plain JSON Schema, ``format:
   int32/int64`` is ignored as by the API server, ``date-time`` is checked.
3. **List semantics** -- ``x-kubernetes-list-type: map`` rejects duplicate keys.
4. **CEL rules** -- every ``x-kubernetes-validations`` rule is evaluated with
   cel-python at its node; transition rules (those using ``oldSelf``) only on
   updates and only where the old value exists, as in Kubernetes.

Known gaps, by design: the API server's regex engine is RE2 (Python's ``$``
also matches before a final newline), and CEL cost limits are not estimated.
The CRD was also cross-checked against the real apiextensions-apiserver
validation code during development; this module is the fast, in-process proxy.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import adapter, celtypes, evaluation

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "bases" / "customjob.yaml"
"""<repo>/crds/bases/customjob.yaml (this file is <repo>/crds/controller/customjob_testing/...)."""

_MISSING: Any = object()
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@functools.lru_cache(maxsize=1)
def load_crd() -> dict[str, Any]:
    """The CRD document, parsed once."""
    with CRD_PATH.open(encoding="utf-8") as fh:
        crd = yaml.safe_load(fh)
    assert isinstance(crd, dict)
    return crd


def version_schema(version: str = "v1alpha1") -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one served version."""
    for v in load_crd()["spec"]["versions"]:
        if v["name"] == version:
            schema = v["schema"]["openAPIV3Schema"]
            assert isinstance(schema, dict)
            return schema
    raise KeyError(version)


def to_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """Translate a structural schema node into strict JSON Schema (Draft 4)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("default", "nullable", "description", "format"):
            continue
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        else:
            out[key] = copy.deepcopy(value)
    if node.get("format") == "date-time":
        out["format"] = "date-time"
    if node.get("nullable"):
        out = {"anyOf": [{"type": "null"}, out]}
    elif (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


_FORMATS = jsonschema.FormatChecker(formats=())


def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATE_TIME.match(value))


_FORMATS.checks("date-time")(_is_date_time)


@functools.lru_cache(maxsize=4)
def _validator(version: str) -> jsonschema.Draft4Validator:
    schema = to_json_schema(version_schema(version))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=_FORMATS)


def apply_defaults(schema: Mapping[str, Any], obj: Any) -> Any:
    """Return a copy of ``obj`` with schema defaults filled in (recursively)."""
    obj = copy.deepcopy(obj)
    _default_in_place(schema, obj)
    return obj


def _default_in_place(schema: Mapping[str, Any], obj: Any) -> None:
    if isinstance(obj, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                _default_in_place(sub, obj[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in obj:
                if key not in (schema.get("properties") or {}):
                    _default_in_place(extra, obj[key])
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for item in obj:
            _default_in_place(schema["items"], item)


def schema_errors(obj: Mapping[str, Any], version: str = "v1alpha1") -> list[str]:
    """OpenAPI schema + list-map violations of an (already defaulted) object."""
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in _validator(version).iter_errors(obj)
    ]
    errors += list(_list_map_errors(version_schema(version), obj, "<root>"))
    return errors


def _list_map_errors(schema: Mapping[str, Any], obj: Any, path: str) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in obj:
                yield from _list_map_errors(sub, obj[key], f"{path}.{key}")
    elif isinstance(obj, list):
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen: set[tuple[Any, ...]] = set()
            for item in obj:
                if isinstance(item, dict):
                    ident = tuple(item.get(k) for k in keys)
                    if ident in seen:
                        yield f"{path}: duplicate entry for key {ident}"
                    seen.add(ident)
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(obj):
                yield from _list_map_errors(items, item, f"{path}[{i}]")


_CEL = celpy.Environment()
"""One environment, created at import: celpy raises ``sys.setrecursionlimit``
in every constructor, which hypothesis reports when it happens mid-test."""


@functools.lru_cache(maxsize=256)
def _program(expr: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(expr))


def eval_rule(expr: str, value: Any, old: Any = _MISSING) -> bool:
    """Evaluate one CEL rule with ``self`` (and ``oldSelf``) bound; errors = False."""
    activation = {"self": adapter.json_to_cel(value)}
    if old is not _MISSING:
        activation["oldSelf"] = adapter.json_to_cel(old)
    try:
        result = _program(expr).evaluate(activation)
    except evaluation.CELEvalError:
        return False
    return isinstance(result, celtypes.BoolType) and bool(result)


def cel_errors(schema: Mapping[str, Any], obj: Any, old: Any = _MISSING, path: str = "<root>") -> list[str]:
    """All failing ``x-kubernetes-validations`` messages for ``obj`` (and ``old``)."""
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations") or ():
        expr = rule["rule"]
        if "oldSelf" in expr and old is _MISSING:
            continue
        if not eval_rule(expr, obj, old):
            errors.append(f"{path}: {rule.get('message', expr)}")
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key in obj:
                sub_old = old[key] if isinstance(old, dict) and key in old else _MISSING
                errors += cel_errors(sub, obj[key], sub_old, f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, value in obj.items():
                if key not in props:
                    sub_old = old[key] if isinstance(old, dict) and key in old else _MISSING
                    errors += cel_errors(extra, value, sub_old, f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        keys = schema.get("x-kubernetes-list-map-keys") or ()
        for i, item in enumerate(obj):
            item_old = _MISSING
            if keys and isinstance(old, list) and isinstance(item, dict):
                for candidate in old:
                    if isinstance(candidate, dict) and all(candidate.get(k) == item.get(k) for k in keys):
                        item_old = candidate
            errors += cel_errors(schema["items"], item, item_old, f"{path}[{i}]")
    return errors


def validate(obj: Mapping[str, Any], old: Mapping[str, Any] | None = None, version: str = "v1alpha1") -> list[str]:
    """Everything the API server would say about creating (or updating to) ``obj``.

    Returns an empty list when the object would be admitted.
    """
    schema = version_schema(version)
    new = apply_defaults(schema, obj)
    errors = schema_errors(new, version)
    if errors:
        return errors  # the API server stops before CEL on schema errors
    prior = _MISSING if old is None else apply_defaults(schema, old)
    return cel_errors(schema, new, prior)


def customjob(spec: Mapping[str, Any], name: str = "demo", namespace: str = "default") -> dict[str, Any]:
    """Wrap a spec into a full CustomJob object."""
    return {
        "apiVersion": "training.example.com/v1alpha1",
        "kind": "CustomJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": copy.deepcopy(dict(spec)),
    }
