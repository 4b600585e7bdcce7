"""ECG heartbeats (notebook 09): reading UCR text and CSV files, the embedded beats, the verified
download, windows of a long series, the Conv1D autoencoder, the split, the experiment and
``python -m course_lib.bench ecg`` (in-process).

Downloads run against a local HTTP server (see ``test_download.LocalServer``) serving a small
stand-in for TensorFlow's CSV (the expected row count is patched to match it).  The tests that
train share one run of the experiment (fast profile, a few seconds).
"""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from course_lib.experiments import ecg as experiments
from course_lib.checks import DataError
from course_lib.config import data_dir, get_profile
from course_lib.data import ecg as E
from course_lib.data.ecg import (ECG5000_CLASSES, ecg_cache_items, ecg_cache_path, fetch_ecg,
                                 load_ecg, read_ecg_file, sliding_windows, write_ecg_file)
from course_lib.download import sha256_file
from test_download import LocalServer, closed_port_url, no_proxy, short_timeouts

COUNTS = {1: 146, 2: 89, 3: 5, 4: 10, 5: 1}   # the embedded file, as its README says


@pytest.fixture(scope="module")
def beats():
    return load_ecg(source="offline", verbose=False)


def _csv(x, y, header=False) -> str:
    """TensorFlow's layout: samples, then the label (1.0 normal, 0.0 abnormal)."""
    lines = [",".join(f"{v:.6f}" for v in (*b, lab)) for b, lab in zip(x, y)]
    names = [f"t{i}" for i in range(x.shape[1])] + ["label"]
    return "\n".join(([",".join(names)] if header else []) + lines)


# --------------------------------------------------------------------------- reading files
def test_embedded_beats_are_the_real_file(beats, capsys):
    assert sha256_file(data_dir() / E.ECG_EMBEDDED) == E.ECG_EMBEDDED_SHA256
    assert beats.x.shape == (251, 140) and beats.x.dtype == np.float32
    assert beats.class_counts() == COUNTS and beats.is_abnormal.sum() == 105
    # UCR beats are z-normalised: mean 0 and (population) standard deviation about 1 each
    assert np.abs(beats.x.mean(axis=1)).max() < 1e-3
    assert np.allclose(beats.x.std(axis=1), 1, atol=0.01)
    load_ecg(source="offline")
    out = capsys.readouterr().out
    assert out.count("Data source:") == 1 and out.startswith("Data source: embedded | ")
    assert "146 normal, 105 abnormal (class 2: 89" in out


def test_both_label_conventions_give_the_same_beats(beats, tmp_path):
    ucr = write_ecg_file(tmp_path / "ucr.txt", beats.x[:30], beats.y[:30])
    x, y = read_ecg_file(ucr)
    assert np.allclose(x, beats.x[:30], atol=1e-6) and (y == beats.y[:30]).all()
    normal = (beats.y[:30] == 1).astype(float)      # TensorFlow's CSV: 1 normal, 0 abnormal
    (tmp_path / "tf.csv").write_text(_csv(beats.x[:30], normal, header=True))
    x2, y2 = read_ecg_file(tmp_path / "tf.csv")
    assert np.allclose(x2, beats.x[:30], atol=1e-5)
    assert ((y2 == 1) == (beats.y[:30] == 1)).all() and set(y2) <= {0, 1}
    assert ECG5000_CLASSES[0].startswith("abnormal") and ECG5000_CLASSES[1] == "normal"
    # the UCR archive's order: 3 = PVC, 4 = supraventricular premature or ectopic beat
    assert ECG5000_CLASSES[3] == "premature ventricular contraction"
    assert ECG5000_CLASSES[4].startswith("supraventricular premature or ectopic")
    mine = load_ecg(path=tmp_path / "tf.csv", verbose=False)
    assert mine.source == "file" and mine.is_abnormal.sum() == (normal == 0).sum()


@pytest.mark.parametrize("text, kwargs, message", [
    ("1 2 3 4\n1 2 3\n", {}, "line 2 has 3 values but line 1 has 4"),
    ("1 0.5 nan 0.2\n", {}, "line 1 holds NaN or infinite"),
    ("1,0.5,0.1,1\n2,0.3,x,0\n", {}, "line 2: 'x' is not a number"),
    ("", {}, "holds no beats"),
    ("1 2\n", {}, "are not beats"),
    ("1 0.5 0.2 0.3\n", {"length": 140}, "beats of 3 samples .* expected 140"),
    ("1.5 0.2 0.3 0.5\n", {}, "neither the first nor the last column"),
    ("1 0.2 0.3 1\n2 0.4 0.1 0\n", {}, "both the first and the last column"),
    ("-1 0.2 0.3 0.5\n", {"layout": "label-first"}, "labels must be >= 0"),
    ("1 0.2 0.3\n", {"layout": "sideways"}, "layout must be one of"),
])
def test_bad_files_are_refused_with_a_clear_message(tmp_path, text, kwargs, message):
    path = tmp_path / "beats.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_ecg_file(path, **kwargs)


def test_folders_missing_and_binary_files_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="is a folder, not a file"):
        read_ecg_file(tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_ecg_file(tmp_path / "missing.txt")
    (tmp_path / "bin").write_bytes(bytes(range(256)))
    with pytest.raises(DataError, match="is not a text file"):
        read_ecg_file(tmp_path / "bin")


# --------------------------------------------------------------------------- the download
@pytest.fixture
def server(tmp_path, monkeypatch, beats):
    no_proxy(monkeypatch)
    short_timeouts(monkeypatch)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(E, "ECG_ROWS", 40)
    rows = np.r_[np.flatnonzero(beats.y == 1)[:25], np.flatnonzero(beats.y != 1)[:15]]
    csv = _csv(beats.x[rows], (beats.y[rows] == 1).astype(float)).encode()
    with LocalServer({"/ecg.csv": csv}) as srv:
        monkeypatch.setattr(E, "ECG_URL", srv.url("/ecg.csv"))
        yield srv


def test_download_is_verified_and_cached(server, capsys):
    d = load_ecg(source="online")
    assert d.source == "online" and capsys.readouterr().out.startswith("Data source: online")
    assert d.x.shape == (40, 140) and set(np.unique(d.y)) == {0, 1}
    assert load_ecg(source="online", verbose=False).x.shape == (40, 140)
    assert len(server.log) == 1, "the second load reads the cache"
    assert ecg_cache_items()[1].state == "OK"


@pytest.mark.parametrize("served, error", [
    ("ucr", "labels .* expected 40 beats labelled 0"),  # UCR classes 2-5, not 0/1
    ("html", "holds no beats \\(only one line, and not of numbers"),
    ("404", "404"),
])
def test_a_wrong_download_is_not_cached(server, served, error, beats):
    if served == "ucr":
        server.files["/ecg.csv"] = _csv(beats.x[-40:], beats.y[-40:]).encode()
    elif served == "html":
        server.files["/ecg.csv"] = b"<html>moved</html>\n"
    else:
        del server.files["/ecg.csv"]
    with pytest.raises((DataError, OSError), match=error):
        fetch_ecg(progress=False)
    assert not ecg_cache_path().exists()
    assert load_ecg(source="auto", verbose=False).source == "embedded"


def test_no_network_falls_back_with_one_message(tmp_path, monkeypatch, capsys):
    no_proxy(monkeypatch)
    short_timeouts(monkeypatch)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(E, "ECG_URL", closed_port_url("/ecg.csv"))
    assert load_ecg(source="auto").source == "embedded"
    out = capsys.readouterr().out
    assert out.startswith("Could not get the ECG beats (ConnectionError")
    assert out.count("Data source:") == 1
    with pytest.raises(DataError, match="COURSE_DATA=offline"):
        load_ecg(source="online", verbose=False)
    cache = ecg_cache_path()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("1,2,3\n")
    with pytest.raises(DataError, match=f"^Delete {cache} and run again"):
        fetch_ecg(progress=False)
    assert ecg_cache_items()[1].state == "corrupted"


# --------------------------------------------------------------------------- long series
def test_sliding_windows_cut_every_stride(tmp_path):
    windows, starts = sliding_windows(np.arange(10), length=4, stride=3)
    assert windows.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert starts.tolist() == [0, 3, 6]
    windows, starts = sliding_windows(np.arange(7.0), length=7)
    assert windows.shape == (1, 7) and starts.tolist() == [0]
    assert sliding_windows(np.arange(9), 4, 1)[0].shape == (6, 4)
    path = write_ecg_file(tmp_path / "w.txt", windows, [1])
    with pytest.raises(DataError, match="both the first and the last column"):
        read_ecg_file(path)     # whole-number samples: say where the label is
    assert read_ecg_file(path, layout="label-first")[0].tolist() == windows.tolist()


@pytest.mark.parametrize("series, length, stride, message", [
    (np.arange(3), 4, 1, "at least length=4 samples"),
    (np.zeros((2, 10)), 4, 1, "1-D series"),
    (np.r_[0.0, np.nan, 1, 2, 3], 4, 1, "NaN"),
    (np.arange(10), 4, 0, "stride must be a whole number"),
    (np.arange(10), 2.5, 1, "length must be a whole number"),
])
def test_sliding_windows_refuse_bad_input(series, length, stride, message):
    with pytest.raises(DataError, match=message):
        sliding_windows(series, length, stride)


# --------------------------------------------------------------------------- model and split
def test_conv1d_autoencoder_shapes_and_halves():
    from course_lib.models import build_conv1d_autoencoder

    ae, encoder, decoder = build_conv1d_autoencoder()
    assert ae.input_shape == (None, 140) and ae.output_shape == (None, 140)
    assert encoder.output_shape == (None, 16) and decoder.input_shape == (None, 16)
    convs = [layer.output.shape[1:] for layer in encoder.layers if "conv" in layer.name]
    assert convs == [(70, 32), (35, 16)], "two strided Conv1D stages halve the length"
    ups = [type(layer).__name__ for layer in decoder.layers if "dec_conv" in layer.name]
    assert ups == ["Conv1DTranspose", "Conv1DTranspose"]
    assert ae.count_params() == encoder.count_params() + decoder.count_params()
    assert build_conv1d_autoencoder(length=64, filters=(8,))[0].output_shape == (None, 64)
    with pytest.raises(DataError, match="multiple of 2\\*\\*len\\(filters\\) = 4"):
        build_conv1d_autoencoder(length=150)


def test_split_is_one_class_deterministic_and_scaled_on_training_beats(beats):
    split = experiments.split_ecg(beats.x, beats.y, seed=0)
    assert (len(split.x_train), len(split.x_val)) == (82, 20)
    assert len(split.y_test) == 44 + 105 and split.is_abnormal.sum() == 105
    again = experiments.split_ecg(beats.x, beats.y, seed=0)
    assert np.array_equal(split.x_train, again.x_train) and np.array_equal(split.x_val, again.x_val)
    other = experiments.split_ecg(beats.x, beats.y, seed=1)
    assert not np.array_equal(split.x_train, other.x_train)
    # training, validation and test beats are different beats; only normal ones are learned
    raw = (np.r_[split.x_train, split.x_val, split.x_test] * split.scale + split.center)
    assert len(np.unique(raw.round(4), axis=0)) == 251
    assert abs(float(split.x_train.mean())) < 1e-5 and abs(split.x_train.std() - 1) < 1e-4
    assert "train: 82 normal | validation: 20 normal | test: 44 normal + 105 abnormal" in str(split)


def test_split_refuses_unusable_data(beats):
    x, y = beats.x, beats.y
    with pytest.raises(DataError, match="holds no normal beats"):
        experiments.split_ecg_files(x[y != 1], y[y != 1], x, y)
    with pytest.raises(DataError, match="no abnormal beats"):
        experiments.split_ecg(x[y == 1], y[y == 1])
    with pytest.raises(DataError, match="only 8 normal beats to train on"):
        experiments.split_ecg_files(x[y == 1][:8], y[y == 1][:8], x, y)
    with pytest.raises(DataError, match="the test file's beats have 100 samples"):
        experiments.split_ecg_files(x, y, x[:, :100], y)
    with pytest.raises(DataError, match="NaN"):
        experiments.split_ecg(np.where(np.eye(251, 140) > 0, np.nan, x), y)


def test_recall_per_class_counts_each_kind():
    got = experiments.ecg_recall_per_class([1, 2, 2, 4, 1], [True, True, False, True, False])
    assert got == {2: (1, 2), 4: (1, 1)}
    with pytest.raises(DataError, match="one per beat"):
        experiments.ecg_recall_per_class([1, 2], [True])


# --------------------------------------------------------------------------- training (slow)
@pytest.fixture(scope="module")
def run(beats):
    """One fast-profile experiment on the embedded beats, shared by the slow tests; at most 10
    epochs, not 30: the errors already fall to a quarter of the untrained network's or less
    (seeds 0-2: 0.14-0.23) and the AUROC is 0.99."""
    split = experiments.split_ecg(beats.x, beats.y, seed=0)
    profile = dataclasses.replace(get_profile("fast"), ecg_epochs=10)
    result, details = experiments.ecg_experiment(split, profile=profile, seed=0,
                                                 return_details=True)
    return split, result, details


@pytest.mark.slow
def test_experiment_fields_are_the_run_behind_them(run):
    from sklearn.metrics import roc_auc_score

    split, result, details = run
    for key in ("auroc", "auprc", "baseline_pca_auroc", "baseline_iforest_auroc",
                "baseline_nn_auroc", "n_train", "n_test", "n_abnormal", "seconds", "profile",
                "threshold", "recall", "false_alarm_rate", "recall_per_class"):
        assert key in result, key
    assert (result["n_train"], result["n_val"], result["n_test"]) == (82, 20, 149)
    assert result["n_abnormal"] == 105 and result["profile"] == "fast"
    scores, y = details["scores"], split.is_abnormal
    assert set(scores) == {"autoencoder", "PCA reconstruction", "Isolation Forest",
                           "nearest normal beat"}
    assert result["auroc"] == round(float(roc_auc_score(y, scores["autoencoder"])), 4)
    # the threshold comes from the validation normals only
    assert details["threshold"] == pytest.approx(np.percentile(details["val_scores"], 95))
    assert set(result["recall_per_class"]) == {"2", "3", "4", "5"}
    # real abnormal beats look different: every detector ranks them well above chance
    assert result["auroc"] > 0.9 and result["baseline_pca_auroc"] > 0.9, result
    assert result["baseline_nn_auroc"] > 0.9 and result["baseline_iforest_auroc"] > 0.8


@pytest.mark.slow
def test_trained_autoencoder_beats_an_untrained_one(run):
    from course_lib.config import set_seed
    from course_lib.metrics import anomaly_scores
    from course_lib.models import build_conv1d_autoencoder

    split, result, details = run
    set_seed(0)
    untrained = build_conv1d_autoencoder()[0]
    before = anomaly_scores(untrained, split.x_val).mean()
    after = details["val_scores"].mean()
    constant = np.mean(split.x_val.astype(np.float64) ** 2)   # predicting 0 (the mean) everywhere
    assert after < 0.5 * before and after < 0.5 * constant, (before, after, constant)
    history = details["history"].history
    assert min(history["val_loss"]) < history["val_loss"][0]


@pytest.mark.slow
def test_bench_ecg_reads_both_formats_and_prints_json_last(run, beats, tmp_path, monkeypatch,
                                                           capsys):
    from course_lib.cli.bench import main

    trained = run[2]["autoencoder"]   # the run's model: the command's plumbing is tested here
    monkeypatch.setattr(experiments, "train_ecg_autoencoder",
                        lambda *a, **k: (trained, SimpleNamespace(history={"loss": [0.1]})))
    rows = np.random.default_rng(0).permutation(251)
    train = write_ecg_file(tmp_path / "train.txt", beats.x[rows[:150]], beats.y[rows[:150]])
    test = tmp_path / "test.csv"
    test.write_text(_csv(beats.x[rows[150:]], (beats.y[rows[150:]] == 1).astype(float)))
    assert main(["ecg", "--train", str(train), "--test", str(test), "--profile", "fast",
                 "--save", str(tmp_path / "beats.keras"), "--alpha", "0.1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from course_lib.detector import load_detector

    detector = load_detector(tmp_path / "beats.keras")       # --save: the run's model
    n_half = int(round(0.5 * result["n_test_normal"]))    # half the test normals calibrate
    assert detector.kind == "beats" and detector.n_calibration == n_half
    assert result["detector_n_calibration"] == n_half and 0 <= result["detector_recall"] <= 1
    n_normal = int((beats.y[rows[:150]] == 1).sum())
    assert result["n_train"] + result["n_val"] == n_normal and result["n_test"] == 101
    assert result["n_abnormal"] == int((beats.y[rows[150:]] != 1).sum())
    assert set(result["recall_per_class"]) == {"0"}, "the CSV's abnormal beats have no kind"
    assert result["auroc"] > 0.9 and result["profile"] == "fast"


def test_bench_ecg_reports_bad_files(beats, tmp_path, capsys):
    from course_lib.cli.bench import main

    good = write_ecg_file(tmp_path / "good.txt", beats.x, beats.y)
    assert main(["ecg", "--train", str(tmp_path / "missing.txt"), "--test", str(good)]) == 2
    assert "not found" in capsys.readouterr().err
    cases = {
        "short.txt": ("1 0.1 0.2 0.3\n1 0.1 0.2\n", "line 2 has 3 values"),
        "nan.txt": ("1 0.1 nan 0.3\n", "NaN"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        assert main(["ecg", "--train", str(tmp_path / name), "--test", str(good)]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    abnormal = write_ecg_file(tmp_path / "abnormal.txt", beats.x[beats.y != 1],
                              beats.y[beats.y != 1])
    assert main(["ecg", "--train", str(abnormal), "--test", str(good)]) == 1
    assert "holds no normal beats" in capsys.readouterr().err
    normal_only = write_ecg_file(tmp_path / "normal.txt", beats.x[beats.y == 1],
                                 beats.y[beats.y == 1])
    assert main(["ecg", "--train", str(good), "--test", str(normal_only)]) == 1
    assert "must include normal (label 1) and abnormal" in capsys.readouterr().err
    odd = write_ecg_file(tmp_path / "odd.txt", beats.x[:, :138], beats.y)
    assert main(["ecg", "--train", str(odd), "--test", str(odd)]) == 1
    assert "must be a multiple of 4" in capsys.readouterr().err


# --------------------------------------------------------------------------- hostile files
@pytest.mark.parametrize("label_first", [False, True])
def test_a_pandas_header_of_column_numbers_is_skipped(beats, tmp_path, label_first):
    """``DataFrame(np.c_[x, y]).to_csv(f, index=False)`` writes the header ``0,1,...,140``:
    it is not one more beat labelled 140 (or 0)."""
    import pandas as pd

    x, y = beats.x[:20], beats.y[:20]
    table = np.c_[y, x] if label_first else np.c_[x, y]
    pd.DataFrame(table).to_csv(tmp_path / "pd.csv", index=False)
    assert (tmp_path / "pd.csv").read_text().startswith("0,1,2,3,")
    x2, y2 = read_ecg_file(tmp_path / "pd.csv", length=140)
    assert len(x2) == 20 and y2.tolist() == y.tolist()
    assert np.allclose(x2, x, atol=1e-6)
    (tmp_path / "only.csv").write_text("0,1,2,3\n")
    with pytest.raises(DataError, match=r"holds no beats \(only a header line of column"):
        read_ecg_file(tmp_path / "only.csv")


def test_a_repeated_pandas_header_or_a_row_index_is_refused(beats, tmp_path):
    """Defect: two pandas CSVs joined (or ``to_csv(mode="a")``) repeat the header ``0,...,140``
    further down, read as one more beat labelled 140; ``index=True`` (pandas' default) gave
    "'' is not a number"."""
    import pandas as pd

    frame = pd.DataFrame(np.c_[beats.x[:5], beats.y[:5]])
    joined = tmp_path / "joined.csv"
    frame.to_csv(joined, index=False)
    frame.to_csv(joined, index=False, mode="a")
    with pytest.raises(DataError, match=r"line 7 repeats a header line of column numbers.*"
                                        r"mode='a'"):
        read_ecg_file(joined)
    twice = tmp_path / "twice.csv"
    twice.write_text("0,1,2,3\n0,1,2,3\n1,0.5,0.2,0.1\n")
    with pytest.raises(DataError, match="line 2 repeats a header"):
        read_ecg_file(twice)
    indexed = tmp_path / "indexed.csv"
    frame.to_csv(indexed)
    with pytest.raises(DataError, match=r"line 1 is the header of a CSV written with pandas' "
                                        r"row index.*index=False"):
        read_ecg_file(indexed)


@pytest.mark.parametrize("n_beats", [5, 251])       # 251 beats: over 64 KB
def test_old_mac_and_windows_line_ends_read_like_unix_ones(beats, tmp_path, n_beats):
    text = _csv(beats.x[:n_beats], (beats.y[:n_beats] == 1).astype(float), header=True)
    assert n_beats == 5 or len(text) > 1 << 16
    for ends in ("\r", "\r\n"):
        (tmp_path / "beats.csv").write_bytes(text.replace("\n", ends).encode())
        x, y = read_ecg_file(tmp_path / "beats.csv")
        assert x.shape == (n_beats, 140) and ((y == 1) == (beats.y[:n_beats] == 1)).all()
    lines = text.split("\n")
    lines[3] += ",0.5"
    (tmp_path / "beats.csv").write_bytes("\r".join(lines).encode())
    with pytest.raises(DataError, match="line 4 has 142 values but line 2 has 141"):
        read_ecg_file(tmp_path / "beats.csv")


def test_a_raw_series_is_refused_at_its_first_line_with_a_pointer(tmp_path):
    """One value per line is a long series, not beats: refused at line 1 (not after parsing
    the whole file: the bad line near its end is never reached) and told how to cut it."""
    series = np.sin(np.arange(20_000) / 10)
    text = "\n".join(f"{v:.5f}" for v in series) + "\nnot a number\n"
    (tmp_path / "series.txt").write_text(text)
    with pytest.raises(DataError, match=r"line 1 holds 1 value\(s\).*one long series, one "
                                        r"sample per line.*sliding_windows\(series, length\)"):
        read_ecg_file(tmp_path / "series.txt")
    (tmp_path / "timed.csv").write_text("0.0,0.5\n0.1,0.7\n")
    with pytest.raises(DataError, match="a time and a sample per line"):
        read_ecg_file(tmp_path / "timed.csv")


@pytest.mark.parametrize("first, layout, message", [
    ("-1", "auto", r"line 2: label -1 \(label first\): labels must be >= 0 .*recode them, "
                   r"e.g. y\[y < 0\] = 0"),
    ("-1", "label-first", r"line 2: label -1 .*scikit-learn"),
    ("1e300", "auto", r"line 2: label 1e\+300 \(label first\) is too large to be a class "
                      r"number"),
    ("2.5", "label-first", r"line 2: label 2.5 \(label first\) is not a whole number.*"
                           r"layout='label-last'"),
])
def test_odd_labels_name_the_line_and_what_to_do(tmp_path, first, layout, message):
    rows = ["1 0.25 0.5 0.75", f"{first} 0.5 0.25 0.125", "1 0.125 0.375 0.625"]
    (tmp_path / "odd.txt").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=message):
        read_ecg_file(tmp_path / "odd.txt", layout=layout)


def test_a_zip_archive_says_unzip_it(beats, tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as archive:
        archive.writestr("ecg.csv", _csv(beats.x[:3], np.ones(3)))
    with pytest.raises(DataError, match=r"archive.zip is a ZIP archive \(it holds 'ecg.csv'\)"
                                        r".*unzip it"):
        read_ecg_file(tmp_path / "archive.zip")
