"""Unit tier: the pytest plugin, tested as a plugin (pytester runs a pytest inside pytest).

The plugin is loaded from its ``pytest11`` entry point, exactly as in a user's
project: none of these inner runs names it with ``-p``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pytester import WITHOUT_UNUSED_PLUGINS

pytest_plugins = ["pytester"]

PROBE = """
import pytest
from harness.pytest_plugin import missing_prerequisite

def test_needs_docker(pytestconfig):
    missing_prerequisite(pytestconfig, "Docker engine not reachable; fix: scripts/docker-up.sh")
"""


@pytest.fixture(autouse=True)
def _clean_harness_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HARNESS_NO_SKIP", "HARNESS_CLUSTER_NAME", "HARNESS_CONFIG", "CI"):
        monkeypatch.delenv(name, raising=False)


def test_missing_prerequisite_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROBE)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*Docker engine not reachable; fix: scripts/docker-up.sh*"])


def test_no_skip_turns_the_skip_into_a_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROBE)
    result = pytester.runpytest("--harness-no-skip")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*prerequisite missing (and --harness-no-skip is set)*"])


def test_env_var_and_config_key_enable_no_skip(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(PROBE)
    monkeypatch.setenv("HARNESS_NO_SKIP", "1")
    pytester.runpytest().assert_outcomes(failed=1)
    monkeypatch.delenv("HARNESS_NO_SKIP")
    pytester.makepyprojecttoml("[tool.mlflow-crd-harness]\nno-skip = true\n")
    pytester.runpytest().assert_outcomes(failed=1)
    pytester.runpytest("--harness-no-skip=false").assert_outcomes(skipped=1)  # the option beats the file


def test_markers_are_registered_by_the_plugin(pytester: pytest.Pytester) -> None:
    """--strict-markers works in a project that declares no markers of its own."""
    pytester.makepyfile("""
import pytest

@pytest.mark.e2e
def test_a():
    pass

@pytest.mark.fault
def test_b():
    pass
""")
    result = pytester.runpytest("--strict-markers", "-m", "e2e")
    result.assert_outcomes(passed=1, deselected=1)


def test_tier_markers_follow_directories_below_the_rootdir(pytester: pytest.Pytester) -> None:
    pytester.mkdir("e2e")
    pytester.makepyfile(**{"e2e/test_a.py": "def test_a():\n    assert True\n",
                           "test_b.py": "def test_b():\n    pass\n"})
    result = pytester.runpytest("--strict-markers", "-m", "e2e")
    result.assert_outcomes(passed=1, deselected=1)


def test_a_tier_name_above_the_rootdir_marks_nothing(pytester: pytest.Pytester) -> None:
    """A project that lives under /srv/docker/... is not the docker tier."""
    root = pytester.mkdir("docker").joinpath("project")
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (root / "test_c.py").write_text("def test_c():\n    pass\n")
    result = pytester.runpytest(str(root), "--rootdir", str(root), "-m", "docker")
    result.assert_outcomes(deselected=1)


def test_tests_using_cluster_fixtures_are_e2e(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
def test_uses_runner(project_run):
    pass

def test_plain():
    pass
""")
    result = pytester.runpytest("-m", "not e2e")
    result.assert_outcomes(passed=1, deselected=1)


def test_phase_summary_is_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
def test_timed(phases):
    with phases.phase("build things") as note:
        note["note"] = "reused"
""")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*harness phase timings*", "build things*reused*"])


def test_unknown_config_key_stops_the_run_with_the_key_and_a_suggestion(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.mlflow-crd-harness]\ncluster-nme = "x"\n')
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown key 'cluster-nme'*did you mean 'cluster-name'*"])


def test_bad_value_names_key_source_and_allowed_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--harness-keep-cluster=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--harness-keep-cluster*invalid choice*sometimes*"])
    pytester.makepyprojecttoml('[tool.mlflow-crd-harness]\njob-timeout = "soon"\n')
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*job-timeout = 'soon' ([[]tool.mlflow-crd-harness[]] of *): expected a number*"])


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    text = result.stdout.str()
    for name in ("harness_settings", "testbed", "e2e_stack", "e2e_namespace", "project_runner", "project_run",
                 "e2e_kube", "e2e_mlflow_client", "harness_images", "local_tracking_server", "base_image"):
        block = text.split(f"\n{name} ", 1)
        assert len(block) == 2, f"fixture {name} not listed"
        doc = block[1].split("\n", 2)[1]
        assert doc.strip(), f"fixture {name} has no docstring"
        assert "no docstring" not in doc, f"fixture {name} has no docstring: {doc!r}"


def test_loads_beside_pytest_kind_ng(pytester: pytest.Pytester) -> None:
    """Both plugins in one environment: no option clash, both usable in one run."""
    pytester.makepyfile("""
def test_both(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("mlflow-crd-harness")
    assert pytestconfig.pluginmanager.has_plugin("pytest-kind-ng")
    assert pytestconfig.getoption("cluster_name") == "theirs"
    assert pytestconfig.getoption("harness_cluster_name") == "ours"
""")
    result = pytester.runpytest("--cluster-name", "theirs", "--harness-cluster-name", "ours")
    result.assert_outcomes(passed=1)


XDIST_CONFTEST = '''
import json, os
from pathlib import Path
import pytest
from harness import testbed as tb
from harness.clusters import Cluster
from harness.delivery import KindLoad
from harness.kubeapi import Kube
from harness.stack import Stack

LOG = Path(os.environ["XDIST_LOG"])

def _log(event):
    with LOG.open("a") as fh:
        fh.write(json.dumps({"event": event, "worker": os.environ.get("PYTEST_XDIST_WORKER")}) + "\\n")

def fake_start(self):
    _log("start")
    kubeconfig = Path(os.environ["XDIST_KUBECONFIG"])
    cluster = Cluster(name="shared", provider="kind", kube=Kube(kubeconfig, Path("/bin/true")), created=True,
                      images=KindLoad(kind_cluster="shared", kind_bin=Path("/bin/true")),
                      fingerprint="f", mlflow_host_port=1)
    self.cluster = cluster
    self.stack = Stack(cluster=cluster, tracking_uri="http://127.0.0.1:1", pod_tracking_uri="http://m:5000")
    self._provider = object()  # an owner: its finish() is the one that ends the bed
    return self

def fake_finish(self, *, failed=False):
    _log(f"finish owner={self._provider is not None} failed={failed}")
    return False

tb.Testbed.start = fake_start
tb.Testbed.finish = fake_finish

if os.environ.get("HUNG_WORKER") == "1":  # the owner's bounded wait for the others runs out
    from harness._errors import WaitTimeout
    from harness.pytest_plugin import shared

    def _hung(self, timeout, log):
        raise WaitTimeout("the other xdist workers to finish", timeout, ["+0.0s  waiting for gw1"])

    shared.XdistRun.wait_for_others = _hung

@pytest.fixture(scope="session")
def e2e_preflight():  # no Docker here: the bring-up is faked
    pass
'''

XDIST_TESTS = '''
import os, time, json
from pathlib import Path

def _seen(testbed):
    with Path(os.environ["XDIST_LOG"]).open("a") as fh:
        fh.write(json.dumps({"event": "test", "worker": os.environ.get("PYTEST_XDIST_WORKER"),
                             "uri": testbed.stack.tracking_uri}) + "\\n")

def test_a(testbed): _seen(testbed); time.sleep(0.5)
def test_b(testbed): _seen(testbed); time.sleep(0.5)
def test_c(testbed): _seen(testbed); time.sleep(0.5)
def test_d(testbed): _seen(testbed); assert os.environ.get("FAIL_ONE") != "1"
def test_docker_only(): time.sleep(2)
'''


def _unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig of a cluster nobody answers for: the faked test bed never calls it."""
    path.write_text("apiVersion: v1\nkind: Config\n"
                    "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                    "users: [{name: u, user: {token: t}}]\n"
                    "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    return path


def test_xdist_workers_share_one_test_bed_and_the_owner_ends_it_last(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers, one bring-up, one finish after both are done, with every worker's failures counted."""
    import json

    fail_one = True  # one failing test on either worker must reach the owner's keep-cluster decision
    import xdist  # noqa: F401 - in the test extra; without it this test must fail, not skip
    log = pytester.path / "events.jsonl"
    kubeconfig = _unreachable_kubeconfig(pytester.path / "kubeconfig")
    monkeypatch.setenv("XDIST_LOG", str(log))
    monkeypatch.setenv("XDIST_KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("FAIL_ONE", "1" if fail_one else "0")
    monkeypatch.setenv("HARNESS_STATE_DIR", str(pytester.path / "state"))
    pytester.makeconftest(XDIST_CONFTEST)
    pytester.makepyfile(XDIST_TESTS)
    result = pytester.runpytest_subprocess(*WITHOUT_UNUSED_PLUGINS, "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4 if fail_one else 5, failed=1 if fail_one else 0)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    starts = [e for e in events if e["event"] == "start"]
    finishes = [e for e in events if e["event"].startswith("finish")]
    assert len(starts) == 1, events
    assert [e["event"] for e in finishes] == [f"finish owner=True failed={fail_one}"], events
    assert finishes[0]["worker"] == starts[0]["worker"]
    assert events[-1]["event"].startswith("finish"), "the owner ends the bed after every test of every worker"
    assert {e["worker"] for e in events if e["event"] == "test"} == {"gw0", "gw1"}


def test_a_hung_worker_does_not_keep_the_owner_from_ending_the_test_bed(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24: the owner's wait for a hung worker ran out (or was interrupted) and skipped the bed's finish."""
    import json

    log = pytester.path / "events.jsonl"
    kubeconfig = _unreachable_kubeconfig(pytester.path / "kubeconfig")
    for name, value in {"XDIST_LOG": str(log), "XDIST_KUBECONFIG": str(kubeconfig), "FAIL_ONE": "0",
                        "HUNG_WORKER": "1", "HARNESS_STATE_DIR": str(pytester.path / "state")}.items():
        monkeypatch.setenv(name, value)
    pytester.makeconftest(XDIST_CONFTEST)
    pytester.makepyfile(XDIST_TESTS)
    result = pytester.runpytest_subprocess(*WITHOUT_UNUSED_PLUGINS, "-n", "2", "-p", "no:cacheprovider")
    assert result.ret != 0, "the timed-out wait is reported"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    finishes = [e["event"] for e in events if e["event"].startswith("finish")]
    assert finishes == ["finish owner=True failed=True"], events  # ended, and counted as failed (keep-on-failure)


def test_phase_timings_reach_the_junit_report(pytester: pytest.Pytester) -> None:
    """The report carries ``phase.<name>.seconds`` for every phase (benchmarks and CI dashboards read them)."""
    import xml.etree.ElementTree as ET

    pytester.makepyfile("""
def test_timed(phases):
    with phases.phase("probe phase"):
        pass
""")
    report = pytester.path / "junit.xml"
    pytester.runpytest(f"--junitxml={report}").assert_outcomes(passed=1)
    props = {p.get("name"): p.get("value") for p in ET.parse(report).iter("property")}
    seconds = props.get("phase.probe phase.seconds")
    assert seconds is not None, props
    assert float(seconds) >= 0.0


@pytest.mark.parametrize("args", [["--collect-only"], ["--fixtures"], []], ids=["collect-only", "fixtures", "unit"])
def test_a_session_without_tier_tests_touches_no_docker_and_no_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    from harness import leftovers

    calls: list[str] = []
    monkeypatch.setattr(leftovers, "reap", lambda *a, **kw: calls.append("reap") or [])
    pytester.makepyfile("def test_pure():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest(*args)
    assert result.ret == 0
    assert calls == []
    pytester.makepyfile("import pytest\n\n@pytest.mark.docker\ndef test_tier():\n    pass\n")
    pytester.runpytest()
    assert calls == ["reap"], "a session that runs a tier test still reaps what a killed one left"


def test_the_plugin_imports_in_well_under_a_second() -> None:
    """MLflow, the kubernetes client and the Docker SDK load when a tier's fixture runs, not with the plugin."""
    import subprocess
    import sys

    code = ("import sys, harness.pytest_plugin; heavy = [m for m in ('mlflow', 'kubernetes', 'docker', 'pandas') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
