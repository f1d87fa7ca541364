"""The pytest plugin: options, tier markers, session fixtures, phase summary.

Registered from the repository's ``conftest.py`` (``pytest_plugins``). Fixtures
are thin: each wraps one resource from the package (an image, a server, a
cluster) so the same code also works from the CLI and scripts.

A prerequisite that is missing (no Docker, say) skips the tier *with the reason
printed*; ``--no-skip`` (or ``HARNESS_NO_SKIP=1``, set by tox and CI) turns
that skip into a failure, so a CI run can never go green by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from harness import baseimage, images
from harness.platform import build_trainer_image
from harness.timing import Phases
from harness.tracking_server import LocalTrackingServer

_PHASES = pytest.StashKey[Phases]()


def env_flag(name: str) -> bool:
    """An on/off environment variable: unset, empty, ``0`` and ``false`` mean off."""
    return os.environ.get(name, "").lower() not in ("", "0", "false")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "mlflow-crd-harness")
    group.addoption("--no-skip", action="store_true",
                    default=env_flag("HARNESS_NO_SKIP"),
                    help="fail instead of skipping when a tier's prerequisites are missing (CI; env HARNESS_NO_SKIP=1)")
    group.addoption("--base-image", default=None,
                    help="image to build FROM (env HARNESS_BASE_IMAGE); default: chosen automatically")
    group.addoption("--base-mode", choices=("auto", "public", "local"), default=None,
                    help="auto: public image if pullable, else build from the Debian mirror (env HARNESS_BASE_MODE)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_PHASES] = Phases()


def missing_prerequisite(config: pytest.Config, reason: str) -> NoReturn:
    """Skip with ``reason``, or fail under ``--no-skip``."""
    if config.getoption("--no-skip"):
        pytest.fail(f"prerequisite missing (and --no-skip is set): {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def phases(pytestconfig: pytest.Config) -> Phases:
    """The session's phase timer (summarised at the end of the run)."""
    return pytestconfig.stash[_PHASES]


@pytest.fixture(scope="session")
def docker_ready(pytestconfig: pytest.Config) -> None:
    """Docker answers, or the tier is skipped/failed with the fix."""
    import docker
    import docker.errors

    try:
        docker.from_env(timeout=10).ping()
    except (docker.errors.DockerException, OSError) as exc:
        missing_prerequisite(pytestconfig, f"Docker engine not reachable ({exc}); fix: sudo scripts/docker-up.sh")


@pytest.fixture(scope="session")
def base_image(pytestconfig: pytest.Config, docker_ready: None, phases: Phases) -> str:
    """The image our Dockerfiles build FROM (public, or built registry-less)."""
    with phases.phase("base image") as note:
        choice = baseimage.resolve_base_image(
            mode=pytestconfig.getoption("--base-mode"), override=pytestconfig.getoption("--base-image")
        )
        note["note"] = f"{choice.source}: {choice.image}"
    return choice.image


@pytest.fixture(scope="session")
def trainer_image(base_image: str, phases: Phases) -> images.BuiltImage:
    """The trainer image, also tagged as the MLproject's ``docker_env.image``."""
    with phases.phase("build trainer image") as note:
        built = build_trainer_image(base_image)
        note["note"] = f"{built.tag} {built.size_bytes / 1e6:.0f} MB{' (reused)' if built.reused else ''}"
    return built


@pytest.fixture(scope="session")
def local_tracking_server(tmp_path_factory: pytest.TempPathFactory, phases: Phases) -> Iterator[LocalTrackingServer]:
    """A real ``mlflow server`` on loopback (sqlite, proxied artifacts, explicit allowed hosts)."""
    with phases.phase("start local MLflow server"):
        server = LocalTrackingServer(tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    found = config.stash.get(_PHASES, None)
    if not found or not found.items:
        return
    terminalreporter.write_sep("=", "harness phase timings")
    terminalreporter.write_line(found.table())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write("\n### Harness phase timings\n\n" + found.markdown() + "\n")


def pytest_sessionfinish(session: pytest.Session) -> None:
    found = session.config.stash.get(_PHASES, None)
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


_TIERS = ("unit", "docker", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its directory (tests/<tier>/...), so ``-m`` selects tiers."""
    for item in items:
        parts = Path(str(item.path)).parts
        for tier in _TIERS:
            if tier in parts and not item.get_closest_marker(tier):
                item.add_marker(getattr(pytest.mark, tier))
