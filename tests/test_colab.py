"""Colab setup cell, Colab/Binder links and README badges (``python -m course_lib.colab``,
:mod:`course_lib.cli.colab`). No network; the command line is called in-process."""

import ast
import json
import os
import shutil
import subprocess
import sys
import types

import pytest

from course_lib.cli import colab

URL = colab.repository_url()
OTHER = "https://github.com/someone/fork-of-the-course"


def _code_cells(path):
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code"]


def test_repository_url_is_the_one_in_pyproject():
    assert URL.startswith("https://github.com/")
    assert colab.github_repo(URL) == ("ae-anomaly-course", "autoencoders-anomaly-detection-keras")
    text = (colab.REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert text.count(URL) == 1, "the URL must live in exactly one line of pyproject.toml"


def test_python_310_fallback_reads_the_same_url(monkeypatch):
    text = (colab.REPO / "pyproject.toml").read_text(encoding="utf-8")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` now fails
    assert colab._parse_repository(text) == URL
    with pytest.raises(ValueError, match="Repository"):
        colab._parse_repository("[project]\nname = 'x'\n")


def test_every_notebook_starts_with_the_current_setup_cell():
    notebooks = colab.list_notebooks()
    assert len(notebooks) >= 7
    for nb in notebooks:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        assert cells[0]["cell_type"] == "markdown" and cells[0]["source"][0].startswith("# ")
        cell = cells[1]
        assert cell["cell_type"] == "code", f"{nb.name}: the setup cell must follow the title"
        assert cell["metadata"].get("tags") == [colab.CELL_TAG]
        assert "".join(cell["source"]) == colab.setup_cell_source(URL), nb.name
        assert cell["outputs"] == [] and cell["execution_count"] is None
        tagged = [c for c in cells if colab.CELL_TAG in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, f"{nb.name}: one setup cell only"
    assert colab.sync(check=True) == [], "run: python -m course_lib.colab sync"


def test_setup_cell_is_short_stdlib_only_and_names_the_url_once():
    src = colab.setup_cell_source(URL)
    lines = src.splitlines()
    assert lines[0] == "# Colab setup: installs the course on Google Colab; does nothing anywhere else."
    assert len(lines) <= 16
    repo_lines = [ln for ln in lines if ln.startswith("COURSE_REPO = ")]
    assert repo_lines == [f'COURSE_REPO = "{URL}"  # written by `python -m course_lib.colab sync` '
                          "from pyproject.toml [project.urls] Repository"]
    assert src.count(URL) == 1
    imported = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"sys", "os", "subprocess"}, "course_lib is not installed yet on Colab"


@pytest.fixture
def recorded(monkeypatch):
    """subprocess.run and os.chdir replaced by recorders; sys.path restored afterwards."""
    calls = {"run": [], "chdir": []}
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls["run"].append((args, kw)))
    monkeypatch.setattr(os, "chdir", lambda p: calls["chdir"].append(p))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return calls


def test_setup_cell_does_nothing_outside_colab(recorded, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    cwd, path = os.getcwd(), list(sys.path)
    ns = {}
    exec(colab.setup_cell_source(URL), ns)
    assert recorded == {"run": [], "chdir": []}
    assert os.getcwd() == cwd and sys.path == path
    assert ns["COURSE_REPO"] == URL


def test_setup_cell_on_colab_clones_once_installs_and_changes_folder(recorded, monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    folders = set()
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: p in folders or real_isdir(p))
    src = colab.setup_cell_source(URL)

    exec(src, {})
    (clone, clone_kw), (pip, pip_kw) = recorded["run"]
    assert clone == ["git", "clone", "--depth", "1", URL, "/content/course"]
    assert pip == [sys.executable, "-m", "pip", "install", "-q", "-r",
                   "/content/course/requirements.txt"]
    assert clone_kw == pip_kw == {"check": True}
    assert sys.path[0] == "/content/course"
    assert recorded["chdir"] == ["/content/course/notebooks"]

    folders.add("/content/course")  # the clone now exists: re-running must not clone again
    recorded["run"].clear()
    exec(src, {})
    assert [args[:2] for args, _ in recorded["run"]] == [[sys.executable, "-m"]]
    assert sys.path.count("/content/course") == 1


def test_colab_and_binder_urls():
    assert (colab.colab_url("03_x.ipynb", OTHER) == "https://colab.research.google.com/github/"
            "someone/fork-of-the-course/blob/main/notebooks/03_x.ipynb")
    assert (colab.binder_url(OTHER, "03_x.ipynb") == "https://mybinder.org/v2/gh/someone/"
            "fork-of-the-course/main?urlpath=lab/tree/notebooks/03_x.ipynb")
    assert colab.binder_url(OTHER + ".git/") == ("https://mybinder.org/v2/gh/someone/"
                                                 "fork-of-the-course/main?urlpath=lab")
    for bad in ["https://gitlab.com/a/b", "http://github.com/a/b", "https://github.com/a",
                "https://github.com/a/b/tree/main", 'https://github.com/a/b"; import os']:
        with pytest.raises(ValueError, match=r"https://github.com/<owner>/<repo>"):
            colab.colab_url("01.ipynb", bad)
        with pytest.raises(ValueError):
            colab.setup_cell_source(bad)


def test_readme_badges_has_one_line_per_notebook():
    block = colab.readme_badges(URL)
    names = [p.name for p in colab.list_notebooks()]
    assert block.count("colab-badge.svg") == len(names)
    assert block.count("badge_logo.svg") == len(names) + 1  # plus the whole-course badge
    assert colab.binder_url(URL) in block.splitlines()[0]
    for name in names:
        assert colab.colab_url(name, URL) in block and colab.binder_url(URL, name) in block


def test_readme_course_map_has_current_badges_for_every_notebook():
    text = (colab.REPO / "README.md").read_text(encoding="utf-8")
    assert colab.BADGES_START in text and colab.BADGES_END in text
    assert colab.readme_missing_rows(text) == [], "every notebook needs a row in the course map"
    assert colab._synced_readme(text, URL) == text, "run: python -m course_lib.colab sync"
    region = text.split(colab.BADGES_START)[1].split(colab.BADGES_END)[0]
    for nb in colab.list_notebooks():
        row = next(line for line in region.splitlines() if line.startswith(f"| {nb.name[:2]} |"))
        assert f"](notebooks/{nb.name})" in row and row.endswith(
            f"| {colab.badge_cell(URL, nb.name)} |")
    assert colab.launch_line(URL) in region


README_MAP = """# C

{start}
[![Binder](https://mybinder.org/badge_logo.svg)](old)

| # | notebook | what | open |
|---|---|---|---|
| 01 | first | a | old badge |
| 02 | second | b |  |
{end}

rest
"""


def _course_copy(tmp_path, url):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text(f'[project.urls]\nRepository = "{url}"\n')
    (tmp_path / "README.md").write_text(README_MAP.format(start=colab.BADGES_START,
                                                          end=colab.BADGES_END))
    for nb in colab.list_notebooks()[:2]:
        shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    return sorted((tmp_path / "notebooks").glob("*.ipynb"))


def test_sync_after_a_url_change_rewrites_only_the_setup_cell_and_badges(tmp_path):
    first, second = _course_copy(tmp_path, OTHER)
    before = second.read_text(encoding="utf-8")
    assert colab.sync(check=True, root=tmp_path) == [
        f"notebooks/{first.name}", f"notebooks/{second.name}", "README.md"]
    assert second.read_text(encoding="utf-8") == before, "check=True must write nothing"

    assert len(colab.sync(root=tmp_path)) == 3
    assert colab.sync(check=True, root=tmp_path) == []
    after = second.read_text(encoding="utf-8")
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(after.splitlines()) == len(before.splitlines())
    assert len(changed) == 1 and URL in changed[0][0] and OTHER in changed[0][1]
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert readme.endswith("\nrest\n") and URL not in readme and "old" not in readme
    assert colab.launch_line(OTHER) in readme
    assert f"| 01 | first | a | {colab.badge_cell(OTHER, first.name)} |" in readme
    assert f"| 02 | second | b | {colab.badge_cell(OTHER, second.name)} |" in readme
    assert colab.readme_missing_rows(readme, tmp_path) == []
    assert colab.readme_missing_rows(readme.replace("| 02 |", "| 09 |"), tmp_path) == [
        second.name]


def test_sync_inserts_a_missing_cell_after_the_title_and_keeps_the_rest(tmp_path):
    first, _ = _course_copy(tmp_path, URL)
    synced = first.read_text(encoding="utf-8")
    nb = json.loads(synced)
    del nb["cells"][1]
    nb["cells"].insert(5, {"cell_type": "code", "execution_count": 3, "id": "stale",
                           "metadata": {"tags": [colab.CELL_TAG]}, "outputs": [],
                           "source": ["old"]})
    first.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert f"notebooks/{first.name}" in colab.sync(root=tmp_path)
    assert first.read_text(encoding="utf-8") == synced, "byte-for-byte the synced notebook"
    assert _code_cells(first)[0]["id"] == colab.CELL_TAG


def test_command_line_check_names_the_files_and_the_fix(tmp_path, monkeypatch, capsys):
    assert colab.main(["check"]) == 0
    monkeypatch.setattr(colab, "repository_url", lambda root=colab.REPO: OTHER)
    monkeypatch.setattr(colab, "sync", lambda check=False: ["notebooks/01_x.ipynb"])
    assert colab.main(["check"]) == 1
    err = capsys.readouterr().err
    assert "notebooks/01_x.ipynb" in err and "python -m course_lib.colab sync" in err
    assert colab.main(["badges"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(colab.list_notebooks())
    assert out[0].startswith("01_") and "colab.research.google.com/github/someone/" in out[0]


def test_command_line_usage_errors_are_one_line(capsys):
    for argv, words in ((["nosuch"], "invalid choice: 'nosuch'"),
                        ([], "the following arguments are required: command")):
        assert colab.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and err.startswith(f"{colab.PROG}: error:")


@pytest.mark.parametrize("content, words", [
    ("{}", "is JSON but not a notebook"),
    ("[]", "is JSON but not a notebook"),
    ('{"cells": [1, 2]}', "is JSON but not a notebook"),
    ('{"cells": []}', "no integer nbformat version"),
    ('{"cells": [{"metadata": null}], "nbformat": 4}', "cell 0 is not an object with a cell_type"),
    ('{"cells": [{"cell_type": "code", "metadata": null}], "nbformat": 4}', "cell 0 has metadata"),
    ('{"cells": [{"cell_type": "code", "metadata": {"tags": null}}], "nbformat": 4}',
     "list of string tags"),
    ('{"cells": [{"cell_type": "code", "source": 3}], "nbformat": 4}', "cell 0 has a source"),
    ("{ not json", "is not valid JSON"),
])
def test_a_broken_notebook_is_named_and_nothing_is_written(tmp_path, monkeypatch, capsys,
                                                           content, words):
    """Defect: check/sync on a notebook holding {} or [] ended in a KeyError traceback, and
    invalid JSON was reported without the file's name."""
    first, second = _course_copy(tmp_path, OTHER)  # both out of date: sync would write them
    before = first.read_text(encoding="utf-8")
    second.write_text(content, encoding="utf-8")
    from course_lib.checks import DataError

    with pytest.raises(DataError, match=words) as info:
        colab.sync(root=tmp_path)
    assert f"notebooks/{second.name}" in str(info.value)
    assert first.read_text(encoding="utf-8") == before, "nothing is written before the check"
    original = colab.sync
    monkeypatch.setattr(colab, "sync", lambda check=False: original(check, root=tmp_path))
    for command in ("check", "sync"):
        assert colab.main([command]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"{colab.PROG}: error: notebooks/{second.name} ")
        assert words in err and "Traceback" not in err
