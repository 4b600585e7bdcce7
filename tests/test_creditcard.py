"""Credit-card fraud (notebook 04): reading and checking CSV files, the embedded sample, the
verified download and its cache, the split, the tabular autoencoder and the experiment.

Downloads run against a local HTTP server (see ``test_download.LocalServer``) serving a small
stand-in for the full file (the expected row and fraud counts are patched to match it).
"""
from __future__ import annotations

import _thread
import gzip
import hashlib
import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from course_lib.checks import DataError
from course_lib.config import DATA_DIR_ENV, data_dir
from course_lib.data import creditcard as C
from course_lib.data.creditcard import (CREDITCARD_COLUMNS, check_creditcard_frame,
                                        creditcard_cache_items, creditcard_cache_path,
                                        fetch_creditcard, load_creditcard, read_creditcard_csv)
from course_lib.experiments.creditcard import split_creditcard
from test_download import LocalServer, closed_port_url, no_proxy, short_timeouts

N_NORMAL, N_FRAUD = 6000, 50


@pytest.fixture(scope="module")
def sample():
    """The embedded real sample as a clean DataFrame."""
    return load_creditcard(source="offline", verbose=False).frame


def _fake_full_csv(n_normal=N_NORMAL, n_fraud=N_FRAUD, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n_normal + n_fraud, 30)).round(4),
                         columns=list(CREDITCARD_COLUMNS[:-1]))
    frame["Class"] = np.r_[np.zeros(n_normal, int), np.ones(n_fraud, int)]
    return frame.to_csv(index=False).encode()


FAKE = _fake_full_csv()


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache, the full data's counts set to the stand-in's, and the URL at a
    closed port unless a test serves it."""
    no_proxy(monkeypatch)
    short_timeouts(monkeypatch)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(C, "CREDITCARD_URL", closed_port_url("/creditcard.csv"))
    monkeypatch.setattr(C, "CREDITCARD_ROWS", N_NORMAL + N_FRAUD)
    monkeypatch.setattr(C, "CREDITCARD_FRAUDS", N_FRAUD)
    return tmp_path / "keras"


@pytest.fixture
def server(keras_home, monkeypatch):
    with LocalServer({"/creditcard.csv": FAKE}) as srv:
        monkeypatch.setattr(C, "CREDITCARD_URL", srv.url("/creditcard.csv"))
        yield srv


def _cache_files(keras_home):
    return sorted(p.name for p in keras_home.rglob("*") if p.is_file())


def _sample_lines():
    return gzip.decompress((data_dir() / C.CREDITCARD_SAMPLE).read_bytes()).decode().splitlines()


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- embedded sample
def test_embedded_sample_is_the_real_subset(sample):
    assert list(sample.columns) == list(CREDITCARD_COLUMNS)
    assert len(sample) == 3338 and int(sample["Class"].sum()) == 236
    assert sample["Class"].dtype == np.int64
    assert all(sample[c].dtype == np.float64 for c in CREDITCARD_COLUMNS[:-1])
    assert sample["Time"].between(0, 172_792).all(), "the real data covers two days"


def test_checksum_constant_matches_shipped_file():
    digest = hashlib.sha256((data_dir() / C.CREDITCARD_SAMPLE).read_bytes()).hexdigest()
    assert digest == C.CREDITCARD_SAMPLE_SHA256


def test_offline_load_prints_one_source_line(capsys):
    d = load_creditcard(source="offline", profile="fast")
    out = capsys.readouterr().out
    assert d.source == "embedded" and len(d.frame) == 3338, "the profile never cuts the sample"
    assert out.startswith("Data source: embedded | ") and out.count("Data source:") == 1
    assert "3,338 transactions, 236 frauds (7.07%)" in out
    assert np.isclose(d.fraud_rate, 236 / 3338)


@pytest.mark.parametrize("damage, message", [
    ("flip", "corrupted.*git checkout"),
    ("delete", "not found.*git checkout"),
    ("folder", "is a folder, not a file.*git checkout"),
])
def test_damaged_embedded_sample_says_how_to_restore(tmp_path, monkeypatch, damage, message):
    copy = tmp_path / C.CREDITCARD_SAMPLE
    shutil.copy(data_dir() / C.CREDITCARD_SAMPLE, copy)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    if damage == "flip":
        with open(copy, "r+b") as f:
            f.seek(1000)
            f.write(b"\x00" * 32)
    else:
        copy.unlink()
        if damage == "folder":
            copy.mkdir()
    with pytest.raises(DataError, match=message):
        load_creditcard(source="offline", verbose=False)
    assert creditcard_cache_items()[0].state == ("missing" if damage == "delete" else "corrupted")


# --------------------------------------------------------------------------- download and cache
def test_download_is_verified_cached_and_capped_by_the_profile(server, keras_home, capsys):
    d = load_creditcard(source="online", profile="fast")
    out = capsys.readouterr().out
    assert d.source == "online" and out.startswith("Data source: online | ")
    assert _cache_files(keras_home) == [C.CREDITCARD_CACHE_NAME], "only the verified file"
    assert (d.frame["Class"] == 0).sum() == 5000, "profile 'fast' keeps 5,000 normal rows"
    assert d.frame["Class"].sum() == N_FRAUD, "every fraud is kept"
    again = load_creditcard(source="online", profile="fast", verbose=False)
    pd.testing.assert_frame_equal(d.frame, again.frame)  # seeded: the same rows every time
    full = load_creditcard(source="online", profile="full", verbose=False)
    assert len(full.frame) == N_NORMAL + N_FRAUD, "the full profile keeps every row"
    assert len(server.log) == 1, "later loads read the cache, not the network"
    assert creditcard_cache_items()[1].state == "OK"


@pytest.mark.parametrize("served, error", [
    ("sample", "3,338 rows with 236 frauds, expected 6,050 rows with 50 frauds"),
    ("sha256", "sha256 .* differs"),
    ("html", "missing column"),
    ("404", "404"),
    ("cut", "(?i)connection broken|incomplete"),
])
def test_a_wrong_or_failed_download_is_not_cached(server, keras_home, monkeypatch, served,
                                                  error):
    if served == "sample":  # real columns, but not the full file's rows and frauds
        server.files["/creditcard.csv"] = "\n".join(_sample_lines()).encode()
    elif served == "sha256":
        monkeypatch.setattr(C, "CREDITCARD_SHA256", "0" * 64)
    elif served == "html":
        server.files["/creditcard.csv"] = b"<html><body>Quota exceeded</body></html>\n"
    elif served == "404":
        del server.files["/creditcard.csv"]
    else:
        server.faults["/creditcard.csv"] = {"cut": 100_000}
    with pytest.raises((DataError, OSError), match=error):
        fetch_creditcard(progress=False)
    assert _cache_files(keras_home) == []
    assert load_creditcard(source="auto", verbose=False).source == "embedded"
    assert _cache_files(keras_home) == []


def test_an_interrupted_download_leaves_nothing(server, keras_home, capsys):
    server.faults["/creditcard.csv"] = {"trickle": True}
    server.on_first_chunk = _thread.interrupt_main  # Ctrl-C while the bytes come in
    with pytest.raises(KeyboardInterrupt):
        load_creditcard(source="auto")
    assert _cache_files(keras_home) == []
    assert "Data source" not in capsys.readouterr().out


def test_no_network_falls_back_with_one_message(keras_home, capsys):
    d = load_creditcard(source="auto")
    out = capsys.readouterr().out
    assert d.source == "embedded"
    assert out.startswith("Could not get the credit-card data (ConnectionError")
    assert out.count("Data source:") == 1
    with pytest.raises(DataError, match="Check the network, or use the embedded sample with "
                                        "COURSE_DATA=offline"):
        load_creditcard(source="online", verbose=False)


def test_offline_never_downloads(server, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", "offline")
    assert load_creditcard(verbose=False).source == "embedded"
    assert server.log == []


def test_a_bad_cached_copy_says_delete_it(keras_home, capsys):
    cache = creditcard_cache_path()
    cache.parent.mkdir(parents=True)
    cache.write_text("Time,V1\n1,2\n")
    with pytest.raises(DataError, match=f"^Delete {cache} and run again"):
        fetch_creditcard(progress=False)
    with pytest.raises(DataError) as exc:
        load_creditcard(source="online", verbose=False)
    assert f"Delete {cache}" in str(exc.value) and "COURSE_DATA=offline" in str(exc.value)
    assert load_creditcard(source="auto", verbose=True).source == "embedded"
    assert f"Delete {cache}" in capsys.readouterr().out
    assert creditcard_cache_items()[1].state == "corrupted"
    assert cache.read_text() == "Time,V1\n1,2\n", "reported, not silently replaced"


def test_a_folder_in_place_of_the_cache_is_reported(keras_home):
    creditcard_cache_path().mkdir(parents=True)
    with pytest.raises(DataError, match="is a folder, not a file"):
        fetch_creditcard(progress=False)
    item = creditcard_cache_items()[1]
    assert item.state == "corrupted" and "Remove the folder" in item.hint


# --------------------------------------------------------------------------- your own CSV
def test_bring_your_own_csv_with_index_column_and_any_order(sample, tmp_path, capsys):
    mine = sample.iloc[:300]
    p = tmp_path / "mine.csv"
    mine[list(reversed(CREDITCARD_COLUMNS))].to_csv(p)  # index written, columns reversed
    d = load_creditcard(path=p, profile="fast")
    assert d.source == "file" and "Data source: file | your file" in capsys.readouterr().out
    assert list(d.frame.columns) == list(CREDITCARD_COLUMNS)
    np.testing.assert_allclose(d.frame.to_numpy(), mine.to_numpy())
    gz = tmp_path / "mine.csv.gz"
    mine.to_csv(gz, index=False)
    assert len(read_creditcard_csv(gz)) == 300
    named_oddly = tmp_path / "actually_gzip.csv"
    named_oddly.write_bytes(gz.read_bytes())
    assert len(read_creditcard_csv(named_oddly)) == 300


def _write(tmp_path, frame, name="bad.csv"):
    p = tmp_path / name
    frame.to_csv(p, index=False)
    return p


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["V3", "Amount"]), r"missing column\(s\) \['V3', 'Amount'\]"),
    (lambda f: f.assign(extra=1.0), r"unexpected column\(s\) 'extra'"),
    (lambda f: f.rename(columns={"V5": "V4"}), r"duplicated column\(s\) 'V4'"),
    (lambda f: f.astype({"V2": object}).assign(V2=lambda g: g["V2"].where(g.index != 3, "abc")),
     "column 'V2' holds non-numeric values, e.g. 'abc' in data row 3"),
    (lambda f: f.assign(Amount=f["Amount"].where(f.index != 5)),
     "column 'Amount' has 1 missing .* first in data row 5"),
    (lambda f: f.assign(Class=f["Class"].where(f.index != 0, 2)),
     r"'Class' must be 0 \(normal\) or 1 \(fraud\), found \[2\]"),
    (lambda f: f[f["Class"] == 1], r"no normal transactions \(Class 0\)"),
    (lambda f: f.iloc[:0], "holds no rows"),
])
def test_bad_csv_is_rejected_with_a_clear_message(sample, tmp_path, change, message):
    p = _write(tmp_path, change(sample.iloc[:40].copy()))
    with pytest.raises(DataError, match=message):
        load_creditcard(path=p, verbose=False)


def test_unreadable_missing_and_folder_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv not found.*Time, V1"):
        read_creditcard_csv(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="dir.csv is a folder, not a file"):
        read_creditcard_csv(tmp_path / "dir.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        read_creditcard_csv(empty)
    raw = bytearray((data_dir() / C.CREDITCARD_SAMPLE).read_bytes())
    raw[2000:2016] = b"\x00" * 16  # damaged deflate data (zlib.error, not an OSError)
    damaged = tmp_path / "damaged.csv.gz"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="damaged.csv.gz could not be read"):
        read_creditcard_csv(damaged)
    with pytest.raises(DataError, match="DataFrame"):
        check_creditcard_frame(np.zeros((3, 31)))


# --------------------------------------------------------------------------- malformed rows
def test_rows_with_one_more_field_are_rejected_not_shifted(tmp_path):
    """pandas turns an extra field per row into the index and shifts every column."""
    header, *rows = _sample_lines()[:41]
    p = _write_lines(tmp_path / "shifted.csv", [header] + [r + ",0" for r in rows])
    with pytest.raises(DataError, match=r"shifted.csv: line 2 has 32 fields but the header has "
                                        r"31 \(a shifted row"):
        read_creditcard_csv(p)
    later = _write_lines(tmp_path / "later.csv", [header] + rows[:9] + ["7," + rows[9]] + rows)
    with pytest.raises(DataError, match="line 11 has 32 fields"):
        read_creditcard_csv(later)


def test_a_trailing_comma_is_named_as_such(tmp_path):
    header, *rows = _sample_lines()
    p = _write_lines(tmp_path / "trailing.csv", [header] + [r + "," for r in rows])
    with pytest.raises(DataError) as exc:
        read_creditcard_csv(p)
    message = str(exc.value)
    assert "line 2 has 32 fields" in message and "trailing comma" in message
    assert "missing" not in message, "not 'Class has 3338 missing values'"
    both = _write_lines(tmp_path / "both.csv", [header + ","] + [r + "," for r in rows[:20]])
    with pytest.raises(DataError, match="header row ends with a comma"):
        read_creditcard_csv(both)


def test_a_row_with_fewer_fields_is_named_by_its_line(tmp_path):
    header, *rows = _sample_lines()[:41]
    rows[5] = rows[5].rsplit(",", 1)[0]  # the label is missing
    p = _write_lines(tmp_path / "short.csv", [header] + rows)
    with pytest.raises(DataError, match="line 7 has 30 fields but the header has 31"):
        read_creditcard_csv(p)


def test_quoted_fields_with_commas_are_one_field(sample, tmp_path):
    mine = sample.iloc[:50].copy()
    mine.index = [f"card {i}, shop {i % 3}" for i in range(50)]  # quoted by to_csv
    p = tmp_path / "quoted.csv"
    mine.to_csv(p, quoting=1)  # every field quoted, the header too
    np.testing.assert_allclose(read_creditcard_csv(p).to_numpy(), mine.to_numpy())
    header, *rows = _sample_lines()[:11]
    fields = rows[3].split(",")
    fields[30] = '"1,5"'  # a decimal comma inside quotes: one field, but not a number
    rows[3] = ",".join(fields)
    bad = _write_lines(tmp_path / "decimal_comma.csv", [header] + rows)
    with pytest.raises(DataError, match="column 'Class' holds non-numeric values, e.g. '1,5' "
                                        "in data row 3"):
        read_creditcard_csv(bad)


@pytest.mark.parametrize("where", ["first data row", "later"])
def test_a_line_of_millions_of_fields_fails_within_seconds(tmp_path, where):
    header, *rows = _sample_lines()[:101]
    huge = ",".join(["1"] * 2_000_000)
    lines = [header, huge] + rows if where == "first data row" else [header] + rows + [huge]
    p = _write_lines(tmp_path / "huge.csv", lines)
    line_no = 2 if where == "first data row" else 102
    start = time.perf_counter()
    with pytest.raises(DataError, match=f"line {line_no} has 2,000,000 fields but the header "
                                        f"has 31") as exc:
        read_creditcard_csv(p)
    assert time.perf_counter() - start < 10
    assert len(str(exc.value)) < 1000


def test_huge_values_and_names_give_short_messages(tmp_path):
    header, *rows = _sample_lines()[:41]
    fields = rows[3].split(",")
    fields[2] = "a" * 5_000_000
    rows[3] = ",".join(fields)
    p = _write_lines(tmp_path / "big_field.csv", [header] + rows)
    with pytest.raises(DataError, match="column 'V2' holds non-numeric values.*5,000,000 "
                                        "characters.*data row 3") as exc:
        read_creditcard_csv(p)
    assert len(str(exc.value)) < 1000
    for size in (50_000, 1_000_000):  # a long column name; a first line too long for a header
        names = header.split(",")
        names[5] = "Z" * size
        p = _write_lines(tmp_path / f"name_{size}.csv", [",".join(names)] + rows)
        with pytest.raises(DataError) as exc:
            read_creditcard_csv(p)
        assert len(str(exc.value)) < 1000
    frame = pd.DataFrame(np.zeros((3, 32)), columns=[*CREDITCARD_COLUMNS, "Y" * 10_000_000])
    with pytest.raises(DataError, match="unexpected column") as exc:
        check_creditcard_frame(frame)
    assert len(str(exc.value)) < 1000
    frame = pd.DataFrame(np.zeros((3, 31)), columns=["W" * 10_000_000, *CREDITCARD_COLUMNS[1:]])
    with pytest.raises(DataError, match="missing column") as exc:
        check_creditcard_frame(frame)
    assert len(str(exc.value)) < 1000


# --------------------------------------------------------------------------- split and model
def test_split_is_deterministic_one_class_and_scaled_on_train_only(sample):
    a = split_creditcard(sample, seed=3)
    b = split_creditcard(sample, seed=3)
    np.testing.assert_array_equal(a.test_rows, b.test_rows)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.train_rows, split_creditcard(sample, seed=4).train_rows)
    labels = sample["Class"].to_numpy()
    rows = np.concatenate([a.train_rows, a.val_rows, a.test_rows])
    assert len(np.unique(rows)) == len(rows) == len(sample), "disjoint, and every row is used"
    assert labels[a.train_rows].sum() == 0 and labels[a.val_rows].sum() == 0
    assert a.y_test.sum() == 236, "every fraud is in the test set"
    assert (a.y_test == 0).sum() == round(0.3 * 3102)
    np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-5)  # fitted on training rows
    np.testing.assert_allclose(a.x_train.std(0), 1, atol=1e-3)
    assert np.abs(a.x_test.mean(0)).max() > 0.1  # ... and only on them
    assert a.x_train.dtype == np.float32 and a.x_train.shape[1] == 30
    q = split_creditcard(sample, seed=3, scaling="quantile")
    assert np.isfinite(q.x_test).all() and "quantile" in str(q)


def test_split_rejects_unusable_data(sample):
    with pytest.raises(DataError, match="no frauds"):
        split_creditcard(sample[sample["Class"] == 0])
    tiny = pd.concat([sample[sample["Class"] == 0].iloc[:15], sample[sample["Class"] == 1]])
    with pytest.raises(DataError, match="too few"):
        split_creditcard(tiny)
    with pytest.raises(ValueError, match="test_fraction"):
        split_creditcard(sample, test_fraction=1.0)
    with pytest.raises(ValueError, match="scaling"):
        split_creditcard(sample, scaling="minmax")


def test_tabular_autoencoder_is_the_seed_model():
    from course_lib.models import build_tabular_autoencoder

    ae, enc, dec = build_tabular_autoencoder()
    assert ae.input_shape == (None, 30) and ae.output_shape == (None, 30)
    assert enc.output_shape == (None, 7) and dec.output_shape == (None, 30)
    dense = [layer for part in (enc, dec) for layer in part.layers if hasattr(layer, "units")]
    assert [(d.units, d.activation.__name__) for d in dense] == [
        (14, "tanh"), (7, "relu"), (7, "tanh"), (30, "linear")]
    assert float(dense[0].activity_regularizer.l1) == pytest.approx(1e-7)
    assert ae.count_params() == (30 * 14 + 14) + (14 * 7 + 7) + (7 * 7 + 7) + (7 * 30 + 30)
    _, _, dec_relu = build_tabular_autoencoder(input_dim=29, output_activation="relu", l1=0)
    assert dec_relu.layers[-1].activation.__name__ == "relu"
    assert dec_relu.output_shape == (None, 29)


@pytest.mark.parametrize("kwargs", [dict(input_dim=0), dict(code_size=2.5), dict(l1=-1.0)])
def test_tabular_rejects_bad_arguments(kwargs):
    from course_lib.models import build_tabular_autoencoder

    with pytest.raises(ValueError):
        build_tabular_autoencoder(**kwargs)


@pytest.fixture(scope="module")
def run(sample):
    """One fast-profile experiment on the embedded sample, shared by the slow tests:
    ``(result, details)``."""
    from course_lib.experiments.creditcard import creditcard_experiment

    return creditcard_experiment(sample, profile="fast", return_details=True)


@pytest.mark.slow
def test_trained_tabular_autoencoder_beats_untrained(run):
    """The experiment's autoencoder (``train_tabular_autoencoder`` on the seed-0 split's
    normals) against the same network untrained."""
    from course_lib.config import set_seed
    from course_lib.metrics import anomaly_scores
    from course_lib.models import build_tabular_autoencoder

    result, details = run
    split, ae = details["split"], details["autoencoder"]
    history = ae.history     # what fit returned
    assert result["epochs"] == len(history.history["loss"]) and result["seed"] == 0
    normal_test = split.x_test[split.y_test == 0]
    set_seed(0)
    untrained, _, _ = build_tabular_autoencoder()
    before = anomaly_scores(untrained, normal_test).mean()
    after = anomaly_scores(ae, normal_test).mean()
    # also beat the best constant guess, the training mean (zero after standardising)
    constant = np.mean(normal_test.astype(np.float64) ** 2, axis=1).mean()
    assert after < 0.85 * before and after < 0.9 * constant, (before, after, constant)
    assert history.history["val_loss"][-1] < history.history["val_loss"][0]
    out = ae.predict(split.x_test[:50], verbose=0)
    assert out.min() < 0, "a linear output reconstructs negative (standardised) values"


@pytest.mark.slow
def test_creditcard_experiment_details_are_the_run_behind_its_numbers(run):
    from sklearn.metrics import average_precision_score, roc_auc_score

    result, details = run
    for key in ("auroc", "auprc", "baseline_iforest_auroc", "baseline_iforest_auprc",
                "baseline_pca_auroc", "n_train", "n_val", "n_test", "n_fraud", "seconds",
                "profile"):  # the fields `bench creditcard` prints as JSON
        assert key in result, key
    assert result["profile"] == "fast" and result["n_fraud"] == 236
    assert result["n_test"] == 931 + 236 and result["n_train"] + result["n_val"] == 3102 - 931
    y, scores = details["split"].y_test, details["scores"]
    assert set(scores) == {"autoencoder", "Isolation Forest", "PCA reconstruction"}
    assert all(len(s) == len(y) == result["n_test"] for s in scores.values())
    assert result["auroc"] == round(float(roc_auc_score(y, scores["autoencoder"])), 4)
    assert result["baseline_iforest_auprc"] == round(
        float(average_precision_score(y, scores["Isolation Forest"])), 4)
    # real frauds are clearly unusual: every detector ranks them far above chance
    assert result["auroc"] > 0.85 and result["baseline_iforest_auroc"] > 0.85, result
    assert result["baseline_pca_auroc"] > 0.85 and 0 < result["auprc"] <= 1


def test_bench_creditcard_reports_bad_files(tmp_path, capsys):
    from course_lib.cli.bench import main

    assert main(["creditcard", "--csv", str(tmp_path / "missing.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("Time,V1\n1,2\n")
    assert main(["creditcard", "--csv", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "missing column" in err and "Traceback" not in err


# --------------------------------------------------------------------------- line ends and archives
@pytest.mark.parametrize("n_rows", [40, None])   # None: the whole sample, over 64 KB
def test_old_mac_line_ends_read_like_any_other(sample, tmp_path, n_rows):
    """A CSV whose lines end in a lone CR (old Mac) reads as its LF copy (it raised
    ``_csv.Error``, and over 64 KB a false "first line longer than 65,536 bytes")."""
    frame = sample if n_rows is None else sample.head(n_rows)
    text = frame.to_csv(index=False)
    assert n_rows is not None or len(text) > C.MAX_HEADER_BYTES
    for ends in ("\r", "\r\n"):
        path = tmp_path / "cr.csv"
        path.write_bytes(text.replace("\n", ends).encode())
        pd.testing.assert_frame_equal(read_creditcard_csv(path), frame.reset_index(drop=True))
    lines = text.splitlines()
    lines[4] += ",7"                                  # line 5 gets one field too many
    path.write_bytes("\r".join(lines).encode())
    with pytest.raises(DataError, match="line 5 has 32 fields but the header has 31"):
        read_creditcard_csv(path)


def test_kaggle_archive_zip_says_unzip_it(sample, tmp_path, capsys):
    import zipfile

    from course_lib.cli.bench import main

    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("creditcard.csv", sample.head(20).to_csv(index=False))
    with pytest.raises(DataError, match=r"archive.zip is a ZIP archive \(it holds "
                                        r"'creditcard.csv'\).*unzip it"):
        read_creditcard_csv(path)
    assert main(["creditcard", "--csv", str(path)]) == 1
    err = capsys.readouterr().err
    assert "unzip" in err and "Traceback" not in err


def test_bench_creditcard_save_leaves_a_detector(tmp_path, monkeypatch, capsys):
    """``--save`` (training replaced by an untrained model): the detector keeps the split's
    scaling, its threshold comes from the validation normals, ``course-score`` runs it on the
    same CSV; ``--scaling quantile`` cannot be saved (a usage error, before reading)."""
    from types import SimpleNamespace

    from course_lib.cli import score
    from course_lib.cli.bench import main
    from course_lib.detector import load_detector
    from course_lib.experiments import creditcard as E
    from course_lib.models import build_tabular_autoencoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 31)), columns=list(CREDITCARD_COLUMNS))
    frame["Class"] = (np.arange(400) < 8).astype(int)
    path = tmp_path / "cards.csv"
    frame.to_csv(path, index=False)
    monkeypatch.setattr(E, "train_tabular_autoencoder", lambda *a, **k: (
        build_tabular_autoencoder(30)[0], SimpleNamespace(history={"loss": [0.1]})))
    monkeypatch.setattr(E, "creditcard_baselines", lambda split, seed=0: {
        name: np.zeros(len(split.y_test)) for name in ("Isolation Forest",
                                                       "PCA reconstruction")})
    target = tmp_path / "cards.keras"
    assert main(["creditcard", "--csv", str(path), "--save", str(target), "--scaling",
                 "quantile"]) == 2
    assert "'standard' scaling" in capsys.readouterr().err
    assert main(["creditcard", "--csv", str(path), "--save", str(target)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    detector = load_detector(target)
    n_half = int(round(0.5 * result["n_test_normal"]))    # half the test normals calibrate
    assert detector.kind == "transactions" and detector.n_calibration == n_half
    assert result["detector_n_checked"] == result["n_test"] - n_half
    assert score.main([str(target), str(path), "--out", str(tmp_path / "o")]) == 0
    assert "Scored 400 rows" in capsys.readouterr().out
