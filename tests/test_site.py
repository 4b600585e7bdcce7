"""The website's staging (:mod:`course_lib.cli.site`) and the browser check's pure parts
(:mod:`course_lib.browser`): links, executed copies, notebooks, pages.  No Sphinx, no browser,
no notebook run (well under a second); the real build and the browser are in
``slides/test_site_build.py``."""

import copy
import json
import os
import re
import subprocess
import sys
import time

import pytest

from course_lib import browser
from course_lib.cli import common, site
from course_lib.config import REPO_DIR

URL = common.repository_url()
BLOB = f"{URL}/blob/{common.BRANCH}"


# --------------------------------------------------------------------------- links
def test_links_to_files_on_the_site_stay_and_the_others_point_at_github():
    staged = {"notebooks/01_a.ipynb", "docs/guide.md", "docs/data.jsonl"}
    text = ("See [the guide](../docs/guide.md#profiles), [the data](../docs/data.jsonl), "
            "[next](02_b.ipynb), [readme](../README.md#slides), [lib](../course_lib/), "
            "[here](#top), [web](https://example.org/x) and [mail](mailto:a@b.c).")
    out = site.rewrite_links(text, "notebooks", staged, URL)
    assert "[the guide](../docs/guide.md#profiles)" in out
    assert "[the data](../docs/data.jsonl)" in out
    assert f"[next]({BLOB}/notebooks/02_b.ipynb)" in out
    assert f"[readme]({BLOB}/README.md#slides)" in out
    assert f"[lib]({URL}/tree/{common.BRANCH}/course_lib)" in out
    for kept in ("[here](#top)", "[web](https://example.org/x)", "[mail](mailto:a@b.c)"):
        assert kept in out


def test_badges_and_web_images_become_text_links_but_code_blocks_stay():
    text = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            "(https://colab.research.google.com/github/o/r/blob/main/notebooks/01_a.ipynb) "
            "![a figure](https://example.org/fig.png)\n\n```bash\n[x](y.md) ![z](https://q/z.png)\n"
            "```\n[after](other.md)\n")
    out = site.rewrite_links(text, "", set(), URL)
    assert out.startswith("[Open In Colab](https://colab.research.google.com/github/o/r/blob/")
    assert "[a figure](https://example.org/fig.png)" in out
    assert "\n[x](y.md) ![z](https://q/z.png)\n" in out           # the code block as it was
    assert f"[after]({BLOB}/other.md)" in out
    assert "![" not in out.split("```")[0] + out.split("```")[2]  # no image fetched from the web


def test_course_map_is_the_readmes_table_made_offline():
    readme = (REPO_DIR / "README.md").read_text(encoding="utf-8")
    notebooks = [p.name for p in common.list_notebooks()]
    staged = {f"notebooks/{n}" for n in notebooks[:2]}
    out = site.course_map(readme, {}, staged, URL)
    rows = [ln for ln in out.splitlines() if re.match(r"^\| \d\d \|", ln)]
    assert len(rows) == len(notebooks)
    assert f"](notebooks/{notebooks[0]})" in rows[0]             # on the site: a page
    assert f"]({BLOB}/notebooks/{notebooks[-1]})" in rows[-1]   # not on it: GitHub
    assert "badge" not in out and "![" not in out
    assert "[Open In Colab](https://colab.research.google.com/github/" in rows[0]
    # a README without the markers: a table of the notebooks' titles
    fallback = site.course_map("# Title\n", {"01_a.ipynb": "01 - A"}, {"notebooks/01_a.ipynb"},
                               URL)
    assert "| 01 | [01 - A](notebooks/01_a.ipynb) |" in fallback


def test_landing_page_has_the_map_and_every_page_in_a_toctree():
    readme = "# T\n\nThe course.\n\n<!-- badges:start -->\n| 01 | x |\n<!-- badges:end -->\n"
    page = site.landing_page(readme, ["01_a.ipynb"], ["instructor_guide", "benchmarks", "ecg"],
                             {"notebooks/01_a.ipynb"}, URL, "workshop", {"01_a.ipynb": "A"})
    assert page.startswith(f"# {site.TITLE}\n\nThe course.\n")
    assert "## Course map\n\n| 01 | x |" in page and "`workshop` profile" in page
    toc = page[page.index("```{toctree}"):]
    for entry in ("notebooks/01_a", "slides", "docs/instructor_guide", "docs/benchmarks",
                  "docs/ecg"):
        assert f"\n{entry}\n" in toc
    assert "[instructor guide](docs/instructor_guide.md)" in page


# --------------------------------------------------------------------------- executed copies
def _build(tmp_path, profile="workshop", status="ok", seconds=36.4):
    nb = tmp_path / "notebooks" / "01_a.ipynb"
    nb.parent.mkdir()
    nb.write_text("{}")
    build = tmp_path / "build"
    (build / "notebooks").mkdir(parents=True)
    executed = build / "notebooks" / "01_a.ipynb"
    executed.write_text("{}")
    (build / "summary.json").write_text(json.dumps({
        "profile": profile, "data": "offline", "results": [
            {"notebook": "01_a.ipynb", "status": status, "seconds": seconds, "peak_mb": 1076,
             "data_sources": ["embedded"], "error": ""}]}))
    later = time.time() + 5
    os.utime(executed, (later, later))
    return nb, build, executed


def test_an_executed_copy_is_used_only_when_current(tmp_path):
    nb, build, executed = _build(tmp_path)
    assert site.executed_copy(nb, build, "workshop") == (executed, "")
    assert site.executed_copy(nb, build, "fast")[1] == "run in the workshop profile, not fast"
    os.utime(nb, (time.time() + 60, time.time() + 60))            # the notebook was edited
    assert site.executed_copy(nb, build, "workshop") == (None, "older than the notebook")
    executed.unlink()
    assert site.executed_copy(nb, build, "workshop") == (None, "not executed yet")


def test_a_failed_run_or_a_broken_summary_is_not_current(tmp_path):
    nb, build, _ = _build(tmp_path, status="failed")
    assert site.executed_copy(nb, build, "workshop") == (None, "its last run failed")
    (build / "summary.json").write_text("{not json")
    assert site.read_summary(build) == {"profile": None, "data": None, "results": {}}
    assert site.executed_copy(nb, build, "workshop")[0] is None


def test_run_line_names_profile_data_and_measured_time():
    result = {"seconds": 36.4, "peak_mb": 1076, "data_sources": ["embedded"]}
    line = site.run_line(result, "workshop", "offline")
    assert "`workshop` profile" in line and "`embedded` data" in line
    assert "36 s from kernel start to the last cell" in line and "1,076 MB" in line
    assert "without outputs" in site.run_line(None, "workshop", None)


# --------------------------------------------------------------------------- notebooks
def _notebook():
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"widgets": {site.WIDGET_STATE: {
        "state": {
            "bar": {"model_name": "HBoxModel", "state": {"children": [
                "IPY_MODEL_left", "IPY_MODEL_prog", "IPY_MODEL_right"]}},
            "left": {"model_name": "HTMLModel", "state": {"value": "training: 100%"}},
            "prog": {"model_name": "FloatProgressModel", "state": {"value": 40, "max": 40}},
            "right": {"model_name": "HTMLModel", "state": {"value": " 40/40 [00:05&lt;00:00]"}},
            "slider": {"model_name": "SelectionSliderModel",
                       "state": {"description": "threshold"}}}}}},
        "cells": [
            {"cell_type": "markdown", "id": "t", "metadata": {}, "source": "# 01 - A\n\nWhy."},
            {"cell_type": "code", "id": "c", "metadata": {"tags": ["colab-setup"]},
             "outputs": [], "source": "import sys", "execution_count": None},
            {"cell_type": "code", "id": "s", "metadata": {"jupyter": {"source_hidden": True}},
             "outputs": [{"output_type": "display_data", "metadata": {}, "data": {
                 site.WIDGET_VIEW: {"model_id": "bar"}, "text/plain": "training: 0%"}}],
             "source": "solution()", "execution_count": 3},
            {"cell_type": "code", "id": "w", "metadata": {}, "execution_count": 4,
             "outputs": [{"output_type": "display_data", "metadata": {}, "data": {
                 site.WIDGET_VIEW: {"model_id": "slider"}, "text/plain": "Slider(...)"}}],
             "source": ["# NBVAL_CHECK_OUTPUT\n", "explorer()  # NBVAL_SKIP stays in a line\n",
                        "  #  NBVAL_IGNORE_OUTPUT\n", "done()"]},
            {"cell_type": "markdown", "id": "m", "metadata": {},
             "source": ["Next: [02](02_b.ipynb), [guide](../docs/guide.md)."]}]}


def test_stage_notebook_collapses_solutions_and_turns_widgets_into_text():
    nb = _notebook()
    original = copy.deepcopy(nb)
    out = site.stage_notebook(nb, "*run line*", {"docs/guide.md"}, URL)
    assert nb == original, "the notebook itself is not changed"
    assert "widgets" not in out["metadata"]
    cells = out["cells"]
    assert [c["id"] for c in cells] == ["t", "course-site-run-line", "c", "s", "w", "m"]
    assert cells[1]["source"] == "*run line*" and cells[1]["cell_type"] == "markdown"
    assert cells[2]["metadata"]["tags"] == ["colab-setup", "hide-cell"]
    assert cells[3]["metadata"]["tags"] == ["hide-input"]
    assert cells[3]["outputs"][0]["data"] == {
        "text/plain": "training: 100%|██████████| 40/40 [00:05<00:00]"}
    note = cells[4]["outputs"][0]["data"]["text/plain"]
    assert "interactive widget (SelectionSlider 'threshold')" in note and "Colab" in note
    assert "tags" not in cells[4]["metadata"]
    assert cells[4]["source"] == "explorer()  # NBVAL_SKIP stays in a line\ndone()"
    assert cells[5]["source"] == (f"Next: [02]({BLOB}/notebooks/02_b.ipynb), "
                                  f"[guide](../docs/guide.md).")
    assert site.notebook_title(nb, "x") == "01 - A"


def test_stage_writes_the_whole_source_tree(tmp_path):
    nb = tmp_path / "notebooks" / "01_a.ipynb"
    nb.parent.mkdir()
    nb.write_text(json.dumps(_notebook()))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.md").write_text("# Benchmarks\n\nSee [README](../README.md).\n")
    (docs / "data.jsonl").write_text("{}\n")
    (docs / "conf.py").write_text("# conf\n")
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\nIntro.\n")
    src = tmp_path / "site-src"
    (src / "stale").mkdir(parents=True)
    logged = []
    staged = site.stage(src, [nb], tmp_path / "build", "fast", readme=readme, docs_dir=docs,
                        conf=docs / "conf.py", repo_url=URL, log=logged.append)
    assert staged == {"notebooks": {"01_a.ipynb": "not executed"}, "docs": ["benchmarks"],
                      "slides": False}
    assert "01_a.ipynb: shown without outputs (not executed yet)" in logged[0]
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()) == [
        "conf.py", "docs/benchmarks.md", "docs/data.jsonl", "index.md", "notebooks/01_a.ipynb",
        "site.json", "slides.md"]
    assert f"[README]({BLOB}/README.md)" in (src / "docs" / "benchmarks.md").read_text()
    assert "make slides" in (src / "slides.md").read_text()
    conf = json.loads((src / "site.json").read_text())
    assert conf["repository_url"] == URL and conf["branch"] == common.BRANCH
    assert conf["extra_paths"] == []
    # with a deck: copied into the site, and the slides page links it
    deck = tmp_path / "deck.html"
    deck.write_text("<!doctype html><title>deck</title>")
    assert site.stage(src, [nb], tmp_path / "build", "fast", readme=readme, docs_dir=docs,
                      conf=docs / "conf.py", deck=deck, repo_url=URL, log=logged.append)["slides"]
    assert (src / "_extra" / "slides" / "index.html").read_text() == deck.read_text()
    assert 'href="slides/index.html"' in (src / "slides.md").read_text()
    assert json.loads((src / "site.json").read_text())["extra_paths"] == ["_extra"]


def test_stage_refuses_a_repository_url_that_is_not_github(tmp_path):
    with pytest.raises(ValueError, match="GitHub repository URL"):
        site.stage(tmp_path / "src", [], tmp_path, "fast", repo_url="https://example.org/x")
    assert not (tmp_path / "src").exists()


def test_a_broken_notebook_is_named(tmp_path):
    bad = tmp_path / "01_bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(site.DataError, match="01_bad.ipynb"):
        site.stage(tmp_path / "src", [bad], tmp_path, "fast", repo_url=URL,
                   log=lambda *a: None)


# --------------------------------------------------------------------------- the check's parts
def test_site_pages_leave_out_sphinx_folders(tmp_path):
    for name in ("index.html", "search.html", "notebooks/01.html", "slides/index.html",
                 "_static/x.html", "_sources/y.html", ".doctrees/z.html", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("<p>")
    assert [p.relative_to(tmp_path).as_posix() for p in browser.site_pages(tmp_path)] == [
        "index.html", "notebooks/01.html", "search.html", "slides/index.html"]


def test_link_problem_finds_missing_files_folders_and_anchors(tmp_path):
    (tmp_path / "a.html").write_text("<h1 id='top'>A</h1><a name=\"old\"></a><p id=x-1>")
    (tmp_path / "folder").mkdir()
    (tmp_path / "data.jsonl").write_text("{}")
    uri = tmp_path.as_uri()

    def problem(href):
        return browser.link_problem(href, browser.html_anchors)

    assert browser.html_anchors(tmp_path / "a.html") == {"top", "old", "x-1"}
    for fine in (f"{uri}/a.html", f"{uri}/a.html#top", f"{uri}/a.html#old", f"{uri}/a.html#x-1",
                 f"{uri}/data.jsonl", "https://example.org/nowhere", f"{uri}/a.html#",
                 "mailto:a@b.c"):
        assert problem(fine) == "", fine
    assert problem(f"{uri}/b.html") == "no such file"
    assert problem(f"{uri}/a.html#nowhere") == "no anchor #nowhere in a.html"
    assert problem(f"{uri}/folder") == "a folder without index.html"


def test_site_report_lists_every_problem_with_its_page():
    page = browser.PageReport("notebooks/01.html", blocked_requests=["https://cdn.x/a.js"],
                              broken_images=["file:///s/x.png"],
                              broken_links=[("file:///s/b.html", "no such file")],
                              console_errors=["boom"], missing_files=["file:///s/c.css"])
    report = browser.SiteReport("/s", pages=[page, browser.PageReport("index.html")])
    assert not report.ok and len(report.problems) == 5
    text = report.summary()
    assert "2 pages" in text and "notebooks/01.html: asked the network for https://cdn.x/a.js" \
        in text and text.endswith("Browser check FAILED.")
    assert browser.SiteReport("/s", pages=[browser.PageReport("index.html")]).ok


def test_make_site_runs_the_course_first_when_a_copy_is_not_current(tmp_path, monkeypatch,
                                                                      capsys):
    nb, build, _ = _build(tmp_path, profile="workshop")
    calls, built = [], []
    monkeypatch.setattr(site, "stage", lambda src, paths, *a, **k: built.append(paths) or {
        "notebooks": {}, "docs": [], "slides": False})
    monkeypatch.setattr(site, "sphinx_build", lambda src, out: None)
    monkeypatch.setattr(site, "run_course", lambda b, p: calls.append((b, p)) or 1)
    argv = [str(nb), "--build", str(build), "--out", str(tmp_path / "site")]
    assert site.main(argv + ["--profile", "fast"]) == 1       # copies are workshop ones
    err = capsys.readouterr().err
    assert calls == [(build, "fast")] and not built
    assert "make course failed" in err and "--no-execute" in err
    monkeypatch.setattr(site, "run_course", lambda b, p: calls.append((b, p)) or 0)
    assert site.main(argv + ["--profile", "fast"]) == 0 and built == [[nb]]
    assert "running the course first" in capsys.readouterr().out
    calls.clear()
    assert site.main(argv + ["--profile", "workshop"]) == 0 and calls == []  # current: reused
    assert site.main(argv + ["--profile", "fast", "--no-execute"]) == 0 and calls == []


def test_run_course_is_make_course(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen.update(cmd=cmd, **kwargs)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(site.subprocess, "run", fake_run)
    assert site.run_course(tmp_path / "b", "fast") == 0
    assert seen["cmd"][1:] == ["-m", "course_lib.runner", "--out", str((tmp_path / "b").resolve()),
                               "--profile", "fast", "--data", "offline"]
    assert seen["cwd"] == REPO_DIR and seen["env"]["COURSE_DATA"] == "offline"


def test_out_never_replaces_a_folder_that_is_not_a_built_site(tmp_path, capsys):
    (tmp_path / "keep.ipynb").write_text("{}")
    assert site.main(["--no-execute", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "not a site built by this tool" in err
    assert (tmp_path / "keep.ipynb").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other-src").mkdir()
    (tmp_path / "other-src" / "mine.txt").write_text("x")
    assert site.main(["--no-execute", "--out", str(tmp_path / "other")]) == 2
    assert "other-src" in capsys.readouterr().err
    assert (tmp_path / "other-src" / "mine.txt").is_file()


# --------------------------------------------------------------------------- python -m
def test_python_m_site_help():
    out = subprocess.run([sys.executable, "-m", "course_lib.site", "--help"],
                         capture_output=True, text=True, timeout=120, cwd=REPO_DIR)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith("usage: python -m course_lib.site") and "--no-execute" in \
        out.stdout
