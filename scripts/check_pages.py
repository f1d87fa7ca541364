#!/usr/bin/env python3
"""Check HTML pages in a real headless browser: no console errors, no broken internal links, required elements.

For the harness's session report (``build/junit-e2e.report.html``) and any other
static pages, e.g. a docs site built into ``site/``. Independent of the harness:
the standard library and Selenium only.

Each page is loaded in Debian's ``chromium`` through its ``chromedriver`` (the
distribution ships both at one version, so they always match; nothing is
downloaded: Selenium Manager is never asked). Then:

* every console message of level SEVERE fails the page (``console.error``,
  uncaught exceptions, resources that did not load);
* every internal link (``href``/``src``/SVG ``href``, relative or same-origin)
  must point at an existing file or directory, and a ``#fragment`` at an
  element with that ``id`` (or an ``<a name>``) in the target page;
  external links (other hosts, ``mailto:``) are counted, not followed;
* every ``--require`` CSS selector must match at least one element;
* a PNG of the first screen is written to ``--screenshots DIR``.

Pages are loaded as ``file://`` URLs, or with ``--serve ROOT`` from a local
``http.server`` over ROOT (what a docs site needs: directory URLs, ``fetch`` of
its search index, root-relative links). Exit status: 0 all pages pass, 1 some
page failed a check, 2 bad usage or no browser.

    python scripts/check_pages.py --require svg.timeline --require svg.metric-plot \\
        --screenshots build/pages build/junit-e2e.report.html
    python scripts/check_pages.py --serve site --screenshots build/pages/site site
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["Checked", "Site", "anchors_in", "check_pages", "main", "resolve"]

LINKS_JS = """
const out = [];
for (const el of document.querySelectorAll('[href], [src], [*|href]')) {
  for (const attr of ['href', 'src', 'xlink:href']) {
    const value = el.getAttribute(attr);
    if (value === null || value === '') continue;
    let url = '';
    try { url = new URL(value, document.baseURI).href; } catch (e) { url = 'invalid:' + value; }
    out.push([el.tagName.toLowerCase(), attr, value, url]);
  }
}
return out;
"""

BROWSER_OWN = r"/favicon\.ico - Failed to load resource"
"""The browser asks a server for /favicon.ico by itself; a favicon the page links is checked as a link."""


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value and (key == "id" or (key == "name" and tag == "a")):
                self.found.add(value)


@functools.lru_cache(maxsize=256)
def anchors_in(path: Path) -> frozenset[str]:
    """The ``id``s (and ``<a name>``s) of an HTML file: what a ``#fragment`` may point at."""
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.found)


@dataclass(frozen=True)
class Site:
    """Where pages come from: ``file://`` URLs, or a local HTTP server's origin over ``root``."""

    root: Path | None = None
    origin: str = ""

    def url_of(self, page: Path) -> str:
        if self.root is None:
            return page.resolve().as_uri()
        rel = page.resolve().relative_to(self.root.resolve()).as_posix()
        return f"{self.origin}/{rel}"


def resolve(url: str, site: Site) -> tuple[str, Path | None, str]:
    """``(kind, local path, fragment)`` of a link: kind is ``internal``, ``external`` or ``ignored``."""
    parts = urlsplit(url)
    if parts.scheme in ("mailto", "tel", "javascript", "data", "blob", "about"):
        return "ignored", None, ""
    if parts.scheme == "file":
        return "internal", Path(unquote(parts.path)), unquote(parts.fragment)
    if site.root is not None and site.origin and (url == site.origin or url.startswith(site.origin + "/")):
        return "internal", site.root.resolve() / unquote(parts.path).lstrip("/"), unquote(parts.fragment)
    return "external", None, ""


def _target_problem(path: Path, fragment: str) -> str:
    """Why ``path#fragment`` does not resolve ('' when it does)."""
    if not path.exists():
        return "no such file"
    page = path / "index.html" if path.is_dir() else path
    if not fragment:
        return ""
    if not page.is_file() or page.suffix.lower() not in (".html", ".htm"):
        return f"#{fragment} points into {page.name}, which is not an HTML page"
    if fragment not in anchors_in(page):
        return f"no element with id {fragment!r} in {page}"
    return ""


@dataclass
class Checked:
    """What one page showed."""

    page: Path
    url: str
    problems: list[str] = field(default_factory=list)
    internal: int = 0
    external: int = 0
    screenshot: Path | None = None


def _quiet_handler(root: Path) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving(root: Path | None) -> Iterator[Site]:
    """A :class:`Site`: a local ``http.server`` over ``root`` for the duration, or plain files."""
    if root is None:
        yield Site()
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _quiet_handler(root))
    thread = threading.Thread(target=server.serve_forever, name="check-pages-http", daemon=True)
    thread.start()
    try:
        yield Site(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def _driver(chromium: str, chromedriver: str, width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which would try to download one) is never run.
    return webdriver.Chrome(options=options, service=Service(chromedriver))


def _shot_name(page: Path, base: Path | None) -> str:
    try:
        rel = page.resolve().relative_to(base.resolve()) if base is not None else Path(page.name)
    except ValueError:
        rel = Path(page.name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", rel.with_suffix("").as_posix()).strip("_") + ".png"


def check_pages(pages: Sequence[Path], *, require: Sequence[str] = (), screenshots: Path | None = None,
                serve: Path | None = None, allow_console: Sequence[str] = (), chromium: str = "/usr/bin/chromium",
                chromedriver: str = "/usr/bin/chromedriver", width: int = 1280, height: int = 800,
                base: Path | None = None, search: str | None = None) -> list[Checked]:
    """Load each page and check it (see the module's docstring); the browser is started once.

    ``search``: on the first page, type this into the site's search box (MkDocs Material's) and
    require at least one result, as a reader would see them.
    """
    allowed = [re.compile(p) for p in (*allow_console, BROWSER_OWN)]
    results: list[Checked] = []
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    with serving(serve) as site:
        driver = _driver(chromium, chromedriver, width, height)
        try:
            for page in pages:
                url = site.url_of(page)
                checked = Checked(page, url)
                results.append(checked)
                driver.get(url)
                driver.execute_script("return document.readyState")
                for entry in driver.get_log("browser"):
                    message = str(entry.get("message", ""))
                    if entry.get("level") == "SEVERE" and not any(p.search(message) for p in allowed):
                        checked.problems.append(f"console: {message}")
                seen: set[str] = set()
                for tag, attr, value, link in driver.execute_script(LINKS_JS):
                    kind, path, fragment = resolve(str(link), site)
                    if kind == "external":
                        checked.external += 1
                    if kind != "internal" or path is None:
                        continue
                    checked.internal += 1
                    if link in seen:
                        continue
                    seen.add(link)
                    problem = _target_problem(path, fragment)
                    if problem:
                        checked.problems.append(f"link <{tag} {attr}={value!r}>: {problem}")
                for selector in require:
                    if not _appears(driver, selector):
                        checked.problems.append(f"required element missing: {selector}")
                if search and page is pages[0]:
                    found = _search_problem(driver, search)
                    if found:
                        checked.problems.append(found)
                if screenshots is not None:
                    checked.screenshot = screenshots / _shot_name(page, base)
                    driver.execute_script("window.scrollTo(0, 0)")
                    driver.save_screenshot(str(checked.screenshot))
        finally:
            driver.quit()
    return results


def _appears(driver: Any, selector: str, timeout: float = 10.0) -> bool:
    """Whether ``selector`` matches within ``timeout``: pages render some parts after load (diagrams)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.2).until(
            lambda d: d.execute_script("return document.querySelectorAll(arguments[0]).length", selector))
    except TimeoutException:
        return False
    return True


def _search_problem(driver: Any, query: str, timeout: float = 20.0) -> str | None:
    """None if the site's search answers ``query`` with a result; else what went wrong."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    boxes = driver.find_elements(By.CSS_SELECTOR, "input.md-search__input")
    if not boxes:
        return "search: the page has no search box (input.md-search__input)"
    boxes[0].click()
    boxes[0].send_keys(query)
    try:
        WebDriverWait(driver, timeout).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".md-search-result__item")))
    except TimeoutException:
        return f"search: no result for {query!r} within {timeout:.0f} s (is search_index.json served?)"
    return None


def _expand(targets: Sequence[Path]) -> tuple[list[Path], Path | None]:
    """Files as given, directories as every ``*.html`` below them; and the common base (for screenshot names)."""
    pages: list[Path] = []
    for target in targets:
        if target.is_dir():
            pages += sorted(p for p in target.rglob("*.html") if p.is_file())
        else:
            pages.append(target)
    dirs = [t.resolve() for t in targets if t.is_dir()]
    return pages, (dirs[0] if len(dirs) == 1 else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_pages.py", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("targets", nargs="+", type=Path, help="HTML files, or directories (every *.html below)")
    parser.add_argument("--require", action="append", default=[], metavar="SELECTOR",
                        help="a CSS selector every page must match at least once (repeatable)")
    parser.add_argument("--screenshots", type=Path, metavar="DIR", help="write a PNG of each page's first screen")
    parser.add_argument("--serve", type=Path, metavar="ROOT",
                        help="load the pages from a local http.server over ROOT (docs sites) instead of file://")
    parser.add_argument("--allow-console", action="append", default=[], metavar="REGEX",
                        help="a console error to tolerate (repeatable)")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--chromedriver", default=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    parser.add_argument("--size", default="1280x800", help="the window (and first screen), WIDTHxHEIGHT")
    parser.add_argument("--search", metavar="QUERY",
                        help="on the first page, search the site (MkDocs Material) for QUERY: a result must appear")
    args = parser.parse_args(argv)
    pages, base = _expand(args.targets)
    missing = [p for p in pages if not p.is_file()]
    if missing or not pages:
        print(f"check_pages: no such page: {', '.join(map(str, missing)) or 'no *.html found'}", file=sys.stderr)
        return 2
    if args.serve is not None:
        outside = [p for p in pages if not p.resolve().is_relative_to(args.serve.resolve())]
        if outside:
            print(f"check_pages: pages outside --serve {args.serve}: {', '.join(map(str, outside))}", file=sys.stderr)
            return 2
    for tool, hint in ((args.chromium, "apt-get install -y chromium"),
                       (args.chromedriver, "apt-get install -y chromium-driver")):
        if shutil.which(tool) is None:
            print(f"check_pages: {tool} not found; fix (Debian, as root): {hint}", file=sys.stderr)
            return 2
    try:
        width, height = (int(n) for n in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size: expected WIDTHxHEIGHT, got {args.size!r}")
    try:
        import selenium  # noqa: F401 - said here rather than as a traceback
    except ImportError:
        print("check_pages: selenium is not installed; fix: pip install 'mlflow-crd-harness[pages]' "
              "(or tox -e pages)", file=sys.stderr)
        return 2
    results = check_pages(pages, require=args.require, screenshots=args.screenshots, serve=args.serve,
                          allow_console=args.allow_console, chromium=args.chromium, chromedriver=args.chromedriver,
                          width=width, height=height, base=base, search=args.search)
    bad = 0
    for r in results:
        shot = f"; first screen: {r.screenshot}" if r.screenshot else ""
        state = "FAILED" if r.problems else "ok"
        print(f"{state} {r.page}: {r.internal} internal links, {r.external} external (not followed), "
              f"{len(args.require)} required selectors{shot}")
        for problem in r.problems:
            print(f"  - {problem}")
        bad += bool(r.problems)
    print(f"{len(results) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
