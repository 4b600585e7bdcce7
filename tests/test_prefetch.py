"""``python -m course_lib.data prefetch|status``: no network, every download faked.

The fakes replace only the lowest level (the HTTP transfer, the socket probe, Keras' MNIST
download), so the real atomic write-verify-rename logic of ``course_lib.data`` runs.
"""
import contextlib
import hashlib
import shutil
import socket

import numpy as np
import pytest

from course_lib import data as D
from course_lib import mvtec


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty Keras and course caches under tmp_path."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _fake_mnist(monkeypatch):
    """A fake Keras download writing a tiny MNIST-like .npz into Keras' cache."""
    def fake():
        cache = D._keras_mnist_cache()
        cache.parent.mkdir(parents=True, exist_ok=True)
        x = np.zeros((10, 28, 28), np.uint8)
        y = np.arange(10)
        np.savez(cache, x_train=x, y_train=y, x_test=x, y_test=y)
        monkeypatch.setattr(D, "MNIST_SHA256", hashlib.sha256(cache.read_bytes()).hexdigest())
        return x, y, x, y

    monkeypatch.setattr(D, "_download_keras_mnist", fake)


def _small_creditcard_csv(n_rows=20, n_fraud=2) -> bytes:
    rng = np.random.default_rng(0)
    lines = [",".join(D.CREDITCARD_COLUMNS)]
    for i in range(n_rows):
        values = [f"{v:.4f}" for v in rng.normal(size=len(D.CREDITCARD_COLUMNS) - 1)]
        lines.append(",".join(values + ["1" if i < n_fraud else "0"]))
    return ("\n".join(lines) + "\n").encode()


def _fake_network(monkeypatch, http_download):
    """The host 'answers' and the HTTP transfer is ``http_download(url, target)``."""
    monkeypatch.setattr(D.socket, "create_connection",
                        lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(D, "_http_download", http_download)
    monkeypatch.setattr(D, "CREDITCARD_ROWS", 20)
    monkeypatch.setattr(D, "CREDITCARD_FRAUDS", 2)


def test_prefetch_all_with_fake_downloads_succeeds_and_lists_sizes(caches, monkeypatch, capsys):
    _fake_mnist(monkeypatch)
    _fake_network(monkeypatch, lambda url, target: target.write_bytes(_small_creditcard_csv()))
    rc = D.main(["prefetch", "--all", "--profile", "fast", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "All 5 item(s) OK" in out
    table = out.split("Prefetch summary")[1]
    for name in ("MNIST full (Keras cache)", "Credit card full (cache)", "Texture 'brick'",
                 "Texture 'grass'", "Texture 'gravel'"):
        row = next(line for line in table.splitlines() if line.startswith(name))
        assert " OK " in row and ("KB" in row or " B " in row), row
        assert str(caches) in row, f"cache not under tmp_path: {row}"
    assert D.creditcard_cache_path().is_file() and D._keras_mnist_cache().is_file()
    # status now sees them, offline
    states = {it.name: it.state for it in D.cache_status("fast")}
    assert states["MNIST full (Keras cache)"] == "OK"
    assert states["Credit card full (cache)"] == "OK"
    assert states["Texture 'gravel' (fast, 64px)"] == "OK"
    # and notebook 05's own call finds the prefetched texture set (same folder, no rebuild)
    prof = D.get_profile("fast")
    brick = next(it for it in D.cache_status(prof) if it.name.startswith("Texture 'brick'"))
    stamp = (brick.path / "manifest.json").stat().st_mtime_ns
    data = mvtec.load_textures("brick", size=prof.mvtec_size, n_train=prof.mvtec_n_train,
                               n_test_good=prof.mvtec_n_test_good,
                               n_test_defect=prof.mvtec_n_test_defect, verbose=False)
    assert str(brick.path) in data.detail
    assert (brick.path / "manifest.json").stat().st_mtime_ns == stamp


def test_failed_download_exits_nonzero_with_a_hint_and_leaves_nothing(caches, monkeypatch,
                                                                     capsys):
    def no_mnist():
        raise OSError("Network is unreachable")

    def half_download(url, target):
        target.write_bytes(_small_creditcard_csv()[:300])  # a partial file, then the line drops
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(D, "_download_keras_mnist", no_mnist)
    _fake_network(monkeypatch, half_download)
    rc = D.main(["prefetch", "--mnist", "--creditcard", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "2 of 2 item(s) failed" in out
    hints = out.split("What to do:")[1]
    assert "ConnectionResetError" in hints and "run prefetch --creditcard again" in hints
    assert "OSError" in hints and "run prefetch --mnist again" in hints
    left = [p for p in (caches / "keras").rglob("*") if p.is_file()]
    assert left == [], f"half-written files left behind: {left}"
    states = {it.name: it.state for it in D.cache_status("fast")}
    assert states["Credit card full (cache)"] == "missing"


def test_one_failure_does_not_stop_the_others(caches, monkeypatch, capsys):
    _fake_mnist(monkeypatch)

    def refused(*args, **kwargs):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(D.socket, "create_connection", refused)
    rc = D.main(["prefetch", "--mnist", "--creditcard", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1 and "1 of 2 item(s) failed" in out
    assert D._keras_mnist_cache().is_file()


def test_unknown_mvtec_category_lists_the_valid_ones(caches, capsys):
    with pytest.raises(SystemExit) as exc:
        D.main(["prefetch", "--mvtec", "bottles"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "'bottles'" in err and "bottle" in err and "zipper" in err and "all" in err
    with pytest.raises(ValueError, match="carpet"):
        D.prefetch([], mvtec_categories=["carpets"])


def test_prefetch_mvtec_uses_download_mvtec(caches, monkeypatch, capsys):
    calls = []

    def fake_download(category, root=None, progress=True, **kwargs):
        calls.append(category)
        good = mvtec.mvtec_dir() / category / "train" / "good"
        good.mkdir(parents=True)
        (good / "000.png").write_bytes(b"x" * 100)
        return mvtec.mvtec_dir()

    monkeypatch.setattr(mvtec, "download_mvtec", fake_download)
    rc = D.main(["prefetch", "--mvtec", "bottle", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and calls == ["bottle"]
    assert "MVTec AD 'bottle'" in out and "100 B" in out
    status = {it.name: it for it in D.cache_status("fast")}
    assert "bottle" in status["MVTec AD (real, optional)"].detail


def test_status_reports_a_corrupted_embedded_copy(caches, monkeypatch, capsys):
    copy = caches / "data"
    copy.mkdir()
    for name in (D.MNIST_SUBSET, D.CREDITCARD_SAMPLE):
        shutil.copy(D.data_dir() / name, copy / name)
    monkeypatch.setenv("COURSE_DATA_DIR", str(copy))
    assert D.main(["status"]) == 0
    capsys.readouterr()
    raw = bytearray((copy / D.MNIST_SUBSET).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (copy / D.MNIST_SUBSET).write_bytes(bytes(raw))
    rc = D.main(["status"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "corrupted" in rows["MNIST subset (embedded)"]
    assert " OK " in rows["Credit card sample (embedded)"]
    assert "git checkout -- data/mnist_subset.npz" in out
    (copy / D.CREDITCARD_SAMPLE).unlink()
    states = {it.name: it.state for it in D.cache_status("fast")}
    assert states["Credit card sample (embedded)"] == "missing"


def test_status_never_touches_the_network(caches, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("status must not use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(D, "_http_download", no_network)
    monkeypatch.setattr(D, "_download_keras_mnist", no_network)
    assert D.main(["status", "--profile", "fast"]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and "prefetch --mnist" in out


def test_command_line_entry_runs_as_a_module(caches):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "course_lib.data", "status"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "MNIST subset (embedded)" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "course_lib.data", "status", "--profile",
                          "turbo"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "fast" in bad.stderr
