"""Unit tier: a shared cluster's own cluster-scoped objects are used or refused, never overwritten (issue 24)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from harness._errors import HarnessError
from harness.clusterobjects import differences, plan

pytestmark = pytest.mark.unit

LABEL = ("app.kubernetes.io/managed-by", "mlflow-crd-harness")
ROLE = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "customjob"},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]}]}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "c", "namespace": "customjob-system"}}


def _live(objects: dict[str, dict[str, Any]]) -> Any:
    asked: list[str] = []

    def live(api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        asked.append(f"{kind}/{name}")
        return copy.deepcopy(objects.get(f"{kind}/{name}"))

    live.asked = asked  # type: ignore[attr-defined]
    return live


def test_differences_ignore_what_the_api_server_adds_and_name_what_differs() -> None:
    ours = {"spec": {"names": {"plural": "customjobs"}, "versions": [{"name": "v1alpha1", "served": True}]}}
    defaulted = {"spec": {"names": {"plural": "customjobs", "singular": "customjob"},
                          "conversion": {"strategy": "None"},
                          "versions": [{"name": "v1alpha1", "served": True, "storage": True}]}}
    assert differences(ours, defaulted) == []
    theirs = copy.deepcopy(defaulted)
    theirs["spec"]["versions"][0]["served"] = False
    del theirs["spec"]["names"]["plural"]
    assert differences(ours, theirs) == [
        "spec.names.plural: ours 'customjobs', the cluster's has none",
        "spec.versions[0].served: ours True, the cluster's False",
    ]
    assert differences({"rules": [1, 2]}, {"rules": [1]}) == ["rules: ours [1, 2], the cluster's [1]"]


def test_absent_objects_are_created_with_the_label_and_namespaced_ones_pass_through() -> None:
    live = _live({})
    role, deployment = copy.deepcopy(ROLE), copy.deepcopy(DEPLOYMENT)
    out = plan([role, deployment], live, label=LABEL, policy="refuse", cluster="staging")
    assert out.apply == [role, deployment]
    assert out.created == ["ClusterRole/customjob"]
    assert out.used == []
    assert role["metadata"]["labels"] == {LABEL[0]: LABEL[1]}
    assert live.asked == ["ClusterRole/customjob"], "namespaced objects are not looked up"


def test_the_harnesss_own_from_an_earlier_session_is_applied() -> None:
    earlier = {**copy.deepcopy(ROLE), "metadata": {"name": "customjob", "labels": {LABEL[0]: LABEL[1]}}}
    earlier["rules"] = []  # changed since: ours, so re-applied
    out = plan([copy.deepcopy(ROLE)], _live({"ClusterRole/customjob": earlier}), label=LABEL, policy="refuse",
               cluster="staging")
    assert [d["kind"] for d in out.apply] == ["ClusterRole"]
    assert out.used == []
    assert out.created == []


def test_someone_elses_that_says_the_same_is_used_as_it_is_and_not_applied() -> None:
    theirs = copy.deepcopy(ROLE)
    theirs["metadata"] = {"name": "customjob", "labels": {"team": "platform"}, "resourceVersion": "7"}
    out = plan([copy.deepcopy(ROLE)], _live({"ClusterRole/customjob": theirs}), label=LABEL, policy="refuse",
               cluster="staging")
    assert out.apply == []
    assert out.used == ["ClusterRole/customjob"]


def test_someone_elses_that_differs_stops_the_session_with_the_differences_and_the_fix() -> None:
    theirs = copy.deepcopy(ROLE)
    theirs["rules"][0]["verbs"] = ["get"]
    with pytest.raises(HarnessError) as err:
        plan([copy.deepcopy(DEPLOYMENT), copy.deepcopy(ROLE)], _live({"ClusterRole/customjob": theirs}), label=LABEL,
             policy="refuse", cluster="staging")
    text = str(err.value)
    assert "ClusterRole customjob (1 difference(s))" in text
    assert "rules[0].verbs: ours ['create', 'get'], the cluster's ['get']" in text
    assert 'cluster-objects = "use"' in text
    assert "Nothing was applied" in text


def test_use_runs_against_someone_elses_as_it_is() -> None:
    theirs = copy.deepcopy(ROLE)
    theirs["rules"][0]["verbs"] = ["get"]
    out = plan([copy.deepcopy(ROLE), copy.deepcopy(DEPLOYMENT)], _live({"ClusterRole/customjob": theirs}),
               label=LABEL, policy="use", cluster="staging")
    assert [d["kind"] for d in out.apply] == ["Deployment"]
    assert out.used == ["ClusterRole/customjob (differs from the stack's in 1 field(s))"]
