"""The entry point's command as a container argv (pure; no cluster, no run).

MLflow renders an entry point into ONE shell string, ``shlex.quote``-ing every
parameter value. A pod has no shell, so that string must become argv. MLflow's
built-in kubernetes backend does ``shlex.split`` and then ``shlex.quote`` on each
token again, so ``-P msg='a b'`` reaches the program as ``'a b'`` with literal
quotes. Here the string is split exactly once: ``shlex.split`` is the inverse of
``shlex.quote``, so every parameter arrives as one argv element equal to what
the user passed (``tests/unit/test_backend_argv.py`` proves it with hypothesis).

Because there is no shell, shell syntax written in the MLproject command itself
(``&&``, ``|``, ``;``, redirections) cannot work; it is rejected up front with a
hint instead of being passed to the program as literal arguments.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from typing import Any

from harness.backend.errors import ParameterError, ProjectError

__all__ = ["empty_param_problem", "entry_point_argv", "shell_operators", "validate_params"]

_OPERATOR_CHARS = frozenset("();<>|&")


def empty_param_problem(name: str, value: object) -> str | None:
    """The message for a parameter given an empty or whitespace-only value; None when it has one."""
    text = str(value)
    if text.strip():
        return None
    what = "empty" if not text else f"only whitespace ({text!r})"
    return (f"parameter {name!r} is {what} (-P {name}={text}): give it a value, or leave it out to use the "
            "entry point's default; an empty value is almost always an unset variable in a script")


def validate_params(entry_point: Any, params: Mapping[str, str]) -> None:
    """Reject values that cannot be passed faithfully, before any run exists.

    MLflow 3.17's ``Parameter.compute_value`` passes ``float`` values through
    unchecked, so ``-P alpha=abc`` would otherwise surface only as a crash inside
    the pod after a build, an image load and a scheduling round trip. An empty or
    whitespace-only value (``-P msg=``, often an unset ``$VAR``) is refused too,
    naming the parameter, before any image is built.
    """
    for name, value in params.items():
        problem = empty_param_problem(str(name), value)
        if problem:
            raise ParameterError(problem)
    for name, param in entry_point.parameters.items():
        value = params.get(name, param.default)
        if value is None:
            continue  # MLflow's own check reports missing parameters
        if param.type == "float":
            try:
                number = float(str(value))
            except ValueError:
                raise ParameterError(
                    f"parameter {name!r} is declared 'float' in the MLproject but got "
                    f"{value!r}; pass a decimal number such as 0.5"
                ) from None
            if math.isnan(number):
                raise ParameterError(f"parameter {name!r} is declared 'float' but got NaN")
    for name, value in params.items():
        if "\x00" in str(name) or "\x00" in str(value):
            raise ParameterError(f"parameter {name!r} contains a NUL character, which no process argv can carry")


def shell_operators(command_template: str) -> list[str]:
    """Shell operator tokens (``&&``, ``|``, ``>``...) outside quotes in an MLproject command."""
    # posix=False keeps quotes on tokens, so a quoted "&&" is not mistaken for an operator
    lexer = shlex.shlex(command_template, posix=False, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: shlex.split below reports it precisely
        return []
    return [t for t in tokens if t and set(t) <= _OPERATOR_CHARS]


def entry_point_argv(project: Any, entry_point: str, params: Mapping[str, str]) -> list[str]:
    """Validate ``params`` and return the entry point's command as argv.

    ``storage_dir=None`` keeps ``path`` parameters verbatim: MLflow would otherwise
    download them to a directory on the submitting host, which the pod cannot see.
    """
    ep = project.get_entry_point(entry_point)
    validate_params(ep, params)
    operators = shell_operators(ep.command)
    if operators:
        raise ProjectError(
            f"entry point {entry_point!r} command {ep.command!r} uses shell syntax "
            f"{', '.join(map(repr, operators))}; a CustomJob runs argv without a shell. "
            f"Wrap it, e.g. command: \"sh -c 'step1 && step2'\", or call one script."
        )
    command = ep.compute_command(dict(params), None)
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ProjectError(
            f"entry point {entry_point!r} command {ep.command!r} is not valid shell quoting: {exc}"
        ) from exc
    if not argv:
        raise ProjectError(f"entry point {entry_point!r} has an empty command")
    return argv
