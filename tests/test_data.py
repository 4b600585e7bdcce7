import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from course_lib import data as D
from course_lib.data import DataError, check_images, load_mnist, load_npz_images


def test_embedded_subset_is_real_and_held_apart():
    with np.load(D.data_dir() / D.MNIST_SUBSET) as f:
        tr, te = set(f["source_index_train"]), set(f["source_index_test"])
        assert f["x_train"].shape == (8000, 28, 28) and f["x_test"].shape == (2000, 28, 28)
        assert f["x_train"].dtype == np.uint8
        assert np.bincount(f["y_train"]).tolist() == [800] * 10
    assert not tr & te, "embedded test images must be held apart from the training images"


def test_offline_load_uses_profile_sizes(capsys):
    d = load_mnist(source="offline", profile="fast")
    assert d.source == "embedded"
    assert d.x_train.shape == (2000, 28, 28) and d.x_test.shape == (500, 28, 28)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert set(np.unique(d.y_train)) == set(range(10))
    assert "Data source: embedded" in capsys.readouterr().out


def test_subsampling_is_deterministic():
    a = load_mnist(source="offline", profile="fast", verbose=False)
    b = load_mnist(source="offline", profile="fast", verbose=False)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    c = load_mnist(source="offline", profile="fast", seed=1, verbose=False)
    assert not np.array_equal(a.y_train, c.y_train)


def test_failed_download_falls_back_with_one_message(monkeypatch, capsys):
    def boom():
        raise OSError("network is unreachable")

    monkeypatch.setattr(D, "_download_keras_mnist", boom)
    d = load_mnist(source="auto", profile="fast")
    out = capsys.readouterr().out
    assert d.source == "embedded"
    assert "Could not download MNIST" in out and out.count("Data source:") == 1
    with pytest.raises(DataError, match="COURSE_DATA=offline"):
        load_mnist(source="online", profile="fast", verbose=False)


def test_download_fails_fast_without_network(monkeypatch, tmp_path):
    """No cached copy and an unreachable host: an error within seconds, not a hang."""
    import time

    import socket

    with socket.socket() as s:  # a loopback port with nobody listening: the host "is down"
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(D, "MNIST_HOST", ("127.0.0.1", closed_port))
    monkeypatch.setattr(D, "CONNECT_TIMEOUT_S", 0.5)
    start = time.perf_counter()
    with pytest.raises(OSError):
        D._download_keras_mnist()
    assert time.perf_counter() - start < 5
    assert not any(tmp_path.rglob("*")), "nothing may be written to the cache"


def test_online_path_reports_online(monkeypatch, capsys):
    rng = np.random.default_rng(0)
    fake = (rng.integers(0, 256, (100, 28, 28), dtype=np.uint8), np.arange(100) % 10,
            rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.arange(20) % 10)
    monkeypatch.setattr(D, "_download_keras_mnist", lambda: fake)
    d = load_mnist(source="online", profile="fast")
    assert d.source == "online" and len(d.x_train) == 100
    assert "Data source: online" in capsys.readouterr().out


def test_bring_your_own_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (70, 28, 28), dtype=np.uint8)
    y = np.arange(70) % 10
    p = tmp_path / "mine.npz"
    np.savez_compressed(p, x=x, y=y)
    d = load_mnist(path=p, profile="full", verbose=False)
    assert d.source == "file"
    assert len(d.x_train) == 60 and len(d.x_test) == 10
    together = np.concatenate([d.x_train, d.x_test])
    assert sorted(map(bytes, together)) == sorted(map(bytes, x)), "split must keep every image"


def test_bring_your_own_float_npz_and_channel_axis(tmp_path):
    x = np.random.default_rng(1).random((5, 28, 28, 1)).astype(np.float32)
    p = tmp_path / "f.npz"
    np.savez(p, x=x, y=np.zeros(5, int))
    xs, ys = load_npz_images(p)
    assert xs.shape == (5, 28, 28) and xs.dtype == np.uint8


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 28, 28), np.uint8)}, r"missing array\(s\) \['y'\]"),
    ({"x": np.zeros((4, 32, 32), np.uint8), "y": np.zeros(4)}, "expected 28x28 images"),
    ({"x": np.zeros((4, 784), np.uint8), "y": np.zeros(4)}, "expected images of shape"),
    ({"x": np.full((4, 28, 28), np.nan, np.float32), "y": np.zeros(4)}, "NaN"),
    ({"x": np.full((4, 28, 28), 3.0, np.float32), "y": np.zeros(4)}, r"\[0, 1\]"),
    ({"x": np.zeros((4, 28, 28), np.int32), "y": np.zeros(4)}, "dtype int32"),
    ({"x": np.zeros((4, 28, 28), np.uint8), "y": np.zeros(3)}, "expected 4 labels"),
    ({"x": np.zeros((4, 28, 28), np.uint8), "y": np.array([0, 1, -2, 3])}, ">= 0"),
])
def test_bad_npz_is_rejected_with_a_clear_message(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=message):
        load_npz_images(p)


def test_missing_and_corrupted_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="not found.*np.savez"):
        load_npz_images(tmp_path / "nope.npz")
    p = tmp_path / "broken.npz"
    p.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match="broken.npz is corrupted"):
        load_npz_images(p)


def test_corrupted_embedded_subset_says_how_to_restore(tmp_path, monkeypatch):
    shutil.copy(D.data_dir() / D.MNIST_SUBSET, tmp_path / D.MNIST_SUBSET)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    load_mnist(source="offline", verbose=False)  # an intact copy loads
    with open(tmp_path / D.MNIST_SUBSET, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00" * 64)
    with pytest.raises(DataError, match="corrupted.*git checkout"):
        load_mnist(source="offline", verbose=False)
    (tmp_path / D.MNIST_SUBSET).unlink()
    with pytest.raises(DataError, match="not found.*git checkout"):
        load_mnist(source="offline", verbose=False)


def test_checksum_constant_matches_shipped_file():
    digest = hashlib.sha256((D.data_dir() / D.MNIST_SUBSET).read_bytes()).hexdigest()
    assert digest == D.MNIST_SUBSET_SHA256


def test_transforms_value_ranges():
    x = np.array([[[0, 255] * 14] * 28], dtype=np.uint8)
    assert D.to_float(x).max() == 1.0 and D.to_float(x).dtype == np.float32
    assert D.flatten(x).shape == (1, 784)
    assert D.add_channel(x).shape == (1, 28, 28, 1)
    noisy = D.add_noise(np.repeat(x, 50, axis=0), std=0.5, seed=0)
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert not np.allclose(noisy, D.to_float(np.repeat(x, 50, axis=0)))
    with pytest.raises(ValueError, match="std"):
        D.add_noise(x, std=-1)


def test_check_images_rejects_non_arrays_and_empty():
    with pytest.raises(DataError):
        check_images("not images")
    with pytest.raises(DataError, match="no images"):
        check_images(np.zeros((0, 28, 28), np.uint8))


def test_mnist_download_is_atomic_and_verified(monkeypatch, tmp_path):
    """A download is verified and renamed into the cache; a failed one leaves nothing."""
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(D.socket, "create_connection", lambda *a, **k: open(__file__))
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
                  y_train=np.arange(30) % 10,
                  x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
                  y_test=np.arange(10) % 10)

    def fake_get_file(fname, origin, file_hash, cache_dir, cache_subdir):
        assert origin == D.MNIST_URL and file_hash == D.MNIST_SHA256
        path = f"{cache_dir}/{fname}"
        np.savez(path, **arrays)
        return path

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    x_train, y_train, x_test, _ = D._download_keras_mnist()
    assert x_train.shape == (30, 28, 28) and len(x_test) == 10
    cache_dir = tmp_path / "datasets"
    assert [p.name for p in cache_dir.iterdir()] == ["mnist.npz"], "no temporary files may remain"

    (cache_dir / "mnist.npz").unlink()

    def failing_get_file(fname, origin, file_hash, cache_dir, cache_subdir):
        (Path(cache_dir) / fname).write_bytes(b"half a file")
        raise ValueError("Incomplete or corrupted file detected.")

    monkeypatch.setattr(keras.utils, "get_file", failing_get_file)
    with pytest.raises(ValueError, match="corrupted"):
        D._download_keras_mnist()
    assert list(cache_dir.iterdir()) == [], "a failed download must leave nothing in the cache"


def test_check_image_batch_accepts_any_size_and_drops_the_channel():
    from course_lib.data import check_image_batch

    x = np.random.default_rng(0).random((3, 20, 24, 1))
    out = check_image_batch(x, dtype=np.float32)
    assert out.shape == (3, 20, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out, x[..., 0], rtol=1e-6)


@pytest.mark.parametrize("x, kwargs, message", [
    (np.zeros((4, 4)), {}, r"shape \(N, H, W\) or \(N, H, W, 1\), got shape \(4, 4\)"),
    (np.zeros((1, 4, 4)), {"min_images": 2}, "at least 2 image"),
    (np.zeros((0, 4, 4)), {}, "at least 1 image"),
    (np.zeros((2, 8, 20)), {"min_side": 16}, "at least 16x16 pixels"),
    (np.full((1, 4, 4), np.nan), {}, "contains 16 NaN"),
    (np.full((1, 4, 4), 2.0), {"unit_range": True}, r"\[0, 1\]"),
    ([["a"]], {}, "array of numbers"),
])
def test_check_image_batch_rejects_bad_input(x, kwargs, message):
    from course_lib.data import DataError, check_image_batch

    with pytest.raises(DataError, match=message):
        check_image_batch(x, name="maps", **kwargs)
