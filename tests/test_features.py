"""Tests of notebook 07's helpers (``course_lib.features``) and the ``mvtec-dictionary`` /
``mvtec-knn`` benchmark commands.  Offline only: the random-conv backbone."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from course_lib import features as F
from course_lib.mvtec import build_texture_dataset

FIELDS = ("image_auroc", "pixel_auroc", "aupro", "good_correct", "defect_correct", "n_train",
          "n_test", "seconds", "profile")


@pytest.fixture(scope="module")
def backbone():
    return F.load_backbone("random", verbose=False)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (6, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("textures") / "tex"
    return build_texture_dataset(root, size=64, n_train=20, n_test_good=6, n_test_defect=12,
                                 textures=("brick",))


# --------------------------------------------------------------------------- backbone
def test_patch_features_shape(backbone, images):
    feats = F.patch_features(backbone, images)
    assert feats.shape == (6, 8, 8, F.RANDOM_FILTERS[-1]) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats)) and feats.std() > 0
    # fixed random weights: the same seed gives the same features
    again = F.patch_features(F.random_conv_backbone(seed=0), images)
    assert np.allclose(feats, again, atol=1e-5)


def test_auto_falls_back_when_pretrained_fails(monkeypatch, capsys):
    def fail():
        raise OSError("no network (test)")

    monkeypatch.setattr(F, "_load_pretrained", fail)
    bb = F.load_backbone("auto")
    assert bb.name == "random-conv" and not bb.pretrained
    out = capsys.readouterr().out
    assert "Backbone: random-conv" in out and "no network (test)" in out
    with pytest.raises(OSError, match="load_backbone\\('random'\\)"):
        F.load_backbone("pretrained", verbose=False)


def test_pretrained_fails_fast_without_network(monkeypatch, tmp_path):
    """No cached weights and a network that never answers: an error within seconds, no hang."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("COURSE_DATA", "auto")
    calls = []

    def slow_connect(address, timeout=None, *args, **kwargs):
        calls.append(timeout)
        assert timeout is not None and timeout <= 5, "the connection attempt needs a short timeout"
        raise socket.timeout("timed out (test)")

    monkeypatch.setattr(F.socket, "create_connection", slow_connect)
    start = time.perf_counter()
    with pytest.raises(OSError, match="cannot reach"):
        F.load_backbone("pretrained", verbose=False)
    assert calls, "the pretrained loader must check the network before downloading"
    bb = F.load_backbone("auto", verbose=False)
    assert bb.name == "random-conv"
    assert time.perf_counter() - start < 20


def test_offline_mode_never_touches_network(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("COURSE_DATA", "offline")

    def no_network(*args, **kwargs):
        raise AssertionError("COURSE_DATA=offline must not open a connection")

    monkeypatch.setattr(F.socket, "create_connection", no_network)
    assert F.load_backbone("auto", verbose=False).name == "random-conv"


def test_bad_inputs_rejected(backbone):
    with pytest.raises(ValueError, match="kind"):
        F.load_backbone("imagenet")
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        F.patch_features(backbone, np.full((2, 32, 32), 255.0))
    with pytest.raises(ValueError, match="shape"):
        F.patch_features(backbone, np.zeros((32, 32)))
    with pytest.raises(ValueError, match="Backbone"):
        F.patch_features("resnet", np.zeros((1, 32, 32)))
    with pytest.raises(ValueError, match="variance"):
        F.FeatureDictionary(backbone, variance=95).fit_features(np.ones((50, 4)))
    with pytest.raises(ValueError, match="coreset"):
        F.PatchMemoryBank(backbone, coreset="kmeans").fit_features(np.ones((50, 4)))
    with pytest.raises(ValueError, match="fraction"):
        F.PatchMemoryBank(backbone, fraction=0).fit_features(np.ones((50, 4)))
    with pytest.raises(ValueError, match="not fitted"):
        F.FeatureDictionary(backbone).score_map(np.zeros((1, 32, 32)))
    with pytest.raises(ValueError, match="NaN"):
        F.greedy_coreset(np.full((5, 2), np.nan), 2)


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


def test_dictionary_respects_max_patches():
    fd = F.FeatureDictionary(n_clusters=3, max_patches=100).fit_features(_clusters())
    assert fd.n_patches_ == 100


def test_score_maps_have_image_shape(backbone, images):
    for model in (F.FeatureDictionary(backbone, n_clusters=4, max_patches=300),
                  F.PatchMemoryBank(backbone, coreset="greedy", fraction=0.2, max_patches=300)):
        maps = model.fit(images).score_map(images[:3])
        assert maps.shape == (3, 32, 32) and np.all(np.isfinite(maps)) and maps.min() >= 0


# --------------------------------------------------------------------------- memory bank
def test_memory_bank_scores_training_patch_zero_and_far_patch_large():
    feats = _clusters()
    bank = F.PatchMemoryBank(coreset="random", fraction=1.0, max_patches=10_000)
    bank.fit_features(feats)
    assert np.allclose(bank.patch_scores(feats[:20]), 0.0, atol=1e-3)
    far = np.full((1, feats.shape[1]), 100.0, np.float32)
    assert bank.patch_scores(far)[0] > 100.0


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


# --------------------------------------------------------------------------- CLI
def _run_cli(command, *args):
    env = dict(os.environ, COURSE_DATA="offline", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "course_lib.bench", command, *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("command,extra", [("mvtec-dictionary", ()),
                                           ("mvtec-knn", ("--coreset", "random")),
                                           ("mvtec-knn", ("--coreset", "greedy"))])
def test_cli_prints_metrics_as_last_json_line(tiny_root, command, extra):
    out = _run_cli(command, "--root", str(tiny_root), "--category", "brick", "--profile",
                   "fast", *extra)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in FIELDS:
        assert key in result, f"missing {key} in {result}"
    for key in ("image_auroc", "pixel_auroc", "aupro", "good_correct", "defect_correct"):
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert result["n_train"] == 16 and result["n_val"] == 4 and result["n_test"] == 18
    assert result["profile"] == "fast" and result["backbone"] == "random-conv"
    assert result["method"] == ("dictionary" if command == "mvtec-dictionary" else "knn")
    assert result["pixel_auroc"] > 0.7, result  # the planted defects are found


def test_cli_missing_folder_and_bad_option(tmp_path):
    out = _run_cli("mvtec-dictionary", "--root", str(tmp_path / "nowhere"), "--category",
                   "brick", "--profile", "fast")
    assert out.returncode == 2 and "not found" in out.stderr
    out = _run_cli("mvtec-knn", "--root", str(tmp_path), "--category", "brick",
                   "--coreset", "kmeans")
    assert out.returncode != 0 and "coreset" in out.stderr
