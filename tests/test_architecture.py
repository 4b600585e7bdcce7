"""The shape of ``course_lib``: layers, no cycles, light imports, true docstring pointers.

- the import graph of ``course_lib`` (every ``import`` and ``from ... import``, at the top of a
  module or inside a function, relative ones too) has no cycle, and every module imports only
  modules above it in the list of ``course_lib/__init__.py``'s docstring;
- nothing but the command-line tools imports a command-line module (``course_lib.cli.*`` and
  the ``python -m`` shims): not the library, not a notebook, not the deck;
- importing the light modules and every command-line module loads no Keras, TensorFlow,
  Matplotlib or scikit-learn (so ``--help`` is fast);
- a docstring that names "notebook NN" tells the truth: notebook NN's code uses that name;
- :func:`course_lib.cli.common.list_notebooks` finds the course notebooks, and every tool
  uses that one function.

Each checker is tried on a synthetic bad case first (``test_detector_*``): these tests can fail.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "course_lib"
NOTEBOOKS = REPO / "notebooks"
SLIDES = REPO / "slides"

#: The order of the ``data`` subpackage (its docstring line says only ``data.*``).
DATA_ORDER = ("common", "image_files", "mnist", "creditcard", "mvtec", "mvtec_ad", "textures",
              "kolektor", "bottle", "ecg", "cache")
#: Inside ``cli``: what the tools share and bench's parts (``--save``, the image commands), then
#: the tools (same rank: none imports another).
CLI_SHARED = ("common", "notebooks", "bench_save", "bench_images")
#: The experiments, one module per notebook topic (same rank: none imports another).
EXPERIMENTS = ("one_class", "creditcard", "mvtec", "ecg")
CLI_TOOLS = ("runner", "bench", "data", "doctor", "colab", "score", "site")
#: ``python -m course_lib.<tool>`` shims: the very bottom.
SHIMS = ("course_lib.bench", "course_lib.runner", "course_lib.doctor", "course_lib.colab",
         "course_lib.score", "course_lib.site", "course_lib.data.__main__")
HEAVY = ("keras", "tensorflow", "matplotlib", "sklearn")


# =========================================================================== the import graph
def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``course_lib/data/mnist.py`` -> ``course_lib.data.mnist``; a package is its ``__init__``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(root: Path = PACKAGE) -> dict:
    """``{module name: path}`` of every ``.py`` file of the package."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))
            if "__pycache__" not in p.parts}


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list:
    """``(line, dotted name, imported names)`` for every import anywhere in ``tree``.

    Relative imports are resolved against ``module``; ``imported names`` is the tuple after
    ``from X import ...`` (empty for ``import X``).
    """
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base, tuple(a.name for a in node.names)))
    return found


def resolve(name: str, names: tuple, known) -> set:
    """The known modules an import statement reaches (``from pkg import sub`` reaches ``sub``)."""
    targets = set()
    for item in names:
        if f"{name}.{item}" in known:
            targets.add(f"{name}.{item}")
        elif name in known:
            targets.add(name)
    if not names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            targets.add(name)
    return targets


def import_graph(sources: dict, known=None) -> dict:
    """``{(importer, imported): line}`` between the modules of ``sources`` ({name: (code,
    is_package)}); imports of modules outside ``known`` (default: the sources) are left out."""
    known = set(sources) if known is None else set(known)
    edges = {}
    for module, (code, is_package) in sources.items():
        for line, name, names in imported_names(ast.parse(code), module, is_package):
            for target in resolve(name, names, known):
                if target != module:
                    edges.setdefault((module, target), line)
    return edges


def course_sources() -> dict:
    return {name: (path.read_text(encoding="utf-8"), path.name == "__init__.py")
            for name, path in all_modules().items()}


def find_cycles(edges) -> list:
    """One cycle (a list of modules, first == last) per strongly connected component."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):  # Tarjan; the graphs here are small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in components:  # walk inside the component back to its smallest member
        start = min(comp)
        path, seen = [start], {start}
        while True:
            nxt = sorted(w for w in graph[path[-1]] if w in comp)
            back = [w for w in nxt if w == start]
            if back:
                cycles.append(path + [start])
                break
            step = next((w for w in nxt if w not in seen), nxt[0])
            if step in seen:  # closed a smaller loop: report that one
                cycles.append(path[path.index(step):] + [step])
                break
            path.append(step)
            seen.add(step)
    return cycles


def layer_order(docstring: str) -> list:
    """Ranked groups of module names, top first, from the ``- ``name``...`` lines."""
    listed = re.findall(r"^- ``([\w.*]+)``", docstring, re.M)
    groups = []
    for name in listed:
        if name == "data.*":
            groups += [["course_lib.data"]] + [[f"course_lib.data.{m}"] for m in DATA_ORDER]
        elif name == "experiments.*":
            groups += [["course_lib.experiments"],
                       [f"course_lib.experiments.{m}" for m in EXPERIMENTS]]
        elif name == "cli.*":
            groups += [["course_lib.cli"]] + [[f"course_lib.cli.{m}"] for m in CLI_SHARED]
            groups.append([f"course_lib.cli.{m}" for m in CLI_TOOLS])
            groups.append(list(SHIMS))
        else:
            groups.append([f"course_lib.{name}"])
            if name == "config":  # the package itself re-exports config, nothing else
                groups.append(["course_lib"])
    return groups


def layer_violations(edges, groups) -> list:
    """Messages for every import of a module in the same or a later group."""
    rank = {m: i for i, group in enumerate(groups) for m in group}
    bad = []
    for (a, b), line in sorted(edges.items()):
        if a in rank and b in rank and rank[b] >= rank[a]:
            why = "the same layer" if rank[b] == rank[a] else "a later layer"
            bad.append(f"{a} (line {line}) imports {b}, which is in {why}")
    return bad


def cli_imports(edges) -> list:
    """Imports of a command-line module by a module that is not one."""
    return [f"{a} (line {line}) imports the command-line module {b}"
            for (a, b), line in sorted(edges.items())
            if is_cli(b) and not is_cli(a)]


def is_cli(module: str) -> bool:
    return module == "course_lib.cli" or module.startswith("course_lib.cli.") or module in SHIMS


# --------------------------------------------------------------------------- self-checks
BAD_PACKAGE = {
    "pkg": ("", True),
    "pkg.low": ("import os\nfrom pkg.high import thing\n", False),
    "pkg.high": ("def f():\n    from . import low\n", False),
    "pkg.sub": ("", True),
    "pkg.sub.leaf": ("from ..low import x\nfrom .. import high\nimport pkg.sub.deep.nothing\n",
                     False),
}


def test_detector_reads_every_kind_of_import():
    edges = import_graph(BAD_PACKAGE)
    assert edges == {("pkg.low", "pkg.high"): 2, ("pkg.high", "pkg.low"): 2,
                     ("pkg.sub.leaf", "pkg.low"): 1, ("pkg.sub.leaf", "pkg.high"): 2,
                     ("pkg.sub.leaf", "pkg.sub"): 3}


def test_detector_flags_a_cycle_and_a_layer_violation():
    edges = import_graph(BAD_PACKAGE)
    assert find_cycles(edges) == [["pkg.high", "pkg.low", "pkg.high"]]
    assert describe_cycle(["pkg.high", "pkg.low", "pkg.high"], edges) == \
        "pkg.high -> pkg.low (pkg.high line 2) -> pkg.high (pkg.low line 2)"
    assert find_cycles({("a", "b"): 1, ("b", "c"): 1, ("c", "a"): 1, ("c", "d"): 1}) == [
        ["a", "b", "c", "a"]]
    assert find_cycles({("a", "b"): 1}) == []
    groups = [["pkg.low"], ["pkg.high"], ["pkg.sub.leaf"]]
    assert layer_violations(edges, groups) == [
        "pkg.low (line 2) imports pkg.high, which is in a later layer"]
    assert layer_violations({("x", "y"): 4}, [["x", "y"]]) == [
        "x (line 4) imports y, which is in the same layer"]
    assert cli_imports({("course_lib.plots", "course_lib.cli.common"): 3,
                        ("course_lib.cli.bench", "course_lib.cli.common"): 1,
                        ("course_lib.metrics", "course_lib.bench"): 9}) == [
        "course_lib.metrics (line 9) imports the command-line module course_lib.bench",
        "course_lib.plots (line 3) imports the command-line module course_lib.cli.common"]


# --------------------------------------------------------------------------- the package
def test_layer_list_names_every_module_once():
    import course_lib

    groups = layer_order(course_lib.__doc__)
    listed = [m for g in groups for m in g]
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == sorted(all_modules()), (
        "course_lib/__init__.py's layer list (with DATA_ORDER, EXPERIMENTS, CLI_SHARED, CLI_TOOLS and SHIMS "
        f"here) and the files differ: not listed {sorted(set(all_modules()) - set(listed))}, "
        f"no such file {sorted(set(listed) - set(all_modules()))}")


def describe_cycle(cycle, edges) -> str:
    """``a -> b (a line 3) -> a (b line 9)``: each import of the cycle with its line."""
    steps = [cycle[0]] + [f"{b} ({a} line {edges[(a, b)]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(steps)


def test_course_lib_has_no_import_cycle():
    edges = import_graph(course_sources())
    cycles = find_cycles(edges)
    assert not cycles, "import cycles in course_lib:\n  " + "\n  ".join(
        describe_cycle(c, edges) for c in cycles)


def test_every_module_imports_only_modules_above_it():
    import course_lib

    bad = layer_violations(import_graph(course_sources()), layer_order(course_lib.__doc__))
    assert not bad, ("imports against the layer order of course_lib/__init__.py:\n  "
                     + "\n  ".join(bad))


def test_library_does_not_import_command_line_modules():
    bad = cli_imports(import_graph(course_sources()))
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------- notebooks, deck
def _python_of_cell(source: str) -> str:
    """A code cell as plain Python (IPython's ``%magic`` and ``!shell`` lines turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                         for ln in source.splitlines())
    return TransformerManager().transform_cell(source)


def _outside_imports(label: str, code: str, known) -> list:
    """CLI modules imported by ``code`` (a notebook cell or a deck file)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"{label}: cannot parse ({exc.msg}, line {exc.lineno})"]
    bad = []
    for line, name, names in imported_names(tree, "__outside__", False):
        for target in sorted(resolve(name, names, known)):
            if is_cli(target):
                bad.append(f"{label} line {line} imports the command-line module {target}")
    return bad


def test_detector_flags_a_notebook_cell_importing_a_cli_module():
    known = set(all_modules())
    cell = "%matplotlib inline\n!ls\nfrom course_lib import bench, plots\n"
    assert _outside_imports("nb cell 3", _python_of_cell(cell), known) == [
        "nb cell 3 line 3 imports the command-line module course_lib.bench"]
    assert _outside_imports("x", "from course_lib.cli.runner import main", known) == [
        "x line 1 imports the command-line module course_lib.cli.runner"]
    assert _outside_imports("x", "import course_lib.data.mnist", known) == []


def test_notebooks_do_not_import_command_line_modules():
    known = set(all_modules())
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert notebooks
    bad = []
    for nb in notebooks:
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                bad += _outside_imports(f"{nb.name} cell {i}",
                                        _python_of_cell("".join(cell["source"])), known)
    assert not bad, "notebooks importing command-line modules:\n  " + "\n  ".join(bad)


def test_deck_does_not_import_command_line_modules():
    known = set(all_modules())
    files = sorted(SLIDES.glob("*.py"))
    assert files
    bad = []
    for path in files:
        bad += _outside_imports(f"slides/{path.name}", path.read_text(encoding="utf-8"), known)
    assert not bad, "the deck imports command-line modules:\n  " + "\n  ".join(bad)


# =========================================================================== light imports
LIGHT = ["course_lib", "course_lib.config", "course_lib.checks", "course_lib.healthy",
         "course_lib.metrics", "course_lib.browser", "course_lib.data"] + [m for m in sorted(all_modules())
                               if m.startswith("course_lib.data.") or is_cli(m)]

_SPY = """
import importlib, json, sys
HEAVY = set(sys.argv[1].split(","))
found, current = {}, [None]

class Spy:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in found:
            chain, frame = [], sys._getframe(1)
            while frame is not None:
                mod = frame.f_globals.get("__name__", "")
                if mod.startswith("course_lib"):
                    chain.append(f"{mod} line {frame.f_lineno}")
                frame = frame.f_back
            found[top] = {"while importing": current[0], "imported from": chain[:4]}
        return None

sys.meta_path.insert(0, Spy())
for module in sys.argv[2:]:
    current[0] = module
    importlib.import_module(module)
print(json.dumps(found))
"""


def heavy_imports(modules, heavy=HEAVY) -> dict:
    """``{heavy package: where it was imported}`` after importing ``modules`` in a new Python."""
    out = subprocess.run([sys.executable, "-c", _SPY, ",".join(heavy), *modules],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def heavy_import_report(modules, heavy=HEAVY) -> list:
    """One line per module of ``modules`` whose import loads a ``heavy`` package, and where."""
    if not heavy_imports(modules, heavy):  # one Python for all: the usual, passing case
        return []
    lines = []
    for module in modules:  # name every culprit, not only the first one
        for package, where in sorted(heavy_imports([module], heavy).items()):
            lines.append(f"{module} loads {package} (from {'; '.join(where['imported from'])})")
    return lines


def test_detector_notices_a_heavy_import():
    found = heavy_imports(["json", "course_lib.checks"], heavy=("numpy", "tomllib"))
    assert set(found) == {"numpy"}
    assert found["numpy"]["while importing"] == "course_lib.checks"
    report = heavy_import_report(["course_lib.config", "course_lib.checks"], heavy=("numpy",))
    assert len(report) == 1 and report[0].startswith(
        "course_lib.checks loads numpy (from course_lib.checks line "), report


def test_light_modules_and_command_line_tools_import_nothing_heavy():
    bad = heavy_import_report(LIGHT)
    assert not bad, ("importing these loads Keras/TensorFlow/Matplotlib/scikit-learn (import "
                     "them inside the function that needs them):\n  " + "\n  ".join(bad))


# =========================================================================== docstring pointers
_POINTER = re.compile(r"\bnotebooks?\s+(\d\d(?!\d)(?:\s*(?:,|and|or|&|-|–|to)\s*\d\d(?!\d))*)",
                      re.I)


def notebook_numbers(text: str) -> list:
    """Every notebook number ``text`` names: "notebook 03", "notebooks 05 and 07", "01-03"."""
    numbers = []
    for match in _POINTER.finditer(text):
        tokens = re.findall(r"\d\d|-|–|\bto\b", match.group(1))
        i = 0
        while i < len(tokens):
            if i + 2 < len(tokens) and tokens[i + 1] in ("-", "–", "to"):
                numbers += range(int(tokens[i]), int(tokens[i + 2]) + 1)
                i += 3
            else:
                numbers.append(int(tokens[i]))
                i += 1
    return sorted(set(numbers))


def docstring_pointers() -> list:
    """``(module, name, notebook number)`` for every public top-level function or class of
    the library (not the command-line tools) whose own docstring names a notebook."""
    found = []
    for module, path in all_modules().items():
        if is_cli(module):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and not node.name.startswith("_"):
                for number in notebook_numbers(ast.get_docstring(node) or ""):
                    found.append((module, node.name, number))
    return found


def notebook_code(number: int) -> str | None:
    """The code cells of notebook ``NN_*.ipynb`` joined, or None if there is no such notebook."""
    paths = sorted(NOTEBOOKS.glob(f"{number:02d}_*.ipynb"))
    if not paths:
        return None
    cells = json.loads(paths[0].read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def uses(code: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", code) is not None


def test_detector_reads_notebook_pointers():
    assert notebook_numbers("Taught in notebook 03.") == [3]
    assert notebook_numbers("Used in notebooks 05 and 07 (and notebook 04's figure).") == [4, 5, 7]
    assert notebook_numbers("MNIST digits (notebooks 01-03, 06)") == [1, 2, 3, 6]
    assert notebook_numbers("see the notebook; 3 notebooks 2024") == []
    assert notebook_numbers("notebook 05_mvtec_l2_vs_ssim.ipynb") == [5]
    code = "from course_lib.metrics import evaluate_anomaly_maps\nx = threshold_best_f1(s)"
    assert uses(code, "threshold_best_f1") and not uses(code, "evaluate")


POINTERS = docstring_pointers()


def test_docstrings_point_to_notebooks():
    assert len(POINTERS) > 10, "the library's docstrings should name the notebooks that teach"


@pytest.mark.parametrize("module, name, number", POINTERS,
                         ids=[f"{m.removeprefix('course_lib.')}.{n}->nb{k:02d}"
                              for m, n, k in POINTERS])
def test_docstring_pointer_is_true(module, name, number):
    code = notebook_code(number)
    assert code is not None, f"{module}.{name}'s docstring names notebook {number:02d}, " \
                             f"which does not exist"
    used = uses(code, name)
    assert used, (f"{module}.{name}'s docstring names notebook {number:02d}, but that "
                  f"notebook's code never uses {name}: use it there, or correct the docstring")


# =========================================================================== list_notebooks
def test_list_notebooks_finds_the_course_notebooks_in_order():
    from course_lib.cli.common import list_notebooks

    found = [p.name for p in list_notebooks()]
    assert len(found) >= 7, f"expected the course's notebooks, found {found}"
    assert found == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")), \
        "every notebook in notebooks/ is a course notebook NN_name.ipynb"
    numbers = [int(n[:2]) for n in found]
    assert numbers == list(range(1, len(found) + 1)), f"notebooks 01, 02, ... in order: {found}"


def test_list_notebooks_sorts_and_keeps_only_numbered_notebooks(tmp_path):
    from course_lib.cli.common import list_notebooks

    for name in ("10_last.ipynb", "02_b.ipynb", "01_a.ipynb", "notes.ipynb", "3_x.ipynb",
                 "04_text.md"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in list_notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb",
                                                          "10_last.ipynb"]


def test_every_tool_uses_the_same_list_notebooks():
    from course_lib.cli import bench, colab, common, runner, site

    assert runner.notebook_paths is common.notebook_paths  # which default to list_notebooks
    assert bench.notebook_paths is common.notebook_paths
    assert site.notebook_paths is common.notebook_paths
    assert common.notebook_paths([]) == common.list_notebooks()
    assert colab._list_notebooks is common.list_notebooks
    assert colab.list_notebooks() == common.list_notebooks()

