"""The session report: one self-contained HTML page next to the JUnit report, to read after a session.

A JUnit file, a run manifest and a bare timeline answer "what failed" but not
"what happened": which phase took the time on which worker, what each test's
MLflow runs logged, where a failed test's evidence is. This page puts that
together (``build/junit-e2e.xml`` -> ``build/junit-e2e.report.html``):

* the phase timeline (:func:`harness.charts.timeline_svg`): a time axis, one lane
  per process (each xdist worker), outcome colours, full names, each test's bar
  linked to its row;
* every test with its outcome, its phases (setup: the test bed it paid for;
  call: its project runs), its failure text and its MLflow runs;
* each run: a link to the tracking UI (while that server lives), run id,
  params, metrics, and a plot of every metric's history;
* each failed test's evidence bundle, file by file, linked relative to the page
  (``<bundle-dir>/<test id>/``, :func:`harness.evidence.bundle_dir_for`);
* the run manifest.

Self-contained on purpose: CI artifacts are opened on machines without
internet, so CSS, the few lines of JavaScript and every chart (inline SVG) are
in the file; links go only to files beside it. The template is Jinja2 (it
comes with MLflow) with autoescaping, so names and log text can never inject
markup. Metric histories are read *during the session*
(:func:`collect_runs`, right after each test, while the tracking server is
up): by the time the page is written the cluster may be gone. The records are
plain data (:meth:`RunRecord.to_json`), so xdist workers hand them to the
controller, which alone writes the page.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.charts import Bar, line_plot_svg, timeline_svg
from harness.timing import Phase

__all__ = ["MetricHistory", "RunRecord", "TestRecord", "collect_runs", "render", "report_path_for", "write"]

MAX_RUNS = 20
"""Runs read per test (a test that makes more is shown with its first ones and says so)."""
MAX_POINTS = 500
"""Points kept per metric history (evenly thinned, the last one always kept)."""
MAX_FILES = 300
"""Evidence files listed per bundle."""
MAX_TEXT = 20_000
"""Characters of a failure's text shown."""


def report_path_for(junit_xml: str | os.PathLike[str]) -> Path:
    """``build/junit-e2e.xml`` -> ``build/junit-e2e.report.html``."""
    return Path(junit_xml).with_suffix(".report.html")


@dataclass(frozen=True)
class MetricHistory:
    """One metric of one run: every ``(step, value, timestamp ms)`` it was logged with."""

    key: str
    points: tuple[tuple[int, float, int], ...]

    @property
    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None

    def svg(self) -> str:
        last = self.last
        shown = f" = {last:.6g}" if last is not None else ""
        return line_plot_svg([(s, v) for s, v, _t in self.points], title=f"{self.key}{shown}")


@dataclass(frozen=True)
class RunRecord:
    """What one MLflow run logged, read while its tracking server was up."""

    run_id: str
    experiment: str
    experiment_id: str
    status: str
    tracking_uri: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: tuple[MetricHistory, ...] = ()
    start_ms: int | None = None
    end_ms: int | None = None

    @property
    def ui_url(self) -> str:
        """The run in the tracking server's UI (empty for a non-HTTP store)."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return ""
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{quote(self.experiment_id)}/runs/{quote(self.run_id)}"

    @property
    def seconds(self) -> float | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return (self.end_ms - self.start_ms) / 1000

    def to_json(self) -> dict[str, Any]:
        """Plain data (what xdist can carry from a worker to the controller)."""
        return {"run_id": self.run_id, "experiment": self.experiment, "experiment_id": self.experiment_id,
                "status": self.status, "tracking_uri": self.tracking_uri, "params": dict(self.params),
                "metrics": [{"key": m.key, "points": [list(p) for p in m.points]} for m in self.metrics],
                "start_ms": self.start_ms, "end_ms": self.end_ms}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        metrics = tuple(MetricHistory(str(m["key"]), tuple((int(s), float(v), int(t)) for s, v, t in m["points"]))
                        for m in data.get("metrics", ()))
        return cls(str(data["run_id"]), str(data["experiment"]), str(data["experiment_id"]), str(data["status"]),
                   str(data["tracking_uri"]), {str(k): str(v) for k, v in (data.get("params") or {}).items()},
                   metrics, data.get("start_ms"), data.get("end_ms"))


def _thin(points: list[tuple[int, float, int]], most: int) -> list[tuple[int, float, int]]:
    if len(points) <= most:
        return points
    stride = len(points) / (most - 1)
    return [points[min(len(points) - 1, round(i * stride))] for i in range(most - 1)] + [points[-1]]


def _answers(tracking_uri: str, timeout: float = 5.0) -> None:
    """Raise at once when an HTTP tracking server does not answer: MLflow's client would retry for minutes."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout):  # noqa: S310 - http(s)
            pass
    except urllib.error.HTTPError:
        return  # it answered (an auth proxy, a server without /health): the client may still read runs
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"tracking server {tracking_uri} did not answer within {timeout:.0f} s: {exc}") from exc


def collect_runs(client: Any, experiment_prefix: str, tracking_uri: str) -> list[RunRecord]:
    """Every run in the experiments named ``<experiment_prefix>...`` (a test's namespace), with metric histories.

    ``client`` is an ``MlflowClient``. Raises what MLflow raises: the caller
    notes it in the report instead of failing the test.
    """
    _answers(client.tracking_uri)
    found: list[RunRecord] = []
    escaped = experiment_prefix.replace("'", "")
    experiments = [e for e in client.search_experiments(filter_string=f"name LIKE '{escaped}%'")
                   if str(e.name).startswith(experiment_prefix)]
    for exp in sorted(experiments, key=lambda e: str(e.name)):
        for run in client.search_runs([exp.experiment_id], max_results=MAX_RUNS, order_by=["attributes.start_time"]):
            info, data = run.info, run.data
            metrics = []
            for key in sorted(data.metrics):
                history = sorted((int(m.step), float(m.value), int(m.timestamp))
                                 for m in client.get_metric_history(info.run_id, key))
                metrics.append(MetricHistory(key, tuple(_thin(history, MAX_POINTS))))
            found.append(RunRecord(str(info.run_id), str(exp.name), str(exp.experiment_id), str(info.status),
                                   tracking_uri, {str(k): str(v) for k, v in sorted(data.params.items())},
                                   tuple(metrics), info.start_time, info.end_time))
    return found[:MAX_RUNS]


@dataclass
class TestRecord:
    """One test as its reports told it: outcome, worker, when it ran, why it failed; its runs added later."""

    __test__ = False   # not a pytest test class

    nodeid: str
    worker: str = "main"
    outcome: str = "passed"
    duration: float = 0.0
    start: float = 0.0
    """Epoch seconds: the setup's start."""
    stop: float = 0.0
    """Epoch seconds: the teardown's end."""
    whens: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    """``setup``/``call``/``teardown`` -> (outcome, epoch start, epoch stop)."""
    text: str = ""
    """The failure's (or skip's) text."""
    runs: list[RunRecord] = field(default_factory=list)
    runs_error: str = ""

    def add(self, when: str, outcome: str, *, start: float, stop: float, duration: float, text: str = "",
            xfail: bool = False) -> None:
        """Fold one report (setup, call or teardown) into the record, the way pytest counts outcomes."""
        self.whens[when] = (outcome, start, stop)
        self.duration += duration
        self.start = min(self.start, start) if self.start else start
        self.stop = max(self.stop, stop)
        if text and not self.text:
            self.text = text[-MAX_TEXT:]
        if when == "setup":
            self.outcome = {"failed": "error", "skipped": "xfailed" if xfail else "skipped"}.get(outcome, "passed")
        elif when == "call":
            self.outcome = {"failed": "failed", "skipped": "xfailed" if xfail else "skipped",
                            "passed": "xpassed" if xfail else "passed"}[outcome]
        elif outcome == "failed" and self.outcome not in ("failed", "error"):
            self.outcome = "error"

    @property
    def name(self) -> str:
        return self.nodeid.split("::")[-1]

    @property
    def anchor(self) -> str:
        return "test-" + _slug(self.nodeid)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:80] + f"-{zlib.crc32(text.encode()):08x}"


@dataclass(frozen=True)
class _TestView:
    test: TestRecord
    phases: list[tuple[str, Phase]]
    evidence: str
    """The bundle directory relative to the page ('' if none)."""
    evidence_files: list[tuple[str, str]]
    """(path inside the bundle, href relative to the page)."""
    evidence_more: int

    @property
    def evidence_groups(self) -> list[tuple[str, list[tuple[str, str]], bool]]:
        """The bundle's files by top directory: (directory, files, shown open). The test's namespaces open first;
        the stack's namespaces (system/) and the node logs (kind-logs/, most of the files) folded."""
        groups: dict[str, list[tuple[str, str]]] = {}
        for name, href in self.evidence_files:
            top = name.split("/", 1)[0] if "/" in name else ""
            groups.setdefault(top, []).append((name, href))
        folded = ("system", "kind-logs")
        order = sorted(groups, key=lambda g: (g in folded, folded.index(g) if g in folded else 0, g))
        return [(g, groups[g], g not in folded) for g in order]

    @property
    def grouped(self) -> list[tuple[str, list[Phase]]]:
        """The phases by setup, call and teardown (a first test's setup lists the whole test bed)."""
        return [(when, [p for w, p in self.phases if w == when]) for when in ("setup", "call", "teardown")
                if any(w == when for w, _p in self.phases)]


def _href(target: Path, page_dir: Path) -> str:
    return quote(Path(os.path.relpath(target.resolve(), page_dir.resolve())).as_posix())


def _evidence(bundle: Path, page_dir: Path) -> tuple[str, list[tuple[str, str]], int]:
    if not bundle.is_dir():
        return "", [], 0
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    listed = [(p.relative_to(bundle).as_posix(), _href(p, page_dir)) for p in files[:MAX_FILES]]
    return _href(bundle, page_dir), listed, max(0, len(files) - MAX_FILES)


def _phases_of(test: TestRecord, phases: Sequence[Phase], epoch_started: float) -> list[tuple[str, Phase]]:
    """The phases that ran in the test's process during its setup, call or teardown (its own 'test' phase aside)."""
    found = []
    for phase in phases:
        if phase.lane != test.worker or phase.label == f"test {test.name}":
            continue
        begin, end = epoch_started + phase.start, epoch_started + phase.start + phase.seconds
        for when, (_outcome, start, stop) in test.whens.items():
            if start - 0.05 <= begin and end <= stop + 0.05:
                found.append((when, phase))
                break
    return found


def _bars(phases: Sequence[Phase], tests: Sequence[TestRecord]) -> list[Bar]:
    """Phases as bars; a test's own phase takes its test's outcome colour and links to its row."""
    by_name = {(t.worker, f"test {t.name}"): t for t in tests}
    bars = []
    for p in phases:
        test = by_name.get((p.lane, p.label))
        if test is not None:
            bars.append(Bar(p.lane, p.label, p.start, p.seconds, test.outcome, href=f"#{test.anchor}", note=p.note))
        else:
            bars.append(Bar(p.lane, p.label, p.start, p.seconds, "ok" if p.ok else "failed", note=p.note))
    return bars


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
:root { --ok:#3b82f6; --passed:#16a34a; --failed:#dc2626; --error:#9f1239; --skipped:#9ca3af; --xfailed:#d97706;
        --xpassed:#d97706; --line:#e5e7eb; --muted:#6b7280; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; margin: 0; color: #111827; background: #fff; }
header { padding: 12px 20px 8px; border-bottom: 1px solid var(--line); background: #f9fafb; }
header h1 { font-size: 20px; margin: 0 0 4px; }
header p { margin: 2px 0; color: #374151; }
nav { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid var(--line);
      padding: 6px 20px; display: flex; gap: 16px; flex-wrap: wrap; }
nav a { color: #1d4ed8; text-decoration: none; }
main { padding: 0 20px 40px; }
section { margin-top: 18px; }
h2 { font-size: 17px; margin: 0 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, pre, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
pre { background: #f9fafb; border: 1px solid var(--line); padding: 8px; overflow: auto; max-height: 420px;
      white-space: pre-wrap; word-break: break-word; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; color: #fff; font-size: 12px; font-weight: 600; }
{% for state in colours %}.badge.{{ state }} { background: var(--{{ state }}); }
{% endfor %}
.counts .badge { margin-right: 4px; }
.scroll { overflow-x: auto; border: 1px solid var(--line); padding: 4px; }
.legend span { margin-right: 12px; white-space: nowrap; }
.legend i { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 4px;
            vertical-align: -1px; }
.plots { display: flex; flex-wrap: wrap; gap: 10px; }
.run { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px 10px; margin: 10px 0; }
.muted { color: var(--muted); }
ul.files { columns: 2; margin: 4px 0; }
tr.hidden { display: none; }
[id] { scroll-margin-top: 44px; }
td.phases { min-width: 330px; }
#test-table td.mono { word-break: break-word; max-width: 520px; }
</style>
</head>
<body>
<header>
<h1>{{ title }}</h1>
<p>{{ generated }} · wall {{ "%.1f"|format(wall) }} s · {{ tests|length }} tests
{%- if workers %} · xdist workers: {{ workers|join(", ") }}{% endif %}</p>
<p class="counts">{% for state, n in counts %}<span class="badge {{ state }}">{{ n }} {{ state }}</span>{% endfor %}</p>
<p>{% for label, href in files %}<a href="{{ href }}">{{ label }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</p>
</header>
<nav><a href="#timeline">Timeline</a><a href="#tests">Tests</a><a href="#runs">MLflow runs ({{ runs|length }})</a>
<a href="#evidence">Evidence ({{ evidence_count }})</a><a href="#manifest">Run manifest</a></nav>
<main>
<section id="timeline">
<h2>Phase timeline</h2>
<p class="legend">{% for state in colours %}<span><i style="background: var(--{{ state }})"></i>{{ legend[state] }}</span>{% endfor %}</p>
{% if timeline %}<div class="scroll">{{ timeline }}</div>
<details><summary>every phase ({{ phases|length }})</summary>
<table><tr><th>process</th><th>phase</th><th>start (s)</th><th>seconds</th><th>note</th></tr>
{% for p in phases %}<tr><td>{{ p.lane }}</td><td>{{ p.label }}{% if not p.ok %} <span class="badge failed">failed</span>{% endif %}</td>
<td class="num">{{ "%.1f"|format(p.start) }}</td><td class="num">{{ "%.1f"|format(p.seconds) }}</td><td>{{ p.note }}</td></tr>
{% endfor %}</table></details>
{% else %}<p class="muted">No timed phases in this session (only docker, e2e and fault tests and the test bed are timed).</p>{% endif %}
</section>

<section id="tests">
<h2>Tests</h2>
<p><label><input type="checkbox" id="only-failed"> only tests that did not pass</label></p>
<table id="test-table">
<tr><th>test</th><th>outcome</th><th>process</th><th>seconds</th><th>phases</th><th>MLflow runs</th><th>evidence</th></tr>
{% for v in views %}{% set t = v.test %}
<tr id="{{ t.anchor }}" data-outcome="{{ t.outcome }}">
<td class="mono">{{ t.nodeid }}{% if t.text %}<details><summary>{{ "failure" if t.outcome in ("failed", "error") else "reason" }}</summary><pre>{{ t.text }}</pre></details>{% endif %}</td>
<td><span class="badge {{ t.outcome }}">{{ t.outcome }}</span></td>
<td>{{ t.worker }}</td>
<td class="num">{{ "%.1f"|format(t.duration) }}</td>
<td class="phases">{% for when, items in v.grouped %}{% if items|length > 2 %}<details><summary>{{ when }}: {{ items|length }} phases</summary>{% endif %}
{% for p in items %}<div>{{ when }}: {{ p.label }} <span class="muted">{{ "%.1f"|format(p.seconds) }} s</span></div>{% endfor %}{% if items|length > 2 %}</details>{% endif %}{% endfor %}</td>
<td>{% for r in t.runs %}<div><a class="mono" href="#run-{{ r.run_id }}">{{ r.run_id[:12] }}</a> {{ r.status }}</div>{% endfor %}
{%- if t.runs_error %}<div class="muted">not read: {{ t.runs_error }}</div>{% endif %}</td>
<td>{% if v.evidence %}<a href="#evidence-{{ t.anchor }}">bundle ({{ v.evidence_files|length + v.evidence_more }} file{{ "" if v.evidence_files|length + v.evidence_more == 1 else "s" }})</a>{% endif %}</td>
</tr>
{% endfor %}</table>
</section>

<section id="runs">
<h2>MLflow runs</h2>
{% if not runs %}<p class="muted">No MLflow runs were recorded (runs are read for tests that use the project_runner or project_run fixtures).</p>{% endif %}
{% for t, r in runs %}
<div class="run" id="run-{{ r.run_id }}">
<h3><span class="badge {{ "passed" if r.status == "FINISHED" else "failed" }}">{{ r.status }}</span>
<span class="mono">{{ r.run_id }}</span></h3>
<p>test <a class="mono" href="#{{ t.anchor }}">{{ t.nodeid }}</a> · experiment <span class="mono">{{ r.experiment }}</span> ({{ r.experiment_id }})
{%- if r.seconds is not none %} · {{ "%.1f"|format(r.seconds) }} s{% endif %}
{%- if r.ui_url %} · <a href="{{ r.ui_url }}">open in the MLflow UI</a> <span class="muted">(while {{ r.tracking_uri }} is up)</span>{% endif %}</p>
<table><tr><th>param</th><th>value</th></tr>
{% for k, val in r.params.items() %}<tr><td class="mono">{{ k }}</td><td class="mono">{{ val }}</td></tr>{% else %}<tr><td colspan="2" class="muted">none</td></tr>{% endfor %}
</table>
<table><tr><th>metric</th><th>last value</th><th>points</th></tr>
{% for m in r.metrics %}<tr><td class="mono">{{ m.key }}</td><td class="num">{{ m.last }}</td><td class="num">{{ m.points|length }}</td></tr>{% else %}<tr><td colspan="3" class="muted">none</td></tr>{% endfor %}
</table>
<div class="plots">{% for m in r.metrics %}{{ m.svg()|safe }}{% endfor %}</div>
</div>
{% endfor %}
</section>

<section id="evidence">
<h2>Evidence bundles</h2>
{% if not evidence_count %}<p class="muted">No evidence bundles: none of this session's tests that failed wrote one.</p>{% endif %}
{% for v in views if v.evidence %}
<h3 id="evidence-{{ v.test.anchor }}"><a class="mono" href="{{ v.evidence }}">{{ v.evidence }}</a></h3>
<p>of <a class="mono" href="#{{ v.test.anchor }}">{{ v.test.nodeid }}</a></p>
{% for group, files, open in v.evidence_groups %}{% if group %}<details{% if open %} open{% endif %}><summary class="mono">{{ group }}/ ({{ files|length }} file{{ "" if files|length == 1 else "s" }})</summary>{% endif %}
<ul class="files">{% for name, href in files %}<li><a class="mono" href="{{ href }}">{{ name }}</a></li>{% endfor %}</ul>{% if group %}</details>{% endif %}
{% endfor %}
{% if v.evidence_more %}<p class="muted">and {{ v.evidence_more }} more files in the directory</p>{% endif %}
{% endfor %}
</section>

<section id="manifest">
<h2>Run manifest</h2>
{% if manifest_href %}<p><a class="mono" href="{{ manifest_href }}">{{ manifest_name }}</a> (re-run with <code>--harness-from-manifest {{ manifest_name }}</code>)</p>{% endif %}
{% if manifest %}<pre>{{ manifest }}</pre>{% else %}<p class="muted">No run manifest was recorded (no test bed in this session).</p>{% endif %}
</section>
</main>
<script>
(function () {
  var box = document.getElementById("only-failed");
  box.addEventListener("change", function () {
    document.querySelectorAll("#test-table tr[data-outcome]").forEach(function (row) {
      var ok = ["passed", "skipped", "xfailed"].indexOf(row.getAttribute("data-outcome")) >= 0;
      row.classList.toggle("hidden", box.checked && ok);
    });
  });
}());
</script>
</body>
</html>
"""  # noqa: E501 - HTML reads better unwrapped

_LEGEND = {"ok": "phase", "passed": "test passed", "failed": "failed", "error": "error", "skipped": "skipped",
           "xfailed": "xfailed", "xpassed": "xpassed"}


def render(*, page: Path, phases: Sequence[Phase], wall: float, epoch_started: float, tests: Iterable[TestRecord],
           bundle_dir: Path | None = None, manifest: Mapping[str, Any] | None = None,
           manifest_file: Path | None = None, files: Sequence[Path] = (), title: str = "") -> str:
    """The page's HTML. ``page`` is where it will be written (links are relative to it).

    ``epoch_started``: the session's start as ``time.time()``, to place the
    tests' report times (epoch) among the phases (seconds from the start).
    ``files``: beside the page (the JUnit report, the timeline), linked at the top.
    """
    try:  # Jinja2 comes with MLflow (the [pytest] extra); the records above do without it
        import jinja2
        from markupsafe import Markup
    except ImportError as exc:
        raise ImportError(f"the session report needs Jinja2 ({exc}): pip install Jinja2, or the [pytest] extra") \
            from exc
    page_dir = page.parent
    tests = sorted(tests, key=lambda t: (t.start, t.nodeid))
    views = []
    for t in tests:
        evidence: tuple[str, list[tuple[str, str]], int] = ("", [], 0)
        if bundle_dir is not None and t.outcome in ("failed", "error"):
            from harness.evidence import bundle_dir_for  # loads the kubernetes client: only for a failed test

            evidence = _evidence(bundle_dir_for(bundle_dir, t.nodeid), page_dir)
        views.append(_TestView(t, _phases_of(t, phases, epoch_started), *evidence))
    counts: dict[str, int] = {}
    for t in tests:
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    order = list(_LEGEND)
    workers = sorted({p.lane for p in phases if p.lane != "main"} | {t.worker for t in tests if t.worker != "main"})
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    context = {
        "title": title or f"harness session report: {page.name.removesuffix('.report.html')}",
        "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "wall": wall,
        "tests": tests,
        "views": views,
        "workers": workers,
        "counts": sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99),
        "colours": order,
        "legend": _LEGEND,
        "files": [(f.name, _href(f, page_dir)) for f in (*files, *([manifest_file] if manifest_file else []))
                  if f.exists()],
        "phases": list(phases),
        # harness.charts escapes every text it draws (the test names, notes): its SVG is markup as it stands.
        "timeline": Markup(timeline_svg(_bars(phases, tests), wall)) if phases else "",  # noqa: S704
        "runs": [(t, r) for t in tests for r in t.runs],
        "evidence_count": sum(1 for v in views if v.evidence),
        "manifest": json.dumps(manifest, indent=2, sort_keys=True, default=str) if manifest else "",
        "manifest_href": _href(manifest_file, page_dir) if manifest_file is not None and manifest_file.exists() else "",
        "manifest_name": manifest_file.name if manifest_file is not None else "",
    }
    return env.from_string(_TEMPLATE).render(context)


def write(page: Path, **kwargs: Any) -> Path:
    """Render the page (see :func:`render`) and write it atomically; return its path."""
    page.parent.mkdir(parents=True, exist_ok=True)
    text = render(page=page, **kwargs)
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(page)
    return page

