"""E2E tier: the CRD admits what a Pod admits, checked against the real API server (server-side dry runs).

Every case of the admission review set (``tests/support/crd_strategies.py``)
is created as a CustomJob; each admitted one is then turned into the Job the
controller would create (``customjob_controller.manifests.build_job``) and that
Job is created too, so "admitted by the CRD" also means "a Pod the API server
takes". Nothing is persisted (``dryRun=All``).
"""

from __future__ import annotations

import json
from typing import Any

from customjob_controller import manifests
from kubernetes.client.exceptions import ApiException

from harness import contract
from harness.kubeapi import Kube


def _refusal(call: Any, *args: Any, **kwargs: Any) -> str | None:
    """None when the API server admits the (dry-run, strict) create; else its message."""
    try:
        call(*args, dry_run="All", field_validation="Strict", **kwargs)
    except ApiException as exc:
        if exc.status not in (400, 422):  # 400: strict decoding; anything else is a broken test bed
            raise
        try:
            return str(json.loads(exc.body).get("message", exc.body))
        except (TypeError, ValueError):
            return str(exc.body)
    return None


def test_every_review_case_as_stated_and_every_admitted_one_makes_a_job_the_api_server_takes(
    e2e_kube: Kube, e2e_namespace: str
) -> None:
    # Imported here, not at collection: hypothesis, cel-python and jsonschema cost every e2e session's start
    # (and every xdist worker's) about a second, and only this test needs them.
    from tests.support import crd_validation as crdv
    from tests.support.crd_strategies import ADMISSION_CASES, ADMISSION_VALID_CASES

    def customjob(spec: dict[str, Any]) -> str | None:
        body = crdv.customjob(spec, name="probe", namespace=e2e_namespace)
        return _refusal(e2e_kube.custom.create_namespaced_custom_object, contract.GROUP, contract.VERSION,
                        e2e_namespace, contract.PLURAL, body)

    def job(spec: dict[str, Any]) -> str | None:
        obj = crdv.apply_defaults(crdv.version_schema(), crdv.customjob(spec, name="probe", namespace=e2e_namespace))
        obj["metadata"]["uid"] = "00000000-0000-4000-8000-000000000000"
        return _refusal(e2e_kube.batch.create_namespaced_job, e2e_namespace, manifests.build_job(obj))

    verdicts = {name: customjob(spec) for name, spec in {**ADMISSION_CASES, **ADMISSION_VALID_CASES}.items()}
    for name, why in sorted(verdicts.items()):  # the record: -s (or the log of a failure) shows each verdict
        expected = "refused" if name in ADMISSION_CASES else "admitted"
        print(f"crd-admission {expected:8} {'refused' if why else 'admitted':8} {name}: {(why or '')[:160]}")
    wrongly_admitted = [name for name in ADMISSION_CASES if verdicts[name] is None]
    wrongly_refused = {name: verdicts[name] for name in ADMISSION_VALID_CASES if verdicts[name] is not None}
    assert wrongly_admitted == [], f"the API server admitted: {wrongly_admitted}"
    assert wrongly_refused == {}, f"the API server refused valid specs: {wrongly_refused}"

    jobs_refused = {name: why for name, spec in ADMISSION_VALID_CASES.items() if (why := job(spec))}
    assert jobs_refused == {}, f"admitted CustomJobs whose Job (and Pod) the API server refuses: {jobs_refused}"
