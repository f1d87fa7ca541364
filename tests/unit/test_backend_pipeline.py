"""CustomJobBackend.run end to end against a real (sqlite) tracking store, no cluster.

Docker and the API server are replaced at the two seams the backend owns
(``mlflow.projects.docker`` calls and ``kube.Workloads.connect``); everything
else (MLflow project loading, run creation, argv, template, status, MLflow's own
``projects.run``/``_wait_for``) is the real code.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import mlflow
import pytest
from kubernetes.client.exceptions import ApiException
from mlflow.projects import docker as mlflow_docker
from mlflow.projects.backend import loader
from mlflow.tracking import MlflowClient

from harness import contract
from harness.backend import CustomJobBackend, kube, submitted_run
from harness.backend.config import BackendConfig
from harness.backend.errors import (
    ApiRejected,
    ClusterUnreachable,
    CrdNotInstalled,
    ParameterError,
    ProjectError,
    TemplateError,
)
from harness.workloads import closing
from harness.workloads.api import WorkloadClient
from harness.workloads.kind import WorkloadKind
from tests.support import crd_validation as crdv

ROOT = Path(__file__).resolve().parents[2]
MLPROJECT = """\
name: Pipeline Probe
docker_env:
  image: python:3.11-slim
  environment: [["FROM_MLPROJECT", "yes"]]
entry_points:
  main:
    parameters:
      msg: string
      alpha: {type: float, default: 0.1}
    command: "python train.py --msg {msg} --alpha {alpha}"
"""


class FakeObjects:
    """Stands in for CustomObjectsApi: stores created bodies, serves a phase (its controller's verdict).

    ``tags_at_create`` is the run's tags as the tracking store had them at the
    moment each object was created (what a controller reading the run then sees).
    """

    def __init__(self, phase: str | None = "Succeeded", fail_with: Exception | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.phase = phase
        self.reason = ""
        self.message = ""
        self.fail_with = fail_with
        self.tags_at_create: list[dict[str, str]] = []

    def get_api_resources(self, group: str, version: str, **kw: Any) -> Any:
        if self.fail_with is not None:
            raise self.fail_with
        resource = SimpleNamespace(name=contract.PLURAL, kind=contract.KIND, namespaced=True)
        return SimpleNamespace(resources=[resource])

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        return {"items": []}

    def list_namespaced_pod(self, *args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(items=[])  # no pods: nothing to attach, the status message is the reason

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any], **kw: Any
    ) -> dict[str, Any]:
        assert (group, version, plural) == (contract.GROUP, contract.VERSION, contract.PLURAL)
        assert "pretty" not in kw
        self.tags_at_create.append(dict(MlflowClient().get_run(body["spec"]["mlflow"]["runId"]).data.tags))
        self.created.append(body)
        return {**body, "metadata": {**body["metadata"], "uid": f"uid-{len(self.created)}"}}

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        body = {**self.created[-1], "metadata": {**self.created[-1]["metadata"], "uid": f"uid-{len(self.created)}"}}
        if self.phase is not None:
            body["status"] = {"phase": self.phase, "reason": self.reason,
                              "message": self.message or ("exit code 3" if self.phase == "Failed" else "")}
        return body


class FakeImage:
    id = "sha256:" + "ab" * 32
    client = None
    attrs: ClassVar[dict[str, Any]] = {"Config": {"User": "10001:10001"}}  # what `docker image inspect` says

    def __init__(self) -> None:
        self.tags_added: list[tuple[str, str]] = []

    def tag(self, repository: str, tag: str) -> bool:
        self.tags_added.append((repository, tag))
        return True


@pytest.fixture
def tracking(sqlite_tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    uri = sqlite_tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("KUBE_MLFLOW_TRACKING_URI", raising=False)
    return MlflowClient(uri)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "MLproject").write_text(MLPROJECT)
    shutil.copy(ROOT / "trainer" / "customjob_template.yaml", root / "customjob_template.yaml")
    return root


@pytest.fixture
def objects(monkeypatch: pytest.MonkeyPatch) -> FakeObjects:
    fake = FakeObjects()
    def connect(cfg: BackendConfig, kind: WorkloadKind, namespace: str) -> kube.Workloads:
        return kube.Workloads(WorkloadClient(fake, fake, kind, namespace), cfg)  # type: ignore[arg-type]

    monkeypatch.setattr(kube.Workloads, "connect", connect)
    # No controller runs here to close a failed stub run: do not wait the real 30 s for it.
    monkeypatch.setattr(submitted_run, "CONTROLLER_GRACE", 0.2)
    monkeypatch.setattr(mlflow_docker, "validate_docker_installation", lambda: None)
    image = FakeImage()

    def build(**kwargs: Any) -> FakeImage:
        assert kwargs["build_image"] is True
        assert kwargs["repository_uri"] == "pipeline-probe"
        MlflowClient().set_tag(kwargs["run_id"], "mlflow.docker.image.id", image.id)
        return image

    monkeypatch.setattr(mlflow_docker, "build_docker_image", build)
    return fake


def config(**extra: Any) -> dict[str, Any]:
    return {
        "template-path": "customjob_template.yaml",
        "image-delivery": "none",
        "tracking-uri": "http://mlflow.mlflow.svc:5000",
        "poll-seconds": 0.01,
        "timeout-seconds": 5,
        **extra,
    }


def runs_in(client: MlflowClient) -> list[Any]:
    return client.search_runs(experiment_ids=["0"])


def test_submit_renders_the_expected_customjob(tracking: MlflowClient, project: Path, objects: FakeObjects) -> None:
    hostile = 'it\'s a "test" $HOME\n}{: x'
    submitted = CustomJobBackend().run(
        str(project),
        "main",
        {"msg": hostile, "alpha": "0.5"},
        None,
        config(SYNCHRONOUS=False),
        tracking.tracking_uri,
        "0",
    )
    (body,) = objects.created
    run_id = submitted.run_id
    assert body["metadata"]["name"] == f"pipeline-probe-{run_id[:8]}" == submitted.job_name
    assert body["metadata"]["labels"][contract.LABEL_RUN_ID] == run_id
    assert body["spec"]["command"] == ["python", "train.py", "--msg", hostile, "--alpha", "0.5"]
    assert body["spec"]["image"] == "pipeline-probe:abababababab"
    env = {e["name"]: e["value"] for e in body["spec"]["env"]}
    assert env["FROM_MLPROJECT"] == "yes"
    assert not [name for name in env if name.startswith("MLFLOW_")]  # the controller injects them from spec.mlflow
    assert crdv.validate(body) == []  # what the API server would answer, CEL rules included
    assert body["spec"]["mlflow"] == {
        "runId": run_id,
        "experimentId": "0",
        "trackingUri": "http://mlflow.mlflow.svc:5000",
    }
    run = tracking.get_run(run_id)
    assert run.info.status == "RUNNING"  # async: the controller ends it
    assert run.data.tags["mlflow.project.env"] == "docker"
    assert run.data.tags["mlflow.docker.image.uri"] == "pipeline-probe:abababababab"
    # MLflow's _create_run logs the shell-quoted form (upstream behaviour); argv is unquoted.
    assert run.data.params == {"msg": shlex.quote(hostile), "alpha": "0.5"}


@pytest.mark.parametrize("user", ["", "root", "0:0", "trainer"])
def test_an_image_a_non_root_pod_refuses_fails_the_run_before_delivery(
    tracking: MlflowClient, project: Path, objects: FakeObjects, monkeypatch: pytest.MonkeyPatch, user: str
) -> None:
    """The stub's pods must run as non-root with the image's user: a root (or named) USER never gets a CustomJob."""
    monkeypatch.setattr(FakeImage, "attrs", {"Config": {"User": user}})
    with pytest.raises(ProjectError, match=r"image pipeline-probe:\w+ runs as .*fix: add a numeric non-root user"):
        CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(), tracking.tracking_uri, "0")
    assert objects.created == []
    [run] = runs_in(tracking)
    assert run.info.status == "FAILED"
    assert "mlflow.docker.image.uri" not in run.data.tags, "nothing was delivered"


def test_bad_float_fails_before_any_run_or_cluster_call(
    tracking: MlflowClient, project: Path, objects: FakeObjects
) -> None:
    with pytest.raises(ParameterError, match="alpha"):
        CustomJobBackend().run(
            str(project), "main", {"msg": "m", "alpha": "abc"}, None, config(), tracking.tracking_uri, "0"
        )
    assert runs_in(tracking) == []
    assert objects.created == []


@pytest.mark.parametrize("where", ["template", "MLproject"])
def test_mlflow_env_in_template_or_mlproject_fails_before_any_run_or_build(
    tracking: MlflowClient, project: Path, objects: FakeObjects, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    def no_build(**kwargs: Any) -> None:
        raise AssertionError("an image was built for a submission that can never be admitted")

    monkeypatch.setattr(mlflow_docker, "build_docker_image", no_build)
    if where == "template":
        tmpl = project / "customjob_template.yaml"
        entry = "    - {name: MLFLOW_RUN_ID, value: '{run_id}'}\n"
        tmpl.write_text(tmpl.read_text().replace("  env:\n", "  env:\n" + entry))
        expected: type[Exception] = TemplateError
        message = r"template spec\.env\[0\] sets MLFLOW_RUN_ID: .*remove the entry"
    else:
        mlproject = project / "MLproject"
        mlproject.write_text(mlproject.read_text().replace('[["FROM_MLPROJECT", "yes"]]', '[["MLFLOW_RUN_ID", "x"]]'))
        expected, message = ProjectError, r"docker_env\.environment\[0\] sets MLFLOW_RUN_ID: .*remove the pair"
    with pytest.raises(expected, match=message):
        CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(), tracking.tracking_uri, "0")
    assert runs_in(tracking) == []
    assert objects.created == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: example.org/v1\nkind: Widget\nmetadata: {name: x}\nspec: {}\n", "no workload definition covers"),
        ("apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec: {}\n", r"no container at 'spec\.template"),
    ],
    ids=["a kind nobody defined", "a Job without a container"],
)
def test_bad_template_fails_before_any_run(
    tracking: MlflowClient, project: Path, objects: FakeObjects, text: str, message: str
) -> None:
    (project / "customjob_template.yaml").write_text(text)
    with pytest.raises(TemplateError, match=message):
        CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(), tracking.tracking_uri, "0")
    assert runs_in(tracking) == []


@pytest.mark.parametrize(
    ("error", "expected", "text"),
    [
        (
            ApiException(status=404, reason="Not Found", body="404 page not found"),
            CrdNotInstalled,
            "kubectl apply -k crds/",
        ),
        (OSError("connection refused"), ClusterUnreachable, "cannot reach the API server"),
    ],
)
def test_cluster_errors_mark_the_run_failed_with_reason(
    tracking: MlflowClient, project: Path, objects: FakeObjects, error: Exception, expected: type, text: str
) -> None:
    objects.fail_with = error
    with pytest.raises(expected, match=text):
        CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(), tracking.tracking_uri, "0")
    (run,) = runs_in(tracking)
    assert run.info.status == "FAILED"
    assert text in run.data.tags[contract.TAG_FAILURE_REASON]


def test_api_rejection_marks_the_run_failed_with_server_message(
    tracking: MlflowClient, project: Path, objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = "spec.command: Required value"
    rejection = ApiException(status=422, reason="Unprocessable", body=json.dumps({"message": msg}))

    def reject(*args: Any, **kwargs: Any) -> None:
        raise rejection

    monkeypatch.setattr(objects, "create_namespaced_custom_object", reject)
    with pytest.raises(ApiRejected, match=msg):
        CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(), tracking.tracking_uri, "0")
    (run,) = runs_in(tracking)
    assert run.info.status == "FAILED"
    assert msg in run.data.tags[contract.TAG_FAILURE_REASON]


def test_unreachable_kubeconfig_context_is_named(
    tracking: MlflowClient, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real client against a closed port: the error names the context, the run is FAILED."""
    monkeypatch.setattr(mlflow_docker, "validate_docker_installation", lambda: None)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: closed\n"
        "clusters: [{name: closed, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: closed, context: {cluster: closed, user: u}}]\n"
    )
    with pytest.raises(ClusterUnreachable, match="'closed'"):
        CustomJobBackend().run(
            str(project),
            "main",
            {"msg": "m"},
            None,
            config(kubeconfig=str(kubeconfig), **{"kube-context": "closed"}),
            tracking.tracking_uri,
            "0",
        )
    (run,) = runs_in(tracking)
    assert run.info.status == "FAILED"


def test_unknown_context_fails_before_any_run(
    tracking: MlflowClient, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mlflow_docker, "validate_docker_installation", lambda: None)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(ClusterUnreachable, match="context 'nope'"):
        CustomJobBackend().run(
            str(project),
            "main",
            {"msg": "m"},
            None,
            config(kubeconfig=str(kubeconfig), **{"kube-context": "nope"}),
            tracking.tracking_uri,
            "0",
        )
    assert runs_in(tracking) == []


@pytest.mark.parametrize(("phase", "final"), [("Succeeded", "FINISHED"), ("Failed", "FAILED")])
def test_mlflow_projects_run_synchronous_ends_the_run(
    tracking: MlflowClient,
    project: Path,
    objects: FakeObjects,
    monkeypatch: pytest.MonkeyPatch,
    phase: str,
    final: str,
) -> None:
    """Through MLflow's own projects.run/_wait_for, as the Python API user does it."""
    objects.phase = phase
    monkeypatch.setattr(loader, "load_backend", lambda name: CustomJobBackend() if name == "customjob" else None)
    if phase == "Succeeded":
        submitted = mlflow.projects.run(
            str(project),
            parameters={"msg": "hi"},
            backend="customjob",
            backend_config=config(),
            experiment_id="0",
        )
        run_id = submitted.run_id
    else:
        with pytest.raises(mlflow.exceptions.ExecutionException, match="failed"):
            mlflow.projects.run(
                str(project),
                parameters={"msg": "hi"},
                backend="customjob",
                backend_config=config(),
                experiment_id="0",
            )
        (only,) = runs_in(tracking)
        run_id = only.info.run_id
    run = tracking.get_run(run_id)
    assert run.info.status == final
    assert run.data.tags["mlflow.project.backend"] == "customjob"
    if final == "FAILED":
        assert "exit code 3" in run.data.tags[contract.TAG_FAILURE_REASON]


def test_the_run_names_its_object_before_the_object_exists(
    tracking: MlflowClient, project: Path, objects: FakeObjects
) -> None:
    """A controller that reads the run as the object appears must find it tagged for that object (issue #24)."""
    from customjob_controller import mlflow_rest

    submitted = CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(SYNCHRONOUS=False),
                                       tracking.tracking_uri, "0")
    name = f"pipeline-probe-{submitted.run_id[:8]}"
    (seen,) = objects.tags_at_create
    assert seen[closing.WORKLOAD_TAG] == f"CustomJob default/{name}", "tagged before the create, without a uid yet"
    after = tracking.get_run(submitted.run_id).data.tags[closing.WORKLOAD_TAG]
    assert after == f"CustomJob default/{name} uid=uid-1", "then with the uid the API server gave it"
    for value in (seen[closing.WORKLOAD_TAG], after):  # the controller reads what the harness writes
        owner = mlflow_rest.Owner.parse(value)
        assert owner is not None
        assert (owner.kind, owner.namespace, owner.name) == (contract.KIND, "default", name)
        assert mlflow_rest.ownership_problem(submitted.run_id, {contract.TAG_WORKLOAD: value},
                                             mlflow_rest.Owner(contract.KIND, "default", name, "uid-1")) is None


def test_a_failed_pre_create_tag_fails_the_submission_before_any_object(
    tracking: MlflowClient, project: Path, objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the tag the controller would refuse the object: better to say so here, with nothing created."""
    real = MlflowClient.set_tag

    def flaky(self: MlflowClient, run_id: str, key: str, value: Any, **kw: Any) -> None:
        if key == closing.WORKLOAD_TAG:
            raise OSError("tracking server went away")
        real(self, run_id, key, value, **kw)

    monkeypatch.setattr(MlflowClient, "set_tag", flaky)
    with pytest.raises(OSError, match="went away"):
        CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(SYNCHRONOUS=False),
                               tracking.tracking_uri, "0")
    assert objects.created == []
    (run,) = runs_in(tracking)
    assert run.info.status == "FAILED"


def test_a_customjob_its_controller_refuses_fails_the_run_and_the_submission(
    tracking: MlflowClient, project: Path, objects: FakeObjects
) -> None:
    """``mlflow run`` does not follow a stub CustomJob, but one refused by policy must not leave its run RUNNING."""
    objects.phase, objects.reason = "Failed", "TrackingUriNotAllowed"
    objects.message = "spec.mlflow.trackingUri 'http://mlflow.mlflow.svc:5000' is not one this controller may call"
    with pytest.raises(mlflow.exceptions.ExecutionException, match="TrackingUriNotAllowed"):
        CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(SYNCHRONOUS=False),
                               tracking.tracking_uri, "0")
    (run,) = runs_in(tracking)
    assert run.info.status == "FAILED"
    assert "TrackingUriNotAllowed: spec.mlflow.trackingUri" in run.data.tags[contract.TAG_FAILURE_REASON]
    assert run.data.tags[closing.CLOSED_BY_TAG] == "submitter"


@pytest.mark.parametrize("phase", ["Pending", "Running", None], ids=["accepted", "running", "no controller"])
def test_a_customjob_its_controller_accepts_is_left_to_it(
    tracking: MlflowClient, project: Path, objects: FakeObjects, monkeypatch: pytest.MonkeyPatch,
    phase: str | None,
) -> None:
    monkeypatch.setattr(submitted_run, "ADMISSION_TIMEOUT", 0.3)
    objects.phase = phase
    submitted = CustomJobBackend().run(str(project), "main", {"msg": "m"}, None, config(SYNCHRONOUS=False),
                                       tracking.tracking_uri, "0")
    assert tracking.get_run(submitted.run_id).info.status == "RUNNING", "its controller closes it"
