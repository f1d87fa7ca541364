"""The settings' one table, and the typed, frozen groups a session reads them through.

Each setting is declared once, as a field of its group (:class:`ClusterSettings`,
:class:`BuildSettings`, ...): the field's annotation is the resolved value's type,
its :func:`setting` row gives the key, kind, default and help. :data:`OPTIONS`,
made from those fields, is what generates the pytest options, the CLI flags, the
``HARNESS_*`` variables and the reference page. :mod:`harness.settings` fills the
groups (file, environment, options, defaults; every check with its fix); the rest
of the harness reads fields (``settings.cluster.release``), never keys, so a
rename is a type error rather than a ``KeyError`` at run time.

Why a module of its own, below the cluster providers: a provider reads the settings
it is made from (``from_settings``, ``check_settings``), and :mod:`harness.settings`
looks providers up to validate them, so the types must sit under both.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from harness._errors import ConfigError
from harness.envflags import env_flag
from harness.goimage import GoBuild
from harness.versions import DEFAULT_MINOR, RELEASES, Release, release_for
from harness.workloads import CUSTOMJOB, WorkloadKind

__all__ = [
    "ENV_PREFIX",
    "GROUPS",
    "OPTIONS",
    "SECTION",
    "BuildSettings",
    "ClusterSettings",
    "GeneralSettings",
    "ImageSpec",
    "Option",
    "ProjectSpec",
    "RunSettings",
    "Settings",
    "StackSettings",
    "ToolSettings",
    "find_project",
    "option",
    "setting",
]

SECTION = "mlflow-crd-harness"
"""The ``[tool.<SECTION>]`` table of ``pyproject.toml``."""

ENV_PREFIX = "HARNESS_"


Kind = Literal["str", "bool", "int", "float", "path", "choice", "list", "table-list", "table"]


@dataclass(frozen=True)
class Option:
    """One setting: its key, type, default and the help text shown everywhere.

    Declared by :func:`setting` on a field of a settings group (below); :data:`OPTIONS`
    lists them all, with ``group`` and ``attr`` filled in from where they are declared.
    """

    key: str
    kind: Kind
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    group: str = ""
    """The settings group (:data:`GROUPS`) the option belongs to: ``Settings.<group>``."""
    attr: str = ""
    """The group's field holding the resolved value: ``Settings.<group>.<attr>``."""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper().replace("-", "_")

    @property
    def pytest_flag(self) -> str:
        return f"--harness-{self.key}"

    @property
    def cli_flag(self) -> str:
        return f"--{self.key}"

    @property
    def dest(self) -> str:
        return "harness_" + self.key.replace("-", "_")

    def describe_default(self) -> str:
        if callable(self.default):
            return str(getattr(self.default, "__doc__", "") or "computed").strip()
        if self.default in (None, (), []):
            return "unset"
        return json.dumps(self.default) if self.kind in ("list", "table-list", "table") else str(self.default)


def setting(key: str, kind: Kind, default: Any, help: str, choices: tuple[str, ...] = ()) -> Any:
    """A field of a settings group that is one row of the option table: its key, kind, default and help.

    The field's annotation is the resolved value's type; the row makes the pytest
    option, the CLI flag, the environment variable and the reference page.
    """
    return field(metadata={"option": Option(key, kind, default, help, choices)})


def _not_ci() -> bool:
    """on, except under CI (env CI set)"""
    return not env_flag("CI")


@dataclass(frozen=True)
class GeneralSettings:
    """Where the settings come from, and where the session's own files go."""

    config: Path | None = setting(
        "config", "path", None, "TOML file with a [tool.mlflow-crd-harness] table (default: the rootdir's "
        "pyproject.toml)")
    from_manifest: Path | None = setting(
        "from-manifest", "path", None, "re-run with a run manifest (<junit>.manifest.json) another session wrote: "
        "its settings, and a refusal of whatever this machine cannot reproduce")
    no_skip: bool = setting(
        "no-skip", "bool", False, "fail instead of skipping when a tier's prerequisites are missing (CI)")
    state_dir: Path = setting(
        "state-dir", "path", ".harness", "where kubeconfigs (0600) and cluster state go (relative: to the project "
        "root)")
    bundle_dir: Path = setting(
        "bundle-dir", "path", "build/e2e-bundles", "where failed tests' evidence bundles go, one directory per test")


@dataclass(frozen=True)
class ClusterSettings:
    """The cluster the session runs on: which provider, which one, and (kind) how it is made."""

    provider: str = setting(
        "cluster", "str", "kind", "cluster provider: kind (created or reused by fingerprint) or existing (a cluster "
        "you give by kubeconfig/context; never created or deleted), or a provider registered with "
        "harness.clusters.register")
    name: str = setting(
        "cluster-name", "str", None, "kind cluster to create or reuse (default: <project dir name>-e2e)")
    kubeconfig: Path | None = setting(
        "kubeconfig", "path", None, "kubeconfig of an existing cluster (provider existing)")
    context: str | None = setting(
        "context", "str", None, "kubeconfig context of an existing cluster (default: its current context)")
    objects: Literal["refuse", "use"] = setting(
        "cluster-objects", "choice", "refuse", "existing cluster: when a CRD, ClusterRole or other cluster-scoped "
        "object of the stack is already there, was not made by the harness and differs from the stack's: refuse "
        "(stop before applying anything, with the differences) or use (run against the cluster's as it is). One "
        "that says the same is used either way; it is never overwritten", ("refuse", "use"))
    keep: Literal["auto", "always", "never", "on-failure"] = setting(
        "keep-cluster", "choice", "auto", "after the session: auto (keep locally, delete under CI), always, never, "
        "on-failure", ("auto", "always", "never", "on-failure"))
    reuse: bool = setting(
        "reuse", "bool", _not_ci, "reuse a kind cluster whose fingerprint matches (default: on, off under CI)")
    kind_config: Path | None = setting(
        "kind-config", "path", None, "YAML merged into the harness's kind config (nodes, featureGates, "
        "containerdConfigPatches, ...); part of the fingerprint")
    kubernetes_version: str = setting(
        "kubernetes-version", "choice", DEFAULT_MINOR, "Kubernetes minor of the kind cluster, from the version table "
        "(harness/versions.py): kind, the node image (public by digest, or built) and kubectl follow it",
        tuple(RELEASES))
    workers: int = setting(
        "workers", "int", 0, "worker nodes beside the control plane (kind; 1.35+: the registry-less node carries a "
        "multi-node CNI); refused beside a kind-config that lists nodes; part of the fingerprint")
    extended_resources: Mapping[str, Mapping[str, int]] | None = setting(
        "extended-resources", "table", None, "extended resources kind nodes advertise, e.g. "
        '{ worker = { "nvidia.com/gpu" = 1 } } (node: worker, control-plane, all or a node name): pods that request '
        "them schedule there, without the device (kind only)")
    node_image: str | None = setting(
        "node-image", "str", None, "kind node image to use as is")
    node_image_mode: Literal["auto", "public", "local"] = setting(
        "node-image-mode", "choice", "auto", "auto: the pinned public node image if pullable, else the registry-less "
        "build; public; local", ("auto", "public", "local"))
    release: Release = field(init=False)
    """The version table's row for ``kubernetes_version`` (kind, Kubernetes, node images, Go), looked up once here
    so no caller turns the minor into a row again."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "release", release_for(self.kubernetes_version))


@dataclass(frozen=True)
class ToolSettings:
    """Executables to use instead of the pinned ones (found on PATH at the pinned version, downloaded or built)."""

    kind_bin: Path | None = setting(
        "kind-bin", "path", None, "kind executable (default: on PATH, else built from Go modules)")
    kubectl_bin: Path | None = setting(
        "kubectl-bin", "path", None, "kubectl executable (default: on PATH, else built)")


@dataclass(frozen=True)
class BuildSettings:
    """The images the session builds, what they build FROM, and the route they take to the nodes."""

    base_image: str | None = setting(
        "base-image", "str", None, "image the harness's Dockerfiles build FROM (BASE_IMAGE build arg)")
    base_mode: Literal["auto", "public", "local"] = setting(
        "base-mode", "choice", "auto", "auto: public python image if pullable, else built from the Debian mirror; "
        "public; local", ("auto", "public", "local"))
    images: tuple[ImageSpec, ...] = setting(
        "images", "table-list", None, "images to build: [{name, context, repository, build-args, also-tag, deliver, "
        "go, public}]; a delivered image replaces the same repository in the stack's manifests (default: the stub "
        "controller when the stack uses the stub; a stack preset adds its own)")
    registry: str | None = setting(
        "registry", "str", None, "where images go instead of kind load: 'local' (the harness's registry on "
        "127.0.0.1:5001, wired into kind clusters and kept across them); 'localhost:PORT' (a registry container of "
        "yours that this Docker engine publishes there, such as kind's documented kind-registry: wired into kind "
        "clusters the same way, never started or stopped); or, with cluster = existing, the host[:port] of a "
        "registry the cluster pulls from (required there)")


@dataclass(frozen=True)
class StackSettings:
    """What is deployed on the cluster before any test: the kustomize stack and the MLflow tracking server."""

    entries: tuple[str, ...] = setting(
        "stack", "list", ("stub",), "kustomize directories applied in order (CRDs first); 'stub' is the CustomJob "
        "stack shipped with the package, 'kubeflow-training-operator' Kubeflow's training-operator v1.8.1 from its "
        "Go module (harness.stacks)")
    tracking: str = setting(
        "tracking", "str", "in-cluster", "MLflow tracking server: in-cluster (deployed by the harness) or the "
        "http(s) URI of an external one")
    tracking_pod_uri: str | None = setting(
        "tracking-pod-uri", "str", None, "tracking URI pods use, when it differs from 'tracking' (external servers "
        "only)")
    namespace_prefix: str = setting(
        "namespace-prefix", "str", "e2e", "prefix of the per-test namespaces the harness creates and labels")
    deploy_timeout: float = setting(
        "deploy-timeout", "float", 300.0, "seconds the stack (CRDs, Deployments, tracking) may take to be ready")


@dataclass(frozen=True)
class RunSettings:
    """The MLflow projects the tests run, the workload kinds they run as, and how long a run may take."""

    projects: tuple[ProjectSpec, ...] = setting(
        "projects", "table-list", (), "MLflow projects: [{name, path, template, workload, entry-point, params, "
        "backend-config}]; workload defaults to the kind the template declares")
    workloads: tuple[WorkloadKind, ...] = setting(
        "workloads", "table-list", (), "your own workload kinds, besides the presets customjob, job and pytorchjob: "
        "[{name, api-version, kind, containers, identity, succeeded, failed, running, pods, closes-run, ...}] (see "
        "harness.workloads.kind)")
    job_timeout: float = setting(
        "job-timeout", "float", 900.0, "seconds a project run may take to end")


GROUPS: tuple[tuple[str, type], ...] = (
    ("general", GeneralSettings),
    ("cluster", ClusterSettings),
    ("tools", ToolSettings),
    ("build", BuildSettings),
    ("stack", StackSettings),
    ("runs", RunSettings),
)
"""Each settings group: its attribute on :class:`Settings`, and its class (whose fields are the table's rows)."""


def _table_of_options() -> tuple[Option, ...]:
    rows = []
    for group, cls in GROUPS:
        for f in fields(cls):
            if "option" in f.metadata:
                rows.append(replace(f.metadata["option"], group=group, attr=f.name))
    return tuple(rows)


OPTIONS: tuple[Option, ...] = _table_of_options()
"""Every setting, group by group: made from the groups' fields, so a setting is declared once."""
_BY_KEY = {o.key: o for o in OPTIONS}


def option(key: str) -> Option:
    """The row of ``key``; a ``KeyError`` names a key that is not a setting."""
    return _BY_KEY[key]


@dataclass(frozen=True)
class ImageSpec:
    """An image the harness builds (content-hash tag) before the stack is deployed."""

    name: str
    context: Path | None
    """The build context (a Dockerfile in it); None for a ``go`` image (its context is generated)."""
    repository: str
    dockerfile: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    also_tag: tuple[str, ...] = ()
    deliver: bool = True
    """Load/push into the cluster (controllers); False for images only used to build FROM locally."""
    go: GoBuild | None = None
    """Build a static Go binary from the module proxy into a ``FROM scratch`` image (:mod:`harness.goimage`)."""
    public: str | None = None
    """A published image to use instead of building, where it can be pulled (or is already local)."""


@dataclass(frozen=True)
class ProjectSpec:
    """An MLflow project the tests run through a CustomJob."""

    name: str
    path: Path
    template: Path
    entry_point: str = "main"
    params: Mapping[str, str] = field(default_factory=dict)
    backend_config: Mapping[str, Any] = field(default_factory=dict)
    workload: WorkloadKind = CUSTOMJOB
    """The kind its template makes (named by ``workload``, else the one the template declares)."""
    declared_params: tuple[str, ...] | None = None
    """The entry point's declared parameters (checked before ``mlflow run``); None: not known, any."""

    def check_params(self, params: Mapping[str, object]) -> None:
        """A parameter the entry point does not declare is a typo, an empty or blank value a slip (an unset
        ``$VAR``): :class:`ConfigError` naming it, before any cluster work or image build."""
        for name, value in params.items():
            if self.declared_params is not None and name not in self.declared_params:
                near = difflib.get_close_matches(name, self.declared_params, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ConfigError(f"project {self.name}: parameter {name!r} is not declared by entry point "
                                  f"{self.entry_point!r}{hint}; declared: {', '.join(self.declared_params) or 'none'}")
            if not str(value).strip():  # the backend's argv.validate_params refuses it too, for `mlflow run -P`
                what = "empty" if not str(value) else f"only whitespace ({str(value)!r})"
                raise ConfigError(f"project {self.name}: parameter {name!r} is {what} (-P {name}={value}): give it a "
                                  "value, or leave it out to use the entry point's default")


@dataclass(frozen=True)
class Settings:
    """Resolved settings: one typed, frozen group per part of a session (:data:`GROUPS`).

    Read them by field (``settings.cluster.release``, ``settings.build.registry``);
    ``values`` and ``sources`` keep every key of :data:`OPTIONS` with its value as
    resolved and where it came from, for :meth:`describe`, the run manifest and
    error messages that must name the source.
    """

    root: Path
    """The project root: the config file's directory (pytest's rootdir without one)."""
    values: Mapping[str, Any]
    sources: Mapping[str, str]
    general: GeneralSettings
    cluster: ClusterSettings
    tools: ToolSettings
    build: BuildSettings
    stack: StackSettings
    runs: RunSettings

    def __getitem__(self, key: str) -> Any:
        """The value of ``key`` as resolved (tables as given); the harness itself reads the typed groups."""
        if key not in _BY_KEY:
            raise KeyError(key)
        return self.values[key]

    @property
    def images(self) -> tuple[ImageSpec, ...]:
        return self.build.images

    @property
    def projects(self) -> tuple[ProjectSpec, ...]:
        return self.runs.projects

    @property
    def workloads(self) -> tuple[WorkloadKind, ...]:
        """The settings' own workload kinds (``workloads``), besides the presets."""
        return self.runs.workloads

    @property
    def cluster_name(self) -> str:
        return self.cluster.name

    @property
    def state_dir(self) -> Path:
        return self.general.state_dir

    @property
    def bundle_dir(self) -> Path:
        return self.general.bundle_dir

    def project(self, name_or_path: str) -> ProjectSpec:
        """A configured project by name or path; an unconfigured path gets the stub template."""
        found = find_project(self.projects, name_or_path, root=self.root)
        if found is not None:
            return found
        path = (self.root / name_or_path).resolve()
        if (path / "MLproject").is_file():
            from harness import assets

            return ProjectSpec(name=path.name, path=path, template=assets.stub_template())
        known = ", ".join(p.name for p in self.projects) or "none configured"
        raise ConfigError(f"no project {name_or_path!r}: not a configured name ({known}) and no MLproject in {path}; "
                          f"fix: add it to [[tool.{SECTION}.projects]] or pass a project directory")

    def describe(self) -> str:
        """Every setting as TOML a user can paste back into ``pyproject.toml``, each with its source.

        Scalars and lists come first under ``[tool.mlflow-crd-harness]``; tables of
        tables (``images``, ``projects``, ``workloads``) follow as ``[[...]]``
        sections; an unset setting is a comment, so the block parses as it is.
        """
        scalars, sections = [f"[tool.{SECTION}]"], []
        for o in OPTIONS:
            value, source = self.values[o.key], self.sources[o.key]
            if o.kind == "table-list":
                for item in value or ():
                    sections += [f"[[tool.{SECTION}.{o.key}]]  # {source}"]
                    sections += [f"{k} = {_toml(v)}" for k, v in item.items() if not str(k).startswith("_")]
                if not value:
                    scalars.append(f"# {o.key} = []  ({source})")
                continue
            if value is None:
                scalars.append(f"# {o.key} = (unset)  ({source})")
            else:
                scalars.append(f"{o.key} = {_toml(self._relative(value))}  # {source}")
        return "\n".join(scalars + sections)

    def _relative(self, value: Any) -> Any:
        """Paths inside the project root as the file would write them (relative to it)."""
        if isinstance(value, tuple):
            return [self._relative(v) for v in value]
        if isinstance(value, (str, Path)) and str(value).startswith(f"{self.root}/"):
            return str(value)[len(str(self.root)) + 1:]
        return value


def _toml(value: Any) -> str:
    """A TOML value for what the settings hold (paths as strings, tuples as arrays, tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()
                                if not str(k).startswith("_")) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def _toml_key(key: Any) -> str:
    return str(key) if re.fullmatch(r"[A-Za-z0-9_-]+", str(key)) else json.dumps(str(key))


def find_project(projects: tuple[ProjectSpec, ...], name_or_path: str, *, root: Path | None = None,
                 ) -> ProjectSpec | None:
    """The project named ``name_or_path``, or at that path (relative to ``root``); None if none is."""
    for p in projects:
        if name_or_path in (p.name, str(p.path)) or (root is not None and (root / name_or_path).resolve() == p.path):
            return p
    return None

