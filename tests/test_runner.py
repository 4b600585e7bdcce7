import json

import nbformat
import pytest

from course_lib import runner


def _write_nb(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nbs")
    ok = _write_nb(tmp / "01_ok.ipynb",
                   "import os\nprint('Data source: embedded | test')\n"
                   "print(os.environ['COURSE_PROFILE'], os.environ['COURSE_DATA'])",
                   "import numpy as np\nblock = np.ones(60_000_000, dtype=np.uint8)  # ~60 MB")
    bad = _write_nb(tmp / "02_bad.ipynb", "print('before')", "raise RuntimeError('boom')",
                    "print('never')")
    out = tmp / "build"
    code = runner.main([str(ok), str(bad), "--out", str(out), "--profile", "fast",
                        "--data", "offline"])
    return code, out


def test_main_job_writes_executed_copies_html_and_summary(ran):
    code, out = ran
    assert code == 1, "a failing notebook must make the main job fail"
    summary = json.loads((out / "summary.json").read_text())
    ok, bad = summary["results"]
    assert ok["status"] == "ok" and ok["data_sources"] == ["embedded"]
    assert ok["peak_mb"] > 60, "the kernel's peak memory must include the 60 MB array"
    assert bad["status"] == "failed" and "boom" in bad["error"]
    executed = nbformat.read(out / "notebooks" / "01_ok.ipynb", as_version=4)
    assert len(executed.cells) == 2, "the measurement cell must not be saved"
    assert "fast offline" in executed.cells[0].outputs[-1]["text"]
    assert (out / "html" / "01_ok.html").read_text().count("Data source: embedded") >= 1
    assert 'href="html/02_bad.html"' in (out / "index.html").read_text()
    assert not list(out.rglob("*.part")), "no half-written files"
    assert (out / "logs" / "01_ok.log").is_file(), "the kernel's own stderr goes to a log file"
    md = (out / "summary.md").read_text()
    assert "| 01_ok.ipynb | ok |" in md and "| 02_bad.ipynb | failed |" in md


def test_list_notebooks_in_sequence_order():
    names = [p.name for p in runner.list_notebooks()]
    assert names == sorted(names) and all(n[:2].isdigit() for n in names)
