"""Arguments for the unit tier's pytester sessions in a subprocess.

A subprocess session starts in pytester's temporary directory, away from this
repository's ``addopts``, so every installed plugin loads again: pytest-kind-ng
imports its Kubernetes client (0.5 s) and hypothesis's plugin imports all of
hypothesis (1.5 s) in the closing summary, in every process of the session
(three with ``-n 2``). The sessions here need neither.
"""

from __future__ import annotations

__all__ = ["WITHOUT_UNUSED_PLUGINS"]

WITHOUT_UNUSED_PLUGINS = ("-p", "no:hypothesispytest", "-p", "no:pytest-kind-ng")
