"""Unit tier: the shipped controller's ServiceAccount and Secret allowlists, and how the variables read.

Creating a CustomJob makes the controller create a Job with the spec's ServiceAccount and
Secret references. The shipped Deployment allows only the namespace's ``default``
ServiceAccount and no Secret, so a CustomJob grants no more than creating that Pod would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from customjob_controller.policy import ENV_SECRETS, ENV_SERVICE_ACCOUNTS, Policy

REPO = Path(__file__).resolve().parents[2]


def _shipped_env() -> dict[str, str]:
    deployment = yaml.safe_load((REPO / "crds" / "manager" / "deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _spec(**extra: Any) -> dict[str, Any]:
    return {"image": "trainer:1", "command": ["python", "train.py"], **extra}


def test_the_shipped_deployment_allows_the_default_service_account_and_no_secret() -> None:
    policy = Policy.from_env(_shipped_env())
    assert policy.service_accounts == frozenset({"default"})
    assert policy.secrets == frozenset()
    assert policy.refusal(_spec()) is None
    assert policy.refusal(_spec(serviceAccountName="default")) is None
    refused = policy.refusal(_spec(serviceAccountName="cluster-admin-sa"))
    assert refused is not None
    assert refused[0] == "ServiceAccountNotAllowed"
    assert ENV_SERVICE_ACCOUNTS in refused[1]
    secret_env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]
    refused = policy.refusal(_spec(env=secret_env))
    assert refused is not None
    assert refused[0] == "SecretNotAllowed"
    assert "(allowed: none)" in refused[1]
    assert ENV_SECRETS in refused[1]


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("*", None), (" * ", None), ("", frozenset()), (" ", frozenset()),
    ("a", frozenset({"a"})), ("a, b,", frozenset({"a", "b"})),
])
def test_an_allowlist_is_any_when_unset_or_star_and_none_when_empty(raw: str | None,
                                                                    expected: frozenset[str] | None) -> None:
    environ = {} if raw is None else {ENV_SERVICE_ACCOUNTS: raw, ENV_SECRETS: raw}
    policy = Policy.from_env(environ)
    assert policy.service_accounts == expected
    assert policy.secrets == expected
