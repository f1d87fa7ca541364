"""The user's path into the e2e cluster: `mlflow run --backend customjob`, via MLflow's CLI."""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from harness import _exec
from harness.platform import Platform
from harness.pytest_e2e import E2ESettings
from harness.pytest_plugin import TRAINER_DIR
from harness.stack import Stack


@dataclass
class Launcher:
    """Submits the trainer through the customjob backend into one test namespace."""

    stack: Stack
    platform: Platform
    settings: E2ESettings
    namespace: str
    workdir: Path

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.stack.tracking_uri)

    def backend_config(self) -> Path:
        cfg = {
            "kubeconfig": str(self.stack.cluster.kube.kubeconfig),
            "namespace": self.namespace,
            "template-path": str(TRAINER_DIR / "customjob_template.yaml"),
            "image-delivery": "kind",
            "kind-cluster": self.platform.kind.name,
            "kind-binary": str(self.platform.kind.kind_bin),
            "tracking-uri": self.stack.pod_tracking_uri,
            "timeout-seconds": int(self.settings.job_timeout),
        }
        path = self.workdir / "backend-config.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def mlflow_run(self, *params: str, backend: str = "customjob", extra: tuple[str, ...] = (),
                   check: bool = True) -> tuple[str, _exec.CompletedProcess[str]]:
        """`mlflow run trainer ...` via MLflow's CLI; returns (experiment name, process)."""
        experiment = f"e2e-{uuid.uuid4().hex[:8]}"
        argv = [sys.executable, "-m", "mlflow", "run", str(TRAINER_DIR), "--experiment-name", experiment]
        if backend == "customjob":
            argv += ["--backend", "customjob", "--backend-config", str(self.backend_config())]
        for p in params:
            argv += ["-P", p]
        proc = _exec.run([*argv, *extra], extra_env={"MLFLOW_TRACKING_URI": self.stack.tracking_uri},
                         timeout=1200, check=check, cwd=self.workdir)
        return experiment, proc

    def only_run_id(self, experiment: str) -> str:
        exp = self.client.get_experiment_by_name(experiment)
        assert exp is not None, f"experiment {experiment} missing"
        runs = self.client.search_runs([exp.experiment_id])
        assert len(runs) == 1, f"expected one run, got {[r.info.run_id for r in runs]}"
        return str(runs[0].info.run_id)
