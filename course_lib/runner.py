"""Execute the course notebooks: the course's main job (``make course``).

    python -m course_lib.runner [NOTEBOOK ...] [--out build] [--profile P] [--data offline]

Runs every notebook top to bottom in a fresh kernel (from its own folder), writes the executed
copy to ``build/notebooks/``, an HTML export to ``build/html/`` with an ``index.html`` that
links them in order, and prints a summary table: notebook, status, seconds, peak memory of the
kernel (its ``ru_maxrss``), and the data source(s) the notebook reported.
The benchmark (``python -m course_lib.bench notebooks``) reuses :func:`execute_notebook`.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
_SOURCE_RE = re.compile(r"Data source: (\w+)")
_MEASURE = ("import resource as _r, json as _j\n"
            "print('__COURSE_PEAK__' + _j.dumps(_r.getrusage(_r.RUSAGE_SELF).ru_maxrss))")


@dataclass
class RunResult:
    """What one notebook run produced (see :func:`execute_notebook`)."""

    notebook: str
    status: str
    seconds: float
    peak_mb: float | None
    data_sources: list = field(default_factory=list)
    error: str = ""


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks in sequence order (``NN_name.ipynb``)."""
    return sorted(p for p in Path(folder).glob("[0-9]*.ipynb"))


def _kernel_path_dir() -> str:
    """A JUPYTER_PATH folder whose ``python3`` kernel is *this* interpreter (the venv's)."""
    root = Path(tempfile.mkdtemp(prefix="course-kernel-"))
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (course)", "language": "python"}))
    return str(root)


def _sources(nb) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
            for name in _SOURCE_RE.findall(text if isinstance(text, str) else "".join(text)):
                if name not in found:
                    found.append(name)
    return found


def _require_notebook_tools() -> None:
    """Fail with the install command when nbclient / nbconvert (the ``lab`` extra) are missing."""
    import importlib.util

    missing = [m for m in ("nbformat", "nbclient", "nbconvert", "ipykernel")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"running notebooks needs {', '.join(missing)}: install the course's "
                          f"'lab' extra with  pip install -e \".[lab]\"  (make setup does).")


def execute_notebook(path, out_dir=None, profile: str | None = None, data: str | None = None,
                     timeout: int = 1800, kernel_log=None) -> RunResult:
    """Run one notebook in a fresh kernel; optionally save the executed copy and HTML export.

    ``profile`` and ``data`` set ``COURSE_PROFILE`` / ``COURSE_DATA`` for the kernel.
    Wall seconds cover kernel start to the last cell; peak memory is the kernel's peak RSS.
    ``kernel_log``: a file for the kernel process's own stderr (TensorFlow's C++ start-up
    messages land there instead of the terminal); default: ``OUT_DIR/logs/NAME.log`` when
    ``out_dir`` is given, else the terminal.
    """
    _require_notebook_tools()
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_MEASURE))
    env_backup = {k: os.environ.get(k) for k in ("COURSE_PROFILE", "COURSE_DATA", "JUPYTER_PATH",
                                                  "MPLBACKEND")}
    if profile:
        os.environ["COURSE_PROFILE"] = profile
    if data:
        os.environ["COURSE_DATA"] = data
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [_kernel_path_dir()] + ([env_backup["JUPYTER_PATH"]] if env_backup["JUPYTER_PATH"] else []))
    os.environ.pop("MPLBACKEND", None)  # let the inline backend capture figures
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    if kernel_log is None and out_dir is not None:
        kernel_log = Path(out_dir) / "logs" / (path.stem + ".log")
    log = None
    if kernel_log is not None:
        Path(kernel_log).parent.mkdir(parents=True, exist_ok=True)
        log = open(kernel_log, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    status, error, start = "ok", "", time.perf_counter()
    try:
        client.execute(**({"stderr": log} if log is not None else {}))
    except CellExecutionError as exc:
        status, error = "failed", str(exc).strip().splitlines()[-1][:300]
    except Exception as exc:  # noqa: BLE001 - kernel died, timeout, ...
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if log is not None:
            log.close()
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    peak = None
    for out in nb.cells[-1].get("outputs", []):
        m = re.search(r"__COURSE_PEAK__(\d+)", out.get("text", ""))
        if m:
            peak = int(m.group(1)) / 1024.0  # Linux reports kilobytes
    nb.cells.pop()
    result = RunResult(path.name, status, round(seconds, 1), None if peak is None else round(peak),
                       _sources(nb), error)
    if out_dir is not None:
        _save(nb, path, Path(out_dir))
    return result


def _save(nb, path: Path, out_dir: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    (out_dir / "html").mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "notebooks" / path.name, nbformat.writes(nb))
    body, _ = HTMLExporter().from_notebook_node(nb)
    _atomic_write(out_dir / "html" / (path.stem + ".html"), body)


def _atomic_write(target: Path, text: str) -> None:
    tmp = target.with_name(target.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


def summary_table(results: list[RunResult]) -> str:
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


def _write_index(results: list[RunResult], out_dir: Path, profile: str) -> None:
    items = "\n".join(
        f'<li><a href="html/{html.escape(Path(r.notebook).stem)}.html">{html.escape(r.notebook)}'
        f"</a> - {r.status}, {r.seconds:.0f} s, data: {html.escape(', '.join(r.data_sources) or '-')}"
        "</li>" for r in results)
    _atomic_write(out_dir / "index.html",
                  "<!doctype html><meta charset='utf-8'><title>Autoencoders and Anomaly Detection"
                  f"</title><h1>Executed notebooks (profile {html.escape(profile)})</h1>"
                  f"<ol>{items}</ol>")


def main(argv=None) -> int:
    from course_lib.config import data_mode, get_profile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all, in order)")
    parser.add_argument("--out", default="build", help="output folder (default: build)")
    parser.add_argument("--profile", default=None, help="fast | workshop | full "
                        "(default: $COURSE_PROFILE or workshop)")
    parser.add_argument("--data", default=None, help="auto | online | offline "
                        "(default: $COURSE_DATA or auto)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile).name
    data = data_mode(args.data)
    paths = [Path(p) for p in args.notebooks] or list_notebooks()
    if not paths:
        print("No notebooks found.", file=sys.stderr)
        return 1
    out_dir = Path(args.out)
    results = []
    for p in paths:
        print(f"running {p.name} (profile {profile}, data {data}) ...", flush=True)
        r = execute_notebook(p, out_dir=out_dir, profile=profile, data=data)
        print(f"  {r.status} in {r.seconds:.1f} s" + (f": {r.error}" if r.error else ""),
              flush=True)
        results.append(r)
    table = summary_table(results)
    _atomic_write(out_dir / "summary.md", f"Profile `{profile}`, data `{data}`\n\n{table}\n")
    _atomic_write(out_dir / "summary.json", json.dumps(
        {"profile": profile, "data": data, "results": [asdict(r) for r in results]}, indent=2))
    _write_index(results, out_dir, profile)
    print(f"\nExecuted notebooks in {out_dir}/notebooks, HTML in {out_dir}/html "
          f"(start at {out_dir}/index.html)\n")
    print(table)
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
