"""What a finished run of *our trainer* must show (wine-quality ElasticNet), on top of ``harness.assertions``.

Shared by the docker and e2e tiers, so "the trainer worked" means the same
thing everywhere: FINISHED, the params as the user typed them, finite and sane
metrics, exactly one READY logged model with its files, and a model that loads
(MLflow's pyfunc loader) and predicts plausible quality scores.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from harness.assertions import RunFacts, assert_run

TRAINER_DIR = Path(__file__).resolve().parents[2] / "trainer"

#: Sanity ranges for the wine-quality ElasticNet (quality is an integer score 3..9).
METRIC_BOUNDS: Mapping[str, tuple[float, float]] = {
    "rmse": (0.3, 1.5),
    "mae": (0.2, 1.5),
    "r2": (-0.5, 1.0),
}
MODEL_FILES = ("MLmodel", "model.skops", "requirements.txt")

FLAVOR_MODULES = ("mlflow.pyfunc", "mlflow.sklearn", "sklearn.linear_model", "skops.io")
"""What loading the trainer's model imports: 2.5-3 s of one core here (skops.io alone walks every scikit-learn
estimator), paid in the middle of every check unless it was paid earlier."""

_flavor_import: threading.Thread | None = None


def import_flavor_in_background() -> None:
    """Start importing :data:`FLAVOR_MODULES` in a daemon thread, once per process.

    A test of the trainer spends seconds waiting (bring-up, the pod, the controller) with one core idle; the model
    check at its end then finds the modules loaded instead of importing them on the test's clock (the platform
    developer's loop, issue #27). Python's per-module import locks make the concurrent imports safe; a failed
    import here is only a miss: the check imports again and reports the error where it belongs.
    """
    global _flavor_import  # one thread per process
    if _flavor_import is None:
        def run() -> None:
            for name in FLAVOR_MODULES:
                try:
                    importlib.import_module(name)
                except Exception:  # the check's own import reports it
                    return

        _flavor_import = threading.Thread(target=run, name="trainer-flavor-import", daemon=True)
        _flavor_import.start()


def load_wine_rows(data: Path, n: int = 5) -> pd.DataFrame:
    """The first ``n`` feature rows of the wine data, as the model's signature expects."""
    frame = pd.read_csv(data, nrows=n)
    return frame.drop(columns=["quality"]).astype("float64")  # the signature says double; pyfunc enforces it


def check_trained_run(
    client: MlflowClient,
    run_id: str,
    *,
    params: Mapping[str, str],
    sample: pd.DataFrame,
) -> RunFacts:
    """Assert everything a correct run of the trainer logged; return what was read."""
    facts = assert_run(run_id, client=client, params=params, metrics=METRIC_BOUNDS, model_predicts=sample,
                       model_files=MODEL_FILES)
    assert facts.metrics["mae"] <= facts.metrics["rmse"], "mae cannot exceed rmse"
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    assert [o.model_id for o in outputs] == [facts.model_id], f"expected exactly this model as output, got {outputs}"
    assert client.get_logged_model(str(facts.model_id)).name == "model"
    assert all(0.0 <= float(p) <= 10.0 for p in facts.predictions), f"implausible predictions {facts.predictions}"
    return facts
