"""Train an ElasticNet on the wine-quality data and log it to MLflow.

Run by MLflow as the project's ``main`` entry point (``mlflow run trainer -P alpha=0.5``)
or by hand (``python train.py --alpha 0.5``). Same inputs give bit-identical
metrics: the split and the model use fixed seeds and the data ships with the
project (it cannot be downloaded at run time on every machine).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

DATA = Path(__file__).resolve().parent / "wine-quality.csv"
TARGET = "quality"
SPLIT_SEED = 40  # the held-out split never changes between runs
MODEL_SEED = 42
TEST_FRACTION = 0.25
# Pinned requirements recorded with the model. Naming them skips MLflow's
# requirement inference, which re-imports the model in a subprocess (~20 s).
MODEL_REQUIREMENTS = ("mlflow-skinny", "scikit-learn", "skops", "numpy", "pandas", "scipy")
# Where `mlflow run` mounts a local tracking store inside a docker_env container.
MLFLOW_DOCKER_STORE = "/mlflow/tmp/mlruns"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    # Keep the text as given: MLflow logs project params exactly as typed, and
    # re-logging a reformatted value ("1" vs "1.0") is an error in MLflow.
    parser.add_argument("--alpha", required=True, help="regularisation strength (float >= 0)")
    parser.add_argument("--l1-ratio", default="0.1", help="ElasticNet mixing, 0..1 (float)")
    args = parser.parse_args(argv)
    args.alpha_value = _float_in(args.alpha, "alpha", 0.0, math.inf)
    args.l1_ratio_value = _float_in(args.l1_ratio, "l1_ratio", 0.0, 1.0)
    return args


def _float_in(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        sys.exit(f"train.py: {name} must be a number, got {text!r}")
    if not (low <= value <= high) or math.isnan(value):
        sys.exit(f"train.py: {name} must be in [{low}, {high}], got {text!r}")
    return value


def load_split() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    data = pd.read_csv(DATA)
    features = data.drop(columns=[TARGET])
    target = data[TARGET].astype("float64")
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=TEST_FRACTION, random_state=SPLIT_SEED
    )
    return x_train, x_test, y_train, y_test


def refuse_unpersisted_local_store() -> None:
    """Fail fast when a model would be silently lost.

    With a local tracking store, ``mlflow run`` in a docker_env mounts only the
    store and the run's own artifact directory into the container. MLflow 3
    writes models to ``<experiment artifact root>/models/<id>``, outside that
    mount, so the container's copy vanishes with it while the run still shows a
    READY model. Detect that setup and stop before training, naming the fix.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if MLFLOW_DOCKER_STORE not in uri:
        return  # not MLflow's docker local-store mode: an HTTP server or a plain local run
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    client = mlflow.MlflowClient()
    experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
    location = experiment.artifact_location
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return  # remote artifact store (s3, mlflow-artifacts, ...): nothing local to lose
    root = Path(parsed.path if parsed.scheme else location)
    if _under_mount(root):
        return
    sys.exit(
        "train.py: refusing to train: the tracking store is local and the experiment's artifact "
        f"root {root} is not mounted into this container, so MLflow 3 would lose the model files.\n"
        "Fix: use an HTTP tracking server (mlflow server; MLFLOW_TRACKING_URI=http://...), or mount "
        f"the artifact root: mlflow run trainer -A volume={root.parent}:{root.parent} "
        "-A user=$(id -u):$(id -g) ..."
    )


def _under_mount(path: Path) -> bool:
    """True if ``path`` or one of its ancestors (other than ``/``) is a mount point."""
    for candidate in (path, *path.parents):
        if candidate == Path("/"):
            return False
        if candidate.exists() and os.path.ismount(candidate):
            return True
    return False


def log_params_once(params: dict[str, str]) -> None:
    """Log params the launcher has not logged already (``mlflow run`` logs them first)."""
    run = mlflow.active_run()
    assert run is not None
    logged = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    fresh = {k: v for k, v in params.items() if k not in logged}
    if fresh:
        mlflow.log_params(fresh)


def replica_rank() -> int:
    """This process's rank in a distributed job (``RANK``, set by Kubeflow's operators and torchrun); 0 alone."""
    text = os.environ.get("RANK", "").strip()
    try:
        return int(text) if text else 0
    except ValueError:
        sys.exit(f"train.py: RANK must be an integer, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank = replica_rank()
    if rank != 0:
        # Every replica of a PyTorchJob runs this entry point with the same MLflow run in its env; only
        # rank 0 logs, as in any distributed training, or the run would get each param, metric and model
        # once per replica. The others train on the same data and report on stdout (their pod log).
        x_train, x_test, y_train, y_test = load_split()
        model = ElasticNet(alpha=args.alpha_value, l1_ratio=args.l1_ratio_value, random_state=MODEL_SEED)
        model.fit(x_train, y_train)
        rmse = float(np.sqrt(mean_squared_error(y_test, model.predict(x_test))))
        print(f"replica rank {rank} of {os.environ.get('WORLD_SIZE', '?')}: trained, rmse={rmse!r}; "
              "not logging (rank 0 does)")
        return 0
    refuse_unpersisted_local_store()
    x_train, x_test, y_train, y_test = load_split()

    with mlflow.start_run():
        log_params_once({"alpha": args.alpha, "l1_ratio": args.l1_ratio})
        model = ElasticNet(alpha=args.alpha_value, l1_ratio=args.l1_ratio_value, random_state=MODEL_SEED)
        model.fit(x_train, y_train)
        predicted = model.predict(x_test)
        metrics = {
            "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
            "r2": float(r2_score(y_test, predicted)),
            "mae": float(mean_absolute_error(y_test, predicted)),
        }
        mlflow.log_metrics(metrics)
        signature = infer_signature(x_train, model.predict(x_train))
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=x_train.head(3),
            pip_requirements=[f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
        )
        print(
            f"ElasticNet(alpha={args.alpha}, l1_ratio={args.l1_ratio}): "
            + " ".join(f"{k}={v!r}" for k, v in metrics.items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
