"""The notebooks teach the code that course_lib runs (d2l's "save" pattern).

A code cell whose first line is ``# Saved in course_lib.<module> as <name>[, <name> ...]`` holds
the whole definition of those names, exactly as ``course_lib/<module>.py`` has them (blank
lines aside).  Later notebooks, the benchmark commands and the deck import the library's copy,
so a learner reads and may change the very code they run.  These tests fail when a marked cell
and the library differ, when a marker names something the library lacks, and when the
exercises' solution cells would show on Colab.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MARKER = re.compile(r"^#\s*Saved in (course_lib(?:\.\w+)+) as ([\w, ]+?)\s*$")


def _code_cells(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            yield i, cell


def saved_cells():
    """(notebook, cell index, module, names, cell body) for every marked cell."""
    found = []
    for path in NOTEBOOKS:
        for i, cell in _code_cells(path):
            src = "".join(cell["source"])
            lines = src.splitlines()
            # a solution cell may start with Colab's "#@title" line before the marker
            start = 1 if lines and lines[0].startswith("#@title") else 0
            if len(lines) > start and MARKER.match(lines[start]):
                m = MARKER.match(lines[start])
                names = [n.strip() for n in m.group(2).split(",") if n.strip()]
                found.append((path.name, i, m.group(1), names, "\n".join(lines[start + 1:])))
    return found


def _normalised(text: str) -> list:
    """Lines without trailing blanks, blank lines dropped (layout between definitions may vary)."""
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def library_source(module: str, names: list) -> str:
    """The source of top-level definitions ``names`` in ``module`` (comments directly above a
    definition belong to it), in the order given."""
    path = REPO / (module.replace(".", "/") + ".py")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    spans = {}
    for node in tree.body:
        targets = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            targets = [node.name]
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while first > 1 and lines[first - 2].lstrip().startswith("#"):
            first -= 1  # attached comment lines
        for t in targets:
            spans[t] = (first, node.end_lineno)
    missing = [n for n in names if n not in spans]
    assert not missing, f"{module} has no top-level definition of {missing}"
    return "\n\n".join("\n".join(lines[spans[n][0] - 1:spans[n][1]]) for n in names)


def test_the_notebooks_save_their_central_code():
    """Sanity: the pattern is in use (a test over an empty list would prove nothing)."""
    cells = saved_cells()
    assert len(cells) >= 10, f"only {len(cells)} saved cells found"
    modules = {c[2] for c in cells}
    assert {"course_lib.models"} <= modules, modules


@pytest.mark.parametrize("notebook, index, module, names, body",
                         saved_cells(), ids=lambda v: v if isinstance(v, str) else None)
def test_saved_cell_equals_the_library(notebook, index, module, names, body):
    expected = _normalised(library_source(module, names))
    got = _normalised(body)
    if got != expected:
        diff = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
                    min(len(got), len(expected)))
        pytest.fail(f"{notebook}, cell {index}: the cell and {module}.{'/'.join(names)} differ "
                    f"from line {diff + 1} of the definition on:\n  cell:    "
                    f"{got[diff] if diff < len(got) else '<end>'}\n  library: "
                    f"{expected[diff] if diff < len(expected) else '<end>'}\n"
                    f"Change both together (the notebook teaches what course_lib runs).")


def test_library_source_finds_definitions_and_flags_missing_ones():
    src = library_source("course_lib.config", ["get_profile"])
    assert src.startswith("def get_profile(") and "return PROFILES[key]" in src
    with pytest.raises(AssertionError, match="no top-level definition"):
        library_source("course_lib.config", ["no_such_function"])


def _is_solution(cell) -> bool:
    first = "".join(cell["source"]).lstrip().splitlines()[:1]
    return bool(first) and "Solution" in first[0] and first[0].lstrip().startswith("#")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_solutions_are_hidden_in_jupyterlab_and_on_colab(path):
    """JupyterLab hides a cell's input by ``jupyter.source_hidden``; Colab ignores that and
    hides the code of a cell in form view (``cellView: form``) whose first line is ``#@title``."""
    solutions = [(i, c) for i, c in _code_cells(path) if _is_solution(c)]
    assert solutions, f"{path.name} has no exercise solution cell"
    for i, cell in solutions:
        meta = cell.get("metadata", {})
        first = "".join(cell["source"]).splitlines()[0]
        assert meta.get("jupyter", {}).get("source_hidden") is True, \
            f"{path.name} cell {i}: solution not collapsed in JupyterLab"
        assert meta.get("cellView") == "form" and first.startswith("#@title"), \
            f"{path.name} cell {i}: solution visible on Colab (needs cellView: form and a " \
            f"first line '#@title Solution ...')"
