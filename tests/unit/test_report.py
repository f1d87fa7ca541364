"""Unit tier: the session report (harness.report) and its charts (harness.charts).

The plugin test runs a real pytest session under xdist (``-n 2``), and in one process, with
``--junitxml`` whose tests "ran projects": their ``project_runner`` is a stand-in
over a local MLflow store with runs logged here, so the path from a worker
(runs read after the test) through xdist's channel to the controller (which
writes the page) is the real one. Assertions read the page's structure.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from mlflow.tracking import MlflowClient  # here, not in a test: pytester restores sys.modules after each test

from harness.charts import Bar, line_plot_svg, timeline_svg
from harness.evidence import bundle_dir_for
from harness.report import RunRecord, TestRecord, collect_runs
from tests.support.pytester import WITHOUT_UNUSED_PLUGINS

pytest_plugins = ["pytester"]

SVG = "{http://www.w3.org/2000/svg}"


class _Page(HTMLParser):
    """Every element's tag and attributes, and which ``<svg>`` class each element sits in."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], str]] = []
        self._svg: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self._svg.append(found.get("class", ""))
        self.elements.append((tag, found, self._svg[-1] if self._svg else ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self._svg:
            self._svg.pop()

    def having(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a, _in in self.elements
                if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def classed(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a, _in in self.elements if t == tag and cls in a.get("class", "").split()]

    def inside(self, svg_class: str, tag: str) -> list[dict[str, str]]:
        return [a for t, a, within in self.elements if t == tag and within == svg_class]


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """A local MLflow store with one run per fake test namespace: (tracking URI, namespace -> run id).

    Module scope: set up before any ``pytester`` snapshot, so the modules it loads stay loaded.
    """
    tmp_path = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    made = {}
    for ns, alpha in (("ns-pass", "0.5"), ("ns-fail", "-1")):
        exp = client.create_experiment(f"{ns}-a1b2c3", artifact_location=(tmp_path / "art").as_uri())
        run = client.create_run(exp)
        client.log_param(run.info.run_id, "alpha", alpha)
        for step, loss in enumerate((0.9, 0.5, 0.4)):
            client.log_metric(run.info.run_id, "loss", loss, step=step)
        client.log_metric(run.info.run_id, "rmse", 0.71)
        client.set_terminated(run.info.run_id, "FINISHED" if ns == "ns-pass" else "FAILED")
        made[ns] = run.info.run_id
    return uri, made


INNER = '''
import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.unit


@pytest.fixture
def project_runner(request):
    """Stands in for the plugin's runner: a namespace whose experiments hold this test's runs."""
    ns = request.node.get_closest_marker("ns").args[0]
    return SimpleNamespace(namespace=ns, client=MlflowClient(tracking_uri="{uri}"),
                           stack=SimpleNamespace(tracking_uri="http://127.0.0.1:5999"))


@pytest.mark.ns("ns-pass")
def test_trains(project_runner, phases):
    with phases.phase("project trainer alpha=0.5"):
        time.sleep(0.2)


@pytest.mark.ns("ns-fail")
def test_training_fails(project_runner, phases):
    with phases.phase("project trainer alpha=-1"):
        time.sleep(0.2)
    assert False, "the run failed"


def test_skipped():
    pytest.skip("not here")
'''


@pytest.mark.parametrize(("args", "lanes"), [(("-n", "2"), {"gw0", "gw1"}), (("-p", "no:xdist"), {"main"})],
                         ids=["xdist", "one-process"])
def test_a_session_with_junitxml_writes_the_report(pytester: pytest.Pytester, store: tuple[str, dict[str, str]],
                                                    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...],
                                                    lanes: set[str]) -> None:
    uri, run_ids = store
    for name in ("HARNESS_NO_SKIP", "CI", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    bundles = pytester.path / "bundles"
    monkeypatch.setenv("HARNESS_BUNDLE_DIR", str(bundles))
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makeini("[pytest]\nmarkers =\n    ns: the fake test's namespace\n")
    pytester.makepyfile(test_session=INNER.replace("{uri}", uri))
    failed_id = "test_session.py::test_training_fails"
    evidence = bundle_dir_for(bundles, failed_id) / "e2e-1234" / "events.txt"
    evidence.parent.mkdir(parents=True)
    evidence.write_text("Warning BackOff pod/x\n")

    result = pytester.runpytest_subprocess(*WITHOUT_UNUSED_PLUGINS, *args, "-p", "no:cacheprovider",
                                           "--junitxml=build/junit-x.xml")
    result.assert_outcomes(passed=1, failed=1, skipped=1)

    page_path = pytester.path / "build" / "junit-x.report.html"
    assert page_path.is_file()
    assert (pytester.path / "build" / "junit-x.timeline.svg").is_file()
    text = page_path.read_text()
    page = _parse(text)

    # Self-contained: no external script, stylesheet or image; every chart is inline SVG.
    assert not page.having("script", src="")
    assert all("src" not in a for t, a, _ in page.elements if t == "script")
    assert not [a for t, a, _ in page.elements if t == "link"]
    assert not [a for t, a, _ in page.elements if t == "img"]

    # The timeline: one lane per process that ran a project (each xdist worker), each project phase a bar.
    assert len(page.classed("svg", "timeline")) == 1
    bars = page.inside("timeline", "rect")
    assert len(bars) >= 2
    shown = re.findall(r'font-weight="bold" fill="#111827">(gw\d|main)</text>', text)
    assert shown
    assert set(shown) <= lanes

    # Every test, with its outcome and process.
    rows = {a["id"]: a["data-outcome"] for a in page.having("tr") if "data-outcome" in a}
    assert sorted(rows.values()) == ["failed", "passed", "skipped"]
    ids = {a["id"] for _t, a, _ in page.elements if "id" in a}
    for t, a, _ in page.elements:  # every in-page link lands on an element
        if t == "a" and a.get("href", "").startswith("#"):
            assert a["href"][1:] in ids, a["href"]

    # Each run: its id as an anchor, a link into the tracking UI, one plot per metric.
    for run_id in run_ids.values():
        assert f"run-{run_id}" in ids
        assert page.having("a", href=f"http://127.0.0.1:5999/#/experiments/1/runs/{run_id}") or \
            page.having("a", href=f"http://127.0.0.1:5999/#/experiments/2/runs/{run_id}")
    plots = page.classed("svg", "metric-plot")
    assert len(plots) == 4   # loss and rmse, two runs
    assert len(page.inside("metric-plot", "circle")) == 2 * (3 + 1)

    # The failed test's evidence, linked relative to the page, to files that exist.
    hrefs = [a["href"] for a in page.having("a") if "href" in a and not a["href"].startswith(("#", "http"))]
    assert any(h.endswith("events.txt") for h in hrefs)
    for href in hrefs:
        assert (page_path.parent / unquote(href)).exists(), href

    # The step summary points at the page.
    assert "junit-x.report.html" in summary.read_text()


def test_a_session_without_junitxml_writes_no_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\npytestmark = pytest.mark.unit\ndef test_a():\n    pass\n")
    pytester.runpytest_subprocess(*WITHOUT_UNUSED_PLUGINS, "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not list(pytester.path.rglob("*.report.html"))


def test_collect_runs_reads_each_metric_history(store: tuple[str, dict[str, str]]) -> None:
    uri, run_ids = store
    runs = collect_runs(MlflowClient(tracking_uri=uri), "ns-pass-", "http://h:5000/")
    assert [r.run_id for r in runs] == [run_ids["ns-pass"]]
    run = runs[0]
    assert run.status == "FINISHED"
    assert run.params == {"alpha": "0.5"}
    loss = next(m for m in run.metrics if m.key == "loss")
    assert [(s, v) for s, v, _t in loss.points] == [(0, 0.9), (1, 0.5), (2, 0.4)]
    assert run.ui_url == f"http://h:5000/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    assert RunRecord.from_json(run.to_json()) == run   # what xdist carries from a worker


def test_a_test_record_counts_outcomes_as_pytest_does() -> None:
    record = TestRecord("t.py::test_a")
    record.add("setup", "passed", start=10.0, stop=11.0, duration=1.0)
    record.add("call", "passed", start=11.0, stop=12.0, duration=1.0)
    record.add("teardown", "failed", start=12.0, stop=12.5, duration=0.5, text="boom")
    assert (record.outcome, record.start, record.stop, record.text) == ("error", 10.0, 12.5, "boom")
    xfail = TestRecord("t.py::test_b")
    xfail.add("call", "skipped", start=1, stop=2, duration=1, xfail=True)
    assert xfail.outcome == "xfailed"


def test_the_timeline_keeps_full_names_on_rows_that_never_overlap() -> None:
    long = "project trainer-pytorch-workers alpha=0.5 l1_ratio=0.1 with a very long name indeed"
    bars = [Bar("main", "cluster", 0, 40), Bar("main", "build trainer image", 0, 30),  # side by side: two rows
            Bar("gw0", long, 40, 20, "failed"), Bar("gw1", "test x", 40, 10, "passed", href="#t")]
    svg = ET.fromstring(timeline_svg(bars, 60.0))
    rects = list(svg.iter(f"{SVG}rect"))
    assert len(rects) == 4
    assert rects[0].get("y") != rects[1].get("y")
    texts = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]
    assert f"{long} (20.0 s)" in texts   # never cut
    assert {"main", "gw0", "gw1"} <= set(texts)
    assert {"0 s", "30 s", "60 s"} <= set(texts)   # the time axis
    assert [a.get("href") for a in svg.iter(f"{SVG}a")] == ["#t"]


def test_a_metric_plot_skips_values_it_cannot_draw() -> None:
    svg = ET.fromstring(line_plot_svg([(0, 1.0), (1, float("nan")), (2, 0.5)], title="loss"))
    assert len(list(svg.iter(f"{SVG}circle"))) == 2
    assert len(list(svg.iter(f"{SVG}polyline"))) == 1
    empty = ET.fromstring(line_plot_svg([(0, float("inf"))], title="x"))
    assert not list(empty.iter(f"{SVG}circle"))


def test_the_page_path_sits_beside_the_junit_report() -> None:
    from harness.report import report_path_for

    assert report_path_for(os.path.join("build", "junit-e2e.xml")) == Path("build/junit-e2e.report.html")
