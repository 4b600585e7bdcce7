"""``python -m course_lib.runner`` (:mod:`course_lib.cli.runner`), in-process.

Every notebook here is a tiny throwaway one written into ``tmp_path`` (a print cell, a failing
cell, a file that is not JSON): the course notebooks are never run by these tests.
"""
import _thread
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

from course_lib.cli import common, notebooks, runner

ANSI = re.compile(r"\x1b\[|\\u001b|\[[0-9;]*m")  # raw escapes, JSON-escaped ones, bare codes


def _write_nb(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def _assert_one_usage_line(capsys, *words):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{runner.PROG}: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


# --------------------------------------------------------------------------- running notebooks
@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """One run of three notebooks: not JSON (first!), one that works, one whose cell fails."""
    tmp = tmp_path_factory.mktemp("nbs")
    broken = tmp / "00_broken.ipynb"
    broken.write_text("this is not JSON {", encoding="utf-8")
    ok = _write_nb(tmp / "01_ok.ipynb",
                   "import os\nprint('Data source: embedded | test')\n"
                   "print(os.environ['COURSE_PROFILE'], os.environ['COURSE_DATA'])",
                   "import numpy as np\nblock = np.ones(60_000_000, dtype=np.uint8)  # ~60 MB")
    bad = _write_nb(tmp / "02_bad.ipynb", "print('before')",
                    "def inner():\n    raise RuntimeError('boom')\ninner()", "print('never')")
    out = tmp / "build"
    code = runner.main([str(broken), str(ok), str(bad), "--out", str(out), "--profile", "fast",
                        "--data", "offline"])
    return code, out


def test_main_job_writes_executed_copies_html_and_summary(ran):
    code, out = ran
    assert code == 1, "a failing notebook must make the main job fail"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"] == "fast" and summary["data"] == "offline"
    broken, ok, bad = summary["results"]
    assert ok["status"] == "ok" and ok["data_sources"] == ["embedded"]
    assert ok["peak_mb"] > 60, "the kernel's peak memory must include the 60 MB array"
    assert bad["status"] == "failed" and "boom" in bad["error"]
    executed = nbformat.read(out / "notebooks" / "01_ok.ipynb", as_version=4)
    assert len(executed.cells) == 2, "the measurement cell must not be saved"
    assert "fast offline" in executed.cells[0].outputs[-1]["text"]
    assert (out / "html" / "01_ok.html").read_text().count("Data source: embedded") >= 1
    index = (out / "index.html").read_text()
    assert 'href="html/02_bad.html"' in index and 'href="html/01_ok.html"' in index
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.part")), "half-written files"
    assert (out / "logs" / "01_ok.log").is_file(), "the kernel's own stderr goes to a log file"
    md = (out / "summary.md").read_text()
    assert "| 01_ok.ipynb | ok |" in md and "| 02_bad.ipynb | failed |" in md


def test_unreadable_notebook_fails_but_does_not_stop_the_run(ran):
    """Defect: a notebook that could not be read ended the run in a traceback, no summary."""
    code, out = ran
    broken = json.loads((out / "summary.json").read_text())["results"][0]
    assert broken["notebook"] == "00_broken.ipynb" and broken["status"] == "failed"
    assert "cannot read the notebook" in broken["error"] and "JSON" in broken["error"]
    assert "| 00_broken.ipynb | failed |" in (out / "summary.md").read_text()
    assert 'href="html/00_broken.html"' not in (out / "index.html").read_text(), \
        "no link to an HTML export that does not exist"


def test_summary_has_no_terminal_colour_codes(ran):
    """Defect: a failing cell's traceback carried ANSI colour codes into summary.md/.json."""
    _, out = ran
    executed = nbformat.read(out / "notebooks" / "02_bad.ipynb", as_version=4)
    traceback = "".join("".join(o.get("traceback", [])) for c in executed.cells
                        for o in c.get("outputs", []))
    assert "\x1b[" in traceback, "the kernel's traceback should be coloured (else this test " \
                                 "proves nothing)"
    for name in ("summary.md", "summary.json"):
        text = (out / name).read_text()
        assert not ANSI.search(text), f"{name} holds colour codes: {ANSI.search(text)}"
    error = json.loads((out / "summary.json").read_text())["results"][2]["error"]
    assert error.startswith("RuntimeError") and "boom" in error and "\n" not in error


def test_unreadable_notebooks_count_as_failed_and_the_summary_is_written(tmp_path, capsys):
    """No kernel needed: neither file can be read, both are reported, the summary exists."""
    first = tmp_path / "01_not_json.ipynb"
    first.write_text("{ not json", encoding="utf-8")
    second = tmp_path / "02_not_a_notebook.ipynb"
    second.write_text('["valid JSON", "but not a notebook"]', encoding="utf-8")
    out = tmp_path / "build"
    assert runner.main([str(first), str(second), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "2 notebook(s) failed: 01_not_json.ipynb, 02_not_a_notebook.ipynb" in captured.err
    results = json.loads((out / "summary.json").read_text())["results"]
    assert [r["status"] for r in results] == ["failed", "failed"]
    assert all(r["error"].startswith("cannot read the notebook") for r in results)
    md = (out / "summary.md").read_text()
    assert "| 01_not_json.ipynb | failed |" in md and "| 02_not_a_notebook.ipynb | failed |" in md
    assert (out / "index.html").is_file()


def test_execute_notebook_returns_failed_for_an_unreadable_file(tmp_path):
    path = tmp_path / "x.ipynb"
    path.write_bytes(b"\x00\xff not a notebook")
    r = notebooks.execute_notebook(path, out_dir=tmp_path / "out")
    assert (r.notebook, r.status, r.peak_mb) == ("x.ipynb", "failed", None)
    assert r.error.startswith("cannot read the notebook") and "\n" not in r.error


# --------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize("argv, words", [
    (["--profile", "nosuch"], ["--profile", "'nosuch'", "fast"]),
    (["--data", "nosuch"], ["--data", "'nosuch'", "offline"]),
    (["--frobnicate"], ["unrecognized arguments: --frobnicate"]),
])
def test_bad_options_are_usage_errors(argv, words, capsys):
    """Defect: --profile nosuch / --data nosuch ended in a ValueError traceback."""
    assert runner.main(argv) == 2
    _assert_one_usage_line(capsys, *words)


def test_missing_notebook_is_a_usage_error(tmp_path, capsys):
    """Defect: a notebook that is not there ended in a FileNotFoundError traceback."""
    assert runner.main([str(tmp_path / "nowhere.ipynb"), "--out", str(tmp_path / "b")]) == 2
    _assert_one_usage_line(capsys, "nowhere.ipynb", "not found")
    assert not (tmp_path / "b").exists(), "nothing is written for a usage error"


def test_folder_given_as_notebook_is_named_a_folder(tmp_path, capsys):
    assert runner.main([str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    _assert_one_usage_line(capsys, "is a folder, not a notebook")


def test_out_pointing_at_a_file_is_a_usage_error(tmp_path, capsys):
    """Defect: --out naming a file ended in a traceback (after reading the notebooks)."""
    nb = _write_nb(tmp_path / "01_x.ipynb", "print(1)")
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert runner.main([str(nb), "--out", str(target)]) == 2
    _assert_one_usage_line(capsys, "--out", "is a file")
    assert target.read_text() == "keep me"
    assert runner.main([str(nb), "--out", str(target / "below")]) == 2
    _assert_one_usage_line(capsys, "cannot create the --out folder")


def test_invalid_course_profile_in_the_environment_is_a_usage_error(tmp_path, monkeypatch,
                                                                    capsys):
    nb = _write_nb(tmp_path / "01_x.ipynb", "print(1)")
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    assert runner.main([str(nb), "--out", str(tmp_path / "b")]) == 2
    _assert_one_usage_line(capsys, "turbo")


def test_help_prints_usage_and_exits_0(capsys):
    assert runner.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {runner.PROG}") and "--profile" in out and "--out" in out


# --------------------------------------------------------------------------- helpers
def test_strip_ansi_and_summary_table():
    assert notebooks.strip_ansi("\x1b[0;31mRuntimeError\x1b[0m: boom\x1b[?25h") == \
        "RuntimeError: boom"
    rows = [notebooks.RunResult("01_a.ipynb", "ok", 1.25, 100.0, ["embedded"]),
            notebooks.RunResult("02_b.ipynb", "failed", 0.0, None, [], "cannot read")]
    table = notebooks.summary_table(rows).splitlines()
    assert table[2] == "| 01_a.ipynb | ok | 1.2 | 100 | embedded |"
    assert table[3] == "| 02_b.ipynb | failed | 0.0 | n/a | - |"
    assert table[4].startswith("| **total** | 1/2 ok | 1.2 | 100 (max) |")


def test_runner_runs_the_course_notebooks_by_default():
    assert runner.notebook_paths is common.notebook_paths
    assert common.notebook_paths([]) == common.list_notebooks()
    assert common.list_notebooks(), "the course's notebooks/ folder must hold the notebooks"


# --------------------------------------------------------------------------- checked before running
def _no_run(*args, **kwargs):
    pytest.fail("a notebook ran although the command line was wrong")


def test_out_whose_notebooks_folder_holds_the_inputs_is_refused(tmp_path, monkeypatch, capsys):
    """Defect: ``--out .`` run from the repository (so ``./notebooks`` holds the sources)
    overwrote every notebook with its executed copy."""
    (tmp_path / "notebooks").mkdir()
    nb = _write_nb(tmp_path / "notebooks" / "01_x.ipynb", "print(1)")
    before = nb.read_bytes()
    monkeypatch.setattr(runner, "execute_notebook", _no_run)
    monkeypatch.chdir(tmp_path)
    assert runner.main(["notebooks/01_x.ipynb", "--out", "."]) == 2
    _assert_one_usage_line(capsys, "--out would overwrite the input", "01_x.ipynb")
    assert nb.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks"], "nothing written"


def test_unwritable_out_folder_is_found_before_running(tmp_path, monkeypatch, capsys):
    """Defect: an --out folder that exists but cannot be written was found only after every
    notebook had run (about 12 minutes).  /proc refuses new files even to root."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    nb = _write_nb(tmp_path / "01_x.ipynb", "print(1)")
    monkeypatch.setattr(runner, "execute_notebook", _no_run)
    assert runner.main([str(nb), "--out", "/proc"]) == 2
    _assert_one_usage_line(capsys, "cannot write in '/proc'", "--out")


# --------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_stops_at_once_writes_the_summary_so_far_and_exits_130(tmp_path, monkeypatch,
                                                                      capsys):
    """Defect: Ctrl-C marked the notebook failed and the runner went on with the next one;
    the README promises exit 130.  Now: stop, summary of what ran, 130."""
    paths = [_write_nb(tmp_path / f"0{i}_x.ipynb", "print(1)") for i in (1, 2, 3)]
    calls = []

    def fake(path, **kw):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return notebooks.RunResult(path.name, "ok", 1.0, 10.0, ["embedded"])

    monkeypatch.setattr(runner, "execute_notebook", fake)
    out = tmp_path / "build"
    assert runner.main([*map(str, paths), "--out", str(out)]) == 130
    assert calls == ["01_x.ipynb", "02_x.ipynb"], "the third notebook must not start"
    err = capsys.readouterr().err
    assert "Stopped by Ctrl-C during 02_x.ipynb" in err and "interrupted." in err
    results = json.loads((out / "summary.json").read_text())["results"]
    assert [(r["notebook"], r["status"]) for r in results] == [("01_x.ipynb", "ok"),
                                                               ("02_x.ipynb", "interrupted")]
    assert "| 02_x.ipynb | interrupted |" in (out / "summary.md").read_text()


def test_ctrl_c_during_a_notebook_raises_and_stops_its_kernel(tmp_path, monkeypatch):
    """Defect: nbclient shut the kernel down on Ctrl-C and the run ended in unrelated errors,
    reported as a failed notebook, and the runner went on.  A real kernel, a real
    (simulated) Ctrl-C in the middle of a cell."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the kernel spec goes
    started = tmp_path / "started"
    nb = _write_nb(tmp_path / "01_sleep.ipynb",
                   f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(60)")

    def press_ctrl_c():
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    begin = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        notebooks.execute_notebook(nb, kernel_log=os.devnull)
    assert started.exists() and time.monotonic() - begin < 30, "stopped in the cell"
    assert not list(tmp_path.glob("course-kernel-*")), "temporary kernel folder left behind"


def test_kernel_environment_is_restored_and_its_folder_removed(tmp_path, monkeypatch):
    """Defect: one temporary course-kernel-* folder was left behind per notebook run."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    with notebooks._kernel_environment("fast", "offline"):
        folder = Path(os.environ["JUPYTER_PATH"])
        assert (folder / "kernels" / "python3" / "kernel.json").is_file()
        assert os.environ["COURSE_PROFILE"] == "fast" and os.environ["COURSE_DATA"] == "offline"
    assert not folder.exists() and list(tmp_path.iterdir()) == []
    assert os.environ["COURSE_PROFILE"] == "full" and "JUPYTER_PATH" not in os.environ
