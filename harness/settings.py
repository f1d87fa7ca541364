"""Resolving the settings: one table (:mod:`harness.options`), read the same way by the pytest plugin and the CLI.

Every setting has a key (``cluster-name``) that may be written in the
``[tool.mlflow-crd-harness]`` section of the project's ``pyproject.toml`` (or a
TOML file named by ``--harness-config``), given as an environment variable
(``HARNESS_CLUSTER_NAME``), a pytest option (``--harness-cluster-name``) or a
CLI flag (``python -m harness up --cluster-name``). The options, the env names
and the defaults are all generated from :data:`OPTIONS`, so they cannot drift
apart. Precedence: option > environment > file > default.

Why prefixed pytest options: pytest-kind(-ng) owns ``--cluster-name``,
``--keep-cluster``, ``--kind-bin`` and ``--kubeconfig``; two plugins that
register the same option cannot load together.

Paths in a file are relative to that file's directory (the project root);
paths from options and the environment are relative to the current directory.
A path may start with ``stub:`` to name a part of the stub CustomJob stack
shipped in the package (``stub:controller`` is the controller's build context).
Unknown keys and bad values stop the session at startup with the key, where it
came from and the fix.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import hostenv
from harness._errors import ConfigError
from harness.envflags import env_flag
from harness.goimage import GoBuild
from harness.options import (
    ENV_PREFIX,
    GROUPS,
    OPTIONS,
    SECTION,
    ImageSpec,
    Option,
    ProjectSpec,
    Settings,
    find_project,
    option,
)
from harness.workloads import DefinitionError, WorkloadKind, presets

# The table and the typed groups are harness.options'; the names callers import from here stay importable.
__all__ = ["OPTIONS", "SECTION", "ConfigError", "ImageSpec", "Option", "ProjectSpec", "Settings", "env_flag",
           "find_project", "find_project_file", "load_settings"]

_IMAGE_KEYS = ("name", "context", "repository", "dockerfile", "build-args", "also-tag", "deliver", "go", "public")
_GO_KEYS = ("module", "version", "package", "binary")
_PROJECT_KEYS = ("name", "path", "template", "workload", "entry-point", "params", "backend-config")
KEYS = tuple(o.key for o in OPTIONS)
"""Every setting's key, in the table's order."""


def find_project_file(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` that has our section, else the nearest one."""
    first: Path | None = None
    for d in [start, *start.parents]:
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            first = first or candidate
            try:
                if SECTION in tomllib.loads(candidate.read_text()).get("tool", {}):
                    return candidate
            except tomllib.TOMLDecodeError:
                continue
    return first


def read_section(path: Path) -> dict[str, Any]:
    """The ``[tool.mlflow-crd-harness]`` table of ``path`` (``{}`` if absent; a near miss is an error)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc}") from exc
    tool = data.get("tool", {})
    section = tool.get(SECTION, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.{SECTION}] must be a table")
    if not section:
        def squash(name: str) -> str:
            return re.sub(r"[^a-z0-9]", "", name.lower())

        near = [k for k in tool if squash(k) == squash(SECTION)] or difflib.get_close_matches(SECTION, list(tool), n=1,
                                                                                             cutoff=0.8)
        if near:
            raise ConfigError(f"{path}: found [tool.{near[0]}] but no [tool.{SECTION}]; did you mean "
                              f"[tool.{SECTION}]? (the harness reads only that name: rename the table)")
    return section


def _check_env_names(env: Mapping[str, str]) -> None:
    """A misspelt ``HARNESS_*`` variable is an error, not a setting silently left at its default."""
    known = {o.env for o in OPTIONS} | {v.name for v in hostenv.HOST_VARS}
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(f"unknown environment variable {name}{hint} (unset it, or see "
                              "`python -m harness config` for every HARNESS_* setting)")


def load_settings(
    *,
    root: Path,
    explicit: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve every setting: ``explicit`` (options/flags, None = not given) > env > file > default.

    ``root`` is where to look for ``pyproject.toml`` when no config file is
    named (pytest's rootdir, or the CLI's current directory).
    """
    env = dict(os.environ if environ is None else environ)
    _check_env_names(env)
    given = {k: v for k, v in (explicit or {}).items() if v is not None}
    for key in given:
        if key not in KEYS:
            raise ConfigError(f"unknown setting {key!r}")
    cfg_value = given.get("config") or env.get(option("config").env) or config_file
    if cfg_value:
        path = Path(cfg_value).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"settings file {path} does not exist (from --harness-config / HARNESS_CONFIG)")
        file_values = read_section(path)
        project_root = path.parent
    else:
        found = find_project_file(root)
        file_values = read_section(found) if found else {}
        project_root = found.parent if found else root
    where_file = path if cfg_value else found
    file_where = f"[tool.{SECTION}] of {where_file}" if where_file else "file"

    if "config" in file_values:
        raise ConfigError(f"'config' in {file_where}: it names the settings file, so it cannot be set inside one; "
                          "use --harness-config / HARNESS_CONFIG, or drop the key")
    unknown = [k for k in file_values if k not in KEYS]
    if unknown:
        bad = unknown[0]
        near = difflib.get_close_matches(bad, list(KEYS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"unknown key {bad!r} in {file_where}{hint} Valid keys: {', '.join(KEYS)}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        if opt.key in given:
            raw, where, base = given[opt.key], f"option {opt.pytest_flag}/{opt.cli_flag}", Path.cwd()
        elif opt.env in env and env[opt.env] != "":
            raw, where, base = env[opt.env], f"env {opt.env}", Path.cwd()
        elif opt.key in file_values:
            raw, where, base = file_values[opt.key], file_where, project_root
        else:
            raw, where, base = (opt.default() if callable(opt.default) else opt.default), "default", project_root
        values[opt.key] = _coerce(opt, raw, where, base)
        sources[opt.key] = where

    if values["from-manifest"] is not None:
        _take_over_manifest(values, sources)
    if values["cluster-name"] is None:
        values["cluster-name"] = _default_cluster_name(project_root)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", values["cluster-name"]):
        raise ConfigError(f"cluster-name {values['cluster-name']!r} ({sources['cluster-name']}) must be lower-case "
                          "letters, digits and '-', at most 32 characters (kind names node containers after it)")
    tracking = values["tracking"]
    if tracking != "in-cluster" and not re.match(r"https?://", tracking):
        raise ConfigError(f"tracking {tracking!r} ({sources['tracking']}) must be 'in-cluster' or an http(s) URI")
    if tracking == "in-cluster" and values["tracking-pod-uri"] is not None:
        raise ConfigError(f"tracking-pod-uri ({sources['tracking-pod-uri']}) is for an external tracking server; "
                          "with tracking = in-cluster pods use the in-cluster Service: drop tracking-pod-uri, or set "
                          "tracking to the server's http(s) URI")
    _check_kind_config(values, sources)
    from harness.clusters import provider_class

    try:
        provider = provider_class(values["cluster"])
    except ConfigError as exc:
        raise ConfigError(f"{exc} ({sources['cluster']})") from None
    if values["extended-resources"] is not None:
        values["extended-resources"] = _extended_resources(values["extended-resources"],
                                                           sources["extended-resources"])
    _check_stack(values["stack"], sources["stack"])
    kinds = _workloads(values["workloads"], sources["workloads"])
    projects = tuple(_project(item, i, sources["projects"], project_root, kinds)
                     for i, item in enumerate(values["projects"]))
    parsed = {"images": _images(values, sources), "workloads": kinds, "projects": projects}
    names = [p.name for p in projects]
    if len(set(names)) != len(names):
        raise ConfigError(f"project names must be unique; got {names} ({sources['projects']})")
    groups = {group: cls(**{o.attr: parsed.get(o.key, values[o.key]) for o in OPTIONS if o.group == group})
              for group, cls in GROUPS}
    settings = Settings(root=project_root, values=values, sources=sources, **groups)
    provider.check_settings(settings)  # what that provider cannot run, with the fix
    resources = settings.cluster.extended_resources
    if resources is not None and "worker" in resources and not settings.cluster.workers \
            and settings.cluster.kind_config is None:
        raise ConfigError(f"extended-resources names 'worker' ({sources['extended-resources']}) but the cluster "
                          "has none: set workers = 1 (or more), or use control-plane / all")
    return settings


def _take_over_manifest(values: dict[str, Any], sources: dict[str, str]) -> None:
    """The recorded settings of ``from-manifest`` replace defaults; a setting given otherwise must agree."""
    from harness import manifest

    path = values["from-manifest"]
    for key, recorded in manifest.pinned_settings(manifest.load(path)).items():
        value = _coerce(option(key), recorded, f"manifest {path}", Path(path).parent)
        if sources[key] == "default":
            values[key], sources[key] = value, f"manifest {path}"
        elif values[key] != value:
            raise ConfigError(f"{key} = {values[key]!r} ({sources[key]}) but the manifest {path} recorded "
                              f"{value!r}: drop the setting to reproduce that run, or drop --harness-from-manifest")


def _default_cluster_name(root: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")[:24] or "harness"
    return f"{slug}-e2e"


def _resolve_path(raw: str, base: Path) -> Path:
    if raw.startswith("stub:"):
        from harness import assets

        return assets.stub_path(raw.removeprefix("stub:"))
    if raw.startswith("asset:"):
        from harness import assets

        return assets.asset_path(raw.removeprefix("asset:"))
    p = Path(raw).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _coerce(opt: Option, raw: Any, where: str, base: Path) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{opt.key} = {raw!r} ({where}): expected {expected}. {opt.help}")

    if raw is None:
        return None
    if opt.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        raise bad("true or false")
    if opt.kind == "int":
        if isinstance(raw, bool) or not (isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdigit())):
            raise bad("a whole number")
        count = int(raw)
        if not 0 <= count <= 9:
            raise bad("a whole number from 0 to 9")
        return count
    if opt.kind == "float":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad("a number of seconds") from None
        if not value > 0 or isinstance(raw, bool):
            raise bad("a positive number of seconds")
        return value
    if opt.kind == "choice":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and str(raw) in opt.choices:
            raise bad(f"a string: quote it, {opt.key} = \"{raw}\" (a TOML number is not a version)")
        if raw not in opt.choices:
            raise bad(f"one of {', '.join(opt.choices)}")
        return raw
    if opt.kind == "str":
        if not isinstance(raw, str) or not raw:
            raise bad("a non-empty string")
        return raw
    if opt.kind == "path":
        if not isinstance(raw, (str, os.PathLike)) or not str(raw):
            raise bad("a path")
        return _resolve_path(str(raw), base)
    # Structured values: native from TOML, JSON text from options and the environment.
    if isinstance(raw, str):
        if opt.kind == "list" and not raw.lstrip().startswith("["):
            raw = [s.strip() for s in raw.split(",") if s.strip()]
        else:
            try:
                raw = json.loads(raw)
            except ValueError:
                raise bad("JSON (from an option or env var)") from None
    if opt.kind == "list":
        if not isinstance(raw, (list, tuple)) or not all(isinstance(x, str) and x for x in raw):
            raise bad("a list of strings")
        from harness import stacks

        return tuple(x if x == "stub" or x in stacks.PRESETS else str(_resolve_path(x, base)) for x in raw)
    if opt.kind == "table":
        if not isinstance(raw, dict):
            raise bad("a table ({ key = value } in TOML, a JSON object elsewhere)")
        return dict(raw)
    if opt.kind == "table-list":
        if not isinstance(raw, (list, tuple)) or not all(isinstance(x, dict) for x in raw):
            raise bad("a list of tables ([[...]] in TOML, a JSON list of objects elsewhere)")
        return tuple({**x, "_base": str(base)} for x in raw)
    raise AssertionError(opt.kind)  # pragma: no cover


def _table(item: Mapping[str, Any], allowed: tuple[str, ...], what: str, where: str) -> None:
    unknown = [k for k in item if k not in allowed and k != "_base"]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {what} ({where}); valid keys: {', '.join(allowed)}")


def _str_map(value: Any, what: str, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} ({where}) must be a table of name = value")
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def _images(values: Mapping[str, Any], sources: Mapping[str, str]) -> tuple[ImageSpec, ...]:
    from harness import stacks

    raw = values["images"]
    where = sources["images"]
    configured = [_image(item, f"images[{i}]", where) for i, item in enumerate(raw or ())]
    mine = {spec.repository for spec in configured}
    if "stub" in values["stack"] and "customjob-controller" not in mine:
        # The stub stack comes with its controller's image, whether or not other images are configured.
        configured.insert(0, _image({"name": "controller", "context": "stub:controller",
                                     "repository": "customjob-controller", "_base": "."}, "the stub's controller",
                                    "built in"))
        mine.add("customjob-controller")
    for entry in values["stack"]:
        preset = stacks.PRESETS.get(entry)
        for i, item in enumerate(preset.images if preset else ()):
            if item["repository"] not in mine:  # an image of yours for the same repository wins
                configured.append(_image({**item, "_base": "."}, f"stack preset {entry} images[{i}]", "built in"))
    return tuple(configured)


def _image(item: Mapping[str, Any], what: str, where: str) -> ImageSpec:
    _table(item, _IMAGE_KEYS, what, where)
    if not isinstance(item.get("repository"), str) or not item["repository"]:
        raise ConfigError(f"{what}.repository is required ({where})")
    go = None
    if item.get("go") is not None:
        table = item["go"]
        if not isinstance(table, dict):
            raise ConfigError(f"{what}.go must be a table {{module, version, package, binary}} ({where})")
        _table(table, _GO_KEYS, f"{what}.go", where)
        try:
            go = GoBuild(**{k: str(v) for k, v in table.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{what}.go: {exc} ({where}); keys: module, version, package (binary: /manager)") \
                from None
    context = None
    if go is None:
        if not isinstance(item.get("context"), str) or not item["context"]:
            raise ConfigError(f"{what}.context is required ({where}), or a 'go' table for a Go binary's image")
        context = _resolve_path(item["context"], Path(item["_base"]))
        if not (context / (item.get("dockerfile") or "Dockerfile")).is_file():
            raise ConfigError(f"{what}.context {context} has no {item.get('dockerfile') or 'Dockerfile'} ({where})")
    elif item.get("context") is not None:
        raise ConfigError(f"{what}: give 'context' (a Dockerfile) or 'go' (a Go binary), not both ({where})")
    repo = item["repository"]
    if not re.fullmatch(r"[a-z0-9]+([._/-][a-z0-9]+)*", repo):
        raise ConfigError(f"{what}.repository {repo!r} must be a lower-case image name without a tag ({where})")
    also = item.get("also-tag", [])
    if not isinstance(also, list) or not all(isinstance(t, str) for t in also):
        raise ConfigError(f"{what}.also-tag must be a list of image references ({where})")
    public = item.get("public")
    if public is not None and (not isinstance(public, str) or ":" not in public.rsplit("/", 1)[-1]):
        raise ConfigError(f"{what}.public must be an image reference with a tag or digest ({where})")
    return ImageSpec(
        name=str(item.get("name") or repo.rsplit("/", 1)[-1]), context=context, repository=repo,
        dockerfile=item.get("dockerfile"), build_args=_str_map(item.get("build-args"), f"{what}.build-args", where),
        also_tag=tuple(also), deliver=bool(item.get("deliver", True)), go=go, public=public,
    )


_RESOURCE_NAME = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)/"
                            r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)")


def _extended_resources(raw: Any, where: str) -> dict[str, dict[str, int]]:
    """The ``extended-resources`` table, validated (:mod:`harness.clusters.noderesources` applies it)."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"extended-resources ({where}) must be a table of node -> {{resource = count}}, e.g. "
                           '{ worker = { "nvidia.com/gpu" = 1 } }')
    out: dict[str, dict[str, int]] = {}
    for node, resources in raw.items():
        if not isinstance(resources, Mapping) or not resources:
            raise ConfigError(f"extended-resources.{node} ({where}) must be a table of resource = count")
        out[str(node)] = {}
        for name, count in resources.items():
            match = _RESOURCE_NAME.fullmatch(str(name))
            if not match or match.group(1).endswith("kubernetes.io") or len(str(name)) > 253:
                raise ConfigError(f"extended-resources.{node}: {name!r} ({where}) is not an extended resource "
                                   "name: it needs a domain outside kubernetes.io, like nvidia.com/gpu")
            if isinstance(count, bool) or (not isinstance(count, int) and not str(count).isdigit()) or int(count) < 1:
                raise ConfigError(f"extended-resources.{node}.{name} = {count!r} ({where}): extended resources are "
                                   "whole numbers >= 1")
            out[str(node)][str(name)] = int(count)
    return out


def _check_kind_config(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """The kind-config file exists, is a kind Cluster mapping, and says nothing ``workers`` also says."""
    path = values["kind-config"]
    if path is None:
        return
    where = sources["kind-config"]
    import yaml

    try:
        extra = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"kind-config {path} ({where}) cannot be read: {exc.strerror}; fix the path") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"kind-config {path} ({where}) is not YAML: {exc}") from None
    if extra is not None and not isinstance(extra, dict):
        raise ConfigError(f"kind-config {path} ({where}) must hold a kind Cluster config mapping "
                          "(kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4, nodes: ...)")
    if (extra or {}).get("nodes") and values["workers"]:
        raise ConfigError(f"workers = {values['workers']} ({sources['workers']}) and kind-config {path} lists "
                          "nodes: set the worker count in one place (drop 'workers', or the worker entries of "
                          "kind-config's nodes)")


def _check_stack(entries: tuple[str, ...], where: str) -> None:
    """Every ``stack`` entry is the stub, a preset or a kustomize directory: a typo stops here, not at deploy."""
    from harness import stacks

    for entry in entries:
        if entry == "stub" or entry in stacks.PRESETS:
            continue
        path = Path(entry)
        if not (path / "kustomization.yaml").is_file() and not (path / "kustomization.yml").is_file():
            names = ["stub", *stacks.PRESETS]
            near = difflib.get_close_matches(path.name, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (or a preset: {', '.join(names)})"
            raise ConfigError(f"stack entry {entry} ({where}) is not a kustomize directory (no kustomization.yaml)"
                              + hint)


_RUNNER_KEYS = ("namespace", "workload", "kubeconfig", "kube-context", "template-path", "kube-job-template-path")
"""Backend config keys the harness sets for each run (a project's own value would send it elsewhere)."""


def _workloads(raw: Any, where: str) -> tuple[WorkloadKind, ...]:
    """The settings' own workload kinds, each validated (names unique, presets may be refined)."""
    kinds = []
    for i, item in enumerate(raw or ()):
        try:
            kinds.append(WorkloadKind.from_mapping({k: v for k, v in item.items() if k != "_base"},
                                                   where=f"workloads[{i}] ({where})"))
        except DefinitionError as exc:
            raise ConfigError(str(exc)) from None
    names = [k.name for k in kinds]
    if len(set(names)) != len(names):
        raise ConfigError(f"workload names must be unique; got {names} ({where})")
    return tuple(kinds)


def _project_kind(item: Mapping[str, Any], what: str, where: str, template: Path,
                  kinds: tuple[WorkloadKind, ...]) -> WorkloadKind:
    """The project's workload kind, and a first look at its template (kind matches, container found)."""
    from harness.workloads import render

    try:
        tree = render.load(template)
        if item.get("workload") is not None:
            if not isinstance(item["workload"], str):
                raise ConfigError(f"{what}.workload must be the name of a workload kind ({where})")
            kind = presets.resolve(item["workload"], kinds, where=f"{what}.workload ({where})")
        else:
            kind = presets.for_template(tree, kinds)
        render.check(tree, kind, (), placeholders=False)
    except (DefinitionError, render.TemplateError) as exc:
        raise ConfigError(f"{what}.template {template}: {exc} ({where})") from None
    return kind


def _project(item: Mapping[str, Any], i: int, where: str, root: Path,
             kinds: tuple[WorkloadKind, ...] = ()) -> ProjectSpec:
    from harness import assets

    what = f"projects[{i}]"
    _table(item, _PROJECT_KEYS, what, where)
    if not isinstance(item.get("path"), str):
        raise ConfigError(f"{what}.path is required: the directory holding the MLproject ({where})")
    base = Path(item.get("_base") or root)
    path = _resolve_path(item["path"], base)
    if not (path / "MLproject").is_file() and not (path / "MLProject").is_file():
        raise ConfigError(f"{what}.path {path} has no MLproject file ({where})")
    template = _resolve_path(item["template"], base) if item.get("template") else assets.stub_template()
    if not template.is_file():
        raise ConfigError(f"{what}.template {template} does not exist ({where})")
    entry_point = str(item.get("entry-point") or "main")
    params = _str_map(item.get("params"), f"{what}.params", where)
    declared = _mlproject_parameters(path, entry_point, params, what, where)
    backend = item.get("backend-config") or {}
    if not isinstance(backend, dict):
        raise ConfigError(f"{what}.backend-config must be a table ({where})")
    owned = [k for k in backend if k in _RUNNER_KEYS]
    if owned:
        raise ConfigError(f"{what}.backend-config sets {owned[0]!r} ({where}), which the harness sets for every run "
                          "(the test's namespace, the cluster, the project's template and workload): set "
                          f"{'template/workload' if owned[0] in ('template-path', 'workload') else 'it'} on the "
                          "project or the cluster settings instead")
    return ProjectSpec(
        name=str(item.get("name") or path.name), path=path, template=template, entry_point=entry_point,
        params=params, backend_config=dict(backend), workload=_project_kind(item, what, where, template, kinds),
        declared_params=declared,
    )


def _mlproject_parameters(path: Path, entry_point: str, params: Mapping[str, str], what: str,
                          where: str) -> tuple[str, ...] | None:
    """The entry point's declared parameters; its MLproject must declare docker_env and know every param.

    MLflow turns an undeclared ``-P max_dept=4`` into ``--max_dept 4`` on the
    command line, which the program rejects minutes later in a pod; here it is
    a typo named at load time. None: the entry point is a file (MLflow runs
    ``*.py``/``*.sh`` files with any parameters).
    """
    import yaml

    file = path / "MLproject" if (path / "MLproject").is_file() else path / "MLProject"
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{what}: {file} cannot be read as YAML: {exc} ({where})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: {file} must be a YAML mapping (name, docker_env, entry_points) ({where})")
    docker_env = data.get("docker_env")
    if not isinstance(docker_env, dict) or not docker_env.get("image"):
        raise ConfigError(f"{what}: {file} declares no docker_env.image ({where}): the harness runs a project as an "
                          "image built FROM it, with the project code inside; add `docker_env: {image: <an image "
                          "with python and mlflow>}` (an [[images]] entry can build it, deliver = false)")
    entry_points = data.get("entry_points") or {}
    if not isinstance(entry_points, dict):
        raise ConfigError(f"{what}: {file} entry_points must be a mapping ({where})")
    entry = entry_points.get(entry_point)
    if entry is None:
        if entry_point.endswith((".py", ".sh")) and (path / entry_point).is_file():
            return None
        raise ConfigError(f"{what}.entry-point {entry_point!r} is not an entry point of {file} ({where}); it has: "
                          f"{', '.join(map(str, entry_points)) or 'none'}")
    declared = tuple(str(k) for k in ((entry or {}).get("parameters") or {}))
    for name in params:
        if name not in declared:
            near = difflib.get_close_matches(name, declared, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{what}.params has {name!r}, which entry point {entry_point!r} of {file} does not "
                              f"declare{hint} ({where}); declared: {', '.join(declared) or 'none'} (MLflow would "
                              f"pass it on as --{name} and the program would fail in the pod)")
    return declared

