"""Unit tier: the page checker's link rules (scripts/check_pages.py), without a browser.

The browser part runs in ``tox -e pages`` (Debian's chromium); here: which
links count as internal, and when a file or ``#fragment`` resolves.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_pages.py"


@pytest.fixture(scope="module")
def pages() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_pages", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_pages"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_links_are_internal_by_scheme_or_origin(pages: ModuleType, tmp_path: Path) -> None:
    plain = pages.Site()
    assert pages.resolve((tmp_path / "a b.html").as_uri() + "#x", plain) == ("internal", tmp_path / "a b.html", "x")
    assert pages.resolve("https://example.org/x", plain)[0] == "external"
    assert pages.resolve("mailto:a@b", plain)[0] == "ignored"
    served = pages.Site(tmp_path, "http://127.0.0.1:8000")
    assert pages.resolve("http://127.0.0.1:8000/docs/", served) == ("internal", tmp_path.resolve() / "docs", "")
    assert pages.resolve("http://127.0.0.1:8001/docs/", served)[0] == "external"


def test_a_target_resolves_to_a_file_and_an_element(pages: ModuleType, tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text('<h1 id="top">t</h1><a name="old">o</a><div id="x"></div>')
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text('<p id="intro"></p>')
    problem = pages._target_problem
    assert problem(page, "") == ""
    assert problem(page, "top") == ""
    assert problem(page, "old") == ""
    assert "no element with id 'nope'" in problem(page, "nope")
    assert problem(tmp_path / "missing.html", "") == "no such file"
    assert problem(tmp_path / "docs", "intro") == ""   # a directory URL: its index.html
    (tmp_path / "f.txt").write_text("x")
    assert "not an HTML page" in problem(tmp_path / "f.txt", "a")


def test_screenshot_names_follow_the_page_path(pages: ModuleType, tmp_path: Path) -> None:
    assert pages._shot_name(tmp_path / "site" / "a" / "index.html", tmp_path / "site") == "a_index.png"
    assert pages._shot_name(tmp_path / "junit-e2e.report.html", None) == "junit-e2e.report.png"
