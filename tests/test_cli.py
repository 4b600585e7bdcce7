"""What every command-line tool shares (:mod:`course_lib.cli.common`).

- one ``python -m`` smoke test per entry point, and the console scripts of pyproject.toml;
- a usage error prints exactly ONE line on stderr and exits with 2;
- a failure exits with 1 and a message; nothing a user can cause prints a traceback.

Everything else calls ``main([...])`` in-process (see the test file of each tool).
"""
import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from course_lib.checks import DataError
from course_lib.cli import bench, colab, common, data, doctor, runner, score, site
from course_lib.config import REPO_DIR

TOOLS = {"runner": runner, "bench": bench, "data": data, "doctor": doctor, "colab": colab,
         "score": score, "site": site}
SHIMS = {"runner": "course_lib.runner", "bench": "course_lib.bench", "data": "course_lib.data",
         "doctor": "course_lib.doctor", "colab": "course_lib.colab", "score": "course_lib.score",
         "site": "course_lib.site"}
SCRIPTS = {"course-run": runner, "course-bench": bench, "course-data": data,
           "course-doctor": doctor, "course-colab": colab, "course-score": score,
           "course-site": site}


def _python_m(module, *args, env=None):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO_DIR, env={**os.environ, **(env or {})})


# --------------------------------------------------------------------------- python -m
def test_python_m_runner_help():
    out = _python_m("course_lib.runner", "--help")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith("usage: python -m course_lib.runner") and "--profile" in out.stdout


def test_python_m_bench_usage_error_is_one_line():
    out = _python_m("course_lib.bench", "ssim-speed", "--images", "0")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "python -m course_lib.bench: error: argument --images: expected a whole number >= 1, "
        "got '0' (see python -m course_lib.bench --help)"]


def test_python_m_data_help():
    out = _python_m("course_lib.data", "--help")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith("usage: python -m course_lib.data")
    assert "prefetch" in out.stdout and "status" in out.stdout


def test_python_m_doctor_help():
    out = _python_m("course_lib.doctor", "--help")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith("usage: python -m course_lib.doctor")


def test_python_m_colab_badges():
    out = _python_m("course_lib.colab", "badges")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(common.list_notebooks()) >= 7
    assert lines[0].startswith("01_") and "colab.research.google.com" in lines[0]


def test_shims_are_the_cli_tools():
    """``python -m course_lib.<tool>`` runs :func:`course_lib.cli.<tool>.main`, nothing else."""
    for name, tool in TOOLS.items():
        shim = SHIMS[name] + (".__main__" if name == "data" else "")
        assert importlib.import_module(shim).main is tool.main, shim


# --------------------------------------------------------------------------- console scripts
def test_pyproject_declares_one_console_script_per_tool():
    scripts = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(SCRIPTS)
    for script, target in scripts.items():
        module, _, func = target.partition(":")
        assert getattr(importlib.import_module(module), func) is SCRIPTS[script].main, script


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_installed_console_script_runs_help(script):
    path = Path(sys.executable).parent / script
    if not path.is_file():
        pytest.skip(f"{script} not installed here (pip install -e . installs it)")
    out = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith(f"usage: {SCRIPTS[script].PROG}")


# --------------------------------------------------------------------------- usage errors
USAGE_ERRORS = [
    ("runner", ["--nosuch"], "unrecognized arguments: --nosuch"),
    ("runner", ["--profile", "turbo"], "unknown profile 'turbo'"),
    ("runner", ["--data", "sometimes"], "unknown data mode 'sometimes'"),
    ("runner", ["{missing}"], "not found"),
    ("runner", ["{folder}"], "is a folder"),
    ("bench", [], "the following arguments are required: command"),
    ("bench", ["nosuch"], "invalid choice: 'nosuch'"),
    ("bench", ["mnist-one-class", "--train", "{missing}"], "not found"),
    ("bench", ["mnist-one-class", "--train", "{file}", "--test", "{file}", "--digit", "12"],
     "invalid choice: 12"),
    ("bench", ["creditcard", "--csv", "{folder}"], "is a folder, not a file"),
    ("bench", ["creditcard", "--csv", "{file}", "--test-fraction", "1.5"], "(0, 1)"),
    ("bench", ["mvtec", "--root", "{missing}", "--category", "carpet"], "not found"),
    ("bench", ["mvtec", "--root", "{folder}", "--category", "c", "--loss", "l3"],
     "invalid choice: 'l3'"),
    ("bench", ["mvtec-knn", "--root", "{folder}", "--category", "c", "--fraction", "0"],
     "expected a number in (0, 1]"),
    ("bench", ["mvtec-dictionary", "--root", "{folder}", "--category", "c", "--seed", "-1"],
     "argument --seed: expected a whole number from 0 to 4294967295"),
    ("bench", ["ssim-speed", "--images", "-1"], "expected a whole number >= 1"),
    ("bench", ["ssim-speed", "--size", "0"], "expected a whole number >= 11"),
    ("bench", ["notebooks", "--data", "nosuch"], "unknown data mode 'nosuch'"),
    ("data", [], "the following arguments are required: command"),
    ("data", ["prefetch", "--mvtec", "bottles"], "unknown MVTec AD category 'bottles'"),
    ("data", ["status", "--profile", "turbo"], "unknown profile 'turbo'"),
    ("doctor", ["now"], "unrecognized arguments: now"),
    ("colab", ["nosuch"], "invalid choice: 'nosuch'"),
    ("score", [], "give DETECTOR and INPUT (or --list)"),
    ("score", ["{missing}", "{folder}"], "not found: give a .keras file or the name"),
    ("score", ["{folder}", "{folder}"], "is a folder, not a .keras file"),
    ("score", ["{file}", "{missing}"], "INPUT '"),
    ("score", ["{file}", "{folder}", "--out", "{file}"], "is a file, not a folder"),
    ("site", ["--profile", "turbo"], "unknown profile 'turbo'"),
    ("site", ["{missing}"], "not found"),
    ("site", ["--out", "{file}"], "is a file; give a folder for the site"),
    ("site", ["--check-only", "--out", "{folder}"], "no site in"),
]


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.npz").write_bytes(b"x")
    return {"missing": str(tmp_path / "missing.ipynb"), "folder": str(tmp_path / "folder"),
            "file": str(tmp_path / "file.npz")}


def _call(tool, argv, capsys):
    """``main(argv)`` of one tool; an exception escaping it (a traceback) fails the test."""
    try:
        code = TOOLS[tool].main(argv)
    except BaseException as exc:  # noqa: BLE001 - that is what this test looks for
        pytest.fail(f"{tool} {argv} raised {type(exc).__name__}: {exc} (a traceback for the user)")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured


@pytest.mark.parametrize("tool, argv, words", USAGE_ERRORS,
                         ids=[f"{t}-{' '.join(a) or 'nothing'}" for t, a, _ in USAGE_ERRORS])
def test_usage_error_is_one_line_and_exit_2(tool, argv, words, paths, capsys):
    code, captured = _call(tool, [a.format(**paths) for a in argv], capsys)
    prog = TOOLS[tool].PROG
    assert code == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{prog}: error: ") and lines[0].endswith(f"(see {prog} --help)")
    assert words in lines[0]
    assert captured.out == ""


@pytest.mark.parametrize("tool, argv", [
    ("runner", ["{missing}"]), ("data", ["status"]),
    ("bench", ["mnist-one-class", "--train", "{file}", "--test", "{file}", "--digit", "1"])])
def test_invalid_profile_in_the_environment_is_a_usage_error(tool, argv, paths, monkeypatch,
                                                             capsys):
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    code, captured = _call(tool, [a.format(**paths) for a in argv], capsys)
    assert code == 2 and len(captured.err.splitlines()) == 1, captured.err
    assert "'turbo'" in captured.err and "COURSE_PROFILE" in captured.err


def test_user_failures_exit_1_with_a_message(tmp_path, capsys):
    """Bad data (not a usage error): exit 1, ``<prog>: error: <message>``, no traceback."""
    csv = tmp_path / "bad.csv"
    csv.write_text("a,b\n1,2\n")
    npz = tmp_path / "digits.npz"
    np.savez_compressed(npz, x=np.zeros((5, 20, 20), np.uint8), y=np.zeros(5, int))
    for tool, argv, words in [
            ("bench", ["creditcard", "--csv", str(csv)], "bad.csv"),
            ("bench", ["mnist-one-class", "--train", str(npz), "--test", str(npz),
                       "--digit", "1"], "digits.npz")]:
        code, captured = _call(tool, argv, capsys)
        assert code == 1, captured.err
        assert captured.err.startswith(f"{TOOLS[tool].PROG}: error: ") and words in captured.err


# --------------------------------------------------------------------------- run_command
@pytest.mark.parametrize("raised, code, message", [
    (common.UsageError("first line\nsecond\tline"), 2, "P: error: first line second line "
                                                      "(see P --help)"),
    (DataError("the file is broken; fix it"), 1, "P: error: the file is broken; fix it"),
    (FileNotFoundError(2, "No such file", "x.csv"), 1, "P: error: FileNotFoundError: "),
    (ImportError("no module named nbclient"), 1, "P: error: ImportError: no module named"),
    (MemoryError(), 1, "P: error: out of memory."),
    (KeyboardInterrupt(), 130, "P: interrupted."),
    (SystemExit("stopped: reason"), 1, "P: error: stopped: reason"),
    (SystemExit(3), 3, ""),
    (SystemExit(None), 0, ""),
])
def test_run_command_turns_errors_into_exit_codes(raised, code, message, capsys):
    def run(argv):
        raise raised

    assert common.run_command("P", run, []) == code
    err = capsys.readouterr().err
    assert err.strip().startswith(message) if message else err == ""
    if code == 2:
        assert len(err.strip().splitlines()) == 1


def test_run_command_returns_what_the_tool_returns():
    assert common.run_command("P", lambda argv: None, []) == 0
    assert common.run_command("P", lambda argv: 1, []) == 1


def test_argument_types():
    import argparse

    assert common.positive_int("3") == 3 and common.int_at_least(11)("11") == 11
    assert common.fraction()("1") == 1.0 and common.fraction(allow_one=False)("0.5") == 0.5
    for parse, bad in [(common.positive_int, "0"), (common.positive_int, "1.5"),
                       (common.int_at_least(0), "-1"), (common.fraction(), "0"),
                       (common.fraction(allow_one=False), "1"), (common.fraction(), "nan"),
                       (common.profile_name, "turbo"), (common.data_mode_name, "x")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


def test_file_and_folder_arguments(tmp_path):
    import argparse

    a_file = tmp_path / "a.md"
    a_file.write_text("x")
    assert common.existing_file(str(a_file)) == a_file
    assert common.existing_folder(str(tmp_path)) == tmp_path
    assert common.output_file(str(tmp_path / "new" / "b.md")) == tmp_path / "new" / "b.md"
    for parse, text, words in [
            (common.existing_file, tmp_path, "is a folder, not a file"),
            (common.existing_file, tmp_path / "nope", "not found"),
            (common.existing_folder, a_file, "is a file, not a folder"),
            (common.existing_folder, tmp_path / "nope", "not found"),
            (common.output_file, tmp_path, "is a folder; give a file name"),
            (common.output_file, a_file / "below.md", "is a file, not a folder")]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(words)):
            parse(str(text))


def test_long_paths_keep_their_file_name(tmp_path):
    import argparse

    deep = tmp_path / ("d" * 150) / ("e" * 150) / "the_file.npz"
    with pytest.raises(argparse.ArgumentTypeError, match="the_file.npz"):
        common.existing_file(str(deep))


# --------------------------------------------------------------------------- checked early
SEEDED = [["mnist-one-class", "--train", "{file}", "--test", "{file}", "--digit", "1"],
          ["creditcard", "--csv", "{file}"],
          ["mvtec", "--root", "{folder}", "--category", "c"],
          ["mvtec-baseline", "--root", "{folder}", "--category", "c", "--method", "texture"],
          ["mvtec-dictionary", "--root", "{folder}", "--category", "c"],
          ["mvtec-knn", "--root", "{folder}", "--category", "c"],
          ["ecg", "--train", "{file}", "--test", "{file}"]]


@pytest.mark.parametrize("argv", SEEDED, ids=[a[0] for a in SEEDED])
def test_seed_beyond_32_bits_is_a_usage_error_naming_seed(argv, paths, capsys):
    """Defect: --seed 4294967296 passed the parser and failed 9 s later (in NumPy/Keras)
    without naming --seed."""
    code, captured = _call("bench", [a.format(**paths) for a in argv] + ["--seed", "4294967296"],
                           capsys)
    assert code == 2, captured.err
    assert "argument --seed: expected a whole number from 0 to 4294967295" in captured.err
    assert "'4294967296'" in captured.err and len(captured.err.splitlines()) == 1
    assert common.seed_value("4294967295") == 2 ** 32 - 1


_EARLY_SCRIPT = """
import json, sys, time
from course_lib.cli import bench
argvs = json.loads(sys.argv[1])
start = time.perf_counter()
codes = [bench.main(argv) for argv in argvs]
print(json.dumps({"codes": codes, "seconds": time.perf_counter() - start,
                  "heavy": sorted(m for m in ("tensorflow", "keras") if m in sys.modules)}))
"""


def _bad_inputs(tmp_path):
    """Bad input for every command that trains a model, each found by reading the input."""
    import json

    import pandas as pd

    from course_lib.data.creditcard import CREDITCARD_COLUMNS

    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n")
    no_fraud = tmp_path / "no_fraud.csv"
    frame = pd.DataFrame(np.zeros((40, len(CREDITCARD_COLUMNS))), columns=CREDITCARD_COLUMNS)
    frame.to_csv(no_fraud, index=False)
    digits = tmp_path / "digits.npz"
    np.savez_compressed(digits, x=np.zeros((30, 28, 28), np.uint8), y=np.arange(30) % 3)
    root = tmp_path / "mvtec"
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / "few" / sub).mkdir(parents=True)
    import skimage.io
    for name in ("train/good/0.png", "train/good/1.png", "test/good/0.png", "test/crack/0.png",
                 "ground_truth/crack/0_mask.png"):
        skimage.io.imsave(root / "few" / name, np.full((16, 16), 255, np.uint8),
                          check_contrast=False)
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / "tiny" / sub).mkdir(parents=True)
    for name in ("train/good/0.png", "train/good/1.png", "train/good/2.png", "train/good/3.png",
                 "test/good/0.png", "test/crack/0.png", "ground_truth/crack/0_mask.png"):
        skimage.io.imsave(root / "tiny" / name, np.full((8, 8), 255, np.uint8),
                          check_contrast=False)
    mv = ["--root", str(root), "--category"]
    argvs = [["creditcard", "--csv", str(bad_csv)],
             ["creditcard", "--csv", str(no_fraud)],
             ["mnist-one-class", "--train", str(digits), "--test", str(digits), "--digit", "7"],
             ["mvtec", *mv, "nosuch"],
             ["mvtec", *mv, "few", "--loss", "ssim"],
             ["mvtec", *mv, "few", "--patch-size", "16", "--stride", "32"],
             ["mvtec-baseline", *mv, "few", "--method", "variation"],
             ["mvtec-dictionary", *mv, "few"],
             ["mvtec-knn", *mv, "few", "--backbone", "pretrained"],
             ["mvtec-knn", *mv, "tiny", "--backbone", "random"]]
    return argvs, json.dumps(argvs)


def test_bad_input_is_found_before_tensorflow_loads(tmp_path):
    """Defect: bench creditcard, mnist-one-class and every mvtec* command imported the
    experiments (Keras, TensorFlow: 7-13 s) before reading their input.  In a fresh process
    (this one may have TensorFlow already): every bad input fails, and TensorFlow never loads."""
    import json

    argvs, text = _bad_inputs(tmp_path)
    out = subprocess.run([sys.executable, "-c", _EARLY_SCRIPT, text], capture_output=True,
                         text=True, timeout=120, cwd=REPO_DIR,
                         env={**os.environ, "KERAS_HOME": str(tmp_path / "keras"),
                              "COURSE_DATA": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["codes"] == [1, 1, 1, 1, 1, 2, 1, 1, 1, 1], out.stderr
    assert result["heavy"] == [], f"loaded {result['heavy']} before finding bad input"
    assert "Traceback" not in out.stderr
    for words in ("missing column", "no frauds", "only 0 training images of digit 7",
                  "'nosuch' not found", "only 2 defect-free training image(s)",
                  "--stride 32 is larger than --patch-size 16", "--backbone learned",
                  "pixels on its short side after scaling: the models need at least 16"):
        assert words in out.stderr, (words, out.stderr[-3000:])


def test_quiet_tensorflow_drops_only_the_start_up_noise(capfd):
    """TensorFlow's C++ start-up lines go; any other line written to stderr meanwhile (even
    straight to file descriptor 2) comes back after the block."""
    with common.quiet_tensorflow():
        os.write(2, b"I0000 00:00 cudart_stub.cc:31] Could not find cuda drivers on your machine\n")
        os.write(2, b"real problem: the disk is full\n")
        print("a Python warning", file=sys.stderr)
    err = capfd.readouterr().err
    assert "cuda" not in err
    assert "real problem: the disk is full" in err and "a Python warning" in err
