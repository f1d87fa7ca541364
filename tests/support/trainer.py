"""What a finished run of *our trainer* must show (wine-quality ElasticNet), on top of ``harness.assertions``.

Shared by the docker and e2e tiers, so "the trainer worked" means the same
thing everywhere: FINISHED, the params as the user typed them, finite and sane
metrics, exactly one READY logged model with its files, and a model that loads
(as scikit-learn) and predicts plausible quality scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from harness.assertions import assert_run

TRAINER_DIR = Path(__file__).resolve().parents[2] / "trainer"

#: Sanity ranges for the wine-quality ElasticNet (quality is an integer score 3..9).
METRIC_BOUNDS: Mapping[str, tuple[float, float]] = {
    "rmse": (0.3, 1.5),
    "mae": (0.2, 1.5),
    "r2": (-0.5, 1.0),
}
MODEL_FILES = ("MLmodel", "model.skops", "requirements.txt")


@dataclass(frozen=True)
class TrainedRun:
    """The facts read back from the server about one training run."""

    run_id: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    model_id: str
    model_files: tuple[str, ...]
    predictions: tuple[float, ...]


def load_wine_rows(data: Path, n: int = 5) -> pd.DataFrame:
    """The first ``n`` feature rows of the wine data, as the model's signature expects."""
    frame = pd.read_csv(data, nrows=n)
    return frame.drop(columns=["quality"])


def check_trained_run(
    client: MlflowClient,
    run_id: str,
    *,
    params: Mapping[str, str],
    sample: pd.DataFrame,
) -> TrainedRun:
    """Assert everything a correct run of the trainer logged; return what was read."""
    facts = assert_run(run_id, client=client, params=params, metrics=METRIC_BOUNDS, model_predicts=sample,
                       model_files=MODEL_FILES)
    assert facts.metrics["mae"] <= facts.metrics["rmse"], "mae cannot exceed rmse"
    run = client.get_run(run_id)
    info, data = run.info, run.data

    outputs = run.outputs.model_outputs if run.outputs else []
    assert len(outputs) == 1, f"expected exactly one logged model output, got {outputs}"
    models = client.search_logged_models(
        experiment_ids=[info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    assert len(models) == 1, f"expected one logged model for run {run_id}, found {[m.model_id for m in models]}"
    model = models[0]
    assert model.model_id == outputs[0].model_id
    assert model.name == "model"
    assert str(model.status) in ("READY", "LoggedModelStatus.READY"), f"model {model.model_id} is {model.status}"

    files = tuple(sorted(a.path for a in client.list_logged_model_artifacts(model.model_id)))
    for name in MODEL_FILES:
        assert name in files, f"model {model.model_id} lacks {name}; has {files}"

    loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
    predicted = [float(x) for x in loaded.predict(sample)]
    assert len(predicted) == len(sample)
    assert all(math.isfinite(p) and 0.0 <= p <= 10.0 for p in predicted), f"implausible predictions {predicted}"

    return TrainedRun(
        run_id=run_id,
        status=info.status,
        params=dict(data.params),
        metrics=dict(data.metrics),
        tags=dict(data.tags),
        model_id=model.model_id,
        model_files=files,
        predictions=tuple(predicted),
    )
