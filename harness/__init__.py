"""mlflow-crd-harness: prove an MLflow project runs on Kubernetes through a custom resource (any training API).

The public API, for users' own tests and scripts::

    from harness import Testbed, load_settings, assert_run

    settings = load_settings(root=Path.cwd())          # [tool.mlflow-crd-harness] + HARNESS_* env
    with Testbed(settings) as bed:                     # cluster ∥ images, then the stack
        runner = ProjectRunner(bed.stack, "default", Path("/tmp/w"), projects=settings.projects)
        assert_run(runner.run("trainer", alpha=0.5), metrics={"rmse": (0.0, 1.0)})

Names are imported lazily, so ``python -m harness.nodeimage`` (stdlib only)
and the ``customjob`` MLflow backend (``harness.backend``) do not pay for the
rest. ``tests/unit/test_public_api.py`` pins ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness._version import __version__

if TYPE_CHECKING:
    from harness._errors import CommandError, HarnessError, WaitTimeout
    from harness.assertions import RunFacts, assert_customjob, assert_run, assert_workload
    from harness.clusters import Cluster, ClusterProvider
    from harness.clusters.existing import ExistingProvider
    from harness.clusters.kind import KindProvider
    from harness.runs import ProjectRun, ProjectRunner
    from harness.settings import ConfigError, ImageSpec, ProjectSpec, Settings, load_settings
    from harness.stack import Stack
    from harness.testbed import Testbed
    from harness.tracking import LocalTrackingServer
    from harness.workloads import WorkloadKind

__all__ = [
    "Cluster",
    "ClusterProvider",
    "CommandError",
    "ConfigError",
    "ExistingProvider",
    "HarnessError",
    "ImageSpec",
    "KindProvider",
    "LocalTrackingServer",
    "ProjectRun",
    "ProjectRunner",
    "ProjectSpec",
    "RunFacts",
    "Settings",
    "Stack",
    "Testbed",
    "WaitTimeout",
    "WorkloadKind",
    "__version__",
    "assert_customjob",
    "assert_run",
    "assert_workload",
    "load_settings",
]

_HOMES = {
    "CommandError": "harness._errors", "HarnessError": "harness._errors", "WaitTimeout": "harness._errors",
    "RunFacts": "harness.assertions", "assert_customjob": "harness.assertions", "assert_run": "harness.assertions",
    "assert_workload": "harness.assertions", "WorkloadKind": "harness.workloads",
    "Cluster": "harness.clusters", "ClusterProvider": "harness.clusters",
    "ExistingProvider": "harness.clusters.existing", "KindProvider": "harness.clusters.kind",
    "ProjectRun": "harness.runs", "ProjectRunner": "harness.runs",
    "ConfigError": "harness.settings", "ImageSpec": "harness.settings", "ProjectSpec": "harness.settings",
    "Settings": "harness.settings", "load_settings": "harness.settings",
    "Stack": "harness.stack", "Testbed": "harness.testbed", "LocalTrackingServer": "harness.tracking",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
