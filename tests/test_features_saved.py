"""The code notebook 08 saves in ``course_lib.features``: the memory bank's nearest-neighbour
score (:func:`knn_distance`), the coverage radius and the greedy k-center coreset, checked
against brute-force NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import features as F
from course_lib.checks import DataError


def _points(n, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _brute(bank, queries):
    """All distances (n, m) by NumPy, in float64."""
    q, b = np.asarray(queries, float), np.asarray(bank, float)
    return np.sqrt(((q[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def test_knn_distance_is_the_nearest_and_the_mean_of_k_nearest():
    bank, queries = _points(200), _points(50, seed=1)
    dist = _brute(bank, queries)
    np.testing.assert_allclose(F.knn_distance(bank, queries), dist.min(1), rtol=1e-4, atol=1e-4)
    three = np.sort(dist, axis=1)[:, :3].mean(1)
    np.testing.assert_allclose(F.knn_distance(bank, queries, k=3), three, rtol=1e-4, atol=1e-4)
    assert np.allclose(F.knn_distance(bank, bank[:10]), 0.0, atol=1e-3)  # a bank row: 0
    maps = queries.reshape(5, 2, 5, 6)  # feature maps (N, h, w, d) are flattened
    np.testing.assert_allclose(F.knn_distance(bank, maps), dist.min(1), rtol=1e-4, atol=1e-4)


def test_knn_distance_rejects_bad_input():
    with pytest.raises(DataError, match="dimensions"):
        F.knn_distance(_points(10, d=4), _points(3, d=5))
    with pytest.raises(DataError, match="NaN"):
        F.knn_distance(_points(10), np.full((2, 6), np.nan))
    with pytest.raises(DataError, match="k"):
        F.knn_distance(_points(10), _points(2), k=0)


def test_memory_bank_scores_with_knn_distance():
    feats = _points(400)
    bank = F.PatchMemoryBank(coreset="greedy", fraction=0.25, max_patches=10_000)
    bank.fit_features(feats)
    queries = _points(30, seed=2)
    np.testing.assert_array_equal(bank.patch_scores(queries), F.knn_distance(bank.bank_, queries))
    np.testing.assert_allclose(bank.patch_scores(queries), _brute(bank.bank_, queries).min(1),
                               rtol=1e-4, atol=1e-4)


def test_coreset_radius_is_the_largest_distance_to_the_subset():
    feats = _points(300)
    idx = np.arange(0, 300, 7)
    expected = _brute(feats[idx], feats).min(1).max()
    assert F.coreset_radius(feats, idx) == pytest.approx(expected, rel=1e-4)
    assert F.coreset_radius(feats, np.arange(300)) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(DataError, match="indices"):
        F.coreset_radius(feats, [300])


def test_greedy_coreset_follows_the_k_center_rule():
    """Each chosen row is the farthest from the rows chosen before it; the first is seeded."""
    feats = _points(500, d=3)
    idx = F.greedy_coreset(feats, 40, random_state=5)
    assert idx.shape == (40,) and len(set(idx.tolist())) == 40
    assert idx[0] == np.random.default_rng(5).integers(500)
    nearest = np.full(500, np.inf)
    for step, i in enumerate(idx):
        if step:
            assert nearest[i] == pytest.approx(nearest.max(), rel=1e-4)
        nearest = np.minimum(nearest, _brute(feats[[i]], feats)[:, 0])
    np.testing.assert_array_equal(idx, F.greedy_coreset(feats, 40, random_state=5))
