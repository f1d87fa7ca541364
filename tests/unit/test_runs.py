"""Unit tier: the run driver around a killed ``mlflow run`` (a real sqlite tracking store, a fake API)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from harness import runs
from harness._errors import CommandError
from harness.runs import ProjectRunner
from harness.settings import ProjectSpec
from harness.workloads import JOB, closing

ROOT = Path(__file__).resolve().parents[2]


class FakeWorkloads:
    """The object of one run, and what the driver did to it."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []

    def for_run(self, run_id: str) -> dict[str, Any] | None:
        return self.objects.get(run_id)

    def delete(self, name: str) -> bool:
        self.deleted.append(name)
        return True


@pytest.fixture
def runner(tmp_path: Path, sqlite_tracking_uri: str,
           monkeypatch: pytest.MonkeyPatch) -> tuple[ProjectRunner, FakeWorkloads, MlflowClient]:
    uri = sqlite_tracking_uri
    stack = SimpleNamespace(tracking_uri=uri, pod_tracking_uri=uri, cluster=None)
    spec = ProjectSpec(name="trainer-job", path=ROOT / "trainer", template=ROOT / "trainer" / "job_template.yaml",
                       workload=JOB)
    fake = FakeWorkloads()
    runner = ProjectRunner(stack, "ns", tmp_path, projects=(spec,))  # type: ignore[arg-type]
    monkeypatch.setattr(ProjectRunner, "workloads", lambda self, kind: fake)
    monkeypatch.setattr(ProjectRunner, "backend_config", lambda self, project: tmp_path / "cfg.json")
    return runner, fake, MlflowClient(uri)


def _child_that_submits_then(outcome: BaseException, client: MlflowClient, fake: FakeWorkloads) -> Any:
    def child(project_dir: Path, *args: str, **kw: Any) -> Any:
        experiment = args[args.index("--experiment-name") + 1]
        run = client.create_run(client.create_experiment(experiment))
        fake.objects[run.info.run_id] = {"metadata": {"name": f"trainer-{run.info.run_id[:8]}"}}
        assert kw["timeout"] == 900.0 + runs.BUILD_ALLOWANCE, "the child may wait the whole job timeout"
        raise outcome

    return child


@pytest.mark.parametrize("outcome", [KeyboardInterrupt(), CommandError(["mlflow"], -1, "", "timed out after 9 s")],
                         ids=["interrupted", "timed out"])
def test_a_killed_mlflow_run_leaves_no_object_and_no_open_run(
    runner: tuple[ProjectRunner, FakeWorkloads, MlflowClient], monkeypatch: pytest.MonkeyPatch,
    outcome: BaseException,
) -> None:
    driver, fake, client = runner
    monkeypatch.setattr(runs, "mlflow_run", _child_that_submits_then(outcome, client, fake))
    with pytest.raises(type(outcome)):
        driver.mlflow_run("alpha=0.5", project="trainer-job")
    (run_id,) = fake.objects
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert fake.deleted == [f"trainer-{run_id[:8]}"]
    assert run.data.tags[closing.CLOSED_BY_TAG] == "submitter"
    assert "mlflow run ended early" in run.data.tags[JOB.failure_tag]


def test_a_child_that_failed_by_itself_is_left_to_its_own_cleanup(
    runner: tuple[ProjectRunner, FakeWorkloads, MlflowClient], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exit 1 is the backend's own verdict (it closed the run): the driver does not touch it."""
    driver, fake, client = runner
    monkeypatch.setattr(runs, "mlflow_run", _child_that_submits_then(CommandError(["mlflow"], 1, "", "x"), client,
                                                                      fake))
    with pytest.raises(CommandError):
        driver.mlflow_run("alpha=0.5", project="trainer-job")
    (run_id,) = fake.objects
    assert client.get_run(run_id).info.status == "RUNNING"
    assert fake.deleted == []


def test_an_interrupt_after_mlflow_run_returned_still_ends_the_run(
    runner: tuple[ProjectRunner, FakeWorkloads, MlflowClient], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A terminal's Ctrl-C reaches ``mlflow run`` too: it may exit (here 130, its run left open) before the
    driver's own KeyboardInterrupt lands, which then comes while the driver reads the result, outside the
    child call. The run is still ended KILLED and its object deleted (seen in the fault tier's Ctrl-C case)."""
    driver, fake, client = runner

    def child(project_dir: Path, *args: str, **kw: Any) -> Any:
        experiment = args[args.index("--experiment-name") + 1]
        run = client.create_run(client.create_experiment(experiment))
        fake.objects[run.info.run_id] = {"metadata": {"name": f"trainer-{run.info.run_id[:8]}"}}
        return SimpleNamespace(returncode=130, args=["mlflow"], stdout="", stderr="")

    def interrupted(*_a: Any, **_k: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "mlflow_run", child)
    monkeypatch.setattr(runs, "wait_for_workload", interrupted)
    with pytest.raises(KeyboardInterrupt):
        driver.run("trainer-job")
    (run_id,) = fake.objects
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert fake.deleted == [f"trainer-{run_id[:8]}"]
    assert "interrupted: KeyboardInterrupt" in run.data.tags[JOB.failure_tag]
