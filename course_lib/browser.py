"""Headless Chromium for the course's built pages: the deck and the website, checked offline.

:func:`find_chromium` and :data:`CHROMIUM_ARGS` are shared by the deck's check
(``slides/browser_check.py``) and the website's (:func:`check_site`, run by
``python -m course_lib.site --check`` and the tests).  Playwright's Python API drives the
system's Chromium (Debian package ``chromium``, or ``$COURSE_CHROMIUM``); no browser is
downloaded.  Standard library at import time; Playwright is imported when a check runs.

:func:`check_site` opens every HTML page of a built site from disk and reports, per page:

- every request that is not a local file (``file:``, ``data:``, ``blob:``, ``about:``): it is
  refused and reported, so a script, style, font or maths renderer from a CDN shows up;
- local files the page asks for that do not exist (a missing stylesheet, script, image);
- images that did not decode;
- links (``<a href>``) to a local file that does not exist, or to an ``#anchor`` that the
  target page does not have;
- console errors and uncaught exceptions;
- optionally, that the search page finds a word.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

CHROMIUM_ENV = "COURSE_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The flags Chromium needs as root in a container with no network (see the developers' notes).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
#: URL schemes a page may load without the network.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


class BrowserUnavailable(RuntimeError):
    """No Chromium (or no Playwright) here; the message says how to get one."""


def find_chromium() -> str:
    """Path of a Chromium executable: ``$COURSE_CHROMIUM`` or the first one on PATH."""
    env = os.environ.get(CHROMIUM_ENV)
    if env:
        if not Path(env).is_file():
            raise BrowserUnavailable(f"{CHROMIUM_ENV}={env} is not a file.")
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserUnavailable(
        "no Chromium found. On Debian/Ubuntu: sudo apt-get install chromium; elsewhere install "
        f"Chromium or Chrome and set {CHROMIUM_ENV} to its executable.")


def sync_playwright():
    """Playwright's ``sync_playwright``; :class:`BrowserUnavailable` when it is not installed."""
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError as err:
        raise BrowserUnavailable("Playwright is not installed: pip install -e '.[dev]'.") from err
    return start


# =========================================================================== the website check
@dataclass
class PageReport:
    """What the browser saw on one page (``path`` relative to the site's folder)."""

    path: str
    images: int = 0
    broken_images: list = field(default_factory=list)
    links: int = 0
    broken_links: list = field(default_factory=list)
    missing_files: list = field(default_factory=list)
    blocked_requests: list = field(default_factory=list)
    console_errors: list = field(default_factory=list)

    def problems(self) -> list:
        """One line per problem of this page."""
        found = [f"{self.path}: asked the network for {url} (refused; everything must be "
                 f"local)" for url in self.blocked_requests]
        found += [f"{self.path}: missing file {url}" for url in self.missing_files]
        found += [f"{self.path}: image did not decode: {src}" for src in self.broken_images]
        found += [f"{self.path}: broken link {href} ({why})" for href, why in self.broken_links]
        found += [f"{self.path}: console: {text}" for text in self.console_errors]
        return found


@dataclass
class SiteReport:
    """What the browser saw on every page of a site (``ok`` when ``problems`` is empty)."""

    root: str
    pages: list = field(default_factory=list)
    search: dict = field(default_factory=dict)
    screenshot: str | None = None
    extra_problems: list = field(default_factory=list)

    @property
    def problems(self) -> list:
        return [p for page in self.pages for p in page.problems()] + self.extra_problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, limit: int = 40) -> str:
        pages = self.pages
        lines = [f"Chromium: {len(pages)} pages of {self.root}: "
                 f"{sum(p.images for p in pages)} images "
                 f"({sum(len(p.broken_images) for p in pages)} broken), "
                 f"{sum(p.links for p in pages)} links "
                 f"({sum(len(p.broken_links) for p in pages)} broken), "
                 f"{sum(len(p.console_errors) for p in pages)} console errors, "
                 f"{sum(len(p.blocked_requests) for p in pages)} network requests refused, "
                 f"{sum(len(p.missing_files) for p in pages)} missing files."]
        if self.search:
            lines.append(f"Search for {self.search['query']!r}: {self.search['results']} "
                         f"results.")
        if self.screenshot:
            lines.append(f"Screenshot of the landing page: {self.screenshot}")
        problems = self.problems
        lines += [f"PROBLEM: {p}" for p in problems[:limit]]
        if len(problems) > limit:
            lines.append(f"... and {len(problems) - limit} more problems.")
        lines.append("Browser check passed." if not problems else "Browser check FAILED.")
        return "\n".join(lines)


def site_pages(root) -> list:
    """The HTML pages of a built site, sorted: every ``*.html`` outside the folders whose name
    starts with ``_`` or ``.`` (Sphinx's ``_static``, ``_sources``, ...)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*.html")
                  if not any(part.startswith(("_", ".")) for part in
                             p.relative_to(root).parts[:-1]))


_ID_RE = re.compile(r"""\s(?:id|name)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)


def html_anchors(path) -> set:
    """Every ``id`` and ``name`` attribute value in the HTML file ``path``."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return {next(g for g in m.groups() if g is not None) for m in _ID_RE.finditer(text)}


def link_problem(href: str, anchors_of) -> str:
    """Why the absolute URL ``href`` of a link is broken ("" if it is fine or not local):
    a ``file:`` URL whose file does not exist, or whose ``#anchor`` the target page lacks.
    ``anchors_of(path)`` returns the anchors of an HTML file (cached by the caller)."""
    parts = urlsplit(href)
    if parts.scheme != "file":
        return ""
    path = Path(url2pathname(unquote(parts.path)))
    if path.is_dir():
        if not (path / "index.html").is_file():
            return "a folder without index.html"
        path = path / "index.html"
    if not path.is_file():
        return "no such file"
    fragment = unquote(parts.fragment)
    if fragment and path.suffix.lower() in (".html", ".htm") and fragment not in anchors_of(path):
        return f"no anchor #{fragment} in {path.name}"
    return ""


# The page's images, each waited for (lazy ones made eager); the sources that did not decode.
_BROKEN_IMAGES_JS = """async () => {
  const imgs = Array.from(document.images);
  const bad = [];
  for (const img of imgs) {
    img.loading = 'eager';
    try { await img.decode(); } catch (e) { bad.push(img.currentSrc || img.src); continue; }
    if (!img.complete || (img.naturalWidth === 0 && !/\\.svg(\\?|#|$)/i.test(img.src))) {
      bad.push(img.currentSrc || img.src);
    }
  }
  return [imgs.length, bad];
}"""
# Wait for what typesets or lays out after the load event: MathJax, fonts.
_SETTLE_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  if (document.fonts && document.fonts.ready) { await document.fonts.ready; }
}"""


def check_site(root, pages=None, search: str | None = None, screenshot=None,
               timeout_ms: int = 30000) -> SiteReport:
    """Open every page of the site in ``root`` (or ``pages``, paths under it) in headless
    Chromium with the network refused, and return a :class:`SiteReport`.

    ``search``: a word that the site's ``search.html`` must find (skipped when the site has no
    search page).  ``screenshot``: a PNG of the landing page (``index.html``) to write.
    """
    start = sync_playwright()
    executable = find_chromium()
    root = Path(root).resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root / 'index.html'} does not exist; build the site first "
                                f"(make site).")
    paths = [Path(p).resolve() for p in (pages or site_pages(root))]
    report = SiteReport(str(root))
    anchors = {}

    def anchors_of(path):
        if path not in anchors:
            anchors[path] = html_anchors(path)
        return anchors[path]

    current = [PageReport("")]

    def on_route(route):
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            current[0].blocked_requests.append(url)
            route.abort()

    def on_failed(request):
        if request.url.startswith("file:"):
            current[0].missing_files.append(request.url)

    def on_console(msg):
        if msg.type in ("error", "assert"):
            text = msg.text
            # the refusals and missing files are reported once, by the handlers above
            if not text.startswith("Failed to load resource"):
                current[0].console_errors.append(text)

    with start() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(timeout_ms)
            page.route("**/*", on_route)
            page.on("requestfailed", on_failed)
            page.on("console", on_console)
            page.on("pageerror", lambda err: current[0].console_errors.append(f"uncaught: {err}"))
            for path in paths:
                current[0] = PageReport(path.relative_to(root).as_posix())
                report.pages.append(current[0])
                page.goto(path.as_uri(), wait_until="load")
                page.evaluate(_SETTLE_JS)
                current[0].images, current[0].broken_images = page.evaluate(_BROKEN_IMAGES_JS)
                hrefs = page.evaluate("Array.from(document.querySelectorAll('a[href]'))"
                                      ".map(a => a.href)")
                current[0].links = len(hrefs)
                for href in dict.fromkeys(hrefs):
                    why = link_problem(href, anchors_of)
                    if why:
                        current[0].broken_links.append((href, why))
                if screenshot and path == root / "index.html":
                    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshot), full_page=False)
                    report.screenshot = str(screenshot)
            if search and (root / "search.html").is_file():
                current[0] = PageReport(f"search.html?q={search}")
                report.pages.append(current[0])
                page.goto((root / "search.html").as_uri() + f"?q={search}", wait_until="load")
                try:  # Sphinx's summary line says when the search has finished
                    page.wait_for_function(
                        "() => /found|did not match/i.test(document.querySelector("
                        "'#search-results .search-summary')?.textContent || '')",
                        timeout=min(timeout_ms, 10000))
                except Exception:  # noqa: BLE001 - playwright's TimeoutError: no summary
                    pass
                found = page.locator("#search-results li").count()
                report.search = {"query": search, "results": found}
                if not found:
                    report.extra_problems.append(f"search.html: searching {search!r} found "
                                                 f"nothing")
        finally:
            browser.close()
    return report
