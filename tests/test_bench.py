"""``python -m course_lib.bench`` (:mod:`course_lib.cli.bench`), in-process.

The evaluations themselves live in :mod:`course_lib.experiments`; here: the command line
(arguments, exit codes, messages, the JSON line), the one-class MNIST run end to end on a few
real images (slow), and the ``notebooks`` benchmark with a stand-in for the notebook runs.
"""
import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from course_lib.experiments import mvtec, one_class
from course_lib.checks import DataError
from course_lib.cli import bench, bench_images, common, notebooks
from course_lib.cli.notebooks import RunResult
from course_lib import config
from course_lib.config import data_dir, get_profile
from course_lib.data.mnist import load_npz_images


def _last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def _one_usage_line(capsys, *words):
    captured = capsys.readouterr()
    err = captured.err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{bench.PROG}: error: ") and err.rstrip().endswith("--help)"), err
    assert "Traceback" not in captured.out + err
    for word in words:
        assert word in err, err
    return err


# --------------------------------------------------------------------------- mnist-one-class
#: The fast profile, shrunk: 3 epochs on 160 ones already rank them at AUROC 0.99 (seeds 0-2).
ONE_CLASS_FAST = dataclasses.replace(get_profile("fast"), one_class_epochs=3)


@pytest.fixture(scope="module")
def split_files(tmp_path_factory):
    """Small train/test .npz files cut from the embedded (real) MNIST subset: 160 ones and 30
    of every other digit to train on, 300 test images."""
    tmp = tmp_path_factory.mktemp("oc")
    with np.load(data_dir() / "mnist_subset.npz") as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    keep = np.concatenate([np.flatnonzero(y_train == d)[:160 if d == 1 else 30]
                           for d in range(10)])
    np.savez_compressed(tmp / "train.npz", x=x_train[keep], y=y_train[keep])
    np.savez_compressed(tmp / "test.npz", x=x_test[:300], y=y_test[:300])
    return tmp / "train.npz", tmp / "test.npz"


@pytest.fixture(scope="module")
def one_class_run(split_files):
    """One ``bench mnist-one-class --digit 1 --profile fast --model vae --save ...`` (fast
    shrunk to :data:`ONE_CLASS_FAST`): ``(exit code, stdout, stderr, detector file)``, shared
    by the slow tests."""
    train, test = split_files
    saved = train.parent / "digit1.keras"
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(config.PROFILES, "fast", ONE_CLASS_FAST)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = bench.main(["mnist-one-class", "--train", str(train), "--test", str(test),
                               "--digit", "1", "--profile", "fast", "--model", "vae",
                               "--save", str(saved), "--alpha", "0.1"])
    return code, out.getvalue(), err.getvalue(), saved


@pytest.mark.slow
def test_mnist_one_class_save_leaves_a_working_detector(split_files, one_class_run):
    """--save: the run's autoencoder with a conformal threshold on half the test set's ones
    (never trained on, not watched by early stopping); the detector ranks the test set as the
    run did, and the JSON line reports what it flags among the other images."""
    from sklearn.metrics import roc_auc_score

    from course_lib.detector import load_detector

    code, out, err, saved = one_class_run
    assert code == 0 and "saved detector" in err
    detector = load_detector(saved)
    x_test, y_test = load_npz_images(split_files[1])
    n_half = int(round(0.5 * np.sum(y_test == 1)))
    assert (detector.kind, detector.alpha, detector.n_calibration) == ("digits", 0.1, n_half)
    result = _last_json(out)
    auroc = roc_auc_score(y_test != 1, detector.score(x_test))
    assert abs(auroc - result["auroc"]) < 1e-3
    assert result["detector_n_calibration"] == n_half
    assert result["detector_n_checked"] == len(y_test) - n_half
    assert 0 <= result["detector_false_alarm_rate"] <= 0.5 and result["detector_recall"] > 0.5


def test_save_needs_one_digit_and_a_keras_file(split_files, tmp_path, capsys):
    train, test = map(str, split_files)
    base = ["mnist-one-class", "--train", train, "--test", test, "--digit", "1"]
    assert bench.main(base + ["2", "--save", str(tmp_path / "d.keras")]) == 2
    assert "one --digit" in capsys.readouterr().err
    assert bench.main(base + ["--save", str(tmp_path / "d.h5")]) == 2
    assert "ends in .keras" in capsys.readouterr().err
    assert bench.main(base + ["--save", str(tmp_path / "d.keras"), "--alpha", "0.001"]) == 1
    assert "needs at least 999" in capsys.readouterr().err     # before any training


@pytest.mark.slow
def test_mnist_one_class_prints_json_last(one_class_run):
    code, out, err, _ = one_class_run
    assert code == 0, err[-2000:]
    result = _last_json(out)
    for key in ("digit", "auroc", "auprc", "baseline_pca_auroc", "seconds", "profile",
                "n_train", "n_test"):
        assert key in result
    assert result["profile"] == "fast" and result["n_test"] == 300 and result["n_train"] == 160
    # ones are easy to tell from other digits: a model that learned must rank them well
    assert result["auroc"] > 0.9, result
    assert 0.5 < result["baseline_pca_auroc"] <= 1.0


@pytest.mark.slow
def test_mnist_one_class_adds_the_vae_from_the_same_run(one_class_run):
    """--model vae: the same line also holds the VAE's AUROC for each of its scores, and the
    VAE learned (its squared error at the mean code ranks the ones well too)."""
    result = _last_json(one_class_run[1])
    for score in ("negative_elbo", "reconstruction_probability", "kl",
                  "reconstruction_probability_excess"):
        assert 0.0 <= result[f"vae_{score}_auroc"] <= 1.0, result
    assert result["vae_epochs"] == ONE_CLASS_FAST.one_class_epochs and result["vae_seconds"] > 0
    assert result["vae_auroc"] > 0.9, result


@pytest.mark.slow
def test_untrained_model_does_worse_than_trained(split_files, one_class_run, monkeypatch):
    """The AUROC comes from training: an untrained autoencoder on the same split (the command's
    run above trained it) scores lower."""
    from course_lib.models import build_one_class_autoencoder

    trained = _last_json(one_class_run[1])
    x, y = load_npz_images(split_files[0])
    xt, yt = load_npz_images(split_files[1])
    monkeypatch.setattr(one_class, "train_one_class",
                        lambda xn, prof, seed=0: build_one_class_autoencoder()[0])
    untrained = one_class.mnist_one_class_experiment(x, y, xt, yt, digit=1,
                                                     profile=ONE_CLASS_FAST)
    assert untrained["n_train"] == trained["n_train"] and untrained["n_test"] == 300
    assert trained["auroc"] > untrained["auroc"] + 0.05, (trained, untrained)


def test_bad_inputs_are_reported():
    x = np.zeros((30, 28, 28), np.uint8)
    with pytest.raises(DataError, match="model must be one of"):
        one_class.mnist_one_class_experiment(x, np.zeros(30, int), x, np.arange(30) % 2,
                                               digit=0, model="gan")
    with pytest.raises(DataError, match="only 0 training images of digit 3"):
        one_class.mnist_one_class_experiment(x, np.zeros(30, int), x, np.arange(30) % 2,
                                               digit=3)
    with pytest.raises(DataError, match="both digit 0 and other digits"):
        one_class.mnist_one_class_experiment(x, np.zeros(30, int), x, np.zeros(30, int),
                                               digit=0)


def test_a_data_problem_exits_1_with_the_message(tmp_path, capsys):
    """A failure while working (not a usage error): exit 1, the message, no traceback."""
    only_zeros = tmp_path / "zeros.npz"
    np.savez_compressed(only_zeros, x=np.zeros((30, 28, 28), np.uint8), y=np.zeros(30, int))
    assert bench.main(["mnist-one-class", "--train", str(only_zeros), "--test",
                       str(only_zeros), "--digit", "3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bench.PROG}: error: only 0 training images of digit 3")
    assert "Traceback" not in err
    corrupted = tmp_path / "corrupted.npz"
    corrupted.write_bytes(b"not an npz")
    assert bench.main(["mnist-one-class", "--train", str(corrupted), "--test",
                       str(only_zeros), "--digit", "1"]) == 1
    err = capsys.readouterr().err
    assert "corrupted.npz" in err and "np.savez_compressed" in err and "Traceback" not in err


def test_missing_file_is_a_usage_error(split_files, tmp_path, capsys):
    code = bench.main(["mnist-one-class", "--train", str(tmp_path / "missing.npz"),
                       "--test", str(split_files[1]), "--digit", "1"])
    assert code == 2
    _one_usage_line(capsys, "--train", "missing.npz", "not found")


@pytest.mark.parametrize("argv", [
    ["mnist-one-class", "--train", "{dir}", "--test", "{file}", "--digit", "1"],
    ["mnist-one-class", "--train", "{file}", "--test", "{dir}", "--digit", "1"],
    ["creditcard", "--csv", "{dir}"],
    ["notebooks", "{dir}"],
    ["notebooks", "{file}", "--readme", "{dir}"],
    ["notebooks", "{file}", "--output", "{dir}"],
])
def test_folder_where_a_file_is_expected_is_named_a_folder(argv, tmp_path, capsys):
    """Defect: ``--csv <folder>`` / ``--train <folder>`` said "not found"."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "a.ipynb").write_text("{}")
    argv = [a.format(dir=tmp_path / "folder", file=tmp_path / "a.ipynb") for a in argv]
    assert bench.main(argv) == 2
    err = _one_usage_line(capsys, "folder")
    assert "not found" not in err


def test_a_file_where_a_folder_is_expected_is_named_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert bench.main(["mvtec", "--root", str(tmp_path / "f"), "--category", "carpet"]) == 2
    _one_usage_line(capsys, "is a file, not a folder")


# --------------------------------------------------------------------------- ssim-speed
@pytest.mark.parametrize("argv, words", [
    (["--images", "-1"], ["--images", "'-1'", ">= 1"]),
    (["--images", "0"], ["--images", "'0'", ">= 1"]),
    (["--images", "many"], ["--images", "'many'"]),
    (["--size", "0"], ["--size", "'0'", ">= 11"]),
    (["--size", "-5"], ["--size", ">= 11"]),
])
def test_ssim_speed_bad_numbers_are_usage_errors(argv, words, monkeypatch, capsys):
    """Defect: --images -1 reported 1890 images; --images 0 / --size 0 gave cryptic errors."""
    monkeypatch.setattr(mvtec, "ssim_speed_experiment",
                        lambda **kw: pytest.fail(f"ran with {kw}"))
    assert bench.main(["ssim-speed", *argv]) == 2
    _one_usage_line(capsys, *words)


@pytest.mark.parametrize("argv, words", [
    (["--images", "5000"], ["--images", "at most 91 crop(s) of 128x128", "got 5000"]),
    (["--size", "512", "--images", "2"], ["at most 1 crop(s) of 512x512"]),
    (["--size", "100000"], ["--size", "at most 512", "got 100000"]),
])
def test_ssim_speed_limits_are_checked_before_tensorflow_loads(argv, words, monkeypatch,
                                                               capsys):
    """Too many crops or too large a size: one usage line, before TensorFlow's start-up log."""
    monkeypatch.setattr(mvtec, "ssim_speed_experiment",
                        lambda **kw: pytest.fail(f"ran with {kw}"))
    assert bench.main(["ssim-speed", *argv]) == 2
    _one_usage_line(capsys, *words)


def test_ssim_speed_limits_found_by_the_experiment_are_usage_errors(monkeypatch, capsys):
    """Should the experiment refuse what the command line let through: still one usage line."""
    def refuse(n_images, size):
        raise DataError(f"at most 2 crops of {size}x{size} fit in the photo, "
                        f"got n_images={n_images}.")

    monkeypatch.setattr(mvtec, "ssim_speed_experiment", refuse)
    assert bench.main(["ssim-speed", "--images", "3", "--size", "128"]) == 2
    _one_usage_line(capsys, "at most 2 crops", "n_images=3")


@pytest.mark.slow
def test_ssim_crops_counts_what_the_experiment_cuts():
    """The command line's limits are the experiment's (this loads TensorFlow)."""
    assert bench_images.ssim_crops(128) == 91 and bench_images.ssim_crops(bench_images.SSIM_PHOTO_SIDE + 1) == 0
    for size in (64, 256):
        limit = bench_images.ssim_crops(size)
        with pytest.raises(DataError, match=f"at most {limit} crops of {size}x{size}"):
            mvtec.ssim_speed_experiment(n_images=limit + 1, size=size, repeats=1)
    with pytest.raises(DataError, match=f"at most {bench_images.SSIM_PHOTO_SIDE}"):
        mvtec.ssim_speed_experiment(n_images=1, size=bench_images.SSIM_PHOTO_SIDE + 1)


def test_ssim_speed_prints_the_experiment_as_json(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(mvtec, "ssim_speed_experiment",
                        lambda n_images, size: seen.update(n=n_images, size=size) or
                        {"images": n_images, "size": size})
    assert bench.main(["ssim-speed", "--images", "3", "--size", "64"]) == 0
    assert seen == {"n": 3, "size": 64}
    assert _last_json(capsys.readouterr().out) == {"images": 3, "size": 64}


# --------------------------------------------------------------------------- notebooks
def _results(status="ok"):
    return {"fast": [RunResult("01_a.ipynb", "ok", 12.3, 300.0, ["embedded"]),
                     RunResult("02_b.ipynb", status, 4.0, None, [])]}


INFO = {"date": "2025-01-01", "cpu": "Test CPU", "cores": 2, "python": "3.11.9",
        "keras": "3.9.0", "tensorflow": "2.19.0"}


@pytest.mark.parametrize("data, words", [
    ("offline", "embedded (offline) data"),
    ("online", "downloaded (online) data"),
    ("auto", "online data where the network answered, else embedded data"),
])
def test_benchmark_table_says_which_data(data, words):
    """Defect: the table always said "embedded (offline) data"."""
    table = bench.benchmark_table(_results(), INFO, data=data)
    assert words in table.splitlines()[0]
    if data != "offline":
        assert "embedded (offline)" not in table


def test_benchmark_table_rows():
    lines = bench.benchmark_table(_results("failed"), INFO).splitlines()
    assert lines[2] == "| notebook | fast: s | fast: peak MB |"
    assert lines[4] == "| 01_a.ipynb | 12 | 300 |"
    assert lines[5] == "| 02_b.ipynb | 4 (failed) | n/a |"
    assert lines[6] == "| **whole course** | **16** | **300** (max) |"


def test_notebooks_bad_data_is_a_usage_error(capsys):
    """Defect: ``--data`` was not validated (it failed later, cryptically)."""
    assert bench.main(["notebooks", "--data", "nosuch"]) == 2
    _one_usage_line(capsys, "--data", "'nosuch'", "offline")
    assert bench.main(["notebooks", "--profiles", "turbo"]) == 2
    _one_usage_line(capsys, "--profiles", "'turbo'")


def test_notebooks_benchmark_passes_the_data_on_and_writes_the_table(tmp_path, monkeypatch,
                                                                      capsys):
    nbs = [tmp_path / "01_a.ipynb", tmp_path / "02_b.ipynb"]
    for p in nbs:
        p.write_text("{}")
    calls = []

    def fake_execute(path, profile=None, data=None, **kw):
        calls.append((path.name, profile, data))
        return RunResult(path.name, "ok", 1.0, 10.0, [data])

    monkeypatch.setattr(notebooks, "execute_notebook", fake_execute)
    readme = tmp_path / "README.md"
    readme.write_text("top\n<!-- bench:start -->\nold\n<!-- bench:end -->\nbottom\n")
    output = tmp_path / "docs" / "benchmarks.md"
    code = bench.main(["notebooks", *map(str, nbs), "--profiles", "fast", "workshop",
                       "--data", "online", "--output", str(output), "--readme", str(readme)])
    assert code == 0, capsys.readouterr().err
    assert calls == [("01_a.ipynb", "fast", "online"), ("02_b.ipynb", "fast", "online"),
                     ("01_a.ipynb", "workshop", "online"), ("02_b.ipynb", "workshop", "online")]
    table = output.read_text()
    assert "downloaded (online) data" in table and "embedded (offline)" not in table
    assert "| notebook | fast: s | fast: peak MB | workshop: s | workshop: peak MB |" in table
    text = readme.read_text()
    assert text.startswith("top\n<!-- bench:start -->\nMeasured ") and "old" not in text
    assert text.endswith("<!-- bench:end -->\nbottom\n")

    monkeypatch.setattr(notebooks, "execute_notebook",
                        lambda path, **kw: RunResult(path.name, "failed", 0.0, None, []))
    assert bench.main(["notebooks", str(nbs[0])]) == 1, "a failed notebook fails the benchmark"


def test_replace_between_markers_without_markers(tmp_path):
    path = tmp_path / "R.md"
    path.write_text("no markers\n")
    assert bench.replace_between_markers(path, "table") is False
    assert path.read_text() == "no markers\n"


def test_machine_info_fields():
    info = bench.machine_info()
    assert set(INFO) <= set(info) and info["cores"] >= 1


def test_bench_benchmarks_the_course_notebooks_by_default():
    assert bench.notebook_paths is common.notebook_paths
    assert common.notebook_paths([]) == common.list_notebooks()


def _never(path, **kw):
    pytest.fail(f"{path.name} ran although the command line was wrong")


def test_notebooks_unwritable_output_is_found_before_running(tmp_path, monkeypatch, capsys):
    """Defect: an --output that cannot be written was found after every notebook had run
    (about 12 minutes).  /proc refuses new files even to root."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    nb = tmp_path / "01_a.ipynb"
    nb.write_text("{}")
    monkeypatch.setattr(notebooks, "execute_notebook", _never)
    assert bench.main(["notebooks", str(nb), "--output", "/proc/benchmarks.md"]) == 2
    _one_usage_line(capsys, "cannot write in '/proc'", "--output")


def test_notebooks_output_may_not_be_an_input(tmp_path, monkeypatch, capsys):
    nb = tmp_path / "01_a.ipynb"
    nb.write_text("{}")
    monkeypatch.setattr(notebooks, "execute_notebook", _never)
    assert bench.main(["notebooks", str(nb), "--output", str(nb)]) == 2
    _one_usage_line(capsys, "--output would overwrite the input", "01_a.ipynb")
    assert nb.read_text() == "{}"


def test_notebooks_readme_without_markers_is_found_before_running(tmp_path, monkeypatch,
                                                                    capsys):
    """Defect: a --readme without the bench block was noticed only after every notebook had
    run (a note, exit 0, the table lost)."""
    nb = tmp_path / "01_a.ipynb"
    nb.write_text("{}")
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    monkeypatch.setattr(notebooks, "execute_notebook", _never)
    assert bench.main(["notebooks", str(nb), "--readme", str(readme)]) == 2
    _one_usage_line(capsys, "--readme", "<!-- bench:start -->")
    assert readme.read_text() == "no markers here\n"


def test_notebooks_ctrl_c_stops_and_keeps_the_table_files(tmp_path, monkeypatch, capsys):
    """Ctrl-C: no further run, exit 130, and --output / --readme keep their whole tables (a
    partial table must not replace them)."""
    nbs = [tmp_path / "01_a.ipynb", tmp_path / "02_b.ipynb"]
    for p in nbs:
        p.write_text("{}")
    calls = []

    def fake(path, **kw):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return RunResult(path.name, "ok", 1.0, 10.0, ["embedded"])

    monkeypatch.setattr(notebooks, "execute_notebook", fake)
    output = tmp_path / "benchmarks.md"
    output.write_text("the whole table\n")
    assert bench.main(["notebooks", *map(str, nbs), "--output", str(output)]) == 130
    assert calls == ["01_a.ipynb", "02_b.ipynb"] and output.read_text() == "the whole table\n"
    err = capsys.readouterr().err
    assert "Stopped by Ctrl-C after 1 notebook run(s)" in err and str(output) in err
