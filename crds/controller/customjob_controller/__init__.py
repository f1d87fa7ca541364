"""Controller for ``customjobs.training.example.com``.

A CustomJob is turned into exactly one ``batch/v1`` Job; the Job and its Pods
are mirrored back into the CustomJob status, and the MLflow run the job
belongs to is closed if the workload died without closing it.

Module roles (imports point downwards only):

* :mod:`.contract` -- the CustomJob API names and defaults (a copy of ``harness/contract.py``).
* :mod:`.manifests` -- pure: CustomJob -> Job manifest.
* :mod:`.status` -- pure: Job + Pods -> CustomJob status.
* :mod:`.mlflow_rest` -- MLflow REST requests (pure builders + one urllib sender).
* :mod:`.reconcile` -- the level-triggered logic, against a small API protocol.
* :mod:`.kube` -- that protocol implemented with the kubernetes client.
* :mod:`.handlers` -- kopf wiring only; loaded by ``kopf run -m``.
"""
