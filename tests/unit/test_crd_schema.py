"""The CustomJob CRD: names, defaults, schema and CEL rules, validated locally.

Objects are validated the way the API server does it (defaults, OpenAPI
schema with strict unknown fields, list-map keys, CEL rules) by
``tests/support/crd_validation.py``; see its docstring for the gaps. The same
cases also go through ``crds/hack/crdcheck``, the API server's own validation
code (built here with Go, cached by source hash), which also checks the CRD
itself and reports the estimated cost of its CEL rules.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from customjob_controller import contract
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness._errors import CommandError, PreflightError
from harness.cachedir import cache_dir
from harness.nodeimage.gobuild import GoToolchain
from harness.pytest_plugin import missing_prerequisite
from harness.timing import Phases
from tests.support import crd_strategies as strategies
from tests.support import crd_validation as crdv

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
GOOD_SPEC: dict[str, Any] = {
    "image": "trainer:0.1.0",
    "command": ["python3", "train.py"],
    "args": ["--alpha", "0.5"],
    "env": [
        {"name": "SEED", "value": "42"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
    "mlflow": {
        "runId": "0123456789abcdef0123456789abcdef",
        "experimentId": "1",
        "trackingUri": "http://mlflow:5000",
    },
    "podLabels": {"team": "ml"},
}

_HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _spec_schema() -> dict[str, Any]:
    spec: dict[str, Any] = crdv.version_schema()["properties"]["spec"]
    return spec


def _quantity_pattern(kind: str) -> str:
    pattern: str = _spec_schema()["properties"]["resources"]["properties"][kind]["additionalProperties"]["pattern"]
    return pattern


def _quantity_strings(kind: str) -> st.SearchStrategy[str]:
    return st.from_regex(_quantity_pattern(kind), fullmatch=True)


# --- names and defaults ------------------------------------------------------


BUILT_IN_SHORT_NAMES = frozenset({
    "cm", "cs", "ds", "deploy", "ep", "eps", "ev", "hpa", "ing", "ingclass", "limits", "ns", "no", "pvc", "pv", "po",
    "pdb", "pc", "psp", "rs", "rc", "quota", "sa", "svc", "crd", "crds", "cj", "csr", "netpol", "sc", "csinode",
    "vac", "ipa", "sts", "rtc",
})
"""kubectl's short names of built-in resources (kubectl api-resources, Kubernetes 1.35-1.37)."""


def test_crd_identity_matches_the_fixed_names() -> None:
    crd = crdv.load_crd()
    assert crd["metadata"]["name"] == f"{contract.PLURAL}.{contract.GROUP}"
    assert crd["spec"]["group"] == contract.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": "CustomJob",
        "listKind": "CustomJobList",
        "plural": "customjobs",
        "singular": "customjob",
        "shortNames": ["cjob"],
        "categories": ["training"],
    }
    assert not set(crd["spec"]["names"]["shortNames"]) & BUILT_IN_SHORT_NAMES, "kubectl would pick the built-in"
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == (contract.VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns_show_phase_run_id_and_age() -> None:
    (version,) = crdv.load_crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Run ID"]["jsonPath"] == ".status.mlflowRunId"
    assert columns["Age"]["type"] == "date"
    assert columns["Reason"]["priority"] == 1


def test_controller_defaults_equal_crd_defaults() -> None:
    props = _spec_schema()["properties"]
    assert props["imagePullPolicy"]["default"] == contract.DEFAULT_IMAGE_PULL_POLICY
    assert props["backoffLimit"]["default"] == contract.DEFAULT_BACKOFF_LIMIT
    assert props["ttlSecondsAfterFinished"]["default"] == contract.DEFAULT_TTL_SECONDS_AFTER_FINISHED


def test_defaults_are_applied_to_a_minimal_spec() -> None:
    obj = crdv.apply_defaults(crdv.version_schema(), crdv.customjob({"image": "t:1", "command": ["x"]}))
    assert obj["spec"]["imagePullPolicy"] == "IfNotPresent"
    assert obj["spec"]["backoffLimit"] == 0
    assert obj["spec"]["ttlSecondsAfterFinished"] == 3600


def test_status_phase_enum_matches_controller_phases() -> None:
    phase = crdv.version_schema()["properties"]["status"]["properties"]["phase"]
    assert set(phase["enum"]) == {contract.PENDING, contract.RUNNING, contract.SUCCEEDED, contract.FAILED}


# --- admission of known objects -----------------------------------------------


def test_good_spec_is_admitted() -> None:
    assert crdv.validate(crdv.customjob(GOOD_SPEC)) == []


@pytest.mark.parametrize("mutation", sorted(strategies.INVALID_MUTATIONS))
def test_each_invalid_mutation_is_refused(mutation: str) -> None:
    spec = copy.deepcopy(GOOD_SPEC)
    strategies.INVALID_MUTATIONS[mutation](spec)
    assert crdv.validate(crdv.customjob(spec)), f"CRD admitted a spec with: {mutation}"


def test_name_longer_than_63_is_refused_with_the_rule_message() -> None:
    errors = crdv.validate(crdv.customjob(GOOD_SPEC, name="a" * 64))
    assert any("at most 63 characters" in e for e in errors)
    assert crdv.validate(crdv.customjob(GOOD_SPEC, name="a" * 63)) == []


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"},  # even when it agrees with spec.mlflow
        {"name": "MLFLOW_RUN_ID", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "run"}}},
        {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mlflow", "key": "token"}}},
    ],
    ids=["agreeing literal", "valueFrom run id", "any other MLFLOW_ name"],
)
def test_no_mlflow_env_next_to_spec_mlflow_but_fine_without(entry: dict[str, Any]) -> None:
    spec = copy.deepcopy(GOOD_SPEC)
    spec["env"].append(entry)
    (error,) = crdv.validate(crdv.customjob(spec))
    assert "env may not set MLFLOW_* variables" in error
    del spec["mlflow"]
    assert crdv.validate(crdv.customjob(spec)) == []


# Each new rule, by case: the local validator's message, and the API server's (crdcheck).
NEW_RULE_MESSAGES: dict[str, tuple[str, str]] = {
    "command empty element": ("command[0], the program to run, may not be empty",) * 2,
    "memory milli suffix": ("may not use the milli suffix m (512m is 0.512 bytes): write 512Mi",) * 2,
    "memory requests above limits": ("resources.requests may not exceed resources.limits",) * 2,
    "podLabels key ends with dash": ("podLabels keys must be label keys",) * 2,
    "nodeSelector key two slashes": ("nodeSelector keys must be label keys",) * 2,
    "env fieldRef unsupported path": ("fieldRef.fieldPath must be a field the downward API exposes to env",) * 2,
    "trackingUri with user and password": ("mlflow.trackingUri may not contain credentials",) * 2,
    "image host ends with dash": ("image: the registry host before the first '/' must be",) * 2,
    "backoffLimit with mlflow.runId": ("backoffLimit must be 0 when mlflow.runId is set",) * 2,
    "ttl zero": (
        "spec.ttlSecondsAfterFinished: 0 is less than the minimum of 60",
        "spec.ttlSecondsAfterFinished in body should be greater than or equal to 60",
    ),
    "env MLFLOW_RUN_ID valueFrom next to mlflow": ("env may not set MLFLOW_* variables (value or valueFrom)",) * 2,
    "env name with =": ("env name must be printable ASCII characters other than '='",) * 2,
    "env fieldRef apiVersion v2": ("fieldRef.apiVersion must be v1",) * 2,
    "env resourceFieldRef cpu divisor 1k": ("resourceFieldRef.divisor must be 1m or 1 for cpu",) * 2,
    "env resourceFieldRef memory divisor 1024": ("resourceFieldRef.divisor must be 1m or 1 for cpu",) * 2,
    "env resourceFieldRef another container": ("resourceFieldRef.containerName may only name the Job's one",) * 2,
    "extended resource under kubernetes.io": ("keys are cpu, memory, ephemeral-storage or an extended resource",) * 2,
    "extended resource fractional": ("extended resources (such as nvidia.com/gpu) are whole units",) * 2,
    "extended resource request without limit": ("in resources.requests needs the same value in",) * 2,
    "extended resource request below limit": ("in resources.requests needs the same value in",) * 2,
    "memory nano suffix": ("memory and ephemeral-storage are whole bytes below 8Ei",) * 2,
    "memory half a byte": ("memory and ephemeral-storage are whole bytes below 8Ei",) * 2,
    "memory negative exponent": ("memory and ephemeral-storage are whole bytes below 8Ei",) * 2,
    "cpu absurd": ("cpu may be at most 8192 cores",) * 2,
}


@pytest.mark.parametrize("case", sorted(NEW_RULE_MESSAGES))
def test_each_new_rule_refuses_its_case_with_one_clear_message(case: str) -> None:
    errors = crdv.validate(crdv.customjob(strategies.ADMISSION_CASES[case]))
    assert len(errors) == 1, errors
    assert NEW_RULE_MESSAGES[case][0] in errors[0]


@pytest.mark.parametrize("case", sorted(strategies.ADMISSION_CASES))
def test_admission_case_is_refused(case: str) -> None:
    assert crdv.validate(crdv.customjob(strategies.ADMISSION_CASES[case])), f"CRD admitted: {case}"


@pytest.mark.parametrize("case", sorted(strategies.ADMISSION_VALID_CASES))
def test_valid_neighbour_is_admitted(case: str) -> None:
    assert crdv.validate(crdv.customjob(strategies.ADMISSION_VALID_CASES[case])) == []


def test_resource_field_ref_names_the_container_the_controller_creates() -> None:
    """The CRD's containerName rule names the one container of the Job's Pod (contract.CONTAINER_NAME)."""
    value_from = _spec_schema()["properties"]["env"]["items"]["properties"]["valueFrom"]
    (rule, _divisor) = value_from["properties"]["resourceFieldRef"]["x-kubernetes-validations"]
    assert f"self.containerName == '{contract.CONTAINER_NAME}'" in rule["rule"]
    assert f"one container, {contract.CONTAINER_NAME}" in rule["message"]


@pytest.mark.parametrize(
    ("case", "verdict"),
    [
        # issue #24: admitted though invalid or careless
        ("memory nano suffix", "refused"), ("memory micro suffix", "refused"), ("memory half a byte", "refused"),
        ("memory negative exponent", "refused"), ("cpu absurd", "refused"), ("env fieldRef apiVersion v2", "refused"),
        # ... and refused though a Pod takes them
        ("env name with a dot", "admitted"), ("env name with a dash", "admitted"),
        ("env resourceFieldRef limits.memory in Mi", "admitted"),
        ("extended resource nvidia.com/gpu limit only", "admitted"),
        ("extended resource example.com/foo request equals limit", "admitted"),
        ("command with an empty argument", "admitted"),
    ],
)
def test_issue_24_cases_are_in_the_review_set(case: str, verdict: str) -> None:
    cases = strategies.ADMISSION_CASES if verdict == "refused" else strategies.ADMISSION_VALID_CASES
    assert case in cases
    assert bool(crdv.validate(crdv.customjob(cases[case]))) == (verdict == "refused")


def test_admission_cases_are_plain_data_without_a_run_id_unless_needed() -> None:
    assert "runId" not in strategies.ADMISSION_BASE_SPEC.get("mlflow", {})
    assert json.loads(json.dumps(strategies.ADMISSION_CASES)) == strategies.ADMISSION_CASES
    assert set(NEW_RULE_MESSAGES) <= set(strategies.ADMISSION_CASES)


# --- immutability (transition rule) ----------------------------------------------


def test_spec_update_is_refused_with_a_readable_message() -> None:
    old = crdv.customjob(GOOD_SPEC)
    new = copy.deepcopy(old)
    new["spec"]["image"] = "trainer:0.2.0"
    errors = crdv.validate(new, old=old)
    assert errors
    assert "spec is immutable" in errors[0]


def test_unchanged_spec_and_metadata_or_status_changes_are_admitted() -> None:
    old = crdv.customjob(GOOD_SPEC)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"touched": "yes"}
    new["status"] = {"phase": "Running", "reason": "PodRunning", "message": "pod x is running"}
    assert crdv.validate(new, old=old) == []


def test_update_that_only_spells_out_defaults_is_admitted() -> None:
    old = crdv.customjob({"image": "t:1", "command": ["x"]})
    new = crdv.customjob({"image": "t:1", "command": ["x"], "backoffLimit": 0, "imagePullPolicy": "IfNotPresent"})
    assert crdv.validate(new, old=old) == []


# --- properties -------------------------------------------------------------------


@_HYPOTHESIS
@given(strategies.valid_specs())
def test_every_valid_spec_is_admitted(spec: dict[str, Any]) -> None:
    assert crdv.validate(crdv.customjob(spec)) == []


@_HYPOTHESIS
@given(strategies.valid_specs(), st.sampled_from(sorted(NEW_RULE_MESSAGES)))
def test_every_spec_broken_by_a_new_rule_is_refused(spec: dict[str, Any], mutation: str) -> None:
    strategies.INVALID_MUTATIONS[mutation](spec)
    assert crdv.validate(crdv.customjob(spec)), f"CRD admitted a spec with: {mutation}"


@_HYPOTHESIS
@given(strategies.invalid_specs())
def test_every_invalid_spec_is_refused(case: tuple[str, dict[str, Any]]) -> None:
    mutation, spec = case
    assert crdv.validate(crdv.customjob(spec)), f"CRD admitted a spec with: {mutation}"


@_HYPOTHESIS
@given(strategies.valid_specs(), strategies.valid_specs())
def test_any_spec_change_is_refused(before: dict[str, Any], after: dict[str, Any]) -> None:
    old, new = crdv.customjob(before), crdv.customjob(after)
    schema = crdv.version_schema()
    changed = crdv.apply_defaults(schema, old)["spec"] != crdv.apply_defaults(schema, new)["spec"]
    assert bool(crdv.validate(new, old=old)) == changed


# --- the validator itself must be able to fail ---------------------------------------


def test_local_validator_reports_cel_failures_and_schema_failures_separately() -> None:
    assert not crdv.eval_rule("self.all(k, k in ['cpu'])", {"gpu": 1})
    assert crdv.eval_rule("self.all(k, k in ['cpu'])", {"cpu": 1})
    assert crdv.schema_errors(crdv.customjob({"image": "t:1"}))  # command missing


# --- the Kubernetes quantity library the local validator adds to cel-python ----------

_Q = Fraction


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", _Q(0)),
        ("1", _Q(1)),
        ("500m", _Q(1, 2)),
        ("1.5", _Q(3, 2)),
        ("1.", _Q(1)),
        (".5", _Q(1, 2)),
        ("+1", _Q(1)),
        ("-1.5Gi", -_Q(3, 2) * 2**30),
        ("250n", _Q(250, 10**9)),
        ("3u", _Q(3, 10**6)),
        ("2k", _Q(2000)),
        ("1M", _Q(10**6)),
        ("1G", _Q(10**9)),
        ("1T", _Q(10**12)),
        ("1P", _Q(10**15)),
        ("1E", _Q(10**18)),
        ("1Ki", _Q(1024)),
        ("512Mi", _Q(512 * 2**20)),
        ("0.5Gi", _Q(2**29)),
        ("1Ti", _Q(2**40)),
        ("1Pi", _Q(2**50)),
        ("7Ei", _Q(7 * 2**60)),
        ("1e3", _Q(1000)),
        ("1E-2", _Q(1, 100)),
        ("12e+2", _Q(1200)),
        ("0.1n", _Q(1, 10**9)),  # rounded *up* to the smallest unit, 1n
        ("1e-10", _Q(1, 10**9)),
        ("8Ei", _Q(2**63 - 1)),  # binary values beyond int64 are capped, like Go
        ("1.5Ei", _Q(3 * 2**59)),
        ("99999999999999999999", _Q(99999999999999999999)),  # decimal ones never are
        ("10E", _Q(10**19)),
        ("1e100", _Q(10**100)),
        ("1e4294967296", _Q(1)),  # Go reads the exponent as int64, then truncates it to int32
        ("1e4294967295", _Q(1, 10)),  # ... so this is 1e-1
        ("007", _Q(7)),
        ("Mi", _Q(0)),  # Go's parser reads a missing number as 0 (the CRD pattern needs digits)
    ],
)
def test_parse_quantity_matches_kubernetes(text: str, value: Fraction) -> None:
    assert crdv.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1K", "1e", "1ee3", "1e1.5", "1.5.3", "1Mi5", "lots", "1 Gi", " 1", "Ei", "1mi"])
def test_parse_quantity_refuses_what_kubernetes_refuses(text: str) -> None:
    with pytest.raises(crdv.QuantityError):
        crdv.parse_quantity(text)


@_HYPOTHESIS
@given(st.sampled_from(["requests", "limits"]).flatmap(_quantity_strings))
def test_every_quantity_the_crd_pattern_admits_parses(text: str) -> None:
    crdv.parse_quantity(text)


@pytest.mark.parametrize(
    "rule",
    [
        "quantity('2Gi').isGreaterThan(quantity('1Gi'))",
        "!quantity('1Gi').isGreaterThan(quantity('1024Mi'))",
        "quantity('500m').isLessThan(quantity(string(1)))",
        "quantity('1000m').compareTo(quantity('1')) == 0",
        "quantity('-3').sign() == -1",
        "quantity('2k').isInteger() && quantity('2k').asInteger() == 2000",
        "!quantity('1.5').isInteger()",
        # Go's AsInt64 goes by representation: whole numbers off the int64 fast path are not "integers"
        "quantity('1.5k').isInteger() && quantity('1e3').isInteger() && quantity('1Gi').isInteger()",
        "!quantity('2000m').isInteger() && !quantity('1.5Gi').isInteger() && !quantity('1e-3').isInteger()",
        "quantity('1.5Gi').asApproximateFloat() == double(int(quantity('1.5Gi').asApproximateFloat()))",
        "quantity('1.5').asApproximateFloat() == 1.5",
        "isQuantity('1Gi') && !isQuantity('lots') && !isQuantity('1K')",
    ],
)
def test_quantity_functions_in_cel(rule: str) -> None:
    assert crdv.eval_rule(rule, {})


def test_quantity_errors_are_rule_failures_not_crashes() -> None:
    assert not crdv.eval_rule("quantity('lots').isGreaterThan(quantity('1'))", {})
    assert not crdv.eval_rule("quantity('1.5').asInteger() == 1", {})


# --- the API server's own validation code (crds/hack/crdcheck) ---------------------

CRDCHECK = CRDS_DIR / "hack" / "crdcheck"
_CRDCHECK_SOURCES = ("go.mod", "go.sum", "main.go")


@pytest.fixture(scope="module")
def crdcheck(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, phases: Phases) -> Path:
    """The crdcheck binary, built once per source hash into the harness cache (warm: no Go at all).

    Cold, the build takes minutes beside a node-image build: it runs as a phase, whose heartbeat
    keeps the unit tier's log moving.
    """
    digest = hashlib.sha256()
    for name in _CRDCHECK_SOURCES:
        digest.update(name.encode() + b"\0" + (CRDCHECK / name).read_bytes() + b"\0")
    binary = cache_dir("bin", "crdcheck") / f"crdcheck-{digest.hexdigest()[:16]}"
    if binary.is_file():
        return binary
    try:
        go = GoToolchain.discover(cache_dir())
    except PreflightError as exc:
        missing_prerequisite(request.config, f"cannot build crds/hack/crdcheck: {exc}")
    with phases.phase("build crds/hack/crdcheck (Go)"):
        return _build_crdcheck(request, tmp_path_factory, go, binary)


def _build_crdcheck(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, go: GoToolchain,
                    binary: Path) -> Path:
    work = tmp_path_factory.mktemp("crdcheck")  # a copy: -mod=mod may touch go.mod/go.sum
    for name in _CRDCHECK_SOURCES:
        shutil.copy(CRDCHECK / name, work / name)
    try:  # resolving modules is the only step that needs the network (the Go module proxy)
        go.run("list", "-deps", "-f", "{{if .Error}}{{.Error}}{{end}}", ".", cwd=work)
    except CommandError as exc:
        proxy = os.environ.get("GOPROXY") or "https://proxy.golang.org (default)"
        missing_prerequisite(
            request.config,
            f"cannot fetch crdcheck's Go modules (k8s.io/apiextensions-apiserver v0.35) with GOPROXY={proxy}; "
            f"fix: make the Go module proxy reachable (or point GOPROXY at a mirror)\n{exc}",
        )
    built = work / "crdcheck"
    go.run("build", "-trimpath", "-o", built, ".", cwd=work)  # a compile error fails, never skips
    staged = binary.with_name(f"{binary.name}.{os.getpid()}")
    shutil.copy2(built, staged)
    staged.replace(binary)  # atomic: parallel workers may race to the same name
    return binary


def test_crdcheck_requires_what_the_default_node_image_compiles() -> None:
    """crdcheck's modules are the default minor's Kubernetes build's, each at the same version: on a new machine
    its compile then reuses that build's packages from the shared Go cache (cold CI 33: 249 s for crdcheck on its
    own), and it checks the CRD with the API server code the default cluster runs."""
    from harness.nodeimage.versions import staging_version
    from harness.versions import DEFAULT_RELEASE

    required = dict(re.findall(r"^\s+(k8s\.io/[\w.-]+) (v\S+)", (CRDCHECK / "go.mod").read_text(), re.MULTILINE))
    staging = {m: v for m, v in required.items() if v.startswith("v0.") and not v.startswith("v0.0.0-")}
    assert staging["k8s.io/apiextensions-apiserver"] == staging_version(DEFAULT_RELEASE.kubernetes), staging
    assert set(staging.values()) == {staging_version(DEFAULT_RELEASE.kubernetes)}, staging


def _run_crdcheck(binary: Path, *args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), str(crdv.CRD_PATH), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_crdcheck_finds_the_crd_valid_and_its_cel_cheap(crdcheck: Path) -> None:
    proc = _run_crdcheck(crdcheck)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CRD valid" in proc.stderr
    costs = {path: int(cost) for path, cost in re.findall(r"^cost (\S+) (\d+)$", proc.stderr, re.MULTILINE)}
    summary = re.search(r"^cost total (\d+) \(limits: (\d+) per rule, (\d+)", proc.stderr, re.MULTILINE)
    assert summary is not None, proc.stderr
    total, per_rule, per_crd = map(int, summary.groups())
    rules = sum(len(node.get("x-kubernetes-validations", ())) for node in _schema_nodes(crdv.version_schema()))
    assert len(costs) == rules, proc.stderr
    assert all(cost <= per_rule // 10 for cost in costs.values()), proc.stderr  # every rule far below its limit
    assert total == sum(costs.values()) <= per_crd // 100, proc.stderr


def _schema_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    children = [*(node.get("properties") or {}).values()]
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            children.append(node[key])
    return [node, *(n for child in children for n in _schema_nodes(child))]


@pytest.fixture(scope="module")
def server_verdicts(crdcheck: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """crdcheck's answer for every admission case (invalid) and valid neighbour, by case id."""
    cases = [{"name": n, "expect": "invalid", "spec": s} for n, s in strategies.ADMISSION_CASES.items()]
    cases += [{"name": n, "expect": "valid", "spec": s} for n, s in strategies.ADMISSION_VALID_CASES.items()]
    cases.append({"name": "GOOD_SPEC", "expect": "valid", "spec": GOOD_SPEC})
    path = tmp_path_factory.mktemp("cases") / "cases.json"
    path.write_text(json.dumps(cases))
    proc = _run_crdcheck(crdcheck, path)
    verdicts = {v["name"]: v for v in map(json.loads, proc.stdout.splitlines())}
    assert set(verdicts) == {c["name"] for c in cases}, proc.stderr
    return verdicts


def test_the_api_server_code_agrees_with_the_local_validator_on_every_case(
    server_verdicts: dict[str, dict[str, Any]],
) -> None:
    specs = {**strategies.ADMISSION_CASES, **strategies.ADMISSION_VALID_CASES, "GOOD_SPEC": GOOD_SPEC}
    wrong = {n: v["errors"] for n, v in server_verdicts.items() if v["admitted"] != (v["expect"] == "valid")}
    assert wrong == {}
    local = {n: crdv.validate(crdv.customjob(spec)) == [] for n, spec in specs.items()}
    assert [n for n, v in server_verdicts.items() if v["admitted"] != local[n]] == []


@pytest.mark.parametrize("case", sorted(NEW_RULE_MESSAGES))
def test_the_api_server_gives_each_new_rule_its_message(server_verdicts: dict[str, dict[str, Any]], case: str) -> None:
    (error,) = server_verdicts[case]["errors"]
    assert NEW_RULE_MESSAGES[case][1] in error


# --- kustomize ---------------------------------------------------------------------------


def _rendered(config: pytest.Config) -> list[dict[str, Any]]:
    # kubectl on PATH, else the one the registry-less node build left in the cache (never built here).
    cached = sorted(cache_dir("bin").glob("kubernetes-*/kubectl"))
    kubectl = shutil.which("kubectl") or (str(cached[-1]) if cached else None)
    if kubectl is None:  # a skip --harness-no-skip turns into a failure, like every other prerequisite
        missing_prerequisite(config, "kubectl not installed (the e2e tier still applies crds/ with kustomize)")
    out = subprocess.run(
        [kubectl, "kustomize", str(CRDS_DIR)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_kustomize_renders_crd_rbac_and_a_hardened_deployment(pytestconfig: pytest.Config) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _rendered(pytestconfig)}
    assert docs["CustomResourceDefinition", "customjobs.training.example.com"]["spec"] == crdv.load_crd()["spec"]
    deploy = docs["Deployment", "customjob-controller"]
    assert deploy["metadata"]["namespace"] == "customjob-system"
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "customjob-controller:dev"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    binding = docs["ClusterRoleBinding", "customjob-controller"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "customjob-controller", "namespace": "customjob-system"}
    ]


def test_cluster_role_is_least_privilege(pytestconfig: pytest.Config) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _rendered(pytestconfig)}
    role = docs["ClusterRole", "customjob-controller"]
    grants = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert all("*" not in verbs for verbs in grants.values())
    assert grants == {
        ("training.example.com", "customjobs"): {"get", "list", "watch", "patch"},
        ("training.example.com", "customjobs/status"): {"patch"},
        ("training.example.com", "customjobs/finalizers"): {"update"},
        ("batch", "jobs"): {"create", "get", "list", "watch", "delete", "patch"},
        ("", "pods"): {"list", "watch"},
        ("", "pods/log"): {"get"},
        ("", "events"): {"create", "list"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
