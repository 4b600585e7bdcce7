"""Execute the course notebooks: the course's main job (``make course``).

    python -m course_lib.runner [NOTEBOOK ...] [--out build] [--profile P] [--data offline]

Runs every notebook top to bottom in a fresh kernel (from its own folder), writes the executed
copy to ``build/notebooks/``, an HTML export to ``build/html/`` with an ``index.html`` that
links them in order, and prints a summary table: notebook, status, seconds, peak memory of the
kernel (its ``ru_maxrss``), and the data source(s) the notebook reported.  The summary
(``summary.md``, ``summary.json``) is written even when a notebook fails or cannot be read.
Exit code: 0 if every notebook ran, 1 if one failed, 2 for a usage error (checked before any
notebook runs: an ``--out`` folder that cannot be written, or one whose ``notebooks/`` holds
the very notebooks being run), 130 for Ctrl-C, which stops at once and writes the summary of
the notebooks run so far.
"""

from __future__ import annotations

import html
import json
import sys
from dataclasses import asdict
from pathlib import Path

from course_lib.cli.common import (ArgumentParser, UsageError, check_writable_folder,
                                   data_mode_name, env_data_mode, env_profile, notebook_paths,
                                   profile_name, refuse_overwriting, run_command)
from course_lib.cli.notebooks import RunResult, execute_notebook, summary_table
from course_lib.download import atomic_write_text

PROG = "python -m course_lib.runner"


def _index_item(r, out_dir: Path) -> str:
    """One ``<li>``: a link to the HTML export (none for a notebook that could not be read)."""
    stem = Path(r.notebook).stem
    name = html.escape(r.notebook)
    if (out_dir / "html" / f"{stem}.html").is_file():
        name = f'<a href="html/{html.escape(stem)}.html">{name}</a>'
    return (f"<li>{name} - {r.status}, {r.seconds:.0f} s, data: "
            f"{html.escape(', '.join(r.data_sources) or '-')}</li>")


def _write_index(results: list, out_dir: Path, profile: str) -> None:
    items = "\n".join(_index_item(r, out_dir) for r in results)
    atomic_write_text(out_dir / "index.html",
                      "<!doctype html><meta charset='utf-8'><title>Autoencoders and Anomaly "
                      f"Detection</title><h1>Executed notebooks (profile {html.escape(profile)})"
                      f"</h1><ol>{items}</ol>")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all, in order)")
    parser.add_argument("--out", default="build", help="output folder (default: build)")
    parser.add_argument("--profile", type=profile_name, default=None,
                        help="fast | workshop | full (default: $COURSE_PROFILE or workshop)")
    parser.add_argument("--data", type=data_mode_name, default=None,
                        help="auto | online | offline (default: $COURSE_DATA or auto)")
    return parser


def _out_folder(text: str, paths: list) -> Path:
    """The ``--out`` folder, created and checked before any notebook runs."""
    out_dir = Path(text)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file; give a folder for the executed notebooks")
    refuse_overwriting([out_dir / "notebooks" / p.name for p in paths], paths, "--out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the --out folder {out_dir} "
                         f"({exc.strerror or type(exc).__name__}); give another folder") from None
    for folder in (out_dir, *(out_dir / sub for sub in ("notebooks", "html", "logs"))):
        if folder == out_dir or folder.exists():
            check_writable_folder(folder, "--out")
    return out_dir


def _write_summary(results: list, out_dir: Path, profile: str, data: str) -> str:
    table = summary_table(results)
    atomic_write_text(out_dir / "summary.md", f"Profile `{profile}`, data `{data}`\n\n{table}\n")
    atomic_write_text(out_dir / "summary.json", json.dumps(
        {"profile": profile, "data": data, "results": [asdict(r) for r in results]}, indent=2))
    _write_index(results, out_dir, profile)
    return table


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    profile = args.profile or env_profile()
    data = args.data or env_data_mode()
    paths = notebook_paths(args.notebooks)
    out_dir = _out_folder(args.out, paths)
    results = []
    for p in paths:
        print(f"running {p.name} (profile {profile}, data {data}) ...", flush=True)
        try:
            r = execute_notebook(p, out_dir=out_dir, profile=profile, data=data)
        except KeyboardInterrupt:
            results.append(RunResult(p.name, "interrupted", 0.0, None, [], "stopped by Ctrl-C"))
            _write_summary(results, out_dir, profile, data)
            print(f"\nStopped by Ctrl-C during {p.name}; the summary of the notebooks run so "
                  f"far is in {out_dir}/summary.md.", file=sys.stderr)
            raise
        print(f"  {r.status} in {r.seconds:.1f} s" + (f": {r.error}" if r.error else ""),
              flush=True)
        results.append(r)
    table = _write_summary(results, out_dir, profile, data)
    print(f"\nExecuted notebooks in {out_dir}/notebooks, HTML in {out_dir}/html "
          f"(start at {out_dir}/index.html)\n")
    print(table)
    failed = [r.notebook for r in results if r.status != "ok"]
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(failed)}; see "
              f"{out_dir}/summary.md and the executed copies.", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """Command line: see the module docstring; returns the exit code."""
    return run_command(PROG, _run, argv)
