"""Kubernetes and docker names derived from MLflow names (pure functions).

MLproject names are free text ("My Trainer") but object names must be DNS-1123
labels and docker repositories lower-case, so every derived name goes through
here and is checked once, instead of failing late at the API server.
"""

from __future__ import annotations

import re

from harness import imagerefs

__all__ = ["is_dns_label", "job_name", "repository_name", "repository_of", "sanitize_label"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_LABEL = 63
_RUN_ID_CHARS = 8


def is_dns_label(value: str) -> bool:
    """True for a DNS-1123 label: ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63 chars."""
    return len(value) <= _MAX_LABEL and bool(_DNS_LABEL.match(value))


def sanitize_label(text: str, *, max_len: int = _MAX_LABEL, fallback: str = "project") -> str:
    """Lower-case ``text`` and squash every run of other characters into one ``-``."""
    squashed = re.sub(r"[^a-z0-9]+", "-", text.lower())[:max_len].strip("-")
    return squashed or fallback


def job_name(project_name: str | None, run_id: str) -> str:
    """``<project>-<first 8 of run id>``, a DNS-1123 label of at most 63 chars.

    The project part is trimmed, never the run-id part, so two runs of one
    project always get different names.
    """
    suffix = sanitize_label(run_id, fallback="run")[:_RUN_ID_CHARS].strip("-") or "run"
    prefix = sanitize_label(project_name or "", max_len=_MAX_LABEL - len(suffix) - 1)
    return f"{prefix}-{suffix}"


def repository_name(project_name: str | None) -> str:
    """Default docker repository for a project: its name as a lower-case label."""
    return sanitize_label(project_name or "", fallback="mlflow-project")


def repository_of(image_ref: str) -> str:
    """``localhost:5000/a/b:tag@sha256:...`` -> ``localhost:5000/a/b`` (no tag, no digest)."""
    return imagerefs.repository(image_ref)
