"""Open the built deck in headless Chromium and check that it really works offline.

    python -m slides.build --check        # build, then run this check

Checks: the page loads from disk with every network request other than the file itself
refused (so a CDN reference would show up), the expected number of slides exists, exactly one
is shown, the keyboard moves between slides (and ``#N`` opens slide N), every figure image
decoded, and the browser console shows no errors or uncaught exceptions.  A screenshot of the
title slide is saved where asked (``build/slides/title-slide.png``; build/ is not in git).

Uses Playwright's Python API with the system's Chromium (Debian package ``chromium``); no
browser is downloaded; finding and starting it is shared with the website's check
(:mod:`course_lib.browser`).  Used by ``tests/test_slides.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from course_lib.browser import (CANDIDATES, CHROMIUM_ARGS, CHROMIUM_ENV,  # noqa: F401
                                BrowserUnavailable, find_chromium)


@dataclass
class BrowserReport:
    """What the headless browser saw (``ok`` is True when ``problems`` is empty)."""

    slides: int = 0
    visible: int = 0
    navigation: dict = field(default_factory=dict)
    images: int = 0
    broken_images: int = 0
    console_errors: list = field(default_factory=list)
    blocked_requests: list = field(default_factory=list)
    screenshot: str | None = None
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"Chromium: {self.slides} slides ({self.visible} shown at a time), "
                 f"{self.images} images ({self.broken_images} broken), "
                 f"{len(self.console_errors)} console errors, "
                 f"{len(self.blocked_requests)} network requests refused; navigation "
                 f"{self.navigation}."]
        if self.screenshot:
            lines.append(f"Title slide screenshot: {self.screenshot}")
        lines += [f"PROBLEM: {p}" for p in self.problems]
        lines.append("Browser check passed." if self.ok else "Browser check FAILED.")
        return "\n".join(lines)


def check_deck_in_browser(html_path, expected_slides: int | None = None, screenshot=None,
                          timeout_ms: int = 30000) -> BrowserReport:
    """Load ``html_path`` in headless Chromium and return a :class:`BrowserReport`."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise BrowserUnavailable("Playwright is not installed: pip install -e '.[dev]'.") from err
    executable = find_chromium()
    path = Path(html_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; build the deck first (make slides).")
    url = path.as_uri()
    report = BrowserReport()

    def on_route(route):
        req = route.request.url
        if req.split("#")[0] == url or req.startswith("data:"):
            route.continue_()
        else:
            report.blocked_requests.append(req)
            route.abort()

    def on_console(msg):
        if msg.type in ("error", "assert"):
            report.console_errors.append(msg.text)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.set_default_timeout(timeout_ms)
            page.route("**/*", on_route)
            page.on("console", on_console)
            page.on("pageerror", lambda err: report.console_errors.append(f"uncaught: {err}"))
            page.goto(url, wait_until="load")
            report.slides = page.locator("section.slide").count()
            report.visible = page.evaluate(
                "Array.from(document.querySelectorAll('section.slide'))"
                ".filter(s => getComputedStyle(s).display !== 'none').length")
            report.images = page.locator("section.slide img").count()
            report.broken_images = page.evaluate(
                "Array.from(document.querySelectorAll('section.slide img'))"
                ".filter(i => !(i.complete && i.naturalWidth > 0)).length")
            if screenshot:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
                report.screenshot = str(screenshot)

            def current():
                return page.evaluate("document.querySelector('section.slide.current')?.id")

            nav = {"start": current()}
            page.keyboard.press("ArrowRight")
            nav["ArrowRight"] = current()
            page.keyboard.press("End")
            nav["End"] = current()
            page.keyboard.press("ArrowLeft")
            nav["End, ArrowLeft"] = current()
            page.keyboard.press("Home")
            nav["Home"] = current()
            page.goto(f"{url}#3", wait_until="load")
            page.reload(wait_until="load")
            nav["#3"] = current()
            report.navigation = nav
        finally:
            browser.close()

    n = report.slides
    if expected_slides is not None and n != expected_slides:
        report.problems.append(f"{n} slides rendered, {expected_slides} expected.")
    if n == 0:
        report.problems.append("no <section class='slide'> found.")
    if report.visible != 1:
        report.problems.append(f"{report.visible} slides shown at once (1 expected).")
    want = {"start": "slide-1", "ArrowRight": "slide-2", "End": f"slide-{n}",
            "End, ArrowLeft": f"slide-{n - 1}", "Home": "slide-1", "#3": "slide-3"}
    for key, expected in want.items():
        if report.navigation.get(key) != expected:
            report.problems.append(f"navigation '{key}' showed {report.navigation.get(key)}, "
                                   f"expected {expected}.")
    if report.broken_images:
        report.problems.append(f"{report.broken_images} images did not decode.")
    if report.console_errors:
        report.problems.append(f"console errors: {report.console_errors[:5]}")
    if report.blocked_requests:
        report.problems.append(f"the deck asked the network for {report.blocked_requests[:5]}; "
                               "everything must be embedded.")
    return report
