"""Hypothesis strategies mirroring the CustomJob spec schema.

:func:`valid_specs` is written from the *meaning* of each field (what a real
image reference, quantity or label looks like), not by feeding the CRD's own
regexes back in, so "the CRD accepts every valid spec" is a real check.
:func:`invalid_specs` breaks a valid spec in exactly one way and says which,
so a failing example names the rule that let it through.

:data:`ADMISSION_CASES` (invalid) and :data:`ADMISSION_VALID_CASES` (their
valid neighbours) are the same breakages as complete specs, built from
:data:`ADMISSION_BASE_SPEC`, for replaying against the real validation code
(``crds/hack/crdcheck``) or a real API server.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from tests.support.crd_validation import parse_quantity

MLFLOW_VARS = ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")

_lower_alnum = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_dns_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
_dns_subdomain = st.lists(_dns_label, min_size=1, max_size=3).map(".".join)
_text = st.text(st.characters(codec="utf-8"), max_size=24)
_argv_item = st.text(st.characters(codec="utf-8"), min_size=1, max_size=24)
_argv = st.builds(lambda first, rest: [first, *rest], _argv_item, st.lists(_text, max_size=3))
"""argv: the program is never empty, its arguments may be (an empty argument, as in a Pod)."""


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


def _quantities(suffixes: list[str]) -> st.SearchStrategy[int | str]:
    return st.one_of(
        st.integers(min_value=0, max_value=10**6),
        st.builds(
            lambda number, suffix: number + suffix,
            st.from_regex(r"([0-9]{1,4}(\.[0-9]{0,3})?|\.[0-9]{1,3})", fullmatch=True),
            st.sampled_from(suffixes),
        ),
    )


CPU_MAX = 8192
"""The CRD's cpu bound, in cores (no node has more)."""
quantities = _quantities(["", "m", "u", "k", "Ki", "e3", "E-2"]).filter(
    lambda q: parse_quantity(str(q)) <= CPU_MAX
)
"""cpu quantities: millicores (``500m``) included, at most :data:`CPU_MAX`."""
byte_quantities = _quantities(["", "k", "M", "G", "Ki", "Mi", "Gi", "e3", "E-2"]).filter(
    lambda q: parse_quantity(str(q)) % 1 == 0
)
"""memory / ephemeral-storage quantities: whole bytes, never the milli suffix (``512m`` is 0.512 bytes)."""
EXTENDED_RESOURCES = ("nvidia.com/gpu", "example.com/foo", "amd.com/gpu", "fpga.example.org/Arria_10.x")
"""Extended resource names (a domain outside kubernetes.io, '/', a qualified name), as Pods take them."""
_extended_counts = st.one_of(st.integers(0, 8), st.integers(0, 8).map(str), st.sampled_from(["1e1", "2000m"]))


@st.composite
def _resources(draw: st.DrawFn) -> dict[str, Any]:
    """Requests and limits where no request exceeds the limit of the same resource."""
    qmap = st.fixed_dictionaries(
        {}, optional={"cpu": quantities, "memory": byte_quantities, "ephemeral-storage": byte_quantities}
    )
    out: dict[str, Any] = draw(st.fixed_dictionaries({}, optional={"requests": qmap, "limits": qmap}))
    requests, limits = out.get("requests", {}), out.get("limits", {})
    for name in requests.keys() & limits.keys():
        if parse_quantity(str(requests[name])) > parse_quantity(str(limits[name])):
            requests[name], limits[name] = limits[name], requests[name]
    # Extended resources: whole units, in limits; a request (if any) equal to the limit.
    for name in draw(st.lists(st.sampled_from(EXTENDED_RESOURCES), unique=True, max_size=2)):
        count = draw(_extended_counts)
        out.setdefault("limits", {})[name] = count
        if draw(st.booleans()):
            out.setdefault("requests", {})[name] = draw(st.sampled_from([count, str(parse_quantity(str(count)))]))
    return out


_env_names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True),
    # Kubernetes >= 1.34: any printable ASCII but '=' (my.var, my-var, 1X, "a b")
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="="), min_size=1, max_size=16),
).filter(lambda n: not n.startswith("MLFLOW_"))


def _key_ref() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": _dns_subdomain, "key": st.from_regex(r"[-._A-Za-z0-9]{1,20}", fullmatch=True)},
        optional={"optional": st.booleans()},
    )


RESOURCE_FIELD_DIVISORS: dict[str, tuple[str | int, ...]] = {
    "cpu": ("1m", "1", 1, "1000m", "0.001", "0"),
    "memory": ("1", "1k", "1M", "1G", "1E", "1Ki", "1Mi", "1Gi", "1Ei", 1000, "1000000", "0.0009765625Mi"),
}
"""Divisors a Pod accepts (their canonical form is in its list: 1m or 1 for cpu, 1..1E and 1Ki..1Ei for bytes)."""


@st.composite
def _resource_field_refs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["limits", "requests"]))
    resource = draw(st.sampled_from(["cpu", "memory", "ephemeral-storage"]))
    ref: dict[str, Any] = {"resource": f"{kind}.{resource}"}
    if draw(st.booleans()):
        ref["divisor"] = draw(st.sampled_from(RESOURCE_FIELD_DIVISORS["cpu" if resource == "cpu" else "memory"]))
    if draw(st.booleans()):
        ref["containerName"] = "trainer"
    return {"resourceFieldRef": ref}


def _field_ref(path: str, v1: bool) -> dict[str, Any]:
    return {"fieldRef": {"fieldPath": path, **({"apiVersion": "v1"} if v1 else {})}}


_value_from = st.one_of(
    st.builds(lambda r: {"secretKeyRef": r}, _key_ref()),
    st.builds(lambda r: {"configMapKeyRef": r}, _key_ref()),
    _resource_field_refs(),
    st.builds(
        _field_ref,
        st.sampled_from(
            [
                "metadata.name",
                "metadata.namespace",
                "metadata.uid",
                "metadata.labels['app']",
                "metadata.annotations['example.com/owner']",
                "spec.nodeName",
                "spec.serviceAccountName",
                "status.hostIP",
                "status.hostIPs",
                "status.podIP",
                "status.podIPs",
            ]
        ),
        st.booleans(),
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
    st.one_of(st.none(), st.sampled_from(["example.com", "team.example.org", "app.kubernetes.io", "a" * 253])),
    st.one_of(
        st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,15}[A-Za-z0-9])?", fullmatch=True),
        st.just("n" * 63),
    ),
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
        "command": draw(_argv),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
        "args": st.lists(_text, max_size=4),
        "workingDir": st.builds(lambda t: "/" + t, _text),
        "env": env_lists(),
        "resources": _resources(),
        "backoffLimit": st.integers(0, 10),
        "activeDeadlineSeconds": st.integers(1, 604800),
        "ttlSecondsAfterFinished": st.integers(60, 604800),
        "serviceAccountName": _dns_subdomain,
        "mlflow": mlflow_sections(),
        "podLabels": st.dictionaries(_label_key, _label_value, max_size=4),
        "nodeSelector": st.dictionaries(_label_key, _label_value, max_size=3),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            spec[key] = draw(strategy)
    if "runId" in spec.get("mlflow", {}):
        spec["backoffLimit"] = 0  # a retry would log into the same run
    if "mlflow" not in spec and draw(st.booleans()):
        # Without spec.mlflow nothing is injected, so the user may set MLFLOW_* themselves.
        spec.setdefault("env", []).append(
            draw(
                st.sampled_from(
                    [
                        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},
                        {"name": "MLFLOW_RUN_ID", "valueFrom": {"configMapKeyRef": {"name": "run", "key": "id"}}},
                    ]
                )
            )
        )
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


def _with_mlflow(*entries: dict[str, Any]) -> Mutation:
    """spec.mlflow set (as it is, or empty) plus env ``entries``: MLFLOW_* next to spec.mlflow."""
    append = _append_env(*entries)

    def apply(spec: dict[str, Any]) -> None:
        spec.setdefault("mlflow", {})
        append(spec)

    return apply


def _without_mlflow(*entries: dict[str, Any]) -> Mutation:
    """No spec.mlflow, so nothing is injected and the user's own MLFLOW_* entries are fine."""
    append = _append_env(*entries)

    def apply(spec: dict[str, Any]) -> None:
        spec.pop("mlflow", None)
        append(spec)

    return apply


def _requests_over_limits(name: str, request: int | str, limit: int | str) -> Mutation:
    def apply(spec: dict[str, Any]) -> None:
        resources = spec.setdefault("resources", {})
        resources.setdefault("requests", {})[name] = request
        resources.setdefault("limits", {})[name] = limit

    return apply


def _extended(name: str, *, request: int | str | None = None, limit: int | str | None = None) -> Mutation:
    """Set (or, with None, remove) one extended resource's request and limit."""

    def apply(spec: dict[str, Any]) -> None:
        resources = spec.setdefault("resources", {})
        for kind, value in (("requests", request), ("limits", limit)):
            section = resources.setdefault(kind, {})
            if value is None:
                section.pop(name, None)
            else:
                section[name] = value
            if not section:
                del resources[kind]

    return apply


def _resource_field_ref(ref: dict[str, Any]) -> Mutation:
    return _append_env({"name": "RES", "valueFrom": {"resourceFieldRef": ref}})


def _retrying_run(spec: dict[str, Any]) -> None:
    spec["mlflow"] = {"runId": "c" * 32, "trackingUri": "http://mlflow.mlflow.svc:5000"}
    spec["backoffLimit"] = 3


def _duplicate_env(spec: dict[str, Any]) -> None:
    spec["env"] = [{"name": "DUP", "value": "1"}, {"name": "DUP", "value": "2"}]


INVALID_MUTATIONS: dict[str, Mutation] = {
    "image missing": _delete("image"),
    "image empty": _set(("image",), ""),
    "image with space": _set(("image",), "trainer :dev"),
    "image uppercase path": _set(("image",), "Trainer:dev"),
    "image bad digest": _set(("image",), "trainer@sha256:xyz"),
    "image host ends with dash": _set(("image",), "host-/x:1"),
    "image host label starts with dash": _set(("image",), "registry.-example.com:5000/trainer:1"),
    "image host empty label": _set(("image",), "registry..example.com/trainer:1"),
    "pull policy unknown": _set(("imagePullPolicy",), "Sometimes"),
    "command missing": _delete("command"),
    "command empty": _set(("command",), []),
    "command empty element": _set(("command",), [""]),
    "command not strings": _set(("command",), ["python3", 3]),
    "args not a list": _set(("args",), "train.py"),
    "workingDir relative": _set(("workingDir",), "work"),
    "env name with =": _append_env({"name": "A=B", "value": "x"}),
    "env name with a newline": _append_env({"name": "A\nB", "value": "x"}),
    "env name with a tab": _append_env({"name": "A\tB", "value": "x"}),
    "env name not ASCII": _append_env({"name": "CAF\u00c9", "value": "x"}),
    "env name empty": _append_env({"name": "", "value": "x"}),
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
    "env fieldRef unsupported path": _append_env(
        {"name": "NOPE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}
    ),
    "env fieldRef labels without key": _append_env(
        {"name": "LABELS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}
    ),
    "env fieldRef label key invalid": _append_env(
        {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['bad key']"}}}
    ),
    "env fieldRef apiVersion v2": _append_env(
        {"name": "POD2", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v2"}}}
    ),
    "env resourceFieldRef without resource": _resource_field_ref({"divisor": "1"}),
    "env resourceFieldRef unknown resource": _resource_field_ref({"resource": "limits.nvidia.com/gpu"}),
    "env resourceFieldRef resource without requests/limits": _resource_field_ref({"resource": "cpu"}),
    "env resourceFieldRef cpu divisor 1k": _resource_field_ref({"resource": "limits.cpu", "divisor": "1k"}),
    "env resourceFieldRef cpu divisor in exponent form": _resource_field_ref(
        {"resource": "requests.cpu", "divisor": "1e-3"}
    ),
    "env resourceFieldRef memory divisor 1m": _resource_field_ref({"resource": "limits.memory", "divisor": "1m"}),
    "env resourceFieldRef memory divisor 1024": _resource_field_ref(
        {"resource": "limits.memory", "divisor": "1024"}
    ),
    "env resourceFieldRef memory divisor 2Mi": _resource_field_ref({"resource": "limits.memory", "divisor": "2Mi"}),
    "env resourceFieldRef memory divisor in exponent form": _resource_field_ref(
        {"resource": "requests.ephemeral-storage", "divisor": "1e3"}
    ),
    "env resourceFieldRef another container": _resource_field_ref(
        {"resource": "limits.memory", "containerName": "sidecar"}
    ),
    "env resourceFieldRef next to fieldRef": _append_env(
        {
            "name": "BOTH_REFS",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "resourceFieldRef": {"resource": "limits.cpu"}},
        }
    ),
    "env MLFLOW_RUN_ID valueFrom next to mlflow": _with_mlflow(
        {"name": "MLFLOW_RUN_ID", "valueFrom": {"configMapKeyRef": {"name": "run", "key": "id"}}}
    ),
    "env MLFLOW_TRACKING_URI value next to mlflow": _with_mlflow(
        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.mlflow.svc:5000"}
    ),
    "env other MLFLOW_ variable next to mlflow": _with_mlflow(
        {"name": "MLFLOW_TRACKING_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mlflow", "key": "password"}}}
    ),
    "resources unprefixed unknown name": _set(("resources", "limits", "gpu"), 1),
    "resources hugepages": _extended("hugepages-2Mi", request="2Mi", limit="2Mi"),
    "extended resource under kubernetes.io": _extended("kubernetes.io/foo", limit=1),
    "extended resource under a kubernetes.io subdomain": _extended("gpu.kubernetes.io/foo", limit=1),
    "extended resource prefixed requests.": _extended("requests.example.com/foo", limit=1),
    "extended resource uppercase domain": _extended("Example.com/foo", limit=1),
    "extended resource two slashes": _extended("example.com/a/b", limit=1),
    "extended resource name too long": _extended("example.com/" + "g" * 64, limit=1),
    "extended resource domain too long": _extended(".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 53]) + "/x", limit=1),
    "extended resource fractional": _extended("example.com/foo", limit="0.5"),
    "extended resource in millis": _extended("nvidia.com/gpu", limit="500m"),
    "extended resource negative": _extended("nvidia.com/gpu", limit=-1),
    "extended resource request without limit": _extended("nvidia.com/gpu", request=1),
    "extended resource request below limit": _extended("nvidia.com/gpu", request=1, limit=2),
    "extended resource request above limit": _extended("example.com/foo", request="3", limit="2"),
    "resources negative int": _set(("resources", "requests", "cpu"), -1),
    "resources negative string": _set(("resources", "requests", "memory"), "-1Gi"),
    "resources garbage": _set(("resources", "limits", "memory"), "lots"),
    "resources fractional exponent": _set(("resources", "limits", "cpu"), "1e1.5"),
    "resources huge exponent": _set(("resources", "limits", "cpu"), "1e3000000000"),
    "memory milli suffix": _set(("resources", "requests", "memory"), "512m"),
    "memory nano suffix": _set(("resources", "requests", "memory"), "512n"),
    "memory micro suffix": _set(("resources", "limits", "memory"), "512u"),
    "memory half a byte": _set(("resources", "requests", "memory"), "0.5"),
    "memory negative exponent": _set(("resources", "requests", "memory"), "1e-3"),
    "ephemeral-storage fractional bytes": _set(("resources", "limits", "ephemeral-storage"), "1.5"),
    "memory beyond int64 bytes": _set(("resources", "limits", "memory"), "1e19"),
    "cpu absurd": _set(("resources", "limits", "cpu"), "1e99"),
    "cpu above 8192 cores": _set(("resources", "requests", "cpu"), 8193),
    "memory limit milli suffix": _set(("resources", "limits", "memory"), "1.5m"),
    "ephemeral-storage milli suffix": _set(("resources", "requests", "ephemeral-storage"), "100m"),
    "memory requests above limits": _requests_over_limits("memory", "2Gi", "1Gi"),
    "cpu requests above limits": _requests_over_limits("cpu", "1500m", 1),
    "ephemeral-storage requests above limits": _requests_over_limits("ephemeral-storage", 2000, "1k"),
    "resources unknown section": _set(("resources", "claims"), []),
    "backoffLimit too high": _set(("backoffLimit",), 11),
    "backoffLimit negative": _set(("backoffLimit",), -1),
    "backoffLimit string": _set(("backoffLimit",), "1"),
    "backoffLimit with mlflow.runId": _retrying_run,
    "deadline zero": _set(("activeDeadlineSeconds",), 0),
    "deadline too long": _set(("activeDeadlineSeconds",), 604801),
    "ttl negative": _set(("ttlSecondsAfterFinished",), -1),
    "ttl zero": _set(("ttlSecondsAfterFinished",), 0),
    "ttl below a minute": _set(("ttlSecondsAfterFinished",), 59),
    "ttl too long": _set(("ttlSecondsAfterFinished",), 604801),
    "serviceAccountName invalid": _set(("serviceAccountName",), "Bad_SA"),
    "runId short": _set(("mlflow",), {"runId": "abc", "trackingUri": "http://m:5000"}),
    "runId uppercase": _set(("mlflow",), {"runId": "A" * 32, "trackingUri": "http://m:5000"}),
    "runId without trackingUri": _set(("mlflow",), {"runId": "a" * 32}),
    "experimentId not digits": _set(("mlflow", "experimentId"), "exp-1"),
    "trackingUri not http": _set(("mlflow", "trackingUri"), "file:///mlruns"),
    "trackingUri no host": _set(("mlflow", "trackingUri"), "http:///x"),
    "trackingUri with user and password": _set(("mlflow", "trackingUri"), "http://user:pass@mlflow.mlflow.svc:5000"),
    "trackingUri with token as user": _set(("mlflow", "trackingUri"), "https://s3cr3t@tracking.example.com/"),
    "trackingUri with a dot-dot segment": _set(("mlflow", "trackingUri"), "http://gw.corp/mlflow/../tenant-app"),
    "trackingUri with an encoded dot-dot": _set(("mlflow", "trackingUri"), "http://gw.corp/mlflow/%2E%2e/tenant"),
    "trackingUri ending in a dot segment": _set(("mlflow", "trackingUri"), "http://gw.corp/mlflow/."),
    "trackingUri with a query": _set(("mlflow", "trackingUri"), "http://gw.corp/mlflow?next=http://evil"),
    "trackingUri with a fragment": _set(("mlflow", "trackingUri"), "http://gw.corp/mlflow#x"),
    "env disagrees with mlflow.runId": _mismatched_run_id,
    "mlflow unknown field": _set(("mlflow", "runID"), "a" * 32),
    "podLabels reserved prefix": _set(("podLabels", "training.example.com/customjob"), "x"),
    "podLabels job-name": _set(("podLabels", "job-name"), "x"),
    "podLabels value too long": _set(("podLabels", "team"), "x" * 64),
    "podLabels value invalid": _set(("podLabels", "team"), "a b"),
    "podLabels key ends with dash": _set(("podLabels", "team-"), "x"),
    "podLabels key with space": _set(("podLabels", "my team"), "x"),
    "podLabels key name too long": _set(("podLabels", "n" * 64), "x"),
    "podLabels key empty name": _set(("podLabels", "example.com/"), "x"),
    "podLabels key uppercase prefix": _set(("podLabels", "Example.com/team"), "x"),
    "podLabels key prefix too long": _set(("podLabels", "a" * 254 + "/team"), "x"),
    "podLabels key two slashes": _set(("podLabels", "example.com/a/b"), "x"),
    "nodeSelector key with space": _set(("nodeSelector", "my pool"), "x"),
    "nodeSelector key two slashes": _set(("nodeSelector", "kubernetes.io/a/b"), "x"),
    "nodeSelector value invalid": _set(("nodeSelector", "kubernetes.io/hostname"), "node 1"),
    "nodeSelector value too long": _set(("nodeSelector", "pool"), "x" * 64),
    "unknown spec field": _set(("replicas",), 2),
}
"""name -> mutation; each must make any valid spec invalid."""


VALID_MUTATIONS: dict[str, Mutation] = {
    "cpu millicores": _set(("resources", "requests", "cpu"), "500m"),
    "memory mebibytes": _set(("resources", "requests", "memory"), "512Mi"),
    "memory megabytes": _set(("resources", "requests", "memory"), "512M"),
    "memory plain bytes": _set(("resources", "requests", "memory"), 536870912),
    "requests equal limits": _set(
        ("resources",), {"requests": {"cpu": 1, "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}
    ),
    "requests without limits": _set(("resources",), {"requests": {"cpu": "4", "memory": "64Gi"}}),
    "args empty string": _set(("args",), ["--suffix", ""]),
    "command with an empty argument": _set(("command",), ["python3", "train.py", "--tag", ""]),
    "env name with a dot": _append_env({"name": "my.var", "value": "x"}),
    "env name with a dash": _append_env({"name": "my-var", "value": "x"}),
    "env name leading digit": _append_env({"name": "1X", "value": "x"}),
    "env name with space and symbols": _append_env({"name": "a b:c/d@e!~", "value": "x"}),
    "env fieldRef apiVersion v1": _append_env(
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace", "apiVersion": "v1"}}}
    ),
    "env resourceFieldRef limits.memory in Mi": _resource_field_ref({"resource": "limits.memory", "divisor": "1Mi"}),
    "env resourceFieldRef requests.cpu in millicores of trainer": _resource_field_ref(
        {"resource": "requests.cpu", "divisor": "1m", "containerName": "trainer"}
    ),
    "env resourceFieldRef without divisor": _resource_field_ref({"resource": "limits.ephemeral-storage"}),
    "env resourceFieldRef cpu divisor 1000m": _resource_field_ref({"resource": "limits.cpu", "divisor": "1000m"}),
    "env resourceFieldRef memory divisor 1000": _resource_field_ref({"resource": "limits.memory", "divisor": 1000}),
    "env resourceFieldRef divisor 0 (unset)": _resource_field_ref({"resource": "limits.memory", "divisor": "0"}),
    "extended resource nvidia.com/gpu limit only": _extended("nvidia.com/gpu", limit=1),
    "extended resource example.com/foo request equals limit": _extended("example.com/foo", request="2", limit=2),
    "extended resource zero": _extended("example.com/foo", request=0, limit="0"),
    "extended resource whole number in millis": _extended("nvidia.com/gpu", limit="2000m"),
    "extended resource longest names": _extended(
        ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 52]) + "/" + "n" * 63, limit=1
    ),
    "memory whole bytes in exponent form": _set(("resources", "requests", "memory"), "1e3"),
    "memory a fraction of a Gi": _set(("resources", "limits", "memory"), "1.5Gi"),
    "cpu 8192 cores": _set(("resources", "limits", "cpu"), 8192),
    "cpu in exponent form": _set(("resources", "limits", "cpu"), "1e1"),
    "image host with port": _set(("image",), "registry.example.com:5000/team/trainer:1"),
    "image localhost registry": _set(("image",), "localhost:5001/trainer:dev"),
    "image host with inner dash": _set(("image",), "my-registry.example.com/trainer@sha256:" + "0" * 64),
    "image path-only first component": _set(("image",), "library/python:3.11"),
    "podLabels prefixed key": _set(("podLabels", "example.com/team"), "ml"),
    "podLabels key name of 63": _set(("podLabels", "n" * 63), "x"),
    "podLabels key prefix of 253": _set(("podLabels", ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]) + "/x"), "y"),
    "podLabels key mixed case name": _set(("podLabels", "app.kubernetes.io/Component_A.1"), "trainer"),
    "env fieldRef label key": _append_env(
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}
    ),
    "env fieldRef annotation key": _append_env(
        {"name": "OWNER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['example.com/owner']"}}}
    ),
    "env fieldRef status.podIPs": _append_env(
        {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}
    ),
    "trackingUri cluster service": _set(("mlflow", "trackingUri"), "http://mlflow.mlflow.svc:5000"),
    "trackingUri with @ in the path": _set(("mlflow", "trackingUri"), "http://mlflow:5000/u/a@b"),
    "trackingUri with dots inside a segment": _set(("mlflow", "trackingUri"), "http://gw.corp/v1.2/..x/a..b"),
    "backoffLimit without mlflow.runId": _set(("backoffLimit",), 3),
    "backoffLimit 0 with mlflow.runId": _set(
        ("mlflow",), {"runId": "d" * 32, "trackingUri": "http://mlflow.mlflow.svc:5000"}
    ),
    "ttl one minute": _set(("ttlSecondsAfterFinished",), 60),
    "MLFLOW_ env without spec.mlflow": _without_mlflow(
        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},
        {"name": "MLFLOW_RUN_ID", "valueFrom": {"configMapKeyRef": {"name": "run", "key": "id"}}},
    ),
    "nodeSelector hostname": _set(("nodeSelector",), {"kubernetes.io/hostname": "e2e-worker", "pool": ""}),
}
"""name -> mutation of :data:`ADMISSION_BASE_SPEC` that must stay admitted: the neighbours of the new rules."""

ADMISSION_BASE_SPEC: dict[str, Any] = {
    "image": "registry.example.com:5000/trainer:0.1.0",
    "command": ["python3", "train.py"],
    "args": ["--alpha", "0.5"],
    "env": [
        {"name": "SEED", "value": "42"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
    "ttlSecondsAfterFinished": 600,
    "mlflow": {"experimentId": "1", "trackingUri": "http://mlflow.mlflow.svc:5000"},
    "podLabels": {"team": "ml"},
}
"""A valid spec with spec.mlflow but no runId: the cases that need a runId add one."""


def _applied(mutation: Mutation) -> dict[str, Any]:
    spec = copy.deepcopy(ADMISSION_BASE_SPEC)
    mutation(spec)
    return spec


ADMISSION_CASES: dict[str, dict[str, Any]] = {name: _applied(m) for name, m in INVALID_MUTATIONS.items()}
"""case id -> a complete spec the API server must refuse (one breakage of :data:`ADMISSION_BASE_SPEC`)."""
ADMISSION_VALID_CASES: dict[str, dict[str, Any]] = {
    "base": copy.deepcopy(ADMISSION_BASE_SPEC),
    **{name: _applied(m) for name, m in VALID_MUTATIONS.items()},
}
"""case id -> a complete spec the API server must admit."""


@st.composite
def invalid_specs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """``(mutation name, spec)`` pairs the CRD must refuse."""
    spec = draw(valid_specs())
    name = draw(st.sampled_from(sorted(INVALID_MUTATIONS)))
    INVALID_MUTATIONS[name](spec)
    return name, spec
