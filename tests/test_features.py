"""Tests of notebook 07's helpers (``course_lib.features``): backbones, patch features, the
feature dictionary and the PatchCore-style memory bank.  No network: the random-conv
backbone, and a local HTTP server where a download is tested."""

import http.server
import socket
import threading
import time

import numpy as np
import pytest

from course_lib import download
from course_lib import features as F
from course_lib.checks import DataError


@pytest.fixture(scope="module")
def backbone():
    return F.load_backbone("random", verbose=False)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (6, 32, 32)).astype(np.float32)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache: no pretrained weights, and the real cache is never touched."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


# --------------------------------------------------------------------------- backbone
def test_patch_features_shape(backbone, images):
    feats = F.patch_features(backbone, images)
    assert feats.shape == (6, 8, 8, F.RANDOM_FILTERS[-1]) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats)) and feats.std() > 0
    # fixed random weights: the same seed gives the same features, another seed others
    again = F.patch_features(F.random_conv_backbone(seed=0), images)
    assert np.allclose(feats, again, atol=1e-5)
    other = F.patch_features(F.random_conv_backbone(seed=1), images)
    assert not np.allclose(feats, other, atol=1e-3)
    # any size: one feature per 4 x 4 pixels, rounded down; (N, H, W, 1) is accepted
    assert F.patch_features(backbone, images[:2, :24, :20, None]).shape[:3] == (2, 6, 5)


def test_auto_falls_back_when_pretrained_fails(monkeypatch, capsys):
    def fail():
        raise OSError("no network (test)")

    monkeypatch.setattr(F, "_load_pretrained", fail)
    bb = F.load_backbone("auto")
    assert bb.name == "random-conv" and not bb.pretrained and bb.stride == 4
    out = capsys.readouterr().out
    assert "Backbone: random-conv" in out and "no network (test)" in out
    with pytest.raises(OSError, match="load_backbone\\('random'\\)"):
        F.load_backbone("pretrained", verbose=False)


def test_pretrained_fails_fast_without_network(monkeypatch, keras_home):
    """No cached weights and a network that never answers: an error within seconds, no hang,
    and no download attempted."""
    monkeypatch.setenv("COURSE_DATA", "auto")
    calls = []

    def slow_connect(address, timeout=None, *args, **kwargs):
        calls.append(timeout)
        assert timeout is not None and timeout <= 5, "the connection attempt needs a short timeout"
        raise socket.timeout("timed out (test)")

    def no_fetch(*args, **kwargs):
        raise AssertionError("no download without a connection")

    monkeypatch.setattr(download.socket, "create_connection", slow_connect)
    monkeypatch.setattr(F, "fetch_file", no_fetch)
    start = time.perf_counter()
    with pytest.raises(OSError, match="cannot reach"):
        F.load_backbone("pretrained", verbose=False)
    assert calls, "the pretrained loader must check the network before downloading"
    assert F.load_backbone("auto", verbose=False).name == "random-conv"
    assert time.perf_counter() - start < 20
    assert not keras_home.exists() or not any(keras_home.rglob("*.h5"))


def test_offline_mode_never_touches_network(monkeypatch, keras_home):
    monkeypatch.setenv("COURSE_DATA", "offline")

    def no_network(*args, **kwargs):
        raise AssertionError("COURSE_DATA=offline must not open a connection")

    monkeypatch.setattr(download.socket, "create_connection", no_network)
    assert F.load_backbone("auto", verbose=False).name == "random-conv"
    with pytest.raises(OSError, match="COURSE_DATA=offline"):
        F.load_backbone("pretrained", verbose=False)


def test_pretrained_weights_are_checked_before_they_are_kept(monkeypatch, keras_home):
    """A server that sends the wrong bytes: the md5 check refuses them, nothing is cached."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("COURSE_DATA", "auto")
    served = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served.append(self.path)
            body = b"not the ResNet50 weights" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        monkeypatch.setattr(F, "PRETRAINED_WEIGHTS_URL",
                            f"http://127.0.0.1:{httpd.server_address[1]}/w.h5")
        with pytest.raises(OSError, match="md5"):
            F.load_backbone("pretrained", verbose=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert served == ["/w.h5"]
    path = F.pretrained_weights_path()
    assert path.parent.parent == keras_home and not path.exists()
    assert list(path.parent.iterdir()) == []  # no temporary file left either


def test_bad_inputs_rejected(backbone):
    with pytest.raises(DataError, match="kind"):
        F.load_backbone("imagenet")
    with pytest.raises(DataError, match="\\[0, 1\\]"):
        F.patch_features(backbone, np.full((2, 32, 32), 255.0))
    with pytest.raises(DataError, match="shape"):
        F.patch_features(backbone, np.zeros((32, 32)))
    with pytest.raises(DataError, match="16x16"):
        F.patch_features(backbone, np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match="Backbone"):
        F.patch_features("resnet", np.zeros((1, 32, 32)))
    with pytest.raises(DataError, match="variance"):
        F.FeatureDictionary(backbone, variance=95).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="n_clusters"):
        F.FeatureDictionary(backbone, n_clusters=0).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="coreset"):
        F.PatchMemoryBank(backbone, coreset="kmeans").fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="fraction"):
        F.PatchMemoryBank(backbone, fraction=0).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="max_patches"):
        F.PatchMemoryBank(backbone, max_patches=0).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="not fitted"):
        F.FeatureDictionary(backbone).score_map(np.zeros((1, 32, 32)))
    with pytest.raises(DataError, match="NaN"):
        F.greedy_coreset(np.full((5, 2), np.nan), 2)
    with pytest.raises(DataError, match="at most the number of rows"):
        F.greedy_coreset(np.ones((5, 2)), 6)
    bank = F.PatchMemoryBank(coreset="random", fraction=1.0).fit_features(np.ones((50, 4)))
    with pytest.raises(DataError, match="fitted on 4"):
        bank.patch_scores(np.ones((3, 5)))


def test_training_patches_are_a_seeded_subset_in_order():
    feats = np.arange(2000, dtype=np.float32).reshape(10, 5, 5, 8)  # feature maps
    model = F.PatchMemoryBank(max_patches=100, random_state=3)
    rows = model.training_patches(feats)
    assert rows.shape == (100, 8)
    first = rows[:, 0].astype(int) // 8  # which of the 250 patches each row is
    assert len(set(first)) == 100 and np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(rows, model.training_patches(feats))
    assert not np.array_equal(rows, F.PatchMemoryBank(max_patches=100,
                                                      random_state=4).training_patches(feats))
    assert len(F.PatchMemoryBank(max_patches=10_000).training_patches(feats)) == 250


# --------------------------------------------------------------------------- dictionary
def _clusters(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (4, d))
    return (centres[rng.integers(0, 4, n)] + rng.normal(0, 0.5, (n, d))).astype(np.float32)


def test_dictionary_pca_keeps_variance_and_distance_is_nearest_centre():
    feats = _clusters()
    fd = F.FeatureDictionary(n_clusters=5, variance=0.95, max_patches=10_000).fit_features(feats)
    assert fd.pca_.explained_variance_ratio_.sum() >= 0.95
    assert fd.pca_.n_components_ < feats.shape[1], "PCA should drop some directions here"
    assert fd.centers_.shape == (5, fd.pca_.n_components_)
    query = _clusters(50, seed=1) * 1.5
    z = fd.pca_.transform(query)
    brute = np.array([min(np.linalg.norm(zi - c) for c in fd.centers_) for zi in z])
    assert np.allclose(fd.patch_scores(query), brute, rtol=1e-4, atol=1e-4)


def test_dictionary_respects_max_patches(monkeypatch):
    fd = F.FeatureDictionary(n_clusters=3, max_patches=100).fit_features(_clusters())
    assert fd.n_patches_ == 100
    monkeypatch.setenv("COURSE_PROFILE", "fast")  # default: the profile's feature_max_patches
    fd = F.FeatureDictionary(n_clusters=3).fit_features(_clusters(6000, d=4))
    assert fd.n_patches_ == 5000


def test_score_maps_have_image_shape(backbone, images):
    for model in (F.FeatureDictionary(backbone, n_clusters=4, max_patches=300),
                  F.PatchMemoryBank(backbone, coreset="greedy", fraction=0.2, max_patches=300)):
        maps = model.fit(images).score_map(images[:3])
        assert maps.shape == (3, 32, 32) and np.all(np.isfinite(maps)) and maps.min() >= 0
        assert model.patch_score_maps(images[:3]).shape == (3, 8, 8)


# --------------------------------------------------------------------------- memory bank
def test_memory_bank_scores_training_patch_zero_and_far_patch_large():
    feats = _clusters()
    bank = F.PatchMemoryBank(coreset="random", fraction=1.0, max_patches=10_000)
    bank.fit_features(feats)
    assert np.allclose(bank.patch_scores(feats[:20]), 0.0, atol=1e-3)
    far = np.full((1, feats.shape[1]), 100.0, np.float32)
    assert bank.patch_scores(far)[0] > 100.0
    half = F.PatchMemoryBank(coreset="random", fraction=0.5, max_patches=10_000)
    assert len(half.fit_features(feats).bank_) == 300


def test_greedy_coreset_covers_better_than_random():
    """Many points in one dense blob and a few outliers: a random 5% subset misses most
    outliers, the greedy k-center subset takes them."""
    rng = np.random.default_rng(0)
    blob = rng.normal(0, 0.1, (1000, 2))
    outliers = np.array([[10, 0], [0, 10], [-10, 0], [0, -10], [7, 7]], float)
    feats = np.vstack([blob, outliers])
    n = 50
    greedy = F.greedy_coreset(feats, n, random_state=0)
    assert len(set(greedy.tolist())) == n
    rand = np.random.default_rng(0).choice(len(feats), n, replace=False)
    r_greedy, r_random = F.coreset_radius(feats, greedy), F.coreset_radius(feats, rand)
    assert r_greedy < 0.5 < r_random, (r_greedy, r_random)
    bank_g = F.PatchMemoryBank(coreset="greedy", fraction=n / len(feats), max_patches=10_000)
    bank_r = F.PatchMemoryBank(coreset="random", fraction=n / len(feats), max_patches=10_000)
    assert bank_g.fit_features(feats).patch_scores(outliers).max() < 1e-6
    assert bank_r.fit_features(feats).patch_scores(outliers).max() > 1.0
