"""Mask what looks like a secret in log lines before they are copied somewhere more people can read.

A failed trainer's last lines become a failure reason: the CustomJob's
``status.message`` and Events (readable by whoever may read the namespace's
objects) and an MLflow run tag (readable by whoever may read the run). A line
that printed a password, a token or a signed URL must not travel there as is.
This is a net for the obvious patterns, not a proof of secrecy: the fix for a
program that prints secrets is in the program.

Standard library only. The controller image cannot import the harness, so it
carries a byte-identical copy (``crds/controller/customjob_controller/redact.py``);
``tests/unit/test_redact.py`` keeps the two equal.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "MAX_CHARS", "redact"]

MASK = "***"
MAX_CHARS = 4000
"""Longer input is cut from the front first (the last lines say why a run failed)."""

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # -----BEGIN ... PRIVATE KEY----- ... -----END ... PRIVATE KEY----- (or its start, when the tail cut it)
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S),
     f"-----BEGIN PRIVATE KEY-----{MASK}-----END PRIVATE KEY-----"),
    # Authorization: Bearer <token>, Basic <credentials>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    # user:password@ in a URL
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), rf"\1{MASK}@"),
    # key = value, key: value, "key": "value" for secret-looking keys
    (re.compile(r"(?i)([\"']?[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
                r"private[_-]?key|credential|auth)[\w.-]*[\"']?\s*[:=]\s*)([\"']?)[^\s\"',;&]+\2"),
     rf"\1\2{MASK}\2"),
    # query-string signatures (presigned URLs)
    (re.compile(r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|sas|"
                r"access_token|token)=)[^&\s]+"), rf"\1{MASK}"),
    # well-known token shapes: AWS key ids, GitHub, Slack, JWTs
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), rf"\1{MASK}"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"), MASK),
)


def redact(text: str) -> str:
    """``text`` (at most :data:`MAX_CHARS`, its end kept) with secret-looking values replaced by :data:`MASK`."""
    text = text[-MAX_CHARS:]
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
