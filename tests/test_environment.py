"""The three ways to install the course agree: pip/make, Binder/conda (environment.yml), Colab.

requirements.txt is the one list of what the notebooks need; everything else points at it.
"""

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent


def _requirements(name):
    lines = (REPO / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_environment_yml_points_pip_at_the_requirements_files():
    text = (REPO / "environment.yml").read_text(encoding="utf-8")
    pip_lines = re.findall(r"^\s+-\s+(-r \S+|-e \S+)\s*$", text, re.M)
    assert pip_lines == ["-r requirements.txt", "-r requirements-lab.txt", "-e ."]
    # no package is pinned a second time in environment.yml
    for req in _requirements("requirements.txt"):
        name = re.split(r"[<>=!~ \[]", req)[0]
        assert not re.search(rf"^\s+-\s+{re.escape(name)}\b", text, re.M), name
    python = re.search(r"python=(\d+)\.(\d+)", text)
    assert python, "environment.yml must choose a Python version"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    low = tuple(map(int, re.search(r">=\s*(\d+)\.(\d+)",
                                   pyproject["project"]["requires-python"]).groups()))
    assert tuple(map(int, python.groups())) >= low


def test_pyproject_reads_the_requirements_files():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    assert dynamic["optional-dependencies"]["dev"] == {"file": ["requirements-dev.txt"]}
    assert dynamic["optional-dependencies"]["lab"] == {"file": ["requirements-lab.txt"]}


def test_every_requirement_is_a_bounded_range():
    for name in ("requirements.txt", "requirements-lab.txt", "requirements-dev.txt"):
        for req in _requirements(name):
            assert re.search(r">=[\d.]+,<[\d.]+$", req), f"{name}: '{req}' needs >=low,<high"


def test_colab_installs_no_jupyter_tooling():
    """Colab's setup cell installs requirements.txt; upgrading Colab's kernel can crash it."""
    names = {re.split(r"[<>=!~ \[]", r)[0].lower() for r in _requirements("requirements.txt")}
    assert not names & {"ipykernel", "ipython", "jupyterlab", "notebook", "nbclient",
                        "nbconvert", "nbformat", "jupyter-client", "tornado"}


def test_pyproject_ships_every_subpackage():
    """A non-editable install (Colab's ``pip install git+...``) gets only the listed packages."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "course_lib").rglob("__init__.py") if "__pycache__" not in p.parts}
    assert listed == found, f"pyproject lists {sorted(listed)}, the tree has {sorted(found)}"
