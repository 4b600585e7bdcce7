import numpy as np
import pytest
from skimage.measure import label
from sklearn.metrics import roc_auc_score

from course_lib.map_metrics import (aupro, classification_ratios, image_auroc, image_scores,
                                      largest_region_scores, pixel_auroc, pro_curve)


def two_regions():
    """Two images, one 2x2 defect each (regions A and B)."""
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 1:3, 1:3] = 1
    masks[1, 5:7, 5:7] = 1
    return masks


def random_masks(n=80, size=48, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(n // 2):  # half the images defect-free, as in MVTec's test sets
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, size - 8, 2)
            masks[i, r:r + rng.integers(2, 8), c:c + rng.integers(2, 8)] = True
    return masks


def brute_force_pro(masks, maps, connectivity=2):
    """PRO curve from first principles: one threshold at a time, regions via skimage."""
    regions = []
    for i, m in enumerate(masks):
        lab = label(m, connectivity=connectivity)
        regions += [(i, lab == k) for k in range(1, lab.max() + 1)]
    good = ~masks.astype(bool)
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:  # predicted defective: map >= t
        pred = maps >= t
        fprs.append(pred[good].mean())
        pros.append(np.mean([pred[i][r].mean() for i, r in regions]))
    return np.array(fprs), np.array(pros)


def test_perfect_map_gives_aupro_and_auroc_one():
    masks = two_regions()
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    assert pixel_auroc(masks, masks.astype(float)) == pytest.approx(1.0)
    fpr, pro = pro_curve(masks, masks.astype(float))
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(pro, [0, 1, 1])


def test_map_that_finds_one_region_and_misses_the_other():
    masks = two_regions()
    # A scores above everything, B below every good pixel: PRO is 0.5 for FPR in (0, 1)
    maps = np.where(masks == 1, 1.0, 0.0)
    maps[1][masks[1] == 1] = -1.0
    assert aupro(masks, maps) == pytest.approx(0.5)
    # B tied with the background: from (0, 0.5) PRO rises linearly to (1, 1), so the area up
    # to 0.3 is 0.3 * (0.5 + 0.65) / 2 and AUPRO = 0.575
    maps[1][masks[1] == 1] = 0.0
    assert aupro(masks, maps) == pytest.approx(0.575)
    assert aupro(masks, maps, max_fpr=1.0) == pytest.approx(0.75)


def test_small_regions_count_as_much_as_large_ones():
    masks = np.zeros((1, 20, 20), np.uint8)
    masks[0, :10, :10] = 1        # large region: 100 pixels
    masks[0, 15, 15] = 1          # small region: 1 pixel
    maps = np.zeros((1, 20, 20))
    maps[0][:10, :10] = 1.0       # finds the large one only
    # pixel AUROC barely notices the miss; AUPRO counts half the regions missed
    assert pixel_auroc(masks, maps) > 0.99
    assert aupro(masks, maps) == pytest.approx(0.5 + 0.5 * 0.3 / 2, abs=0.01)


def test_random_maps_are_near_chance():
    masks = random_masks()
    rng = np.random.default_rng(1)
    draws = [rng.random(masks.shape) for _ in range(5)]
    # random scores: PRO(FPR) ~ FPR, so the normalised area up to 0.3 is ~0.3 / 2 = 0.15
    assert np.mean([aupro(masks, m) for m in draws]) == pytest.approx(0.15, abs=0.02)
    assert np.mean([pixel_auroc(masks, m) for m in draws]) == pytest.approx(0.5, abs=0.01)


def test_pro_curve_matches_brute_force_with_ties():
    masks = random_masks(n=6, size=24, seed=3)
    rng = np.random.default_rng(4)
    maps = rng.integers(0, 12, masks.shape).astype(float) + 4.0 * masks  # ties, some signal
    fpr, pro = pro_curve(masks, maps)
    ref_fpr, ref_pro = brute_force_pro(masks, maps)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(pro, ref_pro, atol=1e-12)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)
    # with the whole curve, AUPRO is its trapezoidal area
    area = np.sum(np.diff(ref_fpr) * (ref_pro[1:] + ref_pro[:-1]) / 2)
    assert aupro(masks, maps, max_fpr=1.0) == pytest.approx(area)
    # up to 0.3: the area to the last point below 0.3 plus an interpolated piece
    assert 0.15 < aupro(masks, maps) < 1.0


def test_connectivity_decides_what_a_region_is():
    masks = np.zeros((1, 10, 10), np.uint8)
    masks[0, 2, 2] = masks[0, 3, 3] = 1   # two pixels touching at a corner
    masks[0, 6:8, 6:8] = 1                # and a 2x2 block
    maps = np.zeros((1, 10, 10))
    maps[0, 2, 2] = 1.0                   # only one corner pixel is found
    _, pro8 = pro_curve(masks, maps, connectivity=2)  # regions {corner pair, block}
    _, pro4 = pro_curve(masks, maps, connectivity=1)  # regions {pixel, pixel, block}
    assert pro8[1] == pytest.approx((0.5 + 0.0) / 2)
    assert pro4[1] == pytest.approx((1.0 + 0.0 + 0.0) / 3)


def test_pixel_auroc_agrees_with_sklearn():
    masks = random_masks(n=10, size=32, seed=5)
    rng = np.random.default_rng(6)
    maps = rng.normal(size=masks.shape) + 1.5 * masks
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(masks[..., None], maps[..., None]) == pytest.approx(expected, abs=1e-12)
    assert 0.8 < expected < 0.95


def test_image_level_helpers():
    maps = np.zeros((4, 6, 6))
    maps[1, 2, 2] = 3.0
    maps[2] = 1.0
    np.testing.assert_allclose(image_scores(maps), [0, 3, 1, 0])
    np.testing.assert_allclose(image_scores(maps, "mean"), [0, 3 / 36, 1, 0])
    labels, scores = [0, 1, 1, 0, 1], [0.1, 0.9, 0.4, 0.5, 0.8]
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    with pytest.raises(ValueError, match="both"):
        image_auroc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="reduction"):
        image_scores(maps, "median")


def test_largest_region_scores():
    amap = np.zeros((12, 12))
    amap[2:4, 2:4] = 5.0     # a 4-pixel region
    amap[2, 3] = 6.0         # its brightest pixel
    amap[9, 9] = 9.0         # an isolated hot pixel
    maps = np.stack([amap, np.zeros((12, 12))])
    np.testing.assert_allclose(largest_region_scores(maps, min_area=1), [9.0, 0.0])
    np.testing.assert_allclose(largest_region_scores(maps, min_area=4), [5.0, 0.0])
    np.testing.assert_allclose(largest_region_scores(maps, min_area=5), [0.0, 0.0])
    # the definition: score >= T  <=>  a region of >= min_area pixels has map >= T
    rng = np.random.default_rng(7)
    noisy = rng.random((5, 16, 16))
    scores = largest_region_scores(noisy, min_area=6)
    for amap, s in zip(noisy, scores):
        for t in (s, np.nextafter(s, np.inf)):
            lab = label(amap >= t, connectivity=2)
            biggest = np.bincount(lab.ravel())[1:].max() if lab.max() else 0
            assert (biggest >= 6) == (t <= s)
    with pytest.raises(ValueError, match="min_area"):
        largest_region_scores(maps, min_area=0)


def test_classification_ratios_use_good_validation_images_only():
    val_good = [0.1, 0.2, 0.3]
    test_scores = [0.05, 0.25, 0.35, 0.31, 0.29, 0.9]
    test_labels = [0, 0, 0, 1, 1, 1]
    r = classification_ratios(val_good, test_scores, test_labels)
    assert r["threshold"] == pytest.approx(0.3)          # max of the validation scores
    assert r["good_correct"] == pytest.approx(2 / 3)     # 0.35 > 0.3 is a false alarm
    assert r["defective_correct"] == pytest.approx(2 / 3)  # 0.29 is missed
    assert (r["n_good"], r["n_defective"]) == (3, 3)
    r50 = classification_ratios(val_good, test_scores, test_labels, percentile=50)
    assert r50["threshold"] == pytest.approx(0.2)
    assert r50["good_correct"] == pytest.approx(1 / 3) and r50["defective_correct"] == 1.0
    only_good = classification_ratios(val_good, [0.1], [0])
    assert only_good["defective_correct"] is None and only_good["good_correct"] == 1.0


@pytest.mark.parametrize("masks, maps, message", [
    (np.full((1, 4, 4), 2), np.zeros((1, 4, 4)), "binary"),
    (np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), "same shape"),
    (np.zeros((1, 4, 4)), np.full((1, 4, 4), np.nan), "NaN"),
    (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), "defect region"),
    (np.ones((1, 4, 4)), np.zeros((1, 4, 4)), "good pixels"),
    (np.zeros((4, 4)), np.zeros((4, 4)), r"\(N, H, W\)"),
])
def test_pro_rejects_bad_input(masks, maps, message):
    with pytest.raises(ValueError, match=message):
        aupro(masks, maps)


def test_other_bad_input():
    masks = two_regions()
    with pytest.raises(ValueError, match="max_fpr"):
        aupro(masks, masks.astype(float), max_fpr=0)
    with pytest.raises(ValueError, match="connectivity"):
        aupro(masks, masks.astype(float), connectivity=3)
    with pytest.raises(ValueError, match="both"):
        pixel_auroc(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
