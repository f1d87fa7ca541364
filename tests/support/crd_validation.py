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
   updates and only where the old value exists, as in Kubernetes. As in the
   API server, CEL still runs after non-blocking schema errors (pattern,
   minimum, minLength...) and is skipped after blocking ones (wrong type,
   missing required field, too long, too many, not in the enum, unknown field),
   so a refused object reports the same rule messages here and there.
5. **The Kubernetes CEL quantity library** (``quantity()``, ``isQuantity()``
   and the comparison methods), which cel-python lacks, is provided here on
   top of :func:`parse_quantity` (``isInteger()`` by representation, as Go
   answers it: :func:`go_int64`), a port of the *rules* of
   ``resource.ParseQuantity`` (same accepted strings, same exact values,
   rounding up to 1n, the int64 cap of binary values and the int32
   truncation of exponents included).

Known gaps, by design: Python's jsonschema regexes are not RE2 (Python's
``$`` also matches before a final newline; CEL ``matches`` does use RE2), and
CEL cost limits are not estimated. ``crds/hack/crdcheck`` runs the real
apiextensions-apiserver validation code (structural schema, CEL compilation
and cost, the same objects); this module is the fast, in-process proxy.
"""

from __future__ import annotations

import copy
import dataclasses
import decimal
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
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


_BLOCKING = frozenset({"type", "anyOf", "required", "maxLength", "maxItems", "maxProperties", "enum",
                       "additionalProperties"})
"""Schema keywords whose violation makes the API server skip CEL (its ``hasBlockingErr``:
TypeInvalid, Required, TooLong, TooMany, NotSupported; unknown fields never get that far)."""


def schema_errors(obj: Mapping[str, Any], version: str = "v1alpha1") -> list[str]:
    """OpenAPI schema + list-map violations of an (already defaulted) object."""
    return _schema_errors(obj, version)[0]


def _schema_errors(obj: Mapping[str, Any], version: str) -> tuple[list[str], bool]:
    """The errors, and whether any of them blocks CEL evaluation."""
    found = list(_validator(version).iter_errors(obj))
    errors = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found]
    errors += list(_list_map_errors(version_schema(version), obj, "<root>"))
    return errors, any(e.validator in _BLOCKING for e in found)


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


# --- Kubernetes quantities (k8s.io/apimachinery/pkg/api/resource) ---------------


class QuantityError(ValueError):
    """The string is not a Kubernetes quantity."""


_QUANTITY = re.compile(r"([+-]?)(0*)([0-9]*)(\.[0-9]*)?([eEinumkKMGTP]*[+-]?[0-9]*)")
"""sign, leading zeros, integer digits, ``.fraction``, suffix: the scanner's fields.

The suffix is scanned as ParseQuantity does it (letters from ``eEinumkKMGTP``,
an optional sign, digits to the end) and only then interpreted, so ``1K``
scans but is refused as an unknown suffix, like in Go."""
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[])
"""Decimal arithmetic that never rounds: values keep the few digits they have, and an
exponent like ``1e999999999`` stays an exponent (a Fraction would expand it)."""
_NANO = Decimal("1e-9")


def _suffix(suffix: str) -> tuple[int, int, str]:
    """``(base, exponent, format)`` of a quantity suffix, or :class:`QuantityError`."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], "DecimalSI"
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], "BinarySI"
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]+", suffix[1:]):
        exponent = int(suffix[1:])
        if _INT64_MIN <= exponent <= _INT64_MAX:  # strconv.ParseInt(s, 10, 64), then Go's int32(...) wraps
            return 10, (exponent + 2**31) % 2**32 - 2**31, "DecimalExponent"
    raise QuantityError(f"unknown quantity suffix {suffix!r}")


def parse_quantity(text: str) -> Decimal:
    """The exact value of a Kubernetes quantity string, as ``resource.ParseQuantity`` computes it.

    Accepted: an optional sign, a decimal number (``1``, ``1.``, ``.5``,
    ``1.5``), then nothing, a decimal SI suffix (``n u m k M G T P E``), a
    binary one (``Ki Mi Gi Ti Pi Ei``) or an exponent (``e3``, ``E-2``).
    Go's quirks are kept: values are rounded *up* to a multiple of 1n
    (``0.1n`` is ``1n``); binary-suffixed values beyond int64 are capped at
    2^63-1 when the computation leaves the int64 fast path (``8Ei``, or a
    fraction like ``1.5Ei``), decimal ones never are; an exponent is read as
    an int64 and then truncated to int32 (``e4294967296`` is ``e0``); and a
    number without digits (``Mi``, ``.``) is 0 where the fast path takes it.
    """
    if not text:
        raise QuantityError("quantity is empty")
    if text == "0":
        return Decimal(0)
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise QuantityError(f"{text!r} is not a quantity (number, then an SI/binary suffix or an exponent)")
    sign, _zeros, digits, fraction, suffix = match.groups()
    negative = sign == "-"
    if not digits and fraction is None and not suffix:  # only a sign and zeros: Go returns 0 early
        return Decimal(0)
    base, exponent, fmt = _suffix(suffix)
    num = digits or "0"
    denom = (fraction or ".")[1:]
    # The int64 fast path: exact, never rounded, never capped.
    if base == 10:
        if 18 - (len(num) + len(denom)) >= 0 and exponent - len(denom) >= -9:
            value = Decimal(int(num + denom)).scaleb(exponent - len(denom), _EXACT)
            return -value if negative else value
    elif not denom and 15 - len(num) - exponent * 3 // 10 - 1 >= 0:
        scaled = int(num) << exponent
        if scaled <= _INT64_MAX:
            return Decimal(-scaled if negative else scaled)
    # The arbitrary-precision path.
    number = text[: match.start(5)]
    if not any(c.isdigit() for c in number):
        raise QuantityError(f"{text!r} has no digits")
    unsigned = Decimal(number.lstrip("+-"))
    magnitude = unsigned.scaleb(exponent, _EXACT) if base == 10 else _EXACT.multiply(unsigned, Decimal(2**exponent))
    if magnitude and int(magnitude.as_tuple().exponent) < -9:
        magnitude = magnitude.quantize(_NANO, rounding=decimal.ROUND_CEILING, context=_EXACT)  # round up to 1n
    if fmt == "BinarySI" and magnitude > _INT64_MAX:
        magnitude = Decimal(_INT64_MAX)
    return -magnitude if negative else magnitude


def go_int64(text: str) -> bool:
    """Whether Go's ``Quantity.AsInt64()`` succeeds: what the CEL ``isInteger()``/``asInteger()`` answer.

    It goes by *representation*, not value: only a quantity ParseQuantity kept
    on its int64 fast path with a scale >= 0 qualifies. So ``2k``, ``1e3`` and
    ``1.5k`` are integers, but ``2000m`` (2000 at scale -3) and ``1.5Gi`` (an
    inf.Dec) are not, although both are whole numbers; a rule that means "a
    whole number" compares ``asApproximateFloat()`` with its truncation instead.
    """
    value = parse_quantity(text)  # refuses what Go refuses
    match = _QUANTITY.fullmatch(text)
    if text == "0" or match is None:
        return True
    _sign, _zeros, digits, fraction, suffix = match.groups()
    if not digits and fraction is None and not suffix:
        return True  # Go's early zero
    base, exponent, _fmt = _suffix(suffix)
    num, denom = digits or "0", (fraction or ".")[1:]
    if base == 10:
        fast = 18 - (len(num) + len(denom)) >= 0 and exponent - len(denom) >= -9
        return fast and exponent - len(denom) >= 0 and _INT64_MIN <= value <= _INT64_MAX
    return not denom and 15 - len(num) - exponent * 3 // 10 - 1 >= 0 and abs(int(num) << exponent) <= _INT64_MAX


@dataclasses.dataclass(frozen=True)
class Quantity:
    """A CEL ``Quantity`` value (the result of ``quantity(s)``)."""

    value: Decimal
    int64: bool = True
    """:func:`go_int64` of the text it was parsed from."""


def _quantity_functions() -> dict[str, Callable[..., Any]]:
    """The Kubernetes CEL quantity library, as cel-python functions (methods take ``self`` first)."""

    def error(message: str) -> evaluation.CELEvalError:
        return evaluation.CELEvalError(message, QuantityError, (message,))

    def quantity(text: Any) -> Any:
        if not isinstance(text, str):
            return error(f"quantity() takes a string, got {type(text).__name__}")
        try:
            return Quantity(parse_quantity(str(text)), go_int64(str(text)))
        except QuantityError as exc:
            return error(f"quantities must match the regular expression: {exc}")

    def is_quantity(text: Any) -> Any:
        if not isinstance(text, str):
            return error(f"isQuantity() takes a string, got {type(text).__name__}")
        try:
            parse_quantity(str(text))
        except QuantityError:
            return celtypes.BoolType(False)
        return celtypes.BoolType(True)

    def method(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(receiver: Any, *args: Any) -> Any:
            if not isinstance(receiver, Quantity) or not all(isinstance(a, Quantity) for a in args):
                return error(f"{fn.__name__}() is a Quantity method taking Quantity arguments")
            return fn(receiver.value, *(a.value for a in args))

        return call

    def compare(a: Decimal, b: Decimal) -> int:
        return (a > b) - (a < b)

    def is_integer(q: Any) -> Any:  # by representation, as Go's AsInt64 (see go_int64)
        if not isinstance(q, Quantity):
            return error("isInteger() is a Quantity method")
        return celtypes.BoolType(q.int64)

    def as_integer(q: Any) -> Any:
        if not isinstance(q, Quantity):
            return error("asInteger() is a Quantity method")
        if not q.int64:
            return error("asInteger(): cannot convert value to integer")
        return celtypes.IntType(int(q.value))

    return {
        "quantity": quantity,
        "isQuantity": is_quantity,
        "isGreaterThan": method(lambda a, b: celtypes.BoolType(a > b)),
        "isLessThan": method(lambda a, b: celtypes.BoolType(a < b)),
        "compareTo": method(lambda a, b: celtypes.IntType(compare(a, b))),
        "sign": method(lambda a: celtypes.IntType(compare(a, Decimal(0)))),
        "isInteger": is_integer,
        "asInteger": as_integer,
        "asApproximateFloat": method(lambda a: celtypes.DoubleType(float(a))),
    }


# --- CEL --------------------------------------------------------------------------

_CEL = celpy.Environment()
"""One environment, created at import: celpy raises ``sys.setrecursionlimit``
in every constructor, which hypothesis reports when it happens mid-test."""
_FUNCTIONS = _quantity_functions()


@functools.lru_cache(maxsize=256)
def _program(expr: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(expr), functions=_FUNCTIONS)


def eval_rule(expr: str, value: Any, old: Any = _MISSING) -> bool:
    """Evaluate one CEL rule with ``self`` (and ``oldSelf``) bound; errors = False.

    Memoised by the rule and the JSON of its values: celpy interprets the parse tree on
    every call, and the property tests and the admission cases evaluate the same rule on
    the same sub-object thousands of times (one field differs per case).
    """
    key_old = None if old is _MISSING else json.dumps(old, sort_keys=True)
    return _eval_rule(expr, json.dumps(value, sort_keys=True), key_old)


@functools.lru_cache(maxsize=65536)
def _eval_rule(expr: str, value_json: str, old_json: str | None) -> bool:
    activation = {"self": adapter.json_to_cel(json.loads(value_json))}
    if old_json is not None:
        activation["oldSelf"] = adapter.json_to_cel(json.loads(old_json))
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
    errors, blocking = _schema_errors(new, version)
    if blocking:
        return errors  # CEL cannot run on an object of the wrong shape; the API server skips it too
    prior = _MISSING if old is None else apply_defaults(schema, old)
    return errors + cel_errors(schema, new, prior)


def customjob(spec: Mapping[str, Any], name: str = "demo", namespace: str = "default") -> dict[str, Any]:
    """Wrap a spec into a full CustomJob object."""
    return {
        "apiVersion": "training.example.com/v1alpha1",
        "kind": "CustomJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": copy.deepcopy(dict(spec)),
    }
