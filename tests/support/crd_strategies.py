"""Hypothesis strategies mirroring the CustomJob spec schema.

:func:`valid_specs` is written from the *meaning* of each field (what a real
image reference, quantity or label looks like), not by feeding the CRD's own
regexes back in, so "the CRD accepts every valid spec" is a real check.
:func:`invalid_specs` breaks a valid spec in exactly one way and says which,
so a failing example names the rule that let it through.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

MLFLOW_VARS = ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")

_lower_alnum = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_dns_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
_dns_subdomain = st.lists(_dns_label, min_size=1, max_size=3).map(".".join)
_text = st.text(st.characters(codec="utf-8"), max_size=24)


@st.composite
def image_refs(draw: st.DrawFn) -> str:
    """Docker references: [host[:port]/]path[:tag][@sha256:digest]."""
    components = draw(
        st.lists(
            st.builds(
                lambda first, rest: first + "".join(sep + part for sep, part in rest),
                _lower_alnum,
                st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), _lower_alnum), max_size=2),
            ),
            min_size=1,
            max_size=3,
        )
    )
    ref = "/".join(components)
    host = draw(
        st.one_of(
            st.none(),
            st.sampled_from(["localhost:5000", "registry.example.com", "kind-registry:5001", "Docker.IO"]),
        )
    )
    if host:
        ref = f"{host}/{ref}"
    if draw(st.booleans()):
        ref += ":" + draw(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
    if draw(st.booleans()):
        ref += "@sha256:" + draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    return ref


quantities = st.one_of(
    st.integers(min_value=0, max_value=10**6),
    st.builds(
        lambda number, suffix: number + suffix,
        st.from_regex(r"([0-9]{1,4}(\.[0-9]{0,3})?|\.[0-9]{1,3})", fullmatch=True),
        st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "e3", "E-2"]),
    ),
)


def _resources() -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from(["cpu", "memory", "ephemeral-storage"])
    qmap = st.dictionaries(names, quantities, max_size=3)
    return st.fixed_dictionaries({}, optional={"requests": qmap, "limits": qmap})


_env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(lambda n: n not in MLFLOW_VARS)


def _key_ref() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": _dns_subdomain, "key": st.from_regex(r"[-._A-Za-z0-9]{1,20}", fullmatch=True)},
        optional={"optional": st.booleans()},
    )


_value_from = st.one_of(
    st.builds(lambda r: {"secretKeyRef": r}, _key_ref()),
    st.builds(lambda r: {"configMapKeyRef": r}, _key_ref()),
    st.builds(
        lambda p: {"fieldRef": {"fieldPath": p}},
        st.sampled_from(["metadata.name", "metadata.namespace", "status.podIP", "spec.nodeName"]),
    ),
)


@st.composite
def env_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(_env_names, unique=True, max_size=5))
    out = []
    for name in names:
        kind = draw(st.sampled_from(["value", "valueFrom", "none"]))
        entry: dict[str, Any] = {"name": name}
        if kind == "value":
            entry["value"] = draw(_text)
        elif kind == "valueFrom":
            entry["valueFrom"] = draw(_value_from)
        out.append(entry)
    return out


_label_value = st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?)?", fullmatch=True)
_label_key = st.builds(
    lambda prefix, name: f"{prefix}/{name}" if prefix else name,
    st.one_of(st.none(), st.sampled_from(["example.com", "team.example.org", "app.kubernetes.io"])),
    st.from_regex(r"[a-z0-9]([-a-z0-9_.]{0,15}[a-z0-9])?", fullmatch=True),
).filter(lambda k: k not in ("job-name", "controller-uid"))

_mlflow = st.fixed_dictionaries(
    {},
    optional={
        "experimentId": st.from_regex(r"[0-9]{1,19}", fullmatch=True),
        "runName": st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    },
)


@st.composite
def mlflow_sections(draw: st.DrawFn) -> dict[str, Any]:
    section = draw(_mlflow)
    if draw(st.booleans()):
        section["runId"] = draw(st.text("0123456789abcdef", min_size=32, max_size=32))
        section["trackingUri"] = draw(
            st.sampled_from(
                [
                    "http://mlflow.mlflow.svc:5000",
                    "https://tracking.example.com/",
                    "http://127.0.0.1:5000/prefix",
                ]
            )
        )
    elif draw(st.booleans()):
        section["trackingUri"] = "http://mlflow:5000"
    return section


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Specs the CRD must admit (and the controller must turn into a valid Job)."""
    spec: dict[str, Any] = {
        "image": draw(image_refs()),
        "command": draw(st.lists(_text, min_size=1, max_size=4)),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
        "args": st.lists(_text, max_size=4),
        "workingDir": st.builds(lambda t: "/" + t, _text),
        "env": env_lists(),
        "resources": _resources(),
        "backoffLimit": st.integers(0, 10),
        "activeDeadlineSeconds": st.integers(1, 604800),
        "ttlSecondsAfterFinished": st.integers(0, 604800),
        "serviceAccountName": _dns_subdomain,
        "mlflow": mlflow_sections(),
        "podLabels": st.dictionaries(_label_key, _label_value, max_size=4),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            spec[key] = draw(strategy)
    mlflow = spec.get("mlflow") or {}
    if "runId" in mlflow and draw(st.booleans()):
        # An env entry that agrees with spec.mlflow is allowed (and wins).
        spec.setdefault("env", []).append({"name": "MLFLOW_RUN_ID", "value": mlflow["runId"]})
    return spec


Mutation = Callable[[dict[str, Any]], None]


def _set(path: tuple[str, ...], value: Any) -> Mutation:
    def apply(spec: dict[str, Any]) -> None:
        node = spec
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = copy.deepcopy(value)

    return apply


def _delete(key: str) -> Mutation:
    def apply(spec: dict[str, Any]) -> None:
        spec.pop(key, None)

    return apply


def _append_env(*entries: dict[str, Any]) -> Mutation:
    def apply(spec: dict[str, Any]) -> None:
        env = [e for e in spec.get("env", []) if e["name"] not in {x["name"] for x in entries}]
        spec["env"] = env + [copy.deepcopy(e) for e in entries]

    return apply


def _mismatched_run_id(spec: dict[str, Any]) -> None:
    spec["mlflow"] = {"runId": "a" * 32, "trackingUri": "http://mlflow:5000"}
    spec["env"] = [e for e in spec.get("env", []) if e["name"] != "MLFLOW_RUN_ID"]
    spec["env"].append({"name": "MLFLOW_RUN_ID", "value": "b" * 32})


def _duplicate_env(spec: dict[str, Any]) -> None:
    spec["env"] = [{"name": "DUP", "value": "1"}, {"name": "DUP", "value": "2"}]


INVALID_MUTATIONS: dict[str, Mutation] = {
    "image missing": _delete("image"),
    "image empty": _set(("image",), ""),
    "image with space": _set(("image",), "trainer :dev"),
    "image uppercase path": _set(("image",), "Trainer:dev"),
    "image bad digest": _set(("image",), "trainer@sha256:xyz"),
    "pull policy unknown": _set(("imagePullPolicy",), "Sometimes"),
    "command missing": _delete("command"),
    "command empty": _set(("command",), []),
    "command not strings": _set(("command",), ["python3", 3]),
    "args not a list": _set(("args",), "train.py"),
    "workingDir relative": _set(("workingDir",), "work"),
    "env name with dash": _append_env({"name": "BAD-NAME", "value": "x"}),
    "env name leading digit": _append_env({"name": "1X", "value": "x"}),
    "env duplicate name": _duplicate_env,
    "env value and valueFrom": _append_env(
        {"name": "BOTH", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ),
    "env valueFrom two sources": _append_env(
        {
            "name": "TWO",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.name"},
                "secretKeyRef": {"name": "s", "key": "k"},
            },
        }
    ),
    "env valueFrom empty": _append_env({"name": "NONE", "valueFrom": {}}),
    "env secretKeyRef without key": _append_env({"name": "S", "valueFrom": {"secretKeyRef": {"name": "s"}}}),
    "resources gpu": _set(("resources", "limits", "nvidia.com/gpu"), 1),
    "resources negative int": _set(("resources", "requests", "cpu"), -1),
    "resources negative string": _set(("resources", "requests", "memory"), "-1Gi"),
    "resources garbage": _set(("resources", "limits", "memory"), "lots"),
    "resources unknown section": _set(("resources", "claims"), []),
    "backoffLimit too high": _set(("backoffLimit",), 11),
    "backoffLimit negative": _set(("backoffLimit",), -1),
    "backoffLimit string": _set(("backoffLimit",), "1"),
    "deadline zero": _set(("activeDeadlineSeconds",), 0),
    "deadline too long": _set(("activeDeadlineSeconds",), 604801),
    "ttl negative": _set(("ttlSecondsAfterFinished",), -1),
    "ttl too long": _set(("ttlSecondsAfterFinished",), 604801),
    "serviceAccountName invalid": _set(("serviceAccountName",), "Bad_SA"),
    "runId short": _set(("mlflow",), {"runId": "abc", "trackingUri": "http://m:5000"}),
    "runId uppercase": _set(("mlflow",), {"runId": "A" * 32, "trackingUri": "http://m:5000"}),
    "runId without trackingUri": _set(("mlflow",), {"runId": "a" * 32}),
    "experimentId not digits": _set(("mlflow", "experimentId"), "exp-1"),
    "trackingUri not http": _set(("mlflow", "trackingUri"), "file:///mlruns"),
    "trackingUri no host": _set(("mlflow", "trackingUri"), "http:///x"),
    "env disagrees with mlflow.runId": _mismatched_run_id,
    "mlflow unknown field": _set(("mlflow", "runID"), "a" * 32),
    "podLabels reserved prefix": _set(("podLabels", "training.example.com/customjob"), "x"),
    "podLabels job-name": _set(("podLabels", "job-name"), "x"),
    "podLabels value too long": _set(("podLabels", "team"), "x" * 64),
    "podLabels value invalid": _set(("podLabels", "team"), "a b"),
    "unknown spec field": _set(("replicas",), 2),
}
"""name -> mutation; each must make any valid spec invalid."""


@st.composite
def invalid_specs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """``(mutation name, spec)`` pairs the CRD must refuse."""
    spec = draw(valid_specs())
    name = draw(st.sampled_from(sorted(INVALID_MUTATIONS)))
    INVALID_MUTATIONS[name](spec)
    return name, spec
