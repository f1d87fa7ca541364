"""The pytest plugin (entry point ``pytest11: mlflow-crd-harness``): options, markers, fixtures, reports.

Installed with the package, it is active in every pytest run of that
environment; it does nothing costly until a test asks for one of its
fixtures. Options are generated from :data:`harness.settings.OPTIONS`
(``--harness-<key>``, env ``HARNESS_<KEY>``, key ``<key>`` in
``[tool.mlflow-crd-harness]``), and the settings are resolved once at startup,
so a misspelt key or a bad value stops the run before any test with the key
and the fix.

Tiers: the markers ``unit``, ``docker``, ``e2e`` and ``fault`` are registered
here (``--strict-markers`` works in a project that declares none). A test is
marked by the fixtures it uses (any e2e fixture → ``e2e``; the docker tier's →
``docker``) or by a directory of that name *below the rootdir*
(``tests/e2e/...``), never by a directory above it such as ``/srv/docker``.

A prerequisite that is missing (no Docker, say) skips the tier *with the
reason printed*; ``--harness-no-skip`` (``HARNESS_NO_SKIP=1``, set by tox and
CI) turns that skip into a failure, so a CI run can never go green by skipping.

Parallel runs (``pytest -n N``, pytest-xdist): the workers share one test bed
(:mod:`harness.pytest_plugin.shared`), print their progress prefixed with
their id, and hand their phases, ending lines and the MLflow runs their tests
made to the controller, which prints the one summary and writes the one
session report (:mod:`harness.report`, beside the JUnit report).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import interrupts, leftovers, manifest, quickexit
from harness._errors import HarnessError
from harness.pytest_plugin import fixtures

# The fixtures become this plugin module's attributes, which is how pytest finds them.
from harness.pytest_plugin.fixtures import *  # noqa: F403 - exactly fixtures.__all__
from harness.pytest_plugin.shared import XdistRun
from harness.pytest_plugin.state import (
    INTERRUPTS,
    MANIFEST,
    PHASES,
    REPORTS,
    SETTINGS,
    ending_lines,
    missing_prerequisite,
    note_ending,
    record_manifest,
    terminal_sink,
)
from harness.settings import OPTIONS, ConfigError, Option, load_settings
from harness.timing import Phases

if TYPE_CHECKING:
    from harness import report

__all__ = ["SHAPES", "TIERS", "missing_prerequisite", *fixtures.__all__]

TESTS = pytest.StashKey[dict[str, "report.TestRecord"]]()
"""Each test's outcome and times, by node id, from the reports (the controller's, under xdist)."""
RUNS = pytest.StashKey[dict[str, dict[str, Any]]]()
"""Each test's MLflow runs, by node id, read where the test ran: ``{"runs": [RunRecord.to_json()], "error": ""}``."""

TIERS = {
    "unit": "fast, pure tests: no Docker, no cluster",
    "docker": "needs a Docker engine; runs an MLflow project with `mlflow run` (no cluster)",
    "e2e": "needs Docker and a cluster (kind or existing); runs projects through a CustomJob",
    "fault": "e2e under faults: interrupts, restarts, concurrent sessions",
}
SHAPES = {
    "multinode": "needs a kind cluster with worker nodes (workers >= 1); deselect it on single-node runs",
    "kubeflow": "needs Kubeflow's training-operator in the stack (stack preset kubeflow-training-operator); "
                "deselect it elsewhere",
}
"""Markers for cluster shapes a test needs, beside the tiers (select with ``-m``)."""
_E2E_FIXTURES = frozenset({"testbed", "e2e_stack", "e2e_namespace", "project_runner", "project_run", "e2e_kube",
                           "e2e_mlflow_client"})
_DOCKER_FIXTURES = frozenset({"docker_ready", "base_image", "harness_images", "local_tracking_server"})


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add(group: pytest.OptionGroup, opt: Option) -> None:
    help_text = f"{opt.help} [env {opt.env}; default: {opt.describe_default()}]"
    if opt.kind == "bool":
        group.addoption(opt.pytest_flag, dest=opt.dest, default=None, nargs="?", const=True, type=_bool,
                        metavar="BOOL", help=help_text)
    elif opt.kind == "choice":
        group.addoption(opt.pytest_flag, dest=opt.dest, default=None, choices=opt.choices, help=help_text)
    else:
        group.addoption(opt.pytest_flag, dest=opt.dest, default=None, help=help_text)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlflow-crd-harness", "mlflow-crd-harness (settings: [tool.mlflow-crd-harness])")
    for opt in OPTIONS:
        _add(group, opt)


def pytest_configure(config: pytest.Config) -> None:
    quickexit.skip_final_collection()  # the developer waits for the process to end, not for its last collection
    for name, text in {**TIERS, **SHAPES}.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.stash[PHASES] = Phases(sink=terminal_sink(config), verbose=config.get_verbosity() >= 0)
    # What the signal handlers recorded is said by _SayInterrupt, from the main thread (see harness.interrupts).
    config.stash[INTERRUPTS] = interrupts.install(config.stash[PHASES].log)
    config.pluginmanager.register(_SayInterrupt(config), "mlflow-crd-harness-interrupts")
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Reports(config), "mlflow-crd-harness-reports")
    explicit = {o.key: config.getoption(o.dest) for o in OPTIONS}
    try:
        config.stash[SETTINGS] = load_settings(root=Path(config.rootpath), explicit=explicit)
    except ConfigError as exc:
        raise pytest.UsageError(f"mlflow-crd-harness: {exc}") from exc


class _SayInterrupt:
    """Says what the signals did, from the main thread: when pytest reports the interrupt (before the
    teardown starts), and after the teardown (the signals it ignored)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def _flush(self) -> None:
        if (installed := self.config.stash.get(INTERRUPTS, None)) is not None:
            installed.flush()

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self._flush()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._flush()


def pytest_unconfigure(config: pytest.Config) -> None:
    if (installed := config.stash.get(INTERRUPTS, None)) is not None:
        installed.restore()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier: by the fixtures it uses, else by a tier directory below the rootdir."""
    root = Path(config.rootpath)
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        tier = "e2e" if names & _E2E_FIXTURES else "docker" if names & _DOCKER_FIXTURES else None
        if tier is None:
            try:
                parts = Path(str(item.path)).resolve().relative_to(root.resolve()).parts[:-1]
            except ValueError:
                parts = ()
            tier = next((p for p in parts if p in TIERS), None)
        if tier and not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    """Each docker/e2e/fault test's own wall time is a phase: live start/end lines, heartbeats, a summary row.

    Those tests run for tens of seconds to minutes each; without their own
    lines a terminal or CI log would show nothing while one runs.
    """
    if not any(item.get_closest_marker(tier) for tier in ("docker", "e2e", "fault")):
        return (yield)
    with item.config.stash[PHASES].phase(f"test {item.name}"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    if report.when == "call" and "project_runner" in getattr(item, "funcargs", {}):
        _record_runs(item)
    return report


def _record_runs(item: pytest.Item) -> None:
    """The MLflow runs of a test that ran projects, read now: the tracking server is up until the session ends.

    Never fails the test: what could not be read is said in the report.
    """
    runner = item.funcargs["project_runner"]  # type: ignore[attr-defined]
    started = time.monotonic()
    entry: dict[str, Any] = {"runs": [], "error": ""}
    try:
        from harness import report

        entry["runs"] = [r.to_json() for r in report.collect_runs(runner.client, f"{runner.namespace}-",
                                                                  runner.stack.tracking_uri)]
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
    item.config.stash.setdefault(RUNS, {})[item.nodeid] = entry
    spent = time.monotonic() - started
    if spent > 2 or entry["error"]:
        item.config.stash[PHASES].log(f"report: read {len(entry['runs'])} MLflow runs of {item.name} in "
                                      f"{spent:.1f} s{'; ' + entry['error'] if entry['error'] else ''}")


class _Reports:
    """Each test's outcome, process and times for the session report, from its reports (setup, call, teardown).

    Kept where the report is written: under xdist the controller, which sees every worker's reports.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from harness.report import TestRecord

        tests = self.config.stash.setdefault(TESTS, {})
        node = getattr(report, "node", None)
        worker = str(getattr(report, "worker_id", None) or getattr(getattr(node, "gateway", None), "id", "main"))
        record = tests.setdefault(report.nodeid, TestRecord(report.nodeid, worker=worker))
        text = ""
        if report.failed and report.longrepr is not None:
            text = report.longreprtext
        elif report.skipped and isinstance(report.longrepr, tuple):
            text = str(report.longrepr[2])
        record.add(report.when, report.outcome, start=report.start, stop=report.stop, duration=report.duration,
                   text=text, xfail=hasattr(report, "wasxfail"))


def _xdist_run(config: pytest.Config) -> XdistRun | None:
    settings = config.stash.get(SETTINGS, None)
    return XdistRun.of_session(config, settings.state_dir) if settings is not None else None


def pytest_sessionstart(session: pytest.Session) -> None:
    if (run := _xdist_run(session.config)) is not None:
        run.started()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Reap what a killed session left (its mlflow server, port-forwards, build containers), only when this one
    will run a test of a tier that makes such things: a unit run, --collect-only or --fixtures touches no
    process and no Docker. (The test bed reaps again when it starts, under xdist on the worker that owns it.)"""
    config = session.config
    if config.option.collectonly or getattr(config.option, "showfixtures", False) or \
            getattr(config.option, "show_fixtures_per_test", False) or _xdist_run(config) is not None:
        return
    if not any(item.get_closest_marker(tier) for item in session.items for tier in ("docker", "e2e", "fault")):
        return
    try:
        leftovers.reap(config.stash[PHASES].log)
    except HarnessError as exc:  # no docker CLI at all: nothing of ours can be running there either
        config.stash[PHASES].log(f"leftovers: not checked ({exc})")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: take a finished worker's phases and ending lines into this session's summary."""
    data = (getattr(node, "workeroutput", None) or {}).get("harness")
    found = node.config.stash.get(PHASES, None)
    if not data or found is None:
        return
    offset = data["epoch_started"] - (time.time() - (found.clock() - found.started))
    for item in data["phases"]:
        found.add(f"[{data['worker']}] {item['name']}", item["seconds"], ok=item["ok"], note=item["note"],
                  start=item["start"] + offset)
    for line in data["ending"]:
        note_ending(node.config, line)
    if data.get("manifest"):
        record_manifest(node.config, data["manifest"])
    node.config.stash.setdefault(RUNS, {}).update(data.get("runs") or {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller prints the summary (pytest_testnodedown)
        return
    found = config.stash.get(PHASES, None)
    xml_path = getattr(config.option, "xmlpath", None)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    page = Path(xml_path).with_suffix(".report.html") if xml_path else None
    timeline = Path(xml_path).with_suffix(".timeline.svg") if xml_path else None
    if found and found.items:
        found.close()
        terminalreporter.write_sep("=", "harness phase timings")
        terminalreporter.write_line(found.table())
        if summary:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write("\n### Harness phase timings\n\n" + found.markdown() + "\n\n" + found.mermaid() + "\n")
        if timeline is not None:
            timeline.parent.mkdir(parents=True, exist_ok=True)
            timeline.write_text(found.svg())
            note_ending(config, f"phase timeline: {timeline}")
    if xml_path and page is not None and found is not None:
        written = _write_report(config, page, found, files=[Path(xml_path), *([timeline] if timeline else [])])
        if summary and written:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(_summary_link(page))
    lines = ending_lines(config)  # after the timeline and the report, so their paths are among them
    if lines:
        terminalreporter.write_sep("=", "harness: what is left and where")
        for line in lines:
            terminalreporter.write_line(line)


def _write_report(config: pytest.Config, page: Path, found: Phases, files: list[Path]) -> bool:
    """The session report beside the JUnit report (:mod:`harness.report`); a failure to write it is said, never
    raised (the tests' outcome stands). True if it was written."""
    try:
        with found.phase("write session report") as note:
            from harness import report

            settings = config.stash.get(SETTINGS, None)
            runs = config.stash.get(RUNS, {})
            tests = list(config.stash.get(TESTS, {}).values())
            for test in tests:
                entry = runs.get(test.nodeid) or {}
                test.runs = [report.RunRecord.from_json(r) for r in entry.get("runs", ())]
                test.runs_error = str(entry.get("error") or "")
            manifest_file = (manifest.manifest_path_for(str(files[0]), settings.state_dir)
                             if settings is not None else None)
            report.write(page, phases=list(found.items), wall=found.wall(),
                         epoch_started=time.time() - found.wall(), tests=tests,
                         bundle_dir=settings.bundle_dir if settings is not None else None,
                         manifest=config.stash.get(MANIFEST, None), manifest_file=manifest_file, files=files)
            note["note"] = f"{len(tests)} tests, {sum(len(t.runs) for t in tests)} MLflow runs"
    except Exception as exc:
        note_ending(config, f"session report: not written ({type(exc).__name__}: {exc})")
        return False
    else:
        note_ending(config, f"session report: {page}")
        return True
    finally:
        found.close()


def _summary_link(page: Path) -> str:
    """The GitHub step summary's pointer to the report: the run's artifacts, where CI uploads build/."""
    where = ""
    server, repo, run_id = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if server and repo and run_id:
        where = f" in [this run's artifacts]({server}/{repo}/actions/runs/{run_id}#artifacts)"
    return f"\n**Session report**: `{page}`{where} (one HTML page: timeline, tests, MLflow runs, evidence, manifest)\n"


@pytest.hookimpl(tryfirst=True)  # before junitxml's own sessionfinish writes the report with these properties
def pytest_sessionfinish(session: pytest.Session) -> None:
    found = session.config.stash.get(PHASES, None)
    if (run := _xdist_run(session.config)) is not None:
        run.finished(session.testsfailed)
        if found is not None:
            found.close()
            session.config.workeroutput["harness"] = {  # type: ignore[attr-defined]
                "worker": run.worker, "ending": ending_lines(session.config),
                "manifest": session.config.stash.get(MANIFEST, {}),
                "epoch_started": time.time() - (found.clock() - found.started),
                "phases": [dataclasses.asdict(p) for p in found.items],
                "runs": session.config.stash.get(RUNS, {}),
            }
        return
    _write_manifest(session)
    if not found or not found.items:
        return
    try:
        from _pytest.junitxml import xml_key  # pytest's own JUnit writer, if --junitxml is on
    except ImportError:  # pragma: no cover - pytest internals moved
        return
    xml = session.config.stash.get(xml_key, None)
    if xml is not None:
        for p in found.items:
            xml.add_global_property(f"phase.{p.name}.seconds", f"{p.seconds:.1f}")


def _write_manifest(session: pytest.Session) -> None:
    """This session's run manifest next to its JUnit report; with ``from-manifest``, the project images checked.

    The test bed refused at startup what it could not reproduce; the project
    images exist only once the tests ran them, so they are compared here, and
    a difference fails the session with the field and both digests.
    """
    config = session.config
    recorded_now = config.stash.get(MANIFEST, None)
    settings = config.stash.get(SETTINGS, None)
    if not recorded_now or settings is None:
        return
    path = manifest.write(manifest.manifest_path_for(getattr(config.option, "xmlpath", None), settings.state_dir),
                          recorded_now)
    note_ending(config, f"run manifest: {path} (re-run with --harness-from-manifest {path})")
    source = settings.general.from_manifest
    if source is None:
        return
    diffs = [d for d in manifest.compare(manifest.load(source), recorded_now, images_in_both_only=True)
             if d.startswith("images.")]
    if diffs:
        note_ending(config, f"NOT reproduced: {source}:")
        for d in diffs:
            note_ending(config, f"  {d}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        note_ending(config, f"reproduced: {source} (every recorded version and digest this run used matches)")
