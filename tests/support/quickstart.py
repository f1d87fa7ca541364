"""The README's quick start, read out of the README: its files and its commands, in order.

The quick start is only worth something if it passes as written. So it is never copied:
``scripts/quickstart`` (CI, in the ``example`` tier) and ``tests/unit/test_quickstart.py``
both read it from between the ``--8<-- [start:quickstart]`` / ``[end:quickstart]`` markers
(the same markers the docs site includes it by). A code block whose first line is
``# file: PATH`` is a file of the user's project; a ``bash`` block is a command the user runs
in the project's directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_FILE = re.compile(r"#\s*file:\s*(\S+)\n")


@dataclass(frozen=True)
class QuickStart:
    files: dict[str, str]
    """Path in the project directory -> content (the ``# file:`` line kept: it is a comment in each language)."""
    commands: list[str]
    """Shell commands, in the order the README gives them."""


def read(readme: Path = README) -> QuickStart:
    text = readme.read_text()
    try:
        section = text.split("--8<-- [start:quickstart]", 1)[1].split("--8<-- [end:quickstart]", 1)[0]
    except IndexError:
        raise AssertionError(f"{readme}: no quickstart markers") from None
    files: dict[str, str] = {}
    commands: list[str] = []
    for lang, body in _BLOCK.findall(section):
        found = _FILE.match(body)
        if found:
            files[found.group(1)] = body
        elif lang == "bash":
            commands += [line for line in body.splitlines() if line.strip() and not line.startswith("#")]
        else:
            raise AssertionError(f"a {lang or 'plain'} block in the quick start is neither a file nor a command")
    return QuickStart(files=files, commands=commands)


def write(quick: QuickStart, project: Path) -> None:
    for rel, content in quick.files.items():
        target = project / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
