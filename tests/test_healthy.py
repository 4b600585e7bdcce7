"""What a healthy run gives (``course_lib.healthy``): the ranges the notebooks state.

- :func:`report` says "within it" or "outside it" correctly, per profile, and logs the value;
- every key a notebook reports has a range, every range belongs to a key its notebook reports,
  and the notebook's text states that very range (no placeholder left);
- the ranges contain the numbers measured in ``docs/healthy_runs.md`` (written by
  ``make bench`` from the notebooks' own ``report`` calls), in both profiles;
- the table writer and the log reader of the benchmark command.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course_lib import healthy
from course_lib.cli import bench, notebooks
from course_lib.cli.notebooks import RunResult
from course_lib.healthy import EXPECTED, Expected, report

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DOC = REPO / healthy.DOC
REPORT_CALL = re.compile(r"""\breport\(\s*["']([0-9]{2}\.[a-z0-9_]+)["']""")

FAKE = Expected("AUROC of the test model", workshop=(0.9, 0.95), fast=(0.6, 0.8),
                outside="Look at the loss curve.")


# --------------------------------------------------------------------------- report
@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(EXPECTED, "99.test_auroc", FAKE)
    monkeypatch.delenv(healthy.LOG_ENV, raising=False)
    return "99.test_auroc"


@pytest.mark.parametrize("profile, value, verdict", [
    ("workshop", 0.93, "within it."), ("workshop", 0.95, "within it."),
    ("workshop", 0.85, "outside it. Look at the loss curve."),
    ("workshop", 0.97, "outside it."),
    ("fast", 0.7, "within it. (Workshop profile: 0.9-0.95.)"),
    ("fast", 0.93, "outside it."),
])
def test_report_says_whether_the_value_is_in_the_range(fake, capsys, profile, value, verdict):
    assert report(fake, value, profile=profile) is None, "a returned line would show twice"
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert line.startswith(f"AUROC of the test model: {value:.3f}. A healthy {profile} run gives")
    assert verdict in line
    if verdict.startswith("within"):
        assert "Look at" not in line


def test_report_in_the_full_profile_and_for_nan_and_unknown_keys(fake, capsys):
    report(fake, 0.5, profile="full")
    line = capsys.readouterr().out
    assert "workshop run gives 0.9-0.95" in line and "within" not in line
    report(fake, float("nan"), profile="workshop")
    assert "not a number" in capsys.readouterr().out
    report("99.nothing", 1.0, profile="workshop")
    assert "no healthy range" in capsys.readouterr().out


def test_report_appends_to_the_log(fake, tmp_path, monkeypatch):
    log = tmp_path / "values.jsonl"
    monkeypatch.setenv(healthy.LOG_ENV, str(log))
    report(fake, 0.91, profile="fast")
    report(fake, 0.92, profile="fast")
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines == [{"key": fake, "value": 0.91, "profile": "fast"},
                     {"key": fake, "value": 0.92, "profile": "fast"}]
    assert notebooks.read_healthy_log(log) == {fake: 0.92}


def test_read_healthy_log_skips_bad_lines_and_copies(tmp_path):
    log, copy = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    log.write_text('{"key": "01.x", "value": 2}\nnot json\n{"value": 1}\n')
    assert notebooks.read_healthy_log(log, also_to=copy) == {"01.x": 2.0}
    assert copy.read_text() == log.read_text()
    assert notebooks.read_healthy_log(tmp_path / "missing.jsonl") == {}


def test_range_text_trims_zeros():
    assert Expected("x", (0.9, 0.95), (0.5, 1.0), "").range_text() == "0.9-0.95"
    assert Expected("x", (12.0, 20.5), (1, 2), "", digits=1).range_text("fast") == "1-2"


# --------------------------------------------------------------------------- the notebooks
def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def reported_keys() -> dict:
    """``{key: notebook}`` for every ``report("NN.key", ...)`` in a code cell."""
    found = {}
    for path in NOTEBOOKS:
        for cell in _cells(path):
            if cell["cell_type"] == "code":
                for key in REPORT_CALL.findall("".join(cell["source"])):
                    found[key] = path.name
    return found


def test_every_reported_number_has_a_range_and_every_range_is_reported():
    found = reported_keys()
    assert found, "no notebook reports a number"
    assert sorted(set(found) - set(EXPECTED)) == [], "keys without a range in EXPECTED"
    assert sorted(set(EXPECTED) - set(found)) == [], "ranges no notebook reports"
    for key, name in found.items():
        assert name.startswith(key[:2]), f"{key} is reported by {name}"


def test_the_detector_of_unknown_keys_can_fail():
    assert REPORT_CALL.findall('report("03.x_auroc", a)\n  report( "05.b", 1)') == \
        ["03.x_auroc", "05.b"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_the_notebook_states_its_ranges(path):
    """The learner reads the range in the text (outputs are not stored): the markdown states
    every reported key's workshop range, and no ``{{key}}`` placeholder is left."""
    text = "\n".join("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "markdown")
    assert "{{" not in text, "a placeholder for a range is left in the text"
    for key, name in reported_keys().items():
        if name == path.name:
            stated = EXPECTED[key].range_text()
            assert stated in text, f"{path.name} does not state {key}'s range {stated}"


# --------------------------------------------------------------------------- the measurements
def documented() -> dict:
    """``{key: {"fast": value, "workshop": value}}`` from docs/healthy_runs.md's table."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`([0-9]{2}\.[a-z0-9_]+)`\s*\|[^|]*\|\s*([-0-9.e]+)[^|]*\|[^|]*\|"
                     r"\s*([-0-9.e]+)[^|]*\|", line)
        if m:
            rows[m.group(1)] = {"fast": float(m.group(2)), "workshop": float(m.group(3))}
    return rows


def test_the_document_has_a_row_per_range_in_both_profiles():
    text = DOC.read_text(encoding="utf-8")
    assert "| key | what | fast: measured | fast: healthy range | workshop: measured |" in text
    assert sorted(documented()) == sorted(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_the_ranges_contain_the_documented_numbers(key):
    """A stated range that the course's own measured run falls outside is wrong (or the run
    is): either way, not something to ship."""
    entry, measured = EXPECTED[key], documented()[key]
    for profile in ("fast", "workshop"):
        low, high = getattr(entry, profile)
        assert low < high
        assert low <= measured[profile] <= high, (
            f"{key}: {profile} measured {measured[profile]} outside {entry.range_text(profile)}")


def test_the_documented_checker_parses_a_row():
    row = "| `03.ae_auroc` | AUROC | 0.912 | 0.85-0.95 | 0.960 **outside** | 0.9-0.95 |"
    m = re.match(r"\|\s*`([0-9]{2}\.[a-z0-9_]+)`\s*\|[^|]*\|\s*([-0-9.e]+)[^|]*\|[^|]*\|"
                 r"\s*([-0-9.e]+)[^|]*\|", row)
    assert m.groups() == ("03.ae_auroc", "0.912", "0.960")


# --------------------------------------------------------------------------- the bench table
INFO = {"date": "2026-01-01", "cpu": "Test CPU", "cores": 2, "python": "3.11.9",
        "keras": "3.15.0", "tensorflow": "2.21.0"}


def test_healthy_table_marks_values_outside_and_keys_without_range():
    results = {"fast": [RunResult("99_a.ipynb", "ok", 1.0, 1.0, [],
                                  healthy={"99.test_auroc": 0.7, "99.other": 2.0})],
               "workshop": [RunResult("99_a.ipynb", "ok", 1.0, 1.0, [],
                                      healthy={"99.test_auroc": 0.8})]}
    lines = notebooks.healthy_table(results, INFO, {"99.test_auroc": FAKE}).splitlines()
    assert lines[0].startswith("Measured 2026-01-01 on 2 CPU cores")
    assert lines[2] == ("| key | what | fast: measured | fast: healthy range | "
                        "workshop: measured | workshop: healthy range |")
    assert lines[4] == ("| `99.test_auroc` | AUROC of the test model | 0.700 | 0.6-0.8 | "
                        "0.800 **outside** | 0.9-0.95 |")
    assert lines[5] == ("| `99.other` | (no range in course_lib.healthy) | 2.0000 | (none) | "
                        "- | (none) |")


def test_bench_notebooks_writes_the_healthy_page(tmp_path, monkeypatch, capsys):
    nb = tmp_path / "01_a.ipynb"
    nb.write_text("{}")
    monkeypatch.setattr(notebooks, "execute_notebook", lambda path, profile=None, **kw:
                        RunResult(path.name, "ok", 1.0, 10.0, ["embedded"],
                                  healthy={"01.x": 1.0 if profile == "fast" else 2.0}))
    out = tmp_path / "healthy.md"
    assert bench.main(["notebooks", str(nb), "--healthy", str(out)]) == 0, \
        capsys.readouterr().err
    text = out.read_text()
    assert text.startswith("# What a healthy run gives")
    assert "| `01.x` | (no range in course_lib.healthy) | 1.0000 | (none) | 2.0000 |" in text
