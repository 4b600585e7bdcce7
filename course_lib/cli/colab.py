"""Colab and Binder support: the notebooks' setup cell and the README launch badges.

Used in every notebook's first code cell (the *Colab setup cell*, tagged ``colab-setup``): on
Google Colab it clones the course and installs what is missing; anywhere else it does nothing.
The README's "Open in Colab" and Binder badges come from here too.

The course's repository URL lives in ONE place, ``pyproject.toml`` ``[project.urls] Repository``.
The notebooks cannot read it on Colab (the course is not there yet), so the cell carries a copy
that this module writes. After changing the URL:

    python -m course_lib.colab sync     # rewrite the setup cells and the README's badges
    python -m course_lib.colab check    # exit 1 if anything is out of date (the tests check too)
    python -m course_lib.colab badges   # print one line of badges per notebook

Standard library (and :mod:`course_lib.cli.common`) only: cheap to import.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from course_lib.checks import DataError
from course_lib.cli.common import (BRANCH, ArgumentParser, github_repo,  # noqa: F401 - colab's API
                                   list_notebooks as _list_notebooks,
                                   parse_repository as _parse_repository, repository_url,
                                   run_command)
from course_lib.config import REPO_DIR as REPO
from course_lib.download import atomic_write_text

PROG = "python -m course_lib.colab"
CLONE_DIR = "/content/course"    # where the setup cell clones the course on Colab
CELL_TAG = "colab-setup"
BADGES_START, BADGES_END = "<!-- badges:start -->", "<!-- badges:end -->"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"

def setup_cell_source(url: str) -> str:
    """The exact source of the notebooks' Colab setup cell for the repository ``url``.

    It imports nothing from course_lib (not installed yet on Colab) and acts only when
    ``google.colab`` is loaded: clone (once), pip install the requirements, put the clone on
    ``sys.path`` and change into its ``notebooks/`` folder.
    """
    github_repo(url)  # a GitHub URL, so it is also a safe Python string literal
    return f'''\
# Colab setup: installs the course on Google Colab; does nothing anywhere else.
import sys
COURSE_REPO = "{url}"  # written by `python -m course_lib.colab sync` from pyproject.toml [project.urls] Repository
if "google.colab" in sys.modules:
    import os, subprocess
    COURSE_DIR = "{CLONE_DIR}"
    if not os.path.isdir(COURSE_DIR):  # cloned once: re-running this cell is safe
        subprocess.run(["git", "clone", "--depth", "1", COURSE_REPO, COURSE_DIR], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r",
                    COURSE_DIR + "/requirements.txt"], check=True)  # ranges: keeps Colab's Keras/TensorFlow
    if COURSE_DIR not in sys.path:
        sys.path.insert(0, COURSE_DIR)
    os.chdir(COURSE_DIR + "/notebooks")  # the clone ships data/, so relative paths work
    print(f"Colab: course installed from {{COURSE_REPO}} in {{COURSE_DIR}}; working in notebooks/")'''


def colab_url(notebook_name: str, url: str) -> str:
    """The "Open in Colab" link of ``notebooks/<notebook_name>`` in the repository ``url``."""
    owner, repo = github_repo(url)
    return (f"https://colab.research.google.com/github/{owner}/{repo}/blob/{BRANCH}/"
            f"notebooks/{notebook_name}")


def binder_url(url: str, notebook_name: str | None = None) -> str:
    """The Binder link of the repository ``url``: JupyterLab on one notebook, or on the course."""
    owner, repo = github_repo(url)
    path = f"lab/tree/notebooks/{notebook_name}" if notebook_name else "lab"
    return f"https://mybinder.org/v2/gh/{owner}/{repo}/{BRANCH}?urlpath={path}"


def list_notebooks(root: Path | str = REPO) -> list[Path]:
    """The course notebooks ``notebooks/NN_*.ipynb`` of the repository ``root``, in order."""
    return _list_notebooks(Path(root) / "notebooks")


def badge_cell(url: str, notebook_name: str) -> str:
    """The "Open in Colab" and Binder badges of one notebook (the README course map's last column)."""
    return (f"[![Open In Colab]({COLAB_BADGE})]({colab_url(notebook_name, url)}) "
            f"[![Binder]({BINDER_BADGE})]({binder_url(url, notebook_name)})")


def launch_line(url: str) -> str:
    """The README line with the Binder badge that opens the whole course."""
    return (f"[![Binder]({BINDER_BADGE})]({binder_url(url)}) **Launch the whole course on "
            f"Binder**: JupyterLab in the browser, nothing to install (about 2 GB of RAM; the "
            f"first start builds the environment and takes a few minutes).")


def notebook_badge_lines(url: str, root: Path | str = REPO) -> list[str]:
    """``"<notebook>: <badges>"`` for every notebook (``python -m course_lib.colab badges``)."""
    return [f"{nb.name}: {badge_cell(url, nb.name)}" for nb in list_notebooks(root)]


def readme_badges(url: str, root: Path | str = REPO) -> str:
    """The whole-course launch line, then one line of badges per notebook."""
    return "\n".join([launch_line(url), *notebook_badge_lines(url, root)])


def _cell_lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _read_notebook(raw: str, name: str) -> dict:
    """The notebook JSON ``raw`` of the file ``name``; :class:`DataError` naming the file when
    it is not JSON or not a notebook (a dict with a list of cells)."""
    try:
        nb = json.loads(raw)
    except ValueError as exc:
        raise DataError(f"{name} is not valid JSON ({exc}); restore it (git checkout -- "
                        f"{name}) or repair it, then run again.") from None
    problem = _notebook_problem(nb)
    if problem:
        raise DataError(f"{name} is JSON but not a notebook ({problem}); restore it (git "
                        f"checkout -- {name}) or remove it, then run again.")
    return nb


def _notebook_problem(nb) -> str:
    """What keeps the JSON value ``nb`` from being a notebook this tool can edit ("" if
    nothing): an object with an integer ``nbformat`` and a list of cells, each an object with
    a ``cell_type``, optional object ``metadata`` with an optional list of string ``tags``, and
    a ``source`` that is a string or a list of strings."""
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return "expected an object with a list of cells"
    if not isinstance(nb.get("nbformat"), int) or isinstance(nb.get("nbformat"), bool):
        return "no integer nbformat version"
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            return f"cell {i} is not an object with a cell_type"
        meta = cell.get("metadata", {})
        tags = meta.get("tags", []) if isinstance(meta, dict) else None
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            return f"cell {i} has metadata that is not an object with a list of string tags"
        source = cell.get("source", "")
        if not isinstance(source, (str, list)) or \
                (isinstance(source, list) and not all(isinstance(x, str) for x in source)):
            return f"cell {i} has a source that is neither text nor a list of lines"
    return ""


def _synced_notebook(raw: str, source: str, name: str = "notebook") -> str:
    """``raw`` notebook JSON with exactly one up-to-date setup cell, directly after cell 0."""
    nb = _read_notebook(raw, name)
    cells = nb["cells"]
    tagged = [i for i, c in enumerate(cells) if CELL_TAG in c.get("metadata", {}).get("tags", [])]
    pos = 1 if cells and cells[0].get("cell_type") == "markdown" else 0
    if tagged == [pos]:
        cell = cells[pos]
        if "".join(cell.get("source", "")) != source:
            cell["source"] = _cell_lines(source)
        if cell.get("outputs") or cell.get("execution_count") is not None:
            cell["outputs"], cell["execution_count"] = [], None
    else:
        for i in reversed(tagged):
            del cells[i]
        cell = {"cell_type": "code", "execution_count": None}
        if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):
            cell["id"] = CELL_TAG
        cell.update({"metadata": {"tags": [CELL_TAG]}, "outputs": [],
                     "source": _cell_lines(source)})
        cells.insert(pos, cell)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


_ROW = re.compile(r"^\|\s*(\d\d)\s*\|")


def _synced_readme(text: str, url: str, root: Path | str = REPO) -> str | None:
    """``text`` with the badges between the README markers brought up to date.

    Between ``<!-- badges:start -->`` and ``<!-- badges:end -->`` (the course map), a line that
    starts with a Binder badge becomes :func:`launch_line`, and in each table row ``| NN | ...``
    the last cell becomes :func:`badge_cell` of notebook NN.  None if the markers are missing.
    """
    pattern = re.compile(re.escape(BADGES_START) + r"(.*?)" + re.escape(BADGES_END), re.S)
    m = pattern.search(text)
    if not m:
        return None
    by_number = {nb.name[:2]: nb.name for nb in list_notebooks(root)}
    lines = []
    for line in m.group(1).split("\n"):
        row = _ROW.match(line)
        if line.startswith(f"[![Binder]({BINDER_BADGE})]"):
            line = launch_line(url)
        elif row and row.group(1) in by_number:
            cells = line.rstrip().rstrip("|").split("|")
            line = "|".join(cells[:-1]) + f"| {badge_cell(url, by_number[row.group(1)])} |"
        lines.append(line)
    return text[:m.start(1)] + "\n".join(lines) + text[m.end(1):]


def readme_missing_rows(text: str, root: Path | str = REPO) -> list[str]:
    """Notebooks without a ``| NN |`` row between the README's badge markers."""
    m = re.search(re.escape(BADGES_START) + r"(.*?)" + re.escape(BADGES_END), text, re.S)
    region = m.group(1) if m else ""
    found = {r.group(1) for r in map(_ROW.match, region.split("\n")) if r}
    return [nb.name for nb in list_notebooks(root) if nb.name[:2] not in found]


def _write(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def sync(check: bool = False, root: Path | str = REPO) -> list[str]:
    """Bring every notebook's setup cell (and the README badge block, if its markers exist) up to
    date with pyproject.toml's Repository URL.

    Returns the files (relative to ``root``) that were out of date; with ``check=True`` it
    writes nothing, only reports them.  Raises :class:`DataError`, naming the file and writing
    nothing, when a notebook is not JSON or not a notebook.
    """
    root = Path(root)
    url = repository_url(root)
    source = setup_cell_source(url)
    updates = {}  # every notebook is read and checked before any is written
    for path in list_notebooks(root):
        name = path.relative_to(root).as_posix()
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{name} is not UTF-8 text, so not a notebook; restore it (git "
                            f"checkout -- {name}), then run again.") from None
        new = _synced_notebook(raw, source, name)
        if new != raw:
            updates[path] = new
    stale = [path.relative_to(root).as_posix() for path in updates]
    if not check:
        for path, new in updates.items():
            _write(path, new)
    readme = root / "README.md"
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        new = _synced_readme(text, url, root)
        if new is not None and new != text:
            stale.append("README.md")
            if not check:
                _write(readme, new)
    return stale


def _run(argv) -> int:
    parser = ArgumentParser(
        prog=PROG,
        description="Colab setup cells and README badges, generated from pyproject.toml "
                    "[project.urls] Repository.")
    parser.add_argument("command", choices=["sync", "check", "badges"],
                        help="sync: rewrite what is out of date; check: exit 1 if anything is; "
                             "badges: print the Colab and Binder badges of every notebook")
    args = parser.parse_args(argv)
    url = repository_url()
    if args.command == "badges":
        print("\n".join(notebook_badge_lines(url)))
        return 0
    stale = sync(check=args.command == "check")
    has_markers = BADGES_START in (REPO / "README.md").read_text(encoding="utf-8")
    if args.command == "check":
        if stale:
            print(f"out of date with pyproject.toml's Repository URL ({url}): "
                  + ", ".join(stale), file=sys.stderr)
            print("fix: python -m course_lib.colab sync", file=sys.stderr)
            return 1
        print(f"Colab setup cells and README badges are up to date ({url})")
        return 0
    print("\n".join(f"updated {f}" for f in stale) or f"nothing to do: all up to date ({url})")
    if not has_markers:
        print(f"note: README.md has no {BADGES_START} / {BADGES_END} markers; "
              "badges not written")
    return 0


def main(argv=None) -> int:
    """Command line: ``python -m course_lib.colab sync|check|badges``; returns the exit code."""
    return run_command(PROG, _run, argv)
