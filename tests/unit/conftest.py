"""Fixtures more than one unit-tier module uses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline in this tier: CI runs it beside a lane that brings up clusters (scripts/tiers.py),
# where a load spike can make one example of a pure function slow; that is the machine, not the code.
# Properties still fail on a wrong result, and each test keeps its own max_examples.
settings.register_profile("unit-tier", deadline=None)
settings.load_profile("unit-tier")


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite tracking store made once per worker.

    Making one runs MLflow's schema migrations, about 1.4 s a time on our CI
    machine: 27 tests each made their own, 38 of the tier's 210 test-seconds.
    A copy of this file is the same fresh store without them.
    """
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates and migrates the store
    return path


@pytest.fixture
def sqlite_tracking_uri(tmp_path: Path, _migrated_mlflow_db: Path) -> str:
    """The URI of a fresh MLflow sqlite store of this test's own (``tmp_path/mlflow.db``)."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_mlflow_db, db)
    return f"sqlite:///{db}"
