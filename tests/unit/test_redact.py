"""Unit tier: log lines are masked before they become a status message, an Event or a run tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.workloads.redact import MASK, redact

ROOT = Path(__file__).resolve().parents[2]


def test_the_controllers_copy_is_byte_identical() -> None:
    ours = (ROOT / "harness" / "workloads" / "redact.py").read_bytes()
    assert (ROOT / "crds" / "controller" / "customjob_controller" / "redact.py").read_bytes() == ours


@pytest.mark.parametrize(("line", "secret"), [
    ("connecting with password=hunter2 to db", "hunter2"),
    ('{"api_key": "sk-live-0123456789"}', "sk-live-0123456789"),
    ("MLFLOW_TRACKING_TOKEN: abcdef0123456789", "abcdef0123456789"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9abcdef", "eyJhbGciOiJIUzI1NiJ9abcdef"),
    ("fetch https://alice:s3cr3t@data.example.com/x.csv", "s3cr3t"),
    ("GET https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeef1234&X-Amz-Expires=60", "deadbeef1234"),
    ("AWS key AKIAABCDEFGHIJKLMNOP in env", "AKIAABCDEFGHIJKLMNOP"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEA"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq (cut by the tail)", "MIIEvQIBADANBgkq"),
])
def test_obvious_secrets_are_masked(line: str, secret: str) -> None:
    masked = redact(line)
    assert secret not in masked
    assert MASK in masked


@pytest.mark.parametrize("line", [
    "train.py: alpha must be in [0.0, inf], got '-1'",
    "ElasticNet(alpha=0.5, l1_ratio=0.1): rmse=0.79 r2=0.19",
    "Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>",
    "tokenizer loaded from /models/bert (vocab 30522)",
])
def test_ordinary_lines_are_left_alone(line: str) -> None:
    assert redact(line) == line


def test_the_output_is_bounded_and_keeps_the_end() -> None:
    text = "x" * 10_000 + "the reason"
    assert redact(text).endswith("the reason")
    assert len(redact(text)) <= 4000
