"""A workload kind: what one kind of object an MLflow project run becomes, as data (pure).

One :class:`WorkloadKind` says, for an API such as the stub's ``CustomJob``,
``batch/v1`` ``Job`` or Kubeflow's ``PyTorchJob``:

* its ``apiVersion`` and ``kind`` (the plural is found by API discovery, never written down);
* where the run's container(s) sit in the template (a :mod:`~harness.workloads.paths` path,
  wildcards allowed, so every replica of a PyTorchJob gets the run's image and argv);
* how the run's identity reaches the container: as ``MLFLOW_RUN_ID`` /
  ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_ID`` env written by the submitter, or
  through a field its controller reads (the stub's ``spec.mlflow``);
* how its status maps to MLflow's: rules in the spirit of ``kubectl wait --for=``
  (``condition=Complete``, ``jsonpath={.status.phase}=Succeeded``);
* how to find its pods (a label selector with ``{name}`` in it);
* who closes the MLflow run: its own controller (only an MLflow-aware one, like the
  stub's) or the submitter (everyone else).

Definitions are read from the settings file or the backend config with
:meth:`WorkloadKind.from_mapping`; every mistake raises :class:`DefinitionError`
naming the key, the bad value and the fix, before anything is built. Presets
are written in the same vocabulary (:mod:`~harness.workloads.presets`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness._errors import HarnessError
from harness.workloads import paths

__all__ = [
    "CLOSERS",
    "DEFINITION_KEYS",
    "DefinitionError",
    "Identity",
    "RunState",
    "StateRule",
    "WorkloadKind",
]

RunState = Literal["SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED"]
"""MLflow's run states, by name (``mlflow.entities.RunStatus``), so this module needs no MLflow."""

CLOSERS = ("controller", "submitter")

DEFINITION_KEYS: tuple[str, ...] = (
    "name",
    "api-version",
    "kind",
    "description",
    "containers",
    "argv-field",
    "container-name",
    "template-style",
    "identity",
    "succeeded",
    "failed",
    "running",
    "pods",
    "closes-run",
    "run-label",
    "failure-tag",
)
"""Every key a definition may have (kebab-case, as in TOML and the backend config JSON)."""

_IDENTITY_KEYS = ("field", "run-id", "experiment-id", "tracking-uri")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_CONDITION = re.compile(r"condition=([A-Za-z][A-Za-z0-9_.-]*)(?:=(true|false|True|False|TRUE|FALSE))?")
_JSONPATH = re.compile(r"jsonpath=\{([^{}]+)\}(?:=(.*))?")


class DefinitionError(HarnessError):
    """A workload definition is incomplete or wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class StateRule:
    """One ``kubectl wait --for=``-style test of an object's status.

    ``condition=Type`` holds when ``status.conditions`` has that type with
    status ``"True"`` (or the given ``=False``); ``jsonpath={.status.phase}=X``
    when the field equals ``X`` (as a string), or, without ``=X``, when it is
    present and not empty.
    """

    text: str
    condition: str | None = None
    condition_status: str = "True"
    path: paths.Path | None = None
    value: str | None = None

    @classmethod
    def parse(cls, text: str, where: str) -> StateRule:
        if not isinstance(text, str):
            raise DefinitionError(f"{where}: expected a string like 'condition=Complete', got {text!r}")
        match = _CONDITION.fullmatch(text.strip())
        if match:
            status = (match.group(2) or "True").capitalize()
            return cls(text=text.strip(), condition=match.group(1), condition_status=status)
        match = _JSONPATH.fullmatch(text.strip())
        if match:
            try:
                path = paths.parse(match.group(1))
            except paths.PathError as exc:
                raise DefinitionError(f"{where}: {exc}") from None
            return cls(text=text.strip(), path=path, value=match.group(2))
        raise DefinitionError(
            f"{where}: {text!r} is not a status rule; write 'condition=<Type>' (status True), "
            "'condition=<Type>=False', 'jsonpath={.status.phase}=<value>' or 'jsonpath={.status.field}' "
            "(present and not empty), as for kubectl wait --for"
        )

    def matches(self, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The matching condition (or ``{}`` for a jsonpath rule) if the rule holds, else None."""
        if self.condition is not None:
            status = obj.get("status")
            for cond in (status.get("conditions") if isinstance(status, Mapping) else None) or ():
                if (isinstance(cond, Mapping) and cond.get("type") == self.condition
                        and str(cond.get("status")).capitalize() == self.condition_status):
                    return cond
            return None
        assert self.path is not None
        found = paths.find(obj, self.path)
        if not found:
            return None
        got = found[0][1]
        if self.value is None:
            return {} if got not in (None, "", [], {}) else None
        return {} if _scalar(got) == self.value else None


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Identity:
    """How the run's ids reach the container: ``env`` (``MLFLOW_*`` variables) or a field of the object."""

    field: paths.Path | None = None
    """A mapping the controller reads (the stub: ``spec.mlflow``); None means env."""
    keys: Mapping[str, str] = dataclasses.field(default_factory=lambda: {
        "run-id": "runId", "experiment-id": "experimentId", "tracking-uri": "trackingUri"})
    """Key in that mapping for ``run-id``, ``experiment-id`` and ``tracking-uri``."""

    @property
    def mode(self) -> Literal["env", "field"]:
        return "env" if self.field is None else "field"


ENV_NAMES: Mapping[str, str] = {
    "run-id": "MLFLOW_RUN_ID",
    "tracking-uri": "MLFLOW_TRACKING_URI",
    "experiment-id": "MLFLOW_EXPERIMENT_ID",
}
"""The environment MLflow's own kubernetes backend writes; the names ``mlflow`` reads in the pod."""


@dataclass(frozen=True)
class WorkloadKind:
    """One kind of object a project run becomes; build with :meth:`from_mapping` (or a preset)."""

    name: str
    """How settings and ``--backend-config`` refer to it (``job``, ``pytorchjob``, a team's own)."""
    api_version: str
    kind: str
    containers: paths.Path
    """Where the run's container(s) are; every match gets the image, argv and env."""
    succeeded: tuple[StateRule, ...]
    failed: tuple[StateRule, ...]
    running: tuple[StateRule, ...] = ()
    identity: Identity = dataclasses.field(default_factory=Identity)
    argv_field: Literal["command", "args"] = "command"
    container_name: str | None = None
    """A value (placeholders allowed) for each container's ``name``; None keeps the template's."""
    template_style: Literal["placeholders", "mlflow"] = "placeholders"
    """``mlflow``: like MLflow's kubernetes backend, metadata.name and the container's name, image and
    command are overwritten whatever the template holds there; ``placeholders``: they must be absent or
    render to what the backend would write (``{job_name}``, ``{image}``), so a stray literal is an error."""
    pods: str | None = None
    """Label selector of its pods, ``{name}`` standing for the object's name; None: walk ownerReferences."""
    closes_run: Literal["controller", "submitter"] = "submitter"
    run_label: str = "mlflow-crd-harness/run-id"
    """Label the submitter puts on the object (value: the MLflow run id), to find it again."""
    failure_tag: str = "mlflow-crd-harness/failure-reason"
    """MLflow run tag the submitter writes the failure reason to."""
    description: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.rsplit("/", 1)[-1]

    def pod_selector(self, name: str) -> str | None:
        """The label selector of the pods of object ``name``, or None (then ownership is walked)."""
        return None if self.pods is None else self.pods.replace("{name}", name)

    def describe(self) -> str:
        return f"{self.kind} ({self.api_version}, workload '{self.name}')"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, where: str = "workload definition",
                     name: str | None = None) -> WorkloadKind:
        """Validate ``raw`` (kebab-case keys); :class:`DefinitionError` names the key and the fix."""
        if not isinstance(raw, Mapping):
            raise DefinitionError(f"{where} must be a table (mapping), got {type(raw).__name__}")
        unknown = [str(k) for k in raw if k not in DEFINITION_KEYS and not str(k).startswith("_")]
        if unknown:
            near = difflib.get_close_matches(unknown[0], DEFINITION_KEYS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise DefinitionError(f"{where}: unknown key {unknown[0]!r}{hint} Valid keys: {', '.join(DEFINITION_KEYS)}")

        def text(key: str, default: str | None = None, *, required: bool = False) -> str | None:
            value = raw.get(key, default)
            if value is None:
                if required:
                    raise DefinitionError(f"{where}: '{key}' is required ({_HELP[key]})")
                return None
            if not isinstance(value, str) or not value.strip():
                raise DefinitionError(f"{where}: '{key}' must be a non-empty string ({_HELP[key]}); got {value!r}")
            return value.strip()

        def choice(key: str, default: str, allowed: Sequence[str]) -> str:
            value = text(key, default) or ""
            if value not in allowed:
                raise DefinitionError(f"{where}: '{key}' must be one of {', '.join(allowed)}; got {value!r}")
            return value

        def rules(key: str, *, required: bool) -> tuple[StateRule, ...]:
            value = raw.get(key)
            if value is None:
                if required:
                    raise DefinitionError(f"{where}: '{key}' is required ({_HELP[key]})")
                return ()
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not value:
                raise DefinitionError(f"{where}: '{key}' must be a list of status rules ({_HELP[key]})")
            return tuple(StateRule.parse(v, f"{where}: {key}[{i}]") for i, v in enumerate(value))

        given_name = name or text("name", required=True)
        assert given_name is not None
        if not _NAME.fullmatch(given_name):
            raise DefinitionError(f"{where}: 'name' {given_name!r} must be lower-case letters, digits and '-'")
        api_version = text("api-version", required=True)
        assert api_version is not None
        if not re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9][a-z0-9]*", api_version):
            raise DefinitionError(f"{where}: 'api-version' {api_version!r} must look like 'group/version' "
                                  "(e.g. kubeflow.org/v1, batch/v1)")
        if "/" not in api_version:
            raise DefinitionError(f"{where}: 'api-version' {api_version!r}: core-group kinds (Pod) are not "
                                  "workloads; use a Job or a custom resource")
        kind = text("kind", required=True)
        assert kind is not None
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", kind):
            raise DefinitionError(f"{where}: 'kind' {kind!r} must be a Kubernetes kind in CamelCase (e.g. PyTorchJob)")
        try:
            containers = paths.parse(text("containers", "spec.template.spec.containers[0]") or "")
        except paths.PathError as exc:
            raise DefinitionError(f"{where}: 'containers': {exc}") from None
        pods = text("pods")
        if pods is not None and "{name}" not in pods:
            raise DefinitionError(f"{where}: 'pods' {pods!r} must contain {{name}} (the object's name), e.g. "
                                  "'training.kubeflow.org/job-name={name}'")
        failure_tag = text("failure-tag", "mlflow-crd-harness/failure-reason") or ""
        if not re.fullmatch(r"[\w./\- :]{1,250}", failure_tag):
            raise DefinitionError(f"{where}: 'failure-tag' {failure_tag!r} is not an MLflow tag key (letters, digits, "
                                  "'_', '-', '.', '/', ' ' and ':', at most 250)")
        run_label = text("run-label", "mlflow-crd-harness/run-id") or ""
        if not _QUALIFIED.fullmatch(run_label) or len(run_label.rsplit("/", 1)[-1]) > 63:
            raise DefinitionError(f"{where}: 'run-label' {run_label!r} is not a valid label key")
        return cls(
            name=given_name,
            api_version=api_version,
            kind=kind,
            containers=containers,
            succeeded=rules("succeeded", required=True),
            failed=rules("failed", required=True),
            running=rules("running", required=False),
            identity=_identity(raw.get("identity", "env"), where),
            argv_field=choice("argv-field", "command", ("command", "args")),  # type: ignore[arg-type]
            container_name=text("container-name"),
            template_style=choice("template-style", "placeholders", ("placeholders", "mlflow")),  # type: ignore[arg-type]
            pods=pods,
            closes_run=choice("closes-run", "submitter", CLOSERS),  # type: ignore[arg-type]
            run_label=run_label,
            failure_tag=failure_tag,
            description=(text("description") or "") if raw.get("description") else "",
        )

    def to_mapping(self) -> dict[str, Any]:
        """The definition in the vocabulary :meth:`from_mapping` reads (round-trips; for backend configs)."""
        identity: str | dict[str, str] = "env"
        if self.identity.field is not None:
            identity = {"field": str(self.identity.field), **dict(self.identity.keys)}
        out: dict[str, Any] = {
            "name": self.name, "api-version": self.api_version, "kind": self.kind,
            "containers": str(self.containers), "argv-field": self.argv_field,
            "template-style": self.template_style, "identity": identity,
            "succeeded": [r.text for r in self.succeeded], "failed": [r.text for r in self.failed],
            "closes-run": self.closes_run, "run-label": self.run_label, "failure-tag": self.failure_tag,
        }
        if self.running:
            out["running"] = [r.text for r in self.running]
        if self.container_name is not None:
            out["container-name"] = self.container_name
        if self.pods is not None:
            out["pods"] = self.pods
        if self.description:
            out["description"] = self.description
        return out


def _identity(raw: Any, where: str) -> Identity:
    if raw == "env":
        return Identity()
    if isinstance(raw, str) and raw.startswith("field:"):
        raw = {"field": raw.removeprefix("field:")}
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"{where}: 'identity' must be \"env\" (MLFLOW_RUN_ID, MLFLOW_TRACKING_URI and "
                              "MLFLOW_EXPERIMENT_ID in the container) or a table {field = \"spec.mlflow\", ...} "
                              f"naming the field the controller reads; got {raw!r}")
    unknown = [k for k in raw if k not in _IDENTITY_KEYS]
    if unknown:
        raise DefinitionError(f"{where}: identity has unknown key {unknown[0]!r}; valid: {', '.join(_IDENTITY_KEYS)}")
    try:
        path = paths.parse(str(raw.get("field", "")))
    except paths.PathError as exc:
        raise DefinitionError(f"{where}: identity.field: {exc}") from None
    if not path.plain:
        raise DefinitionError(f"{where}: identity.field {str(path)!r} must be plain keys naming one mapping, "
                              "like spec.mlflow (no wildcards, no [..])")
    keys = dict(Identity().keys)
    for key in ("run-id", "experiment-id", "tracking-uri"):
        value = raw.get(key, keys[key])
        if not isinstance(value, str) or not value:
            raise DefinitionError(f"{where}: identity.{key} must be the field name for the run's {key}")
        keys[key] = value
    return Identity(field=path, keys=keys)


_HELP = {
    "name": "how projects and --backend-config refer to this kind, e.g. 'trainingjob'",
    "api-version": "group/version of the kind, e.g. 'kubeflow.org/v1'",
    "kind": "the kind's name, e.g. 'PyTorchJob'",
    "description": "free text",
    "containers": "path of the run's container(s) in the template, e.g. "
                  "'spec.pytorchReplicaSpecs.*.template.spec.containers[name=pytorch]'",
    "argv-field": "the container field the entry point's argv goes into: command or args",
    "container-name": "a name for the run's container(s), placeholders allowed",
    "template-style": "placeholders or mlflow",
    "succeeded": "status rules that mean the workload succeeded, e.g. ['condition=Complete']",
    "failed": "status rules that mean it failed, e.g. ['condition=Failed']",
    "running": "status rules that mean it runs, e.g. ['condition=Running']",
    "pods": "label selector of its pods with {name}, e.g. 'training.kubeflow.org/job-name={name}'",
    "closes-run": "controller (an MLflow-aware controller ends the run) or submitter",
    "run-label": "label key the submitter sets to the MLflow run id",
    "failure-tag": "MLflow tag for the failure reason",
}
