"""MkDocs hook: the reference pages are generated from the code, so they cannot drift.

A page says ``<!-- generated: NAME -->`` where a table belongs; :func:`on_page_markdown`
puts the table there at build time, from the one source each table has:

* ``settings``: :data:`harness.settings.OPTIONS` (the same table that makes the pytest
  options, the env vars and the CLI flags);
* ``cli``: the argparse parsers of ``python -m harness`` and its ``node-image`` builder;
* ``versions``: :data:`harness.versions.RELEASES`, the one version table;
* ``errors``: every message the harness raises for a user (read from the code's ``raise``
  statements), so the troubleshooting page lists them all, each with the fix it names.

``tests/unit/test_docs.py`` renders these and fails when a setting or a flag is missing,
and the lint tier runs ``mkdocs build --strict``.

:func:`on_post_build` puts a pinned Mermaid (from the npm registry, checked against its
published sha512, cached outside the clone) into the site, so the diagrams render
without a CDN: the Material theme only fetches Mermaid from unpkg when none is loaded.
Where the npm registry cannot be reached the diagrams stay as their source text.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import logging
import re
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

LOG = logging.getLogger("mkdocs.hooks.reference")

MERMAID_VERSION = "11.12.2"
MERMAID_TARBALL = f"https://registry.npmjs.org/mermaid/-/mermaid-{MERMAID_VERSION}.tgz"
#: npm's ``dist.integrity`` of that tarball (``npm view mermaid@11.12.2 dist.integrity``).
MERMAID_SHA512 = "n34QPDPEKmaeCG4WDMGy0OT6PSyxKCfy2pJgShP+Qow2KLrvWjclwbc3yXfSIf4BanqWEhQEpngWwNp/XhZt6w=="
MERMAID_SITE_PATH = "javascripts/mermaid.min.js"

_OR = " \\| "  # "|" inside a table cell
_MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """Every setting: its key, env var, pytest option, default and meaning, grouped as the table groups them."""
    from harness.settings import OPTIONS

    lines: list[str] = []
    groups: dict[str, list[Any]] = {}
    for opt in OPTIONS:
        groups.setdefault(opt.group, []).append(opt)
    for group, options in groups.items():
        lines += [f"### {group}", "", "| key | env | pytest option | default | meaning |", "|---|---|---|---|---|"]
        for opt in options:
            choices = f" (one of: {', '.join(opt.choices)})" if opt.choices else ""
            lines.append(f"| `{opt.key}` | `{opt.env}` | `{opt.pytest_flag}` | {_cell(opt.describe_default())} | "
                         f"{_cell(opt.help)}{_cell(choices)} |")
        lines.append("")
    from harness.hostenv import HOST_VARS

    lines += ["### this machine's variables", "", "Environment only (`harness.hostenv`): they belong to the machine, "
              "so a project's file cannot set them.", "", "| env | default | meaning |", "|---|---|---|"]
    lines += [f"| `{v.name}` | {_cell(v.default)} | {_cell(v.help)} |" for v in HOST_VARS]
    lines.append("")
    return "\n".join(lines)


def _parser_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | meaning |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        name = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        if action.choices and not action.option_strings:
            name = f"`{action.dest}` ({_OR.join(map(str, action.choices))})"
        rows.append(f"| {name} | {_cell(action.help or '')} |")
    return rows


def cli_reference() -> str:
    """Every command of ``python -m harness`` with its own arguments; the settings flags link to the settings page."""
    from harness.cli import build_parser
    from harness.nodeimage.__main__ import build_parser as node_image_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    lines: list[str] = []
    for name, command in sub.choices.items():
        if name == "node-image":
            command = node_image_parser("python -m harness node-image")
        lines += [f"### `{name}`", "", _cell(helps.get(name) or command.description or ""), ""]
        lines += ["```", command.format_usage().strip(), "```", ""]
        own = [a for a in command._actions if a.help != argparse.SUPPRESS and a.option_strings[:1] != ["-h"]]
        if own:
            lines += _parser_rows(command)
        takes_settings = any(a.option_strings == ["--help-all"] for a in command._actions)
        if takes_settings:
            lines += ["", f"`{name}` also takes every setting as `--KEY` (see [Settings](settings.md)); "
                      f"`python -m harness {name} --help-all` lists them with their defaults."]
        lines.append("")
    return "\n".join(lines)


def versions_table() -> str:
    """The version table: per minor what is compiled, kind, the published node image and the cgroup v1 verdict."""
    from harness.versions import DEFAULT_MINOR, RELEASES, cgroup_v1_verdict

    lines = ["| minor | built by the registry-less builder | kind | kind's published node image | "
             "kubeadm API kind writes | on cgroup v1 hosts | node runtime (registry-less) |",
             "|---|---|---|---|---|---|---|"]
    for release in RELEASES.values():
        label = release.minor + (" (default)" if release.minor == DEFAULT_MINOR else "")
        on_v1 = "any node image" if cgroup_v1_verdict(release, public=True)[0] else "registry-less build only"
        runtime = (f"containerd {release.runtime.containerd} + runc {release.runtime.runc} from Go modules"
                   if release.runtime else "Debian's containerd 1.6 / runc 1.1")
        lines.append(f"| {label} | {release.kubernetes} | {release.kind} | `{release.public_node_image}` | "
                     f"{release.kubeadm_api} | {on_v1} | {runtime} |")
    return "\n".join(lines)


NOT_A_MESSAGE = frozenset({"CommandError", "WaitTimeout"})
"""Harness errors whose first argument is not the message (a command's argv; what a wait waited for)."""
ALSO_FOR_USERS = frozenset({"PathError"})
"""A ``ValueError`` the settings loader reports to the user as it is (other ValueErrors are bugs)."""


def user_errors(trees: list[object]) -> frozenset[str]:
    """The harness's own error classes, read from the code: ``HarnessError`` and every class under it.

    Derived, not listed, so a new error class is on the troubleshooting page without anyone adding it here.
    """
    import ast

    bases: dict[str, set[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):  # type: ignore[arg-type]
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute)
                                    else "" for b in node.bases}
    found = {"HarnessError"}
    while grown := {name for name, of in bases.items() if of & found} - found:
        found |= grown
    return frozenset(found - NOT_A_MESSAGE) | ALSO_FOR_USERS


def _message(node: object) -> str | None:
    """An error's message as written in the code: literal text kept, every ``{…}`` shown as ``…``."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "…" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _message(node.left), _message(node.right)
        return None if left is None and right is None else (left or "…") + (right or "…")
    return None


def error_messages() -> str:
    """Every message the harness raises for a user to act on, by module: read from the code, so none is missed."""
    import ast

    root = Path(__file__).resolve().parents[2] / "harness"
    trees = {path: ast.parse(path.read_text()) for path in sorted(root.rglob("*.py"))}
    errors = user_errors(list(trees.values()))
    lines: list[str] = []
    for path, tree in trees.items():
        found: list[tuple[str, str]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_problem"):
                # A check that returns the message its caller raises (or reports): every string it returns.
                for ret in ast.walk(node):
                    text = _message(ret.value) if isinstance(ret, ast.Return) and ret.value is not None else None
                    if text and text.strip("… "):
                        found.append((f"{node.name}()", " ".join(text.split())))
                continue
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            text = _message(node.exc.args[0]) if name in errors else None
            if text and text.strip("… "):
                found.append((name, " ".join(text.split())))
        if found:
            rel = path.relative_to(root.parent).as_posix()
            lines += [f"### `{rel}`", "", "| error | message (`…`: a value filled in at run time) |", "|---|---|"]
            lines += [f"| `{name}` | {_cell(text)} |" for name, text in found]
            lines.append("")
    return "\n".join(lines)


GENERATORS = {"settings": settings_table, "cli": cli_reference, "versions": versions_table, "errors": error_messages}


def render(markdown: str) -> str:
    """Replace every ``<!-- generated: NAME -->`` marker; an unknown name is an error, not a silent gap."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated table {name!r}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return _MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return render(markdown)


def mermaid_script() -> bytes | None:
    """The pinned ``mermaid.min.js``: from the cache, else the npm registry (checked), else None."""
    from harness.cachedir import cache_dir

    cached = cache_dir("docs") / f"mermaid-{MERMAID_VERSION}.min.js"
    if cached.is_file():
        return cached.read_bytes()
    try:
        with urllib.request.urlopen(MERMAID_TARBALL, timeout=60) as response:  # a pinned https URL
            tarball = response.read()
    except OSError as exc:
        LOG.info("Mermaid %s not fetched (%s): diagrams stay as source text", MERMAID_VERSION, exc)
        return None
    digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != MERMAID_SHA512:
        raise ValueError(f"{MERMAID_TARBALL}: sha512 {digest} is not the pinned {MERMAID_SHA512}")
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        member = tar.extractfile("package/dist/mermaid.min.js")
        if member is None:
            raise ValueError(f"{MERMAID_TARBALL} has no package/dist/mermaid.min.js")
        script = member.read()
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(script)
    tmp.replace(cached)
    return script


def on_post_build(config: Any, **_: Any) -> None:
    script = mermaid_script()
    if script is not None:
        target = Path(config["site_dir"]) / MERMAID_SITE_PATH
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(script)
