"""Running a notebook in a fresh kernel and measuring it (for ``runner`` and ``bench``), and
the tables of those measurements (``summary_table``; ``benchmark_table`` for ``bench``).

:func:`execute_notebook` runs one notebook top to bottom in a new kernel (from its own folder),
records the wall time, the kernel's peak memory (``ru_maxrss``) and the data sources it
reported, and optionally saves the executed copy and an HTML export.  A notebook that cannot
be read or fails counts as failed; nothing here raises for a bad notebook.  Ctrl-C stops the
kernel and raises ``KeyboardInterrupt`` (the tools then stop and exit with 130).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.download import atomic_write_text

#: = :data:`course_lib.healthy.LOG_ENV` (not imported: the tools stay light and layered).
HEALTHY_LOG_ENV = "COURSE_HEALTHY_LOG"
_SOURCE_RE = re.compile(r"Data source: (\w+)")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MEASURE = ("import resource as _r, json as _j\n"
            "print('__COURSE_PEAK__' + _j.dumps(_r.getrusage(_r.RUSAGE_SELF).ru_maxrss))")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (tracebacks of failed cells carry them)."""
    return _ANSI_RE.sub("", text)


@dataclass
class RunResult:
    """What one notebook run produced (see :func:`execute_notebook`)."""

    notebook: str
    status: str
    seconds: float
    peak_mb: float | None
    data_sources: list = field(default_factory=list)
    error: str = ""
    #: ``{key: value}`` the notebook passed to :func:`course_lib.healthy.report` (the last
    #: value where a key was reported twice).
    healthy: dict = field(default_factory=dict)


def _kernel_path_dir() -> str:
    """A JUPYTER_PATH folder whose ``python3`` kernel is *this* interpreter (the venv's)."""
    root = Path(tempfile.mkdtemp(prefix="course-kernel-"))
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (course)", "language": "python"}))
    return str(root)


@contextmanager
def _kernel_environment(profile: str | None, data: str | None, healthy_log=None):
    """``COURSE_PROFILE`` / ``COURSE_DATA`` for the kernel, ``COURSE_HEALTHY_LOG`` (the file
    :func:`course_lib.healthy.report` appends to) and a ``JUPYTER_PATH`` whose ``python3``
    kernel is this interpreter; all restored, and the temporary kernel folder removed, on the
    way out."""
    backup = {k: os.environ.get(k) for k in ("COURSE_PROFILE", "COURSE_DATA", "JUPYTER_PATH",
                                             "MPLBACKEND", HEALTHY_LOG_ENV)}
    kernel_dir = _kernel_path_dir()
    try:
        if healthy_log is not None:
            os.environ[HEALTHY_LOG_ENV] = str(healthy_log)
        if profile:
            os.environ["COURSE_PROFILE"] = profile
        if data:
            os.environ["COURSE_DATA"] = data
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [kernel_dir] + ([backup["JUPYTER_PATH"]] if backup["JUPYTER_PATH"] else []))
        os.environ.pop("MPLBACKEND", None)  # let the inline backend capture figures
        yield
    finally:
        for k, v in backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(kernel_dir, ignore_errors=True)


@contextmanager
def _kernel_stderr(kernel_log):
    """The open log file for the kernel's own stderr (None: the terminal)."""
    if kernel_log is None:
        yield None
        return
    Path(kernel_log).parent.mkdir(parents=True, exist_ok=True)
    with open(kernel_log, "w", encoding="utf-8") as log:
        yield log


def _stoppable_client(nb, **kwargs):
    """An nbclient ``NotebookClient`` that Ctrl-C stops, and that remembers it was stopped.

    nbclient's own Ctrl-C handler shuts the kernel down, after which the run ends in
    unrelated errors (a notebook then looked failed and the next one started).  Here Ctrl-C
    cancels the run (nbclient still shuts the kernel down) and sets ``client.interrupted``.
    """
    from nbclient import NotebookClient

    class StoppableClient(NotebookClient):
        interrupted = False

        @asynccontextmanager
        async def async_setup_kernel(self, **kw):
            async with super().async_setup_kernel(**kw):
                task = asyncio.current_task()

                def stop():
                    self.interrupted = True
                    task.cancel()

                try:  # replaces nbclient's handler until the kernel is shut down
                    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop)
                except (RuntimeError, NotImplementedError, ValueError):
                    pass  # not the main thread, or no signals (Windows)
                yield

    return StoppableClient(nb, **kwargs)


def _sources(nb) -> list:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
            for name in _SOURCE_RE.findall(text if isinstance(text, str) else "".join(text)):
                if name not in found:
                    found.append(name)
    return found


def require_notebook_tools() -> None:
    """Fail with the install command when nbclient / nbconvert (the ``lab`` extra) are missing."""
    import importlib.util

    missing = [m for m in ("nbformat", "nbclient", "nbconvert", "ipykernel")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"running notebooks needs {', '.join(missing)}: install the course's "
                          f"'lab' extra with  pip install -e \".[lab]\"  (make setup does).")


def _one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in strip_ansi(text).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def execute_notebook(path, out_dir=None, profile: str | None = None, data: str | None = None,
                     timeout: int = 1800, kernel_log=None) -> RunResult:
    """Run one notebook in a fresh kernel; optionally save the executed copy and HTML export.

    ``profile`` and ``data`` set ``COURSE_PROFILE`` / ``COURSE_DATA`` for the kernel.
    Wall seconds cover kernel start to the last cell; peak memory is the kernel's peak RSS.
    ``kernel_log``: a file for the kernel process's own stderr (TensorFlow's C++ start-up
    messages land there instead of the terminal); default: ``OUT_DIR/logs/NAME.log`` when
    ``out_dir`` is given, else the terminal.  A notebook that cannot be read (not JSON, not a
    notebook) is returned as failed, with the reason in ``error``.

    Raises
    ------
    KeyboardInterrupt
        Ctrl-C during the run (the kernel is shut down first; nothing is saved).
    """
    require_notebook_tools()
    import nbformat
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - not JSON, not a notebook, unreadable
        return RunResult(path.name, "failed", 0.0, None, [],
                         _one_line(f"cannot read the notebook: {type(exc).__name__}: {exc}"))
    nb.cells.append(nbformat.v4.new_code_cell(_MEASURE))
    client = _stoppable_client(nb, timeout=timeout, kernel_name="python3",
                               resources={"metadata": {"path": str(path.parent)}})
    if kernel_log is None and out_dir is not None:
        kernel_log = Path(out_dir) / "logs" / (path.stem + ".log")
    status, error, start = "ok", "", time.perf_counter()
    interrupted = False
    handle, healthy_log = tempfile.mkstemp(prefix="course-healthy-", suffix=".jsonl")
    os.close(handle)
    try:
        with _kernel_environment(profile, data, healthy_log), _kernel_stderr(kernel_log) as log:
            client.execute(**({"stderr": log} if log is not None else {}))
    except CellExecutionError as exc:
        status, error = "failed", _one_line(str(exc))
        interrupted = exc.ename == "KeyboardInterrupt"  # the kernel itself got Ctrl-C
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    except Exception as exc:  # noqa: BLE001 - kernel died, timeout, ...
        status, error = "failed", _one_line(f"{type(exc).__name__}: {exc}")
    finally:
        healthy = read_healthy_log(healthy_log, also_to=os.environ.get(HEALTHY_LOG_ENV))
        os.unlink(healthy_log)
    if interrupted or client.interrupted:
        raise KeyboardInterrupt
    seconds = time.perf_counter() - start
    peak = None
    for out in nb.cells[-1].get("outputs", []):
        m = re.search(r"__COURSE_PEAK__(\d+)", out.get("text", ""))
        if m:
            peak = int(m.group(1)) / 1024.0  # Linux reports kilobytes
    nb.cells.pop()
    result = RunResult(path.name, status, round(seconds, 1), None if peak is None else round(peak),
                       _sources(nb), error, healthy)
    if out_dir is not None:
        save_executed(nb, path, Path(out_dir))
    return result


def read_healthy_log(path, also_to=None) -> dict:
    """``{key: value}`` from the JSON lines :func:`course_lib.healthy.report` appended (a
    line that is not such a record is skipped).  ``also_to``: a file (the caller's own
    ``COURSE_HEALTHY_LOG``) the lines are appended to as well."""
    values = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return values
    if also_to and text:
        try:
            with open(also_to, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError:
            pass  # the caller's own copy is a convenience; the values are returned anyway
    for line in text.splitlines():
        try:
            record = json.loads(line)
            values[str(record["key"])] = float(record["value"])
        except (ValueError, KeyError, TypeError):
            continue
    return values


def save_executed(nb, path: Path, out_dir: Path) -> None:
    """Write the executed notebook to ``out_dir/notebooks`` and its HTML to ``out_dir/html``."""
    import nbformat
    from nbconvert import HTMLExporter

    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    (out_dir / "html").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "notebooks" / path.name, nbformat.writes(nb))
    body, _ = HTMLExporter().from_notebook_node(nb)
    atomic_write_text(out_dir / "html" / (path.stem + ".html"), body)


def summary_table(results: list) -> str:
    """Markdown table: notebook, status, seconds, peak memory (MB), data source."""
    lines = ["| notebook | status | seconds | peak memory (MB) | data source |",
             "|---|---|---:|---:|---|"]
    for r in results:
        peak = "n/a" if r.peak_mb is None else f"{r.peak_mb:.0f}"
        lines.append(f"| {r.notebook} | {r.status} | {r.seconds:.1f} | {peak} | "
                     f"{', '.join(r.data_sources) or '-'} |")
    total = sum(r.seconds for r in results)
    lines.append(f"| **total** | {sum(r.status == 'ok' for r in results)}/{len(results)} ok | "
                 f"{total:.1f} | {max((r.peak_mb or 0) for r in results):.0f} (max) | |")
    return "\n".join(lines)


DATA_WORDS = {"offline": "embedded (offline) data", "online": "downloaded (online) data",
              "auto": "online data where the network answered, else embedded data"}


# --------------------------------------------------------------------------- benchmark tables
def machine_info() -> dict:
    """CPU, cores, Python and library versions, for the benchmark table."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"date": _dt.date.today().isoformat(), "cpu": cpu,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "python": platform.python_version()}
    for pkg in ("keras", "tensorflow"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = "-"
    return info


def benchmark_table(results: dict, info: dict, data: str = "offline") -> str:
    """Markdown: one row per notebook, seconds and peak memory per profile, and what data."""
    profiles = list(results)
    head = "| notebook | " + " | ".join(f"{p}: s | {p}: peak MB" for p in profiles) + " |"
    sep = "|---|" + "---:|---:|" * len(profiles)
    names = [r.notebook for r in next(iter(results.values()))]
    rows = []
    for i, name in enumerate(names):
        cells = []
        for p in profiles:
            r = results[p][i]
            peak = "n/a" if r.peak_mb is None else f"{r.peak_mb:.0f}"
            sec = f"{r.seconds:.0f}" + ("" if r.status == "ok" else " (failed)")
            cells.append(f"{sec} | {peak}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = " | ".join(
        f"**{sum(r.seconds for r in results[p]):.0f}** | "
        f"**{max((r.peak_mb or 0) for r in results[p]):.0f}** (max)" for p in profiles)
    rows.append(f"| **whole course** | {totals} |")
    meta = (f"Measured {info['date']} with `python -m course_lib.bench notebooks` on "
            f"{info['cores']} CPU cores ({info['cpu']}), Python {info['python']}, "
            f"Keras {info['keras']}, TensorFlow {info['tensorflow']}, "
            f"{DATA_WORDS.get(data, data)}. "
            "Seconds: wall time from kernel start to the last cell. Peak MB: the kernel's peak "
            "resident memory (ru_maxrss).")
    return "\n".join([meta, "", head, sep] + rows)


HEALTHY_INTRO = """\
# What a healthy run gives

Written by `make bench` (`python -m course_lib.bench notebooks --healthy docs/healthy_runs.md`);
do not edit by hand.

Where a notebook asks you to compare or judge a result, it says what a healthy run gives, and
its code prints the number with that range (`course_lib.healthy.report`). This page holds the
numbers those very calls printed when the notebooks ran top to bottom on the embedded data, in
the `fast` and `workshop` profiles, and the ranges the notebooks state
(`course_lib.healthy.EXPECTED`; `tests/test_healthy.py` checks that each range contains the
number measured here and that the notebook's text states the same range).

**How the ranges were set.** Each notebook fixes its seeds, so on one machine a run repeats
itself closely; across machines, CPUs and library versions TensorFlow's arithmetic differs in
the last bits, and training amplifies that, much as another seed would. So each range is the
value measured here, widened: an AUROC by 0.02 on MNIST digits and credit-card rows (about the
spread of seeds in `docs/mnist_one_class.md`), by 0.04 on the small test sets of notebooks 05
to 09 (a few dozen images or beats: one image moves an image AUROC by several hundredths; the
feature dictionary's near-chance AUROC by 0.15), and by 0.01 for baselines that do not train
(PCA); an error or a ratio by 20% (5% for a baseline that does not train), the average
precision at the real fraud rate by 30% and the mean conformal false-alarm rate by 0.015. The
ends are rounded outwards. A value outside the range is a reason to look, not proof of a bug:
the notebook's line says where to look. The `full` profile has no range: it trains longer on
more data (the other pages in `docs/` give the methods' numbers on the real sets).
"""


def healthy_table(results: dict, info: dict, expected: dict, data: str = "offline") -> str:
    """Markdown: one row per reported key, the value per profile, and the stated ranges
    (``expected``: :data:`course_lib.healthy.EXPECTED`); a value outside its range is marked
    **outside**, a key without a range says so."""
    profiles = list(results)
    values = {p: {} for p in profiles}
    order = []
    for p in profiles:
        for r in results[p]:
            for key, value in r.healthy.items():
                values[p][key] = value
                if key not in order:
                    order.append(key)
    head = ("| key | what | " + " | ".join(f"{p}: measured | {p}: healthy range"
                                            for p in profiles) + " |")
    rows = [head, "|---|---|" + "---:|---|" * len(profiles)]
    for key in order:
        entry = expected.get(key)
        cells = []
        for p in profiles:
            value = values[p].get(key)
            digits = entry.digits if entry else 4
            shown = "-" if value is None else f"{value:.{digits}f}"
            if entry is None or p not in ("fast", "workshop"):
                stated = "(none)"
            else:
                low, high = getattr(entry, p)
                stated = entry.range_text(p)
                if value is not None and not low <= value <= high:
                    shown += " **outside**"
            cells.append(f"{shown} | {stated}")
        what = entry.what if entry else "(no range in course_lib.healthy)"
        rows.append(f"| `{key}` | {what} | " + " | ".join(cells) + " |")
    meta = (f"Measured {info['date']} on {info['cores']} CPU cores ({info['cpu']}), Python "
            f"{info['python']}, Keras {info['keras']}, TensorFlow {info['tensorflow']}, "
            f"{DATA_WORDS.get(data, data)}.")
    return "\n".join([meta, ""] + rows)


BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"
BENCH_BLOCK = re.compile(re.escape(BENCH_START) + r".*?" + re.escape(BENCH_END), re.S)


def replace_between_markers(path: Path, text: str) -> bool:
    """Put ``text`` between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` in ``path``."""
    start, end, pattern = BENCH_START, BENCH_END, BENCH_BLOCK
    content = path.read_text(encoding="utf-8")
    if not pattern.search(content):
        return False
    atomic_write_text(path, pattern.sub(lambda _: f"{start}\n{text}\n{end}", content))
    return True
