"""Unit tier: the trainer's pure parts (argument handling, determinism), no Docker."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_squared_error

TRAIN_PY = Path(__file__).resolve().parents[2] / "trainer" / "train.py"


@pytest.fixture(scope="module")
def train() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trainer_train", TRAIN_PY)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["trainer_train"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("text", "value"), [("1", 1.0), (".5", 0.5), ("1e-3", 0.001), ("0.50", 0.5), ("0", 0.0)])
def test_any_float_mlflow_accepts_is_kept_as_typed(train: ModuleType, text: str, value: float) -> None:
    args = train.parse_args(["--alpha", text])
    assert args.alpha == text  # logged exactly as typed, never reformatted
    assert args.alpha_value == value
    assert args.l1_ratio == "0.1"


@pytest.mark.parametrize("argv", [["--alpha", "abc"], ["--alpha", "-1"], ["--alpha", "0.5", "--l1-ratio", "1.5"],
                                  ["--alpha", "nan"]])
def test_bad_params_fail_with_a_message(train: ModuleType, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        train.parse_args(argv)
    assert "train.py:" in str(info.value.code)


def test_split_and_fit_are_bit_identical_across_runs(train: ModuleType) -> None:
    results = []
    for _ in range(2):
        x_train, x_test, y_train, y_test = train.load_split()
        model = ElasticNet(alpha=0.5, l1_ratio=0.1, random_state=train.MODEL_SEED).fit(x_train, y_train)
        results.append((list(x_test.index), mean_squared_error(y_test, model.predict(x_test))))
    assert results[0] == results[1]
    assert len(results[0][0]) == math.ceil(4898 * train.TEST_FRACTION)


def test_under_mount_stops_at_root(train: ModuleType, tmp_path: Path) -> None:
    assert train._under_mount(Path("/")) is False
    assert train._under_mount(Path("/proc/self")) is True  # /proc is a mount point


def test_a_non_zero_rank_trains_without_touching_mlflow(
    train: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PyTorchJob Worker shares the run's env with the Master: only rank 0 may log to it."""
    def no_mlflow(*args: object, **kwargs: object) -> None:
        raise AssertionError("a non-zero rank talked to MLflow")

    monkeypatch.setattr(train.mlflow, "start_run", no_mlflow)
    monkeypatch.setattr(train.mlflow, "log_metrics", no_mlflow)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train.main(["--alpha", "0.5"]) == 0
    assert "replica rank 1 of 2: trained" in capsys.readouterr().out


@pytest.mark.parametrize(("value", "rank"), [("", 0), ("0", 0), ("3", 3)])
def test_rank_is_read_from_the_environment(train: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str,
                                           rank: int) -> None:
    monkeypatch.setenv("RANK", value)
    assert train.replica_rank() == rank
    monkeypatch.setenv("RANK", "master")
    with pytest.raises(SystemExit, match="RANK must be an integer"):
        train.replica_rank()
