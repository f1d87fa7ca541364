"""Docker tier: the trainer runs exactly as the seed describes, via `mlflow run`.

Real Docker, a real tracking server, MLflow's own CLI. No cluster.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import _exec
from harness.images import BuiltImage
from harness.runs import mlflow_run as harness_mlflow_run
from harness.runs import only_run_id
from harness.tracking import LocalTrackingServer
from tests.support.trainer import TRAINER_DIR, check_trained_run, load_wine_rows

SAMPLE = load_wine_rows(TRAINER_DIR / "wine-quality.csv")


def mlflow_run(
    *args: str, tracking_uri: str, cwd: Path | None = None, check: bool = True
) -> _exec.CompletedProcess[str]:
    """`mlflow run trainer` through MLflow's CLI (the harness's one driver), in a child process."""
    return harness_mlflow_run(TRAINER_DIR, *args, tracking_uri=tracking_uri, cwd=cwd, timeout=900, check=check)


def test_mlflow_run_against_tracking_server(
    trainer_image: BuiltImage, local_tracking_server: LocalTrackingServer
) -> None:
    experiment = f"docker-tier-{uuid.uuid4().hex[:8]}"
    mlflow_run(
        "-P", "alpha=0.5", "--build-image", *local_tracking_server.docker_args, "--experiment-name", experiment,
        tracking_uri=local_tracking_server.uri,
    )
    client = MlflowClient(tracking_uri=local_tracking_server.uri)
    run_id = only_run_id(client, experiment)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", local_tracking_server.uri)  # models:/ URIs resolve via the env
        trained = check_trained_run(client, run_id, params={"alpha": "0.5", "l1_ratio": "0.1"}, sample=SAMPLE)
    assert trained.tags["mlflow.project.env"] == "docker"
    assert trained.tags["mlflow.project.backend"] == "local"
    image_uri = trained.tags["mlflow.docker.image.uri"]
    # MLflow 3 tags project images <project name>[:<git sha7>], not <image>-<sha>.
    assert image_uri.split(":")[0] == "wine-quality", image_uri
    assert trained.tags["mlflow.docker.image.id"].startswith("sha256:")


@pytest.mark.parametrize("alpha", ["1", ".5", "1e-3", "0.50"])
def test_float_params_are_kept_as_typed(
    alpha: str, trainer_image: BuiltImage, local_tracking_server: LocalTrackingServer
) -> None:
    """MLflow logs project params as typed; the trainer must not re-log them reformatted."""
    experiment = f"docker-params-{uuid.uuid4().hex[:8]}"
    mlflow_run("-P", f"alpha={alpha}", "--build-image", *local_tracking_server.docker_args,
               "--experiment-name", experiment, tracking_uri=local_tracking_server.uri)
    client = MlflowClient(tracking_uri=local_tracking_server.uri)
    run = client.get_run(only_run_id(client, experiment))
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == alpha


def test_local_store_without_mount_refuses_clearly(trainer_image: BuiltImage, tmp_path: Path) -> None:
    """The seed's local-tracking mode would lose the model in MLflow 3: it must stop and say why."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = mlflow_run("-P", "alpha=0.5", "--build-image", tracking_uri=uri, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "would lose the model files" in output, output[-3000:]
    assert f"-A volume={tmp_path / 'mlruns'}:{tmp_path / 'mlruns'}" in output
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_local_store_with_mounted_artifact_root_keeps_model(trainer_image: BuiltImage, tmp_path: Path) -> None:
    """The documented fix: mount the artifact root (as the invoking user) and the model survives."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    root = tmp_path / "mlruns"
    root.mkdir()
    mlflow_run("-P", "alpha=0.5", "--build-image", "-A", f"volume={root}:{root}",
               "-A", f"user={os.getuid()}:{os.getgid()}", tracking_uri=uri, cwd=tmp_path)
    client = MlflowClient(tracking_uri=uri)
    run_id = only_run_id(client, "Default")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(tmp_path)
        trained = check_trained_run(client, run_id, params={"alpha": "0.5", "l1_ratio": "0.1"}, sample=SAMPLE)
    assert list(root.glob(f"*/models/{trained.model_id}/artifacts/model.skops")), "model file not on the host"


def test_same_params_give_bit_identical_metrics(
    trainer_image: BuiltImage, local_tracking_server: LocalTrackingServer
) -> None:
    client = MlflowClient(tracking_uri=local_tracking_server.uri)
    metrics = []
    for _ in range(2):
        experiment = f"docker-determinism-{uuid.uuid4().hex[:8]}"
        mlflow_run("-P", "alpha=0.3", "-P", "l1_ratio=0.7", "--build-image", *local_tracking_server.docker_args,
                   "--experiment-name", experiment, tracking_uri=local_tracking_server.uri)
        metrics.append(client.get_run(only_run_id(client, experiment)).data.metrics)
    assert metrics[0] == metrics[1]  # exact float equality on purpose


@pytest.fixture(scope="module")
def trainer_image(harness_images: dict[str, BuiltImage], local_tracking_server: LocalTrackingServer) -> BuiltImage:
    """The trainer image (configured in pyproject as images 'trainer'), also tagged mlflow-crd-example; and the
    project image ``mlflow run --build-image`` makes from it, built once before any test's run.

    MLflow tags that image ``wine-quality:<commit>`` for every run of this checkout and then reads
    ``image.tags[0]`` of what it built. Two workers' first builds at once (a new machine: nothing cached)
    make two images of that tag; the tag moves to the second, the first run finds no tag and fails
    (IndexError, cold CI 33). Built once here, under a lock the workers share, every run's build is a
    cache hit: the same image, its tag never moves.
    """
    from mlflow.projects import docker as mlflow_docker

    from harness.cachedir import cache_dir
    from harness.nodeimage.cache import build_lock

    with build_lock(cache_dir(), name=".docker-tier-project-image.lock", what="the trainer's project image",
                    timeout=900), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", local_tracking_server.uri)  # MLflow tags a run with the image it built
        client = MlflowClient(tracking_uri=local_tracking_server.uri)
        run = client.create_run(client.create_experiment(f"docker-tier-image-{uuid.uuid4().hex[:8]}"))
        mlflow_docker.build_docker_image(work_dir=str(TRAINER_DIR), repository_uri="wine-quality",
                                         base_image="mlflow-crd-example", run_id=run.info.run_id,
                                         build_image=True, docker_auth=None)
        client.set_terminated(run.info.run_id)
    return harness_images["trainer"]


def test_the_base_image_is_a_stand_in_for_the_public_python_image(base_image: str) -> None:
    """A project's Dockerfile written for python:3.11-slim (python, pip install outside a venv) builds on it."""
    probe = ("python --version && pip --version && pip install --no-index --dry-run pip 2>&1 | tail -n 1 "
             "&& python -c 'import ssl, venv'")
    proc = _exec.run(["docker", "run", "--rm", "--user", "0", base_image, "sh", "-c", probe], timeout=120)
    assert "Python 3.11" in proc.stdout, proc.stdout
    assert "externally-managed" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _process_group(pgid: int) -> list[str]:
    """Command lines of the live processes in process group ``pgid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[2]) == pgid:
            found.append(cmdline)
    return found


def test_the_local_tracking_server_runs_no_server_side_job_system(local_tracking_server: LocalTrackingServer) -> None:
    """MLflow 3 starts a job runner and Huey consumers by default; the harness runs no server-side jobs, and on
    two cores those processes cost every tier CPU (harness.tracking.serverenv)."""
    assert local_tracking_server.pid is not None
    group = _process_group(local_tracking_server.pid)
    assert any("mlflow" in cmd and "server" in cmd for cmd in group), group
    assert [cmd for cmd in group if "huey" in cmd or "_job_runner" in cmd] == []

