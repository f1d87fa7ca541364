"""What a finished run of *our trainer* must show (wine-quality ElasticNet), on top of ``harness.assertions``.

Shared by the docker and e2e tiers, so "the trainer worked" means the same
thing everywhere: FINISHED, the params as the user typed them, finite and sane
metrics, exactly one READY logged model with its files, and a model that loads
(MLflow's pyfunc loader) and predicts plausible quality scores.
"""

from __future__ import annotations

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
