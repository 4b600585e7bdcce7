"""MNIST (``course_lib.data.mnist``): embedded subset, verified Keras cache and download, your
own ``.npz``; and the image transforms of ``course_lib.images`` the notebooks apply to it.

Downloads run against a local HTTP server (see ``test_download.LocalServer``); Keras' cache
is a temporary folder (``KERAS_HOME``).
"""
from __future__ import annotations

import _thread
import hashlib
import io
import shutil

import numpy as np
import pytest

from course_lib.checks import DataError
from course_lib.config import DATA_DIR_ENV, data_dir
from course_lib.data import mnist as M
from course_lib.data.mnist import (fetch_mnist, load_mnist, load_npz_images, mnist_cache_items,
                                   mnist_cache_path)
from course_lib.images import add_channel, add_noise, flatten, to_float
from test_download import LocalServer, closed_port_url, no_proxy, short_timeouts


def _npz_bytes(n_train=100, n_test=20, seed=0) -> bytes:
    """A small, well-formed file in the layout of Keras' mnist.npz."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.savez(buf, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
             y_train=np.arange(n_train) % 10,
             x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
             y_test=np.arange(n_test) % 10)
    return buf.getvalue()


FAKE = _npz_bytes()
FAKE_SHA256 = hashlib.sha256(FAKE).hexdigest()


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache; the MNIST URL points at a closed port unless a test serves it."""
    no_proxy(monkeypatch)
    short_timeouts(monkeypatch)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(M, "MNIST_URL", closed_port_url("/mnist.npz"))
    return tmp_path / "keras"


@pytest.fixture
def server(keras_home, monkeypatch):
    with LocalServer({"/mnist.npz": FAKE}) as srv:
        monkeypatch.setattr(M, "MNIST_URL", srv.url("/mnist.npz"))
        yield srv


def _cache_files(keras_home):
    return sorted(p.name for p in keras_home.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- embedded subset
def test_embedded_subset_is_real_and_held_apart():
    with np.load(data_dir() / M.MNIST_SUBSET) as f:
        tr, te = set(f["source_index_train"]), set(f["source_index_test"])
        assert f["x_train"].shape == (8000, 28, 28) and f["x_test"].shape == (2000, 28, 28)
        assert f["x_train"].dtype == np.uint8
        assert np.bincount(f["y_train"]).tolist() == [800] * 10
    assert not tr & te, "embedded test images must be held apart from the training images"


def test_checksum_constant_matches_shipped_file():
    digest = hashlib.sha256((data_dir() / M.MNIST_SUBSET).read_bytes()).hexdigest()
    assert digest == M.MNIST_SUBSET_SHA256


def test_offline_load_uses_profile_sizes(capsys):
    d = load_mnist(source="offline", profile="fast")
    assert d.source == "embedded"
    assert d.x_train.shape == (2000, 28, 28) and d.x_test.shape == (500, 28, 28)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert set(np.unique(d.y_train)) == set(range(10))
    out = capsys.readouterr().out
    assert out.startswith("Data source: embedded") and out.count("Data source:") == 1


def test_subsampling_is_deterministic():
    a = load_mnist(source="offline", profile="fast", verbose=False)
    b = load_mnist(source="offline", profile="fast", verbose=False)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    c = load_mnist(source="offline", profile="fast", seed=1, verbose=False)
    assert not np.array_equal(a.y_train, c.y_train)


@pytest.mark.parametrize("damage, message", [
    ("flip", "corrupted.*git checkout"),
    ("delete", "not found.*git checkout"),
    ("folder", "is a folder, not a file.*git checkout"),
])
def test_damaged_embedded_subset_says_how_to_restore(tmp_path, monkeypatch, damage, message):
    copy = tmp_path / M.MNIST_SUBSET
    shutil.copy(data_dir() / M.MNIST_SUBSET, copy)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    load_mnist(source="offline", verbose=False)  # an intact copy loads
    if damage == "flip":
        with open(copy, "r+b") as f:
            f.seek(5000)
            f.write(b"\x00" * 64)
    else:
        copy.unlink()
        if damage == "folder":
            copy.mkdir()
    with pytest.raises(DataError, match=message):
        load_mnist(source="offline", verbose=False)


# --------------------------------------------------------------------------- Keras' cache
def test_a_wrong_cached_file_is_never_used_as_mnist(keras_home, capsys):
    """A well-formed npz that is not Keras' MNIST sits in the cache: it is refused, every time,
    naming the file to delete (defect: it used to be loaded as the real MNIST)."""
    cache = mnist_cache_path()
    cache.parent.mkdir(parents=True)
    cache.write_bytes(FAKE)
    with pytest.raises(DataError, match="not Keras' MNIST file") as exc:
        fetch_mnist(progress=False)
    assert str(cache) in str(exc.value) and "Delete it" in str(exc.value)
    with pytest.raises(DataError) as exc:
        load_mnist(source="online", verbose=False)
    message = str(exc.value)
    assert str(cache) in message and "Delete it" in message and "COURSE_DATA=offline" in message
    assert "Check the network" not in message, "the network is not the problem"
    d = load_mnist(source="auto", profile="fast")
    out = capsys.readouterr().out
    assert d.source == "embedded" and len(d.x_train) == 2000
    note, line = out.splitlines()[:2]
    assert note.startswith("Could not get MNIST") and str(cache) in note and "Delete it" in note
    assert line.startswith("Data source: embedded") and out.count("Data source:") == 1
    assert cache.read_bytes() == FAKE, "the user's file is reported, not silently replaced"
    assert mnist_cache_items()[1].state == "corrupted"


def test_a_verified_cache_is_used_without_the_network(keras_home, monkeypatch, capsys):
    monkeypatch.setattr(M, "MNIST_SHA256", FAKE_SHA256)
    mnist_cache_path().parent.mkdir(parents=True)
    mnist_cache_path().write_bytes(FAKE)
    d = load_mnist(source="online", profile="fast")  # the URL is a closed port
    assert d.source == "online" and len(d.x_train) == 100 and len(d.x_test) == 20
    assert capsys.readouterr().out.startswith("Data source: online | full MNIST")
    assert [it.state for it in mnist_cache_items()] == ["OK", "OK"]


def test_download_is_verified_then_cached(server, keras_home, monkeypatch):
    monkeypatch.setattr(M, "MNIST_SHA256", FAKE_SHA256)
    x_train, y_train, x_test, y_test = fetch_mnist(progress=False)
    assert x_train.shape == (100, 28, 28) and x_train.dtype == np.uint8 and len(y_test) == 20
    assert _cache_files(keras_home) == ["mnist.npz"], "no temporary file may remain"
    fetch_mnist(progress=False)
    assert len(server.log) == 1, "the second call reads the cache"
    assert load_mnist(source="online", verbose=False).source == "online"


@pytest.mark.parametrize("served", ["other npz", "html page", "404", "cut"])
def test_a_failed_download_leaves_nothing_and_falls_back(server, keras_home, monkeypatch,
                                                        capsys, served):
    monkeypatch.setattr(M, "MNIST_SHA256", FAKE_SHA256)
    if served == "other npz":
        server.files["/mnist.npz"] = _npz_bytes(seed=1)
    elif served == "html page":
        server.files["/mnist.npz"] = b"<html>quota exceeded</html>"
    elif served == "404":
        del server.files["/mnist.npz"]
    else:
        server.faults["/mnist.npz"] = {"cut": 5000}
    with pytest.raises((DataError, OSError)):
        fetch_mnist(progress=False)
    assert _cache_files(keras_home) == []
    d = load_mnist(source="auto", profile="fast")
    out = capsys.readouterr().out
    assert d.source == "embedded" and out.startswith("Could not get MNIST (")
    assert out.count("Data source:") == 1
    assert _cache_files(keras_home) == []


def test_an_interrupted_download_leaves_nothing(server, keras_home, monkeypatch):
    monkeypatch.setattr(M, "MNIST_SHA256", FAKE_SHA256)
    server.faults["/mnist.npz"] = {"trickle": True}
    server.on_first_chunk = _thread.interrupt_main  # Ctrl-C while the bytes come in
    with pytest.raises(KeyboardInterrupt):
        load_mnist(source="auto", verbose=False)  # not swallowed by the fallback either
    assert _cache_files(keras_home) == []


def test_no_network_falls_back_with_one_message(keras_home, capsys):
    d = load_mnist(source="auto", profile="fast")
    out = capsys.readouterr().out
    assert d.source == "embedded"
    assert out.startswith("Could not get MNIST (ConnectionError") and out.count("Data source:") == 1
    with pytest.raises(DataError, match="Check the network, or use the embedded subset with "
                                        "COURSE_DATA=offline"):
        load_mnist(source="online", verbose=False)
    assert _cache_files(keras_home) == []


def test_offline_never_touches_the_network(server):
    assert load_mnist(source="offline", verbose=False).source == "embedded"
    assert server.log == []


def test_a_folder_in_place_of_the_cache_is_reported(keras_home):
    mnist_cache_path().mkdir(parents=True)
    with pytest.raises(DataError, match="is a folder"):
        fetch_mnist(progress=False)
    item = mnist_cache_items()[1]
    assert item.state == "corrupted" and "Remove the folder" in item.hint


def test_cache_items_without_a_download(keras_home):
    embedded, cached = mnist_cache_items()
    assert embedded.state == "OK" and embedded.detail == "sha256 verified"
    assert cached.state == "missing" and "prefetch --mnist" in cached.hint
    assert cached.path == keras_home / "datasets" / "mnist.npz"


# --------------------------------------------------------------------------- your own file
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
    one = tmp_path / "one.npz"
    np.savez(one, x=x[:1], y=y[:1])
    with pytest.raises(DataError, match="need at least 2"):
        load_mnist(path=one, verbose=False)


def test_bring_your_own_float_npz_and_channel_axis(tmp_path):
    x = np.random.default_rng(1).random((5, 28, 28, 1)).astype(np.float32)
    p = tmp_path / "f.npz"
    np.savez(p, x=x, y=np.zeros(5, int))
    xs, ys = load_npz_images(p)
    assert xs.shape == (5, 28, 28) and xs.dtype == np.uint8
    np.testing.assert_array_equal(xs, np.round(x[..., 0] * 255).astype(np.uint8))


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 28, 28), np.uint8)}, r"missing array\(s\) \['y'\]; found 'x'"),
    ({"x": np.zeros((4, 32, 32), np.uint8), "y": np.zeros(4)}, "expected 28x28 images"),
    ({"x": np.zeros((4, 784), np.uint8), "y": np.zeros(4)}, r"shape \(N, 28, 28\)"),
    ({"x": np.full((4, 28, 28), np.nan, np.float32), "y": np.zeros(4)}, "NaN"),
    ({"x": np.full((4, 28, 28), 3.0, np.float32), "y": np.zeros(4)}, r"\[0, 1\]"),
    ({"x": np.zeros((4, 28, 28), np.int32), "y": np.zeros(4)}, "dtype int32"),
    ({"x": np.zeros((4, 28, 28), np.uint8), "y": np.zeros(3)}, "expected 4 labels"),
    ({"x": np.zeros((4, 28, 28), np.uint8), "y": np.array([0, 1, -2, 3])}, ">= 0"),
    ({"x": np.zeros((0, 28, 28), np.uint8), "y": np.zeros(0)}, "at least 1 image"),
])
def test_bad_npz_is_rejected_with_a_clear_message(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=message):
        load_npz_images(p)


def test_missing_corrupted_and_folder_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.npz not found.*np.savez"):
        load_npz_images(tmp_path / "nope.npz")
    p = tmp_path / "broken.npz"
    p.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match="broken.npz is corrupted"):
        load_npz_images(p)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(DataError, match="dir.npz is a folder, not a file"):
        load_npz_images(tmp_path / "dir.npz")


# --------------------------------------------------------------------------- transforms
def test_transforms_value_ranges():
    x = np.array([[[0, 255] * 14] * 28], dtype=np.uint8)
    assert to_float(x).max() == 1.0 and to_float(x).dtype == np.float32
    assert flatten(x).shape == (1, 784) and flatten(x).dtype == np.float32
    assert add_channel(x).shape == (1, 28, 28, 1)
    batch = np.repeat(x, 50, axis=0)
    noisy = add_noise(batch, std=0.5, seed=0)
    assert noisy.shape == batch.shape and noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert not np.allclose(noisy, to_float(batch))
    np.testing.assert_array_equal(noisy, add_noise(batch, std=0.5, seed=0))
    assert add_noise(add_channel(x), std=0.1).shape == (1, 28, 28, 1)
    with pytest.raises(ValueError, match="std"):
        add_noise(x, std=-1)


def test_to_float_reads_bool_as_one_and_refuses_ambiguous_integers():
    mask = np.zeros((1, 28, 28), bool)
    mask[0, 0, 0] = True
    assert to_float(mask).max() == 1.0, "True is white, not 1/255"
    with pytest.raises(DataError, match="dtype int64"):
        to_float(np.full((1, 28, 28), 255))
    floats = np.random.default_rng(0).random((2, 28, 28))
    np.testing.assert_allclose(to_float(floats), floats, rtol=1e-6)


# --------------------------------------------------------------------------- .npy for .npz
def test_a_file_that_is_no_numpy_file_never_advises_allow_pickle(tmp_path):
    """numpy's message for a text file says to pass allow_pickle=True "if you trust the file",
    which would run code from it: the course says what the file is not instead."""
    path = tmp_path / "digits.npz"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match=r"digits.npz is corrupted or not a NumPy .npz file\.") \
            as info:
        load_npz_images(path)
    assert "pickle" not in str(info.value)


def test_a_npy_file_is_refused_with_how_to_save_an_npz(tmp_path, capsys):
    """A single-array .npy where an .npz of x and y is expected: a DataError (not a TypeError
    traceback) that says what the file is and how to save an .npz; the bench exits 1."""
    from course_lib.cli import bench

    path = tmp_path / "images.npy"
    np.save(path, np.zeros((8, 28, 28), np.uint8))
    for load in (load_npz_images, lambda p: load_mnist(path=p, verbose=False)):
        with pytest.raises(DataError, match=r"images.npy is a .npy file holding one array "
                                            r"\(uint8, shape \(8, 28, 28\)\).*np.savez_compressed"):
            load(path)
    code = bench.main(["mnist-one-class", "--train", str(path), "--test", str(path),
                       "--digit", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "is a .npy file" in err, err
