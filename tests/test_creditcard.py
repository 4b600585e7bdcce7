"""Credit-card fraud (notebook 04): data loading, the tabular autoencoder, the bench command."""
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from course_lib import bench
from course_lib import data as D
from course_lib.data import (CREDITCARD_COLUMNS, DataError, check_creditcard_frame,
                             load_creditcard, read_creditcard_csv)


@pytest.fixture(scope="module")
def sample():
    """The embedded real sample as a clean DataFrame."""
    return load_creditcard(source="offline", verbose=False).frame


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Keras cache folder for download tests; returns the datasets folder."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "datasets"


def _plain_sample(tmp_path):
    """The embedded sample, decompressed, as a stand-in for the downloaded CSV."""
    path = tmp_path / "sample.csv"
    with gzip.open(D.data_dir() / D.CREDITCARD_SAMPLE, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def _files_in(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --------------------------------------------------------------------------- embedded sample
def test_embedded_sample_is_the_real_subset(sample):
    assert list(sample.columns) == list(CREDITCARD_COLUMNS)
    assert len(sample) == 3338 and int(sample["Class"].sum()) == 236
    assert sample["Class"].dtype == np.int64
    assert all(sample[c].dtype == np.float64 for c in CREDITCARD_COLUMNS[:-1])
    assert sample["Time"].between(0, 172_792).all(), "the real data covers two days"


def test_checksum_constant_matches_shipped_file():
    digest = hashlib.sha256((D.data_dir() / D.CREDITCARD_SAMPLE).read_bytes()).hexdigest()
    assert digest == D.CREDITCARD_SAMPLE_SHA256


def test_offline_load_prints_one_source_line(capsys):
    d = load_creditcard(source="offline", profile="fast")
    out = capsys.readouterr().out
    assert d.source == "embedded" and len(d.frame) == 3338, "the profile never cuts the sample"
    assert out.startswith("Data source: embedded | ") and out.count("Data source:") == 1
    assert "3,338 transactions, 236 frauds (7.07%)" in out
    assert np.isclose(d.fraud_rate, 236 / 3338)


def test_corrupted_embedded_sample_says_how_to_restore(tmp_path, monkeypatch):
    shutil.copy(D.data_dir() / D.CREDITCARD_SAMPLE, tmp_path / D.CREDITCARD_SAMPLE)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    load_creditcard(source="offline", verbose=False)  # an intact copy loads
    with open(tmp_path / D.CREDITCARD_SAMPLE, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00" * 32)
    with pytest.raises(DataError, match="corrupted.*git checkout"):
        load_creditcard(source="offline", verbose=False)
    (tmp_path / D.CREDITCARD_SAMPLE).unlink()
    with pytest.raises(DataError, match="not found.*git checkout"):
        load_creditcard(source="offline", verbose=False)


# --------------------------------------------------------------------------- online / fallback
def _fake_full(n_normal=6000, n_fraud=50, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n_normal + n_fraud, 30)),
                         columns=list(CREDITCARD_COLUMNS[:-1]))
    frame["Class"] = np.r_[np.zeros(n_normal, int), np.ones(n_fraud, int)]
    return frame


def test_online_path_reports_online_and_profile_caps_normals(monkeypatch, capsys):
    monkeypatch.setattr(D, "_fetch_creditcard", lambda: _fake_full())
    d = load_creditcard(source="online", profile="fast")
    out = capsys.readouterr().out
    assert d.source == "online" and out.startswith("Data source: online | ")
    assert (d.frame["Class"] == 0).sum() == D.creditcard_max_normal("fast") == 5000
    assert d.frame["Class"].sum() == 50, "every fraud is kept"
    again = load_creditcard(source="online", profile="fast", verbose=False)
    pd.testing.assert_frame_equal(d.frame, again.frame)  # seeded: the same rows every time
    full = load_creditcard(source="online", profile="full", verbose=False)
    assert len(full.frame) == 6050, "the full profile keeps every row"


def test_failed_download_falls_back_with_one_message(monkeypatch, capsys):
    def boom():
        raise OSError("network is unreachable")

    monkeypatch.setattr(D, "_fetch_creditcard", boom)
    d = load_creditcard(source="auto")
    out = capsys.readouterr().out
    assert d.source == "embedded"
    assert "Could not download the credit-card data (OSError)" in out
    assert out.count("Data source:") == 1
    with pytest.raises(DataError, match="COURSE_DATA=offline"):
        load_creditcard(source="online", verbose=False)


def test_auto_follows_course_data(monkeypatch):
    monkeypatch.setattr(D, "_fetch_creditcard", lambda: pytest.fail("offline must not download"))
    monkeypatch.setenv("COURSE_DATA", "offline")
    assert load_creditcard(verbose=False).source == "embedded"


def test_download_fails_fast_without_network(cache, monkeypatch):
    """No cached copy and an unreachable host: an error within seconds, nothing cached."""
    import socket

    with socket.socket() as s:  # a loopback port with nobody listening: the host "is down"
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    monkeypatch.setattr(D, "CREDITCARD_URL", f"https://127.0.0.1:{closed_port}/creditcard.csv")
    monkeypatch.setattr(D, "CONNECT_TIMEOUT_S", 0.5)
    start = time.perf_counter()
    with pytest.raises(OSError):
        D._fetch_creditcard()
    assert time.perf_counter() - start < 5
    assert _files_in(cache) == []


@pytest.fixture
def reachable(monkeypatch):
    """Pretend the host answers (the transfer itself is replaced in each test)."""
    class _Conn:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(D.socket, "create_connection", lambda *a, **k: _Conn())


def test_download_is_verified_then_renamed_into_the_cache(cache, monkeypatch, reachable,
                                                          tmp_path):
    source = _plain_sample(tmp_path)
    calls = []

    def transfer(url, target):
        calls.append(target)
        assert target.parent == cache and target.name.endswith(".part")
        shutil.copy(source, target)

    monkeypatch.setattr(D, "_http_download", transfer)
    monkeypatch.setattr(D, "CREDITCARD_ROWS", 3338)     # the sample stands in for the full file
    monkeypatch.setattr(D, "CREDITCARD_FRAUDS", 236)
    d = load_creditcard(source="online", profile="full", verbose=False)
    assert d.source == "online" and len(d.frame) == 3338
    assert _files_in(cache) == [D.CREDITCARD_CACHE_NAME], "only the verified file, no .part"
    # second time: from the cache, without touching the network
    monkeypatch.setattr(D.socket, "create_connection",
                        lambda *a, **k: pytest.fail("a cached copy must not need the network"))
    assert len(load_creditcard(source="online", profile="full", verbose=False).frame) == 3338
    assert len(calls) == 1


def test_real_downloader_against_a_local_server(cache, monkeypatch, tmp_path):
    """The pooch transfer end to end, from an HTTP server on this machine (no internet)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)        # talk to 127.0.0.1 directly
    _plain_sample(tmp_path)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(D, "CREDITCARD_URL",
                            f"http://127.0.0.1:{server.server_address[1]}/sample.csv")
        monkeypatch.setattr(D, "CREDITCARD_ROWS", 3338)
        monkeypatch.setattr(D, "CREDITCARD_FRAUDS", 236)
        frame = D._fetch_creditcard()
        assert len(frame) == 3338
        assert _files_in(cache) == [D.CREDITCARD_CACHE_NAME]
        (cache / D.CREDITCARD_CACHE_NAME).unlink()
        monkeypatch.setattr(D, "CREDITCARD_URL",           # a 404: an error, nothing cached
                            f"http://127.0.0.1:{server.server_address[1]}/missing.csv")
        with pytest.raises(Exception, match="404"):
            D._fetch_creditcard()
        assert _files_in(cache) == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("exc", [KeyboardInterrupt, ConnectionResetError])
def test_interrupted_download_leaves_no_partial_file(cache, monkeypatch, reachable, tmp_path,
                                                     exc):
    source = _plain_sample(tmp_path)

    def half_then_fail(url, target):
        target.write_bytes(source.read_bytes()[:50_000])
        raise exc("transfer interrupted")

    monkeypatch.setattr(D, "_http_download", half_then_fail)
    with pytest.raises(exc):
        D._fetch_creditcard()
    assert _files_in(cache) == [], "an interrupted download must leave nothing in the cache"
    if exc is not KeyboardInterrupt:  # in auto mode: fall back to the embedded sample
        assert load_creditcard(source="auto", verbose=False).source == "embedded"
        assert _files_in(cache) == []


def test_download_with_wrong_content_is_rejected_and_not_cached(cache, monkeypatch, reachable,
                                                                tmp_path):
    source = _plain_sample(tmp_path)   # real columns, but not 284,807 rows / 492 frauds
    monkeypatch.setattr(D, "_http_download", lambda url, target: shutil.copy(source, target))
    with pytest.raises(DataError, match="3,338 rows with 236 frauds, expected 284,807 rows"):
        D._fetch_creditcard()
    assert _files_in(cache) == []
    # a known checksum is checked too
    monkeypatch.setattr(D, "CREDITCARD_ROWS", 3338)
    monkeypatch.setattr(D, "CREDITCARD_FRAUDS", 236)
    monkeypatch.setattr(D, "CREDITCARD_SHA256", "0" * 64)
    with pytest.raises(DataError, match="sha256"):
        D._fetch_creditcard()
    assert _files_in(cache) == []
    # an HTML error page instead of the CSV
    monkeypatch.setattr(D, "_http_download",
                        lambda url, target: target.write_text("<html>quota exceeded</html>"))
    monkeypatch.setattr(D, "CREDITCARD_SHA256", None)
    with pytest.raises(DataError, match="columns"):
        D._fetch_creditcard()
    assert _files_in(cache) == []


def test_bad_cached_copy_says_delete_it(cache, monkeypatch, tmp_path):
    cache.mkdir(parents=True)
    (cache / D.CREDITCARD_CACHE_NAME).write_text("Time,V1\n1,2\n")
    with pytest.raises(DataError, match="Delete .*creditcard.csv"):
        D._fetch_creditcard()
    with pytest.raises(DataError, match="COURSE_DATA=offline"):
        load_creditcard(source="online", verbose=False)


# --------------------------------------------------------------------------- your own CSV
def test_bring_your_own_csv_with_index_column_and_any_order(sample, tmp_path, capsys):
    mine = sample.iloc[:300]
    p = tmp_path / "mine.csv"
    mine[list(reversed(CREDITCARD_COLUMNS))].to_csv(p)   # index written, columns reversed
    d = load_creditcard(path=p, profile="fast")
    assert d.source == "file" and "Data source: file | your file" in capsys.readouterr().out
    assert list(d.frame.columns) == list(CREDITCARD_COLUMNS)
    np.testing.assert_allclose(d.frame.to_numpy(), mine.to_numpy())
    gz = tmp_path / "mine.csv.gz"
    mine.to_csv(gz, index=False)
    assert len(read_creditcard_csv(gz)) == 300


def _write(tmp_path, frame, name="bad.csv"):
    p = tmp_path / name
    frame.to_csv(p, index=False)
    return p


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["V3", "Amount"]), r"missing column\(s\) \['V3', 'Amount'\]"),
    (lambda f: f.assign(extra=1.0), r"unexpected column\(s\) \['extra'\]"),
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


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="not found.*Time, V1"):
        read_creditcard_csv(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv could not be read"):
        read_creditcard_csv(empty)
    with pytest.raises(DataError, match="DataFrame"):
        check_creditcard_frame(np.zeros((3, 31)))


# --------------------------------------------------------------------------- the model
def test_tabular_autoencoder_is_the_seed_model():
    from course_lib.models import build_tabular_autoencoder

    ae, enc, dec = build_tabular_autoencoder()
    assert ae.input_shape == (None, 30) and ae.output_shape == (None, 30)
    assert enc.output_shape == (None, 7) and dec.output_shape == (None, 30)
    dense = [layer for part in (enc, dec) for layer in part.layers if hasattr(layer, "units")]
    assert [(l.units, l.activation.__name__) for l in dense] == [
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


def test_trained_tabular_autoencoder_beats_untrained(sample):
    from course_lib.config import set_seed
    from course_lib.metrics import anomaly_scores
    from course_lib.models import build_tabular_autoencoder

    split = bench.split_creditcard(sample, seed=0)
    normal_test = split.x_test[split.y_test == 0]
    set_seed(0)
    untrained, _, _ = build_tabular_autoencoder()
    before = anomaly_scores(untrained, normal_test).mean()
    ae, history = bench.train_tabular_autoencoder(split.x_train, split.x_val, "fast", seed=0)
    after = anomaly_scores(ae, normal_test).mean()
    # also beat the best constant guess, the training mean (zero after standardising)
    constant = np.mean(normal_test.astype(np.float64) ** 2, axis=1).mean()
    assert after < 0.85 * before and after < 0.9 * constant, (before, after, constant)
    assert history.history["val_loss"][-1] < history.history["val_loss"][0]
    out = ae.predict(split.x_test[:50], verbose=0)
    assert out.min() < 0, "a linear output reconstructs negative (standardised) values"


# --------------------------------------------------------------------------- the experiment
def test_split_is_deterministic_one_class_and_scaled_on_train_only(sample):
    a = bench.split_creditcard(sample, seed=3)
    b = bench.split_creditcard(sample, seed=3)
    np.testing.assert_array_equal(a.test_rows, b.test_rows)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.train_rows, bench.split_creditcard(sample, seed=4).train_rows)
    labels = sample["Class"].to_numpy()
    rows = np.concatenate([a.train_rows, a.val_rows, a.test_rows])
    assert len(np.unique(rows)) == len(rows) == len(sample), "disjoint, and every row is used"
    assert labels[a.train_rows].sum() == 0 and labels[a.val_rows].sum() == 0
    assert a.y_test.sum() == 236, "every fraud is in the test set"
    assert (a.y_test == 0).sum() == round(0.3 * 3102)
    np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-5)   # fitted on training rows
    np.testing.assert_allclose(a.x_train.std(0), 1, atol=1e-3)
    assert np.abs(a.x_test.mean(0)).max() > 0.1                   # ... and only on them
    assert a.x_train.dtype == np.float32 and a.x_train.shape[1] == 30
    q = bench.split_creditcard(sample, seed=3, scaling="quantile")
    assert np.isfinite(q.x_test).all() and "quantile" in str(q)


def test_split_rejects_unusable_data(sample):
    with pytest.raises(DataError, match="no frauds"):
        bench.split_creditcard(sample[sample["Class"] == 0])
    tiny = pd.concat([sample[sample["Class"] == 0].iloc[:15], sample[sample["Class"] == 1]])
    with pytest.raises(DataError, match="too few"):
        bench.split_creditcard(tiny)
    with pytest.raises(ValueError, match="test_fraction"):
        bench.split_creditcard(sample, test_fraction=1.0)
    with pytest.raises(ValueError, match="scaling"):
        bench.split_creditcard(sample, scaling="minmax")


def test_creditcard_cli_prints_json_last():
    out = subprocess.run([sys.executable, "-m", "course_lib.bench", "creditcard", "--csv",
                          str(D.data_dir() / D.CREDITCARD_SAMPLE), "--profile", "fast"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("auroc", "auprc", "baseline_iforest_auroc", "baseline_iforest_auprc",
                "baseline_pca_auroc", "n_train", "n_test", "n_fraud", "seconds", "profile"):
        assert key in result, key
    assert result["profile"] == "fast" and result["n_fraud"] == 236
    assert result["n_test"] == 931 + 236 and result["n_train"] + result["n_val"] == 3102 - 931
    # real frauds are clearly unusual: every detector ranks them far above chance
    assert result["auroc"] > 0.9 and result["baseline_iforest_auroc"] > 0.85, result
    assert result["baseline_pca_auroc"] > 0.85 and 0 < result["auprc"] <= 1


def test_creditcard_cli_reports_bad_files(tmp_path, capsys):
    assert bench.main(["creditcard", "--csv", str(tmp_path / "missing.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("Time,V1\n1,2\n")
    assert bench.main(["creditcard", "--csv", str(bad)]) == 2
    assert "missing column" in capsys.readouterr().err



def test_creditcard_one_class_details_are_the_run_behind_its_numbers(sample):
    from sklearn.metrics import average_precision_score, roc_auc_score

    result, details = bench.creditcard_one_class(sample, profile="fast", return_details=True)
    y, scores = details["split"].y_test, details["scores"]
    assert set(scores) == {"autoencoder", "Isolation Forest", "PCA reconstruction"}
    assert all(len(s) == len(y) == result["n_test"] for s in scores.values())
    assert result["auroc"] == round(float(roc_auc_score(y, scores["autoencoder"])), 4)
    assert result["baseline_iforest_auprc"] == round(
        float(average_precision_score(y, scores["Isolation Forest"])), 4)
    assert result["auroc"] > 0.8           # a trained model is far above chance on this sample
