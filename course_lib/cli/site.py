"""Build the course website from the executed notebooks (``make site``).

    python -m course_lib.site [NOTEBOOK ...] [--profile P] [--build build] [--out build/site]
                              [--no-execute] [--check] [--check-only]

The site is a book (Sphinx + MyST-NB + sphinx-book-theme, all pip packages; Jupyter Book 2 /
mystmd would need Node.js): the README's course map as the landing page, every notebook with
its figures and outputs (solution cells collapsed, a line with the profile and the measured
run time), the workshop deck, the docs pages, Colab and Binder launch buttons from the ONE
repository URL of pyproject.toml, and search.  It opens from disk with no network.

Executed notebooks come from ``make course`` (``python -m course_lib.runner --out build``):
``build/notebooks/NN_*.ipynb`` with ``build/summary.json`` (profile, seconds per notebook).
A copy is reused when it is current: newer than its notebook, run in the same profile, and
reported ``ok``.  Otherwise the course is run first (``make course``: every notebook, so
that ``build/`` stays one run), unless ``--no-execute``: then a notebook without a current copy
is shown without outputs, and its page says so.

Steps: stage the sources in ``build/site-src/`` (``docs/conf.py`` and a ``site.json``, the
landing page, ``docs/*.md``, the notebooks, the deck when ``build/slides/index.html`` exists),
run Sphinx there, and move the HTML to ``--out``.  ``--check`` then opens every page in headless
Chromium (:func:`course_lib.browser.check_site`): no request other than local files, no
missing file or image, no broken link or anchor, no console error, and search finds a word.
Exit codes: 0 built (and checked), 1 failed (Sphinx, a notebook, the check; the message says
what to do), 2 usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import copy
import datetime as _dt
import html
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

from course_lib.checks import DataError
from course_lib.cli.common import (BRANCH, ArgumentParser, UsageError, check_writable_folder,
                                   env_profile, github_repo, notebook_paths, profile_name,
                                   quote_path, repository_url, run_command)
from course_lib.config import REPO_DIR

PROG = "python -m course_lib.site"
TITLE = "Autoencoders and Anomaly Detection with Keras"
DOCS_DIR = REPO_DIR / "docs"
CONF = DOCS_DIR / "conf.py"
README = REPO_DIR / "README.md"
BADGES_START, BADGES_END = "<!-- badges:start -->", "<!-- badges:end -->"
#: Docs pages first in the book's navigation; the others follow in name order.
DOCS_ORDER = ("setup", "course_close", "instructor_guide", "benchmarks", "healthy_runs")
#: The word the browser check searches for (every build has it: the landing page's title).
SEARCH_WORD = "autoencoder"
HIDDEN_TAG = "hide-input"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: nbval's comment markers (``# NBVAL_CHECK_OUTPUT``): for the test run, not for the reader.
NBVAL_LINE_RE = re.compile(r"^[ \t]*#[ \t]*NBVAL_[A-Z_]+[ \t]*(?:\n|$)", re.M)


# =========================================================================== executed copies
def read_summary(build_dir) -> dict:
    """``build/summary.json`` of ``make course``: ``{"profile", "data", "results": {name:
    result}}``; empty results when the file is missing or unreadable."""
    path = Path(build_dir) / "summary.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        results = {r["notebook"]: r for r in raw.get("results", []) if isinstance(r, dict)
                   and isinstance(r.get("notebook"), str)}
        return {"profile": raw.get("profile"), "data": raw.get("data"), "results": results}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {"profile": None, "data": None, "results": {}}


def executed_copy(notebook, build_dir, profile: str, summary: dict | None = None):
    """``(path, why)``: the current executed copy of ``notebook`` in ``build_dir/notebooks``
    and "" , or ``(None, why it cannot be used)``.  Current means: it exists, it is not older
    than the notebook, and ``summary.json`` says it ran ``ok`` in ``profile``."""
    notebook = Path(notebook)
    summary = read_summary(build_dir) if summary is None else summary
    copy_path = Path(build_dir) / "notebooks" / notebook.name
    if not copy_path.is_file():
        return None, "not executed yet"
    if copy_path.stat().st_mtime < notebook.stat().st_mtime:
        return None, "older than the notebook"
    if summary.get("profile") != profile:
        return None, f"run in the {summary.get('profile') or 'unknown'} profile, not {profile}"
    result = summary["results"].get(notebook.name)
    if result is None:
        return None, "not in summary.json"
    if result.get("status") != "ok":
        return None, f"its last run {result.get('status')}"
    return copy_path, ""


def run_line(result: dict | None, profile: str, data: str | None, when=None) -> str:
    """The line under a notebook's title: how it was run for this page, or that it was not."""
    if result is None:
        return ("*This page shows the notebook without outputs: it was not executed for this "
                "build of the site (`make site` runs the course first when needed).*")
    sources = ", ".join(result.get("data_sources") or []) or (data or "unknown")
    peak = result.get("peak_mb")
    took = f"{float(result.get('seconds') or 0):.0f} s from kernel start to the last cell"
    if peak:
        took += f", peak memory {float(peak):,.0f} MB"
    day = f" on {when:%Y-%m-%d}" if when else ""
    return (f"*Executed for this page{day} in the `{profile}` profile with `{sources}` data "
            f"(`make course`): {took}.*")


# =========================================================================== Markdown links
_FENCE = re.compile(r"^(```|~~~)")
_BADGE = re.compile(r"\[!\[([^\]]*)\]\((?:https?:)?//[^)\s]+\)\]\(([^)\s]+)\)")
_REMOTE_IMAGE = re.compile(r"!\[([^\]]*)\]\(((?:https?:)?//[^)\s]+)\)")
_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")


def _outside_fences(text: str, edit) -> str:
    """``edit`` applied to the parts of Markdown ``text`` outside fenced code blocks."""
    out, chunk, fenced = [], [], False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line.lstrip()):
            if not fenced:
                out.append(edit("".join(chunk)))
                chunk = []
            fenced = not fenced
            out.append(line)
        elif fenced:
            out.append(line)
        else:
            chunk.append(line)
    out.append(edit("".join(chunk)) if not fenced else "".join(chunk))
    return "".join(out)


def rewrite_links(text: str, base: str, staged, repo_url: str, branch: str = BRANCH) -> str:
    """Markdown ``text`` of the repository file in folder ``base`` ("" for the root, e.g.
    "notebooks") made to work on the site, with no network:

    - a badge (an image from the web inside a link) becomes a text link with its alt text;
    - any other image from the web becomes a link to it;
    - a relative link to a file that is not on the site (``staged``: the repository paths
      the site has) points at that file in the repository on GitHub instead.

    Links on the site, anchors (``#...``), and web links stay as they are; code blocks too.
    """
    staged = set(staged)

    def target(match):
        label, href = match.group(1), match.group(2)
        if re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", href, re.I):
            return match.group(0)
        path, _, fragment = href.partition("#")
        resolved = posixpath.normpath(posixpath.join(base, path)) if path else ""
        if not path or resolved in staged or resolved.startswith("../") or resolved == "..":
            return match.group(0)
        kind = "tree" if path.endswith("/") else "blob"
        return (f"[{label}]({repo_url}/{kind}/{branch}/{resolved}"
                f"{'#' + fragment if fragment else ''})")

    def edit(chunk):
        chunk = _BADGE.sub(r"[\1](\2)", chunk)
        chunk = _REMOTE_IMAGE.sub(r"[\1](\2)", chunk)
        return _LINK.sub(target, chunk)

    return _outside_fences(text, edit)


# =========================================================================== notebooks
def _widget_text(model_id: str, state: dict) -> str:
    """The final look of a widget as text: a progress bar (tqdm's HBox of HTML, progress,
    HTML) as its line, anything else as a note that it works in Jupyter."""
    def model(ref):
        entry = state.get(str(ref).removeprefix("IPY_MODEL_"), {})
        return entry.get("model_name", ""), entry.get("state", {})

    name, widget = model(model_id)
    children = [model(c) for c in widget.get("children", [])]
    kinds = [n for n, _ in children]
    if name == "HBoxModel" and any(k in ("FloatProgressModel", "IntProgressModel")
                                   for k in kinds):
        text = ""
        for kind, child in children:  # tqdm: "desc: 100%" |bar| " 40/40 [00:05<00:00, ...]"
            if kind in ("FloatProgressModel", "IntProgressModel"):
                top = float(child.get("max") or 1) or 1.0
                filled = int(round(10 * min(max(float(child.get("value") or 0) / top, 0), 1)))
                text += "|" + "█" * filled + " " * (10 - filled) + "| "
            else:
                text += html.unescape(re.sub(r"<[^>]+>", "", str(child.get("value", ""))))
        return " ".join(text.split())
    described = next((s.get("description") for _, s in [(name, widget)] + children
                      if s.get("description")), "")
    what = name.removesuffix("Model") or "widget"
    label = f" ({what} '{described}')" if described else f" ({what})"
    return (f"[An interactive widget{label}: open this notebook in Jupyter, Colab or Binder "
            f"to use it.]")


def _markdown_cell(text: str, nb: dict) -> dict:
    cell = {"cell_type": "markdown", "metadata": {}, "source": text}
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
        cell["id"] = "course-site-run-line"
    return cell


def stage_notebook(nb: dict, line: str, staged, repo_url: str, branch: str = BRANCH) -> dict:
    """A copy of the notebook ``nb`` (JSON) ready for MyST-NB:

    - solution cells (metadata ``jupyter.source_hidden``) get the ``hide-input`` tag (shown
      collapsed, with their outputs), cells with hidden outputs ``hide-output``, the Colab
      setup cell ``hide-cell`` (the page has launch buttons);
    - widgets become text (a progress bar's last state; a note for interactive ones) and the
      widget state is dropped, so no widget script is fetched;
    - nbval's marker lines (``# NBVAL_CHECK_OUTPUT``) are left out of the code shown (they
      tell the test run which outputs to compare; the outputs shown are this run's);
    - ``line`` (see :func:`run_line`) goes in a cell after the title cell;
    - Markdown links to files that are not on the site point at GitHub (:func:`rewrite_links`).
    """
    nb = copy.deepcopy(nb)
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        meta = cell.setdefault("metadata", {})
        tags = list(meta.get("tags", []))
        jupyter = meta.get("jupyter", {})
        if cell["cell_type"] == "code":
            if jupyter.get("source_hidden") and HIDDEN_TAG not in tags:
                tags.append(HIDDEN_TAG)
            if jupyter.get("outputs_hidden") and "hide-output" not in tags:
                tags.append("hide-output")
            if "colab-setup" in tags and "hide-cell" not in tags:
                tags.append("hide-cell")
            cell["source"] = NBVAL_LINE_RE.sub("", "".join(cell.get("source", "")))
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if WIDGET_VIEW in data:
                    text = _widget_text(data[WIDGET_VIEW].get("model_id", ""), state)
                    out["data"] = {"text/plain": text}
                    out.get("metadata", {}).pop(WIDGET_VIEW, None)
        elif cell["cell_type"] == "markdown":
            source = "".join(cell.get("source", ""))
            cell["source"] = rewrite_links(source, "notebooks", staged, repo_url, branch)
        if tags:
            meta["tags"] = tags
    first = 1 if nb["cells"] and nb["cells"][0]["cell_type"] == "markdown" else 0
    nb["cells"].insert(first, _markdown_cell(line, nb))
    return nb


def notebook_title(nb: dict, fallback: str) -> str:
    """The first Markdown heading of the notebook (its title cell), without the ``#``."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            m = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", "".join(cell.get("source", "")), re.M)
            if m:
                return m.group(1)
    return fallback


# =========================================================================== pages
def course_map(readme: str, titles: dict, staged, repo_url: str, branch: str = BRANCH) -> str:
    """The landing page's course map: the README's, between its badges markers, made to work
    offline (:func:`rewrite_links`); a table of the notebooks' titles when the README has no
    markers.  ``titles``: ``{notebook file name: title}`` of the course's notebooks."""
    m = re.search(re.escape(BADGES_START) + r"(.*?)" + re.escape(BADGES_END), readme, re.S)
    if m and m.group(1).strip():
        return rewrite_links(m.group(1).strip(), "", staged, repo_url, branch)
    rows = ["| # | notebook |", "|---|---|"]
    for name, title in titles.items():
        path = f"notebooks/{name}"
        link = f"[{title}]({path})" if path in staged else \
            f"[{title}]({repo_url}/blob/{branch}/{path})"
        rows.append(f"| {name[:2]} | {link} |")
    return "\n".join(rows)


def _intro(readme: str) -> str:
    """The README's first paragraph (what the course is)."""
    body = re.sub(r"^#[^\n]*\n", "", readme.lstrip(), count=1).strip()
    return body.split("\n\n", 1)[0].strip() if body else ""


def landing_page(readme: str, notebooks: list, docs: list, staged, repo_url: str,
                 profile: str, titles: dict, branch: str = BRANCH) -> str:
    """``index.md``: title, the README's first paragraph, how to use the site, the course map,
    and the book's navigation (notebooks; slides and docs pages) as hidden tables of contents."""
    pages = ["the [workshop slides](slides.md)"] + [
        f"the [{name.replace('_', ' ')}](docs/{name}.md)" for name in DOCS_ORDER if name in docs]
    toc = ["```{toctree}", ":hidden:", ":caption: Notebooks", ""]
    toc += [f"notebooks/{Path(n).stem}" for n in notebooks] + ["```", ""]
    toc += ["```{toctree}", ":hidden:", ":caption: Workshop", "", "slides"]
    toc += [f"docs/{d}" for d in docs] + ["```", ""]
    return "\n".join([
        f"# {TITLE}", "", rewrite_links(_intro(readme), "", staged, repo_url, branch), "",
        f"Each notebook is shown as run top to bottom in the `{profile}` profile on the "
        "course's embedded data, with its figures and outputs; solutions are collapsed. Run "
        "one yourself on Colab or Binder with the launch button (the rocket) at the top of its "
        f"page, or locally from the [course's repository]({repo_url}) (`make lab`). Here too: "
        f"{', '.join(pages[:-1]) + ' and ' + pages[-1] if len(pages) > 1 else pages[0]}.", "",
        "## Course map", "", course_map(readme, titles, staged, repo_url, branch), "",
        *toc])


def slides_page(has_deck: bool) -> str:
    """``slides.md``: a link to the deck (copied into the site), or how to build it."""
    if has_deck:
        return ("# Workshop slides\n\n"
                "The workshop deck, one self-contained HTML file (it needs no network): "
                '<a href="slides/index.html">open the slides</a>. Keys: arrows or space to '
                "move, N for the speaker notes, F for full screen.\n\n"
                "Its figures and numbers were computed by the course's code when it was built "
                "(`make slides`).\n")
    return ("# Workshop slides\n\n"
            "The deck was not built when this site was: run `make slides` (it writes "
            "`build/slides/index.html`, about 5-8 minutes), then `make site` again to include "
            "it here.\n")


# =========================================================================== staging
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _read_notebook(path: Path) -> dict:
    """The notebook JSON at ``path``; :class:`DataError` naming the file when it is not one."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the notebook {path} ({exc}); restore it or remove it, "
                        f"then build again.") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or \
            not all(isinstance(c, dict) and "cell_type" in c for c in nb["cells"]):
        raise DataError(f"{path} is not a notebook (no list of cells); restore it or remove "
                        f"it, then build again.")
    return nb


def _docs_pages(docs_dir: Path) -> tuple:
    """``(page stems in book order, every docs file to copy)``: Markdown pages and the data
    files they link to; not conf.py."""
    files = sorted(p for p in docs_dir.iterdir() if p.is_file() and p.suffix != ".py"
                   and not p.name.startswith("."))
    stems = [p.stem for p in files if p.suffix == ".md"]
    order = [s for s in DOCS_ORDER if s in stems] + [s for s in stems if s not in DOCS_ORDER]
    return order, files


def stage(src: Path, notebooks: list, build_dir: Path, profile: str, readme: Path = README,
          docs_dir: Path = DOCS_DIR, conf: Path = CONF, deck: Path | None = None,
          repo_url: str | None = None, log=print) -> dict:
    """Write the site's sources into ``src`` (emptied first) and return what was staged:
    ``{"notebooks": {name: "executed"|"not executed"}, "docs": [...], "slides": bool}``.

    Each notebook is the current executed copy from ``build_dir`` (:func:`executed_copy`)
    or, when there is none, the notebook itself without outputs (its page says so).
    """
    repo_url = repo_url or repository_url()
    github_repo(repo_url)  # a GitHub URL, or a clear error before anything is written
    deck = Path(build_dir) / "slides" / "index.html" if deck is None else Path(deck)
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    docs, doc_files = _docs_pages(docs_dir)
    staged = {f"notebooks/{Path(n).name}" for n in notebooks}
    staged |= {f"docs/{p.name}" for p in doc_files}
    summary = read_summary(build_dir)
    status, titles = {}, {}
    for nb_path in notebooks:
        nb_path = Path(nb_path)
        copy_path, why = executed_copy(nb_path, build_dir, profile, summary)
        raw = _read_notebook(copy_path or nb_path)
        if copy_path:
            when = _dt.datetime.fromtimestamp(copy_path.stat().st_mtime)
            line = run_line(summary["results"][nb_path.name], profile, summary["data"], when)
        else:
            line = run_line(None, profile, None)
            log(f"  {nb_path.name}: shown without outputs ({why})")
        staged_nb = stage_notebook(raw, line, staged, repo_url)
        titles[nb_path.name] = notebook_title(raw, nb_path.stem)
        _write(src / "notebooks" / nb_path.name, json.dumps(staged_nb, indent=1,
                                                             ensure_ascii=False))
        status[nb_path.name] = "executed" if copy_path else "not executed"
    for path in doc_files:
        target = src / "docs" / path.name
        if path.suffix == ".md":
            _write(target, rewrite_links(path.read_text(encoding="utf-8"), "docs", staged,
                                         repo_url))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    has_deck = deck.is_file()
    extra = []
    if has_deck:
        (src / "_extra" / "slides").mkdir(parents=True)
        shutil.copyfile(deck, src / "_extra" / "slides" / "index.html")
        extra = ["_extra"]
    _write(src / "slides.md", slides_page(has_deck))
    readme_text = readme.read_text(encoding="utf-8") if readme.is_file() else f"# {TITLE}\n"
    _write(src / "index.md", landing_page(readme_text, [Path(n).name for n in notebooks], docs,
                                          staged, repo_url, profile, titles))
    _write(src / "site.json", json.dumps({"title": TITLE, "repository_url": repo_url,
                                          "branch": BRANCH, "profile": profile,
                                          "extra_paths": extra}, indent=2))
    shutil.copyfile(conf, src / "conf.py")
    return {"notebooks": status, "docs": docs, "slides": has_deck}


def sphinx_build(src: Path, out: Path) -> None:
    """Run Sphinx (in this process, quiet: warnings and errors only, on stderr) on the staged
    ``src``, then move the HTML to ``out`` (replacing an earlier build).

    Raises ``RuntimeError`` when Sphinx fails, with the command to rerun it by hand.
    """
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        raise ImportError("building the site needs Sphinx, MyST-NB and sphinx-book-theme: "
                          "install the course's 'dev' extra with  pip install -e \".[dev]\"  "
                          "(make setup does).") from None
    built = src / "_build" / "html"
    args = ["-b", "html", "-q", "-E", "-d", str(src / "_build" / "doctrees"), str(src),
            str(built)]
    captured = io.StringIO()
    with redirect_stdout(captured):
        code = build_main(args)
    if code != 0:
        raise RuntimeError(f"Sphinx failed (exit {code}) on {src}; its messages are above. "
                           f"Rerun by hand: sphinx-build {' '.join(args)}")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(out))


def refuse_replacing(folder: Path, marker: str, option: str) -> None:
    """Raise :class:`UsageError` unless ``folder`` may be emptied and rewritten: it does not
    exist, is empty, or holds ``marker`` (what an earlier build left there).  Keeps ``--out
    build`` or ``--out .`` from deleting the executed notebooks or the course."""
    folder = Path(folder)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / marker).exists():
        raise UsageError(f"{option} {quote_path(folder)} holds files that are not a site built "
                         f"by this tool (no {marker}), and building would delete them; give a "
                         f"new or empty folder")


def run_course(build_dir: Path, profile: str) -> int:
    """``make course``: every notebook executed into ``build_dir`` (offline data)."""
    cmd = [sys.executable, "-m", "course_lib.runner", "--out", str(Path(build_dir).resolve()),
           "--profile", profile, "--data", "offline"]
    return subprocess.run(cmd, cwd=REPO_DIR, env={**os.environ, "COURSE_DATA": "offline"},
                          check=False).returncode


# =========================================================================== command line
def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*",
                        help="notebooks to put on the site (default: all, in order)")
    parser.add_argument("--profile", type=profile_name, default=None,
                        help="the profile the notebooks are shown in: fast | workshop | full "
                             "(default: $COURSE_PROFILE or workshop)")
    parser.add_argument("--build", default="build",
                        help="make course's output folder with the executed notebooks "
                             "(default: build)")
    parser.add_argument("--out", default=None,
                        help="the site's folder (default: BUILD/site; sources staged in "
                             "OUT-src)")
    parser.add_argument("--no-execute", action="store_true",
                        help="never run notebooks: one without a current executed copy is "
                             "shown without outputs")
    parser.add_argument("--check", action="store_true",
                        help="then open every page in headless Chromium with the network "
                             "refused (needs the `chromium` package)")
    parser.add_argument("--check-only", action="store_true",
                        help="only check the site already built in OUT")
    return parser


def check(out: Path, log=print) -> int:
    """The browser check of the site in ``out``; its summary printed; 0 if it passed."""
    from course_lib.browser import BrowserUnavailable, check_site

    try:
        report = check_site(out, search=SEARCH_WORD,
                            screenshot=out.parent / f"{out.name}-index.png")
    except BrowserUnavailable as err:
        raise DataError(f"browser check not run: {err}") from None
    log(report.summary())
    return 0 if report.ok else 1


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    profile = args.profile or env_profile()
    build_dir = Path(args.build)
    out = Path(args.out) if args.out else build_dir / "site"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {quote_path(out)} is a file; give a folder for the site")
    if args.check_only:
        if not (out / "index.html").is_file():
            raise UsageError(f"no site in {quote_path(out)} (no index.html): build it first "
                             f"(make site)")
        return check(out)
    paths = notebook_paths(args.notebooks)
    src = out.with_name(out.name + "-src")
    for folder, marker in ((out, ".buildinfo"), (src, "site.json")):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--out: {quote_path(folder)} is a file; give another --out")
        refuse_replacing(folder, marker, "--out")
        check_writable_folder(folder, "--out")
    if not args.no_execute:
        summary = read_summary(build_dir)
        stale = {p.name: why for p in paths
                 for _, why in [executed_copy(p, build_dir, profile, summary)] if why}
        if stale:
            names = ", ".join(f"{n} ({why})" for n, why in stale.items())
            print(f"No current executed copy in {build_dir}/notebooks of {names}: running the "
                  f"course first (make course, profile {profile}) ...", flush=True)
            if run_course(build_dir, profile) != 0:
                raise DataError(f"make course failed; see {build_dir}/summary.md. Fix the "
                                f"notebook, or build the site with --no-execute (failed "
                                f"notebooks are then shown without outputs).")
    start = time.perf_counter()
    print(f"Staging the site's sources in {src} ...", flush=True)
    staged = stage(src, paths, build_dir, profile)
    print(f"Building the site with Sphinx ({len(paths)} notebooks, "
          f"{len(staged['docs'])} docs pages) ...", flush=True)
    sphinx_build(src, out)
    executed = sum(v == "executed" for v in staged["notebooks"].values())
    print(f"Site built in {time.perf_counter() - start:.0f} s: {out / 'index.html'} "
          f"({executed}/{len(paths)} notebooks with outputs, profile {profile}; slides "
          f"{'included' if staged['slides'] else 'not built: make slides'}). It opens from "
          f"disk with no network.")
    return check(out) if args.check else 0


def main(argv=None) -> int:
    """Command line: see the module docstring; returns the exit code."""
    return run_command(PROG, _run, argv)
