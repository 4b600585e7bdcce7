"""The course website built for real, small, and opened in headless Chromium with the network
refused.

Like the deck's build beside it, this is an end-to-end run (Sphinx on real notebooks, then a
browser), so it lives here rather than in ``tests/`` (the staging logic is unit-tested in
``tests/test_site.py``).  The site is small so that it takes seconds: two real notebooks, one
of them with a stand-in executed copy (a figure, a progress-bar widget, a measured time) and
one without outputs, every docs page, the landing page, and a stand-in deck.  ``make site``
builds the whole site from ``make course``'s executed notebooks.

The browser tests are skipped where Chromium is missing unless ``COURSE_REQUIRE_BROWSER=1``
(CI sets it and installs Chromium), which turns the skip into a failure.
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from course_lib import browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = [REPO / "notebooks" / "01_autoencoder_mnist.ipynb",
             REPO / "notebooks" / "09_ecg_time_series.ipynb"]
SCREENSHOT = REPO / "build" / "site-small-index.png"   # build/ is not in git
SECONDS = 12.3


def _browser_or_skip():
    try:
        browser.find_chromium()
        import playwright  # noqa: F401
    except (browser.BrowserUnavailable, ImportError) as err:
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COURSE_REQUIRE_BROWSER=1 but no browser: {err}")
        pytest.skip(f"no headless browser here: {err}")


def _png(width=48, height=32) -> bytes:
    """A small real PNG (a colour gradient), written without any imaging library."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(v for x in range(width)
                                    for v in (x * 5 % 256, y * 8 % 256, 128))
                    for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _stand_in_executed_copy(build: Path) -> None:
    """``build/notebooks/01_...ipynb`` as ``make course`` would leave it (outputs on the setup
    cell: text, a figure and a finished progress bar), and its ``summary.json``."""
    import base64

    nb = json.loads(NOTEBOOKS[0].read_text(encoding="utf-8"))
    setup = next(c for c in nb["cells"] if c["cell_type"] == "code"
                 and "get_profile" in "".join(c["source"]))
    setup["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": "Profile(name='fast')\n"},
        {"output_type": "display_data", "metadata": {}, "data": {
            "image/png": base64.b64encode(_png()).decode(), "text/plain": "<Figure>"}},
        {"output_type": "display_data", "metadata": {}, "data": {
            "application/vnd.jupyter.widget-view+json": {"model_id": "bar", "version_major": 2,
                                                         "version_minor": 0},
            "text/plain": "training: 0%"}}]
    state = {"bar": {"model_name": "HBoxModel", "state": {"children": [
                 "IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]}},
             "l": {"model_name": "HTMLModel", "state": {"value": "training: 100%"}},
             "p": {"model_name": "FloatProgressModel", "state": {"value": 5, "max": 5}},
             "r": {"model_name": "HTMLModel", "state": {"value": " 5/5 [00:02&lt;00:00]"}}}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": state, "version_major": 2, "version_minor": 0}}
    (build / "notebooks").mkdir(parents=True)
    executed = build / "notebooks" / NOTEBOOKS[0].name
    executed.write_text(json.dumps(nb), encoding="utf-8")
    later = max(time.time(), NOTEBOOKS[0].stat().st_mtime) + 1
    os.utime(executed, (later, later))
    (build / "summary.json").write_text(json.dumps({"profile": "fast", "data": "offline",
                                                    "results": [{
        "notebook": NOTEBOOKS[0].name, "status": "ok", "seconds": SECONDS, "peak_mb": 900,
        "data_sources": ["embedded"], "error": ""}]}), encoding="utf-8")
    (build / "slides").mkdir()
    (build / "slides" / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>deck</title><h1 id='slide-1'>Deck</h1>",
        encoding="utf-8")


@pytest.fixture(scope="module")
def small_site(tmp_path_factory):
    build = tmp_path_factory.mktemp("site") / "build"
    _stand_in_executed_copy(build)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "course_lib.site", "--no-execute", "--profile", "fast",
         "--build", str(build), *map(str, NOTEBOOKS)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "COURSE_DATA": "offline"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return build / "site", out, time.perf_counter() - start


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_small_site_has_every_page_and_fetches_nothing(small_site):
    site, out, seconds = small_site
    assert "WARNING" not in out.stderr and "ERROR" not in out.stderr, out.stderr[-3000:]
    assert "Site built" in out.stdout and "1/2 notebooks with outputs" in out.stdout
    docs = sorted(p.stem for p in (REPO / "docs").glob("*.md"))
    for page in ["index.html", "search.html", "genindex.html", "slides.html", "slides/index.html",
                 *(f"notebooks/{nb.stem}.html" for nb in NOTEBOOKS),
                 *(f"docs/{d}.html" for d in docs)]:
        assert (site / page).is_file(), page
    for page in browser.site_pages(site):
        html = _text(page)
        # nothing from the web: scripts, styles, images, fonts (links to the web are fine)
        assert not re.search(r"<(script|img|iframe|source)[^>]+src=[\"'](https?:)?//", html), page
        assert not re.search(r"<link[^>]+rel=[\"']stylesheet[^>]+href=[\"'](https?:)?//", html)
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    print(f"small site built in {seconds:.1f} s")


def test_notebook_pages_have_outputs_run_time_solutions_and_launch_buttons(small_site):
    site = small_site[0]
    page = _text(site / "notebooks" / f"{NOTEBOOKS[0].stem}.html")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "Executed for this page" in text and "fast profile" in text.replace("`", "")
    assert f"{SECONDS:.0f} s from kernel start to the last cell" in text
    assert "training: 100%|██████████| 5/5 [00:02&lt;00:00]" in page
    assert re.search(r'<img[^>]+src="\.\./_images/[^"]+\.png"', page)
    hidden = sum(1 for c in json.loads(_text(NOTEBOOKS[0]))["cells"]
                 if c.get("metadata", {}).get("jupyter", {}).get("source_hidden"))
    assert hidden >= 2 and page.count("tag_hide-input") == hidden
    # launch buttons: the same Colab and Binder links as the README's course map, which
    # `python -m course_lib.colab sync` writes from pyproject.toml's one repository URL
    readme = _text(REPO / "README.md")
    for host in ("colab.research.google.com", "mybinder.org"):
        link = re.search(rf"\((https://{re.escape(host)}/[^)]*{NOTEBOOKS[0].name})\)", readme)
        assert link and f'href="{link.group(1)}"' in page.replace("&amp;", "&"), host
    other = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", _text(
        site / "notebooks" / f"{NOTEBOOKS[1].stem}.html")))
    assert "shows the notebook without outputs" in other
    assert 'href="slides/index.html"' in _text(site / "slides.html")


# ----------------------------------------------------------------------------- the browser
def test_chromium_opens_every_page_offline(small_site):
    _browser_or_skip()
    site = small_site[0]
    start = time.perf_counter()
    report = browser.check_site(site, search="autoencoder", screenshot=SCREENSHOT)
    assert report.ok, report.summary()
    assert len(report.pages) == len(browser.site_pages(site)) + 1   # + the search
    assert report.search["results"] > 0
    assert sum(p.images for p in report.pages) >= 3 and sum(p.links for p in report.pages) > 100
    print(report.summary().splitlines()[0], f"({time.perf_counter() - start:.1f} s)")


def test_the_check_fails_on_a_cdn_script_broken_links_a_missing_image_and_errors(small_site,
                                                                                tmp_path):
    _browser_or_skip()
    site = tmp_path / "site"
    shutil.copytree(small_site[0], site)
    index = site / "index.html"
    bad = ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'
           '<a href="notebooks/no_such_page.html">gone</a>'
           '<a href="docs/benchmarks.html#no-such-section">moved</a>'
           '<img src="_images/no_such_figure.png" alt="lost">'
           '<link rel="stylesheet" href="_static/no_such_style.css">'
           '<script>undefinedFunction();</script></body>')
    index.write_text(_text(index).replace("</body>", bad), encoding="utf-8")
    report = browser.check_site(site, pages=[index, site / "slides.html"], search="qzxvkj")
    assert not report.ok
    problems = "\n".join(report.problems)
    assert "index.html: asked the network for https://cdn.jsdelivr.net/npm/mathjax" in problems
    assert "no_such_page.html (no such file)" in problems
    assert "no anchor #no-such-section in benchmarks.html" in problems
    assert "image did not decode" in problems and "no_such_figure.png" in problems
    assert "missing file" in problems and "no_such_style.css" in problems
    assert "undefinedFunction" in problems
    assert "searching 'qzxvkj' found nothing" in problems
    assert not any(p.startswith("slides.html") for p in report.problems)
