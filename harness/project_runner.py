"""Run an MLflow project on the e2e cluster the way a user does: ``mlflow run --backend customjob``.

:class:`ProjectRunner` writes the backend config for one namespace, calls
MLflow's own CLI in a child process (its own environment, never the test
process's), and finds the run it created. The ``project_runner`` fixture of
:mod:`harness.pytest_e2e` hands one to each test, bound to that test's
namespace; it also works from scripts.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from harness import _exec
from harness.platform import TRAINER_DIR
from harness.stack import Stack

__all__ = ["ProjectRunner"]


@dataclass
class ProjectRunner:
    """Submits ``project_dir`` through the customjob backend into ``namespace``."""

    stack: Stack
    namespace: str
    workdir: Path
    job_timeout: float = 900.0
    project_dir: Path = TRAINER_DIR
    template: Path = TRAINER_DIR / "customjob_template.yaml"

    @property
    def client(self) -> MlflowClient:
        """A client of the in-cluster tracking server, through the kind port mapping."""
        return MlflowClient(tracking_uri=self.stack.tracking_uri)

    def backend_config(self) -> Path:
        """The ``--backend-config`` file for this namespace and cluster."""
        kind = self.stack.cluster.kind
        cfg = {
            "kubeconfig": str(self.stack.cluster.kube.kubeconfig),
            "namespace": self.namespace,
            "template-path": str(self.template),
            "image-delivery": "kind",
            "kind-cluster": kind.name,
            "kind-binary": str(kind.kind_bin),
            "tracking-uri": self.stack.pod_tracking_uri,
            "timeout-seconds": int(self.job_timeout),
        }
        path = self.workdir / "backend-config.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def mlflow_run(self, *params: str, backend: str = "customjob", extra: tuple[str, ...] = (),
                   check: bool = True) -> tuple[str, _exec.CompletedProcess[str]]:
        """``mlflow run <project> -P k=v ...`` in a fresh experiment; returns (experiment name, process).

        ``backend="local"`` runs the same project with MLflow's local (docker) backend
        against the same tracking server, for comparisons.
        """
        experiment = f"e2e-{uuid.uuid4().hex[:8]}"
        argv = [sys.executable, "-m", "mlflow", "run", str(self.project_dir), "--experiment-name", experiment]
        if backend == "customjob":
            argv += ["--backend", "customjob", "--backend-config", str(self.backend_config())]
        for p in params:
            argv += ["-P", p]
        proc = _exec.run([*argv, *extra], extra_env={"MLFLOW_TRACKING_URI": self.stack.tracking_uri},
                         timeout=1200, check=check, cwd=self.workdir)
        return experiment, proc

    def only_run_id(self, experiment: str) -> str:
        """The id of the single run in ``experiment`` (fails loudly on none or several)."""
        exp = self.client.get_experiment_by_name(experiment)
        assert exp is not None, f"experiment {experiment} missing"
        runs = self.client.search_runs([exp.experiment_id])
        assert len(runs) == 1, f"expected one run, got {[r.info.run_id for r in runs]}"
        return str(runs[0].info.run_id)
