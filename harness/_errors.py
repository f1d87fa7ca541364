"""The harness's exception tree: one module, so callers can catch by meaning.

Each error carries the facts a person needs to act (the command and its output,
the object's state history, the fix) instead of a bare message.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

__all__ = ["CommandError", "ConfigError", "DeliveryError", "HarnessError", "PreflightError", "WaitTimeout"]

_TAIL = 4000  # characters of each stream kept in a message: enough to act, short enough to read


class HarnessError(Exception):
    """Base class of every error raised on purpose by this package."""


class CommandError(HarnessError):
    """An external command failed; carries argv, exit code and both streams."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"command failed (exit {self.returncode}): {shlex.join(self.argv)}"]
        if self.stderr.strip():
            parts.append("stderr:\n" + self.stderr.strip()[-_TAIL:])
        if self.stdout.strip():
            parts.append("stdout:\n" + self.stdout.strip()[-_TAIL:])
        return "\n".join(parts)


class DeliveryError(HarnessError):
    """An image could not be got onto the cluster's nodes (kind load, a push); the message says which step."""


class ConfigError(HarnessError):
    """A setting is unknown or has a bad value; the message names the key, its source and the fix.

    Here, below the settings, so that a cluster provider can refuse its own settings
    (:meth:`harness.clusters.ProviderClass.check_settings`); :mod:`harness.settings` re-exports it.
    """


class PreflightError(HarnessError):
    """The host cannot run this tier; the message names the fix."""


class WaitTimeout(HarnessError):
    """A bounded wait ran out; the message lists every state seen, in order."""

    def __init__(self, what: str, waited: float, history: Sequence[str], hint: str = "") -> None:
        self.what = what
        self.waited = waited
        self.history = list(history)
        self.hint = hint
        lines = [f"timed out after {waited:.0f} s waiting for {what}"]
        if self.history:
            lines.append("state history (oldest first):")
            lines.extend(f"  {h}" for h in self.history[-40:])
        if hint:
            lines.append(f"hint: {hint}")
        super().__init__("\n".join(lines))
