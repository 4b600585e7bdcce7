"""Tests of ``course_lib.map_metrics`` (metrics of anomaly maps, residual maps of a patch
autoencoder, smoothing) and of the patch helpers of ``course_lib.images`` they build on.
Maps may differ in size: every metric takes lists."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label
from sklearn.metrics import roc_auc_score

from course_lib.images import patch_corners, patch_size_for, random_patches, stitch_patches
from course_lib.map_metrics import (aupro, classification_ratios, evaluate_anomaly_maps,
                                    image_auroc, image_scores, largest_region_scores,
                                    pixel_auroc, pro_curve, residual_maps, smooth_maps)


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


# --------------------------------------------------------------------------- lists of maps
def _varied(seed=0):
    """Masks and noisy maps of three images of different, non-square sizes."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for h, w in ((12, 30), (15, 30), (9, 17)):
        m = np.zeros((h, w), bool)
        r, c = rng.integers(0, h - 4), rng.integers(0, w - 5)
        m[r:r + 3, c:c + 4] = True
        masks.append(m)
        maps.append(rng.normal(size=(h, w)) + 1.5 * m)
    return masks, maps


def test_pixel_auroc_on_lists_of_different_sizes_agrees_with_sklearn():
    masks, maps = _varied()
    flat_masks = np.concatenate([m.ravel() for m in masks])
    flat_maps = np.concatenate([a.ravel() for a in maps])
    expected = roc_auc_score(flat_masks, flat_maps)
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc([m.astype(np.uint8) for m in masks], [a[..., None] for a in maps]) == \
        pytest.approx(expected, abs=1e-12)
    # one image (N=1) as one long row: the same pixels, the same number
    assert pixel_auroc(flat_masks[None, None], flat_maps[None, None]) == \
        pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"masks\[1\] has shape .*, not the same shape as its image and map"):
        pixel_auroc([masks[0], masks[0], masks[2]], maps)
    with pytest.raises(ValueError, match="expected 3 masks"):
        pixel_auroc(masks[:2], maps)


def test_aupro_spans_images_of_different_sizes():
    """By hand: image A (4x6) holds region R1 (4 pixels), image B (5x3) region R2 (1 pixel);
    34 good pixels in all.  R1 scores 1.0, one good pixel of A 0.5, R2 0.25, the rest 0:
    thresholds 1.0, 0.5, 0.25, 0 give (FPR, PRO) = (0, 1/2), (1/34, 1/2), (1/34, 1), (1, 1)."""
    mask_a, map_a = np.zeros((4, 6), bool), np.zeros((4, 6))
    mask_b, map_b = np.zeros((5, 3), bool), np.zeros((5, 3))
    mask_a[2:4, 0:2] = True
    map_a[2:4, 0:2] = 1.0
    map_a[0, 5] = 0.5
    mask_b[0, 0] = True      # would touch R1 if the images were stacked: still its own region
    map_b[0, 0] = 0.25
    fpr, pro = pro_curve([mask_a, mask_b], [map_a, map_b])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 34, 1 / 34, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 0.5, 1, 1])
    expected = (0.5 / 34 + (0.3 - 1 / 34)) / 0.3
    assert aupro([mask_a, mask_b], [map_a, map_b]) == pytest.approx(expected)
    assert aupro([mask_a, mask_b], [map_a, map_b], max_fpr=1.0) == \
        pytest.approx(0.5 / 34 + (1 - 1 / 34))
    assert aupro([mask_b, mask_a], [map_b, map_a]) == pytest.approx(expected)  # any order


def test_image_level_metrics_and_evaluation_on_lists():
    masks, maps = _varied(seed=2)
    maps = [np.abs(a) for a in maps]
    good = [np.zeros((10, 21)), np.zeros((14, 8))]
    good[0][3, 4] = 0.5
    all_maps = maps + good
    np.testing.assert_allclose(image_scores(all_maps), [a.max() for a in all_maps])
    np.testing.assert_allclose(image_scores(all_maps, "mean"), [a.mean() for a in all_maps])
    np.testing.assert_allclose(largest_region_scores(all_maps, min_area=1),
                               image_scores(all_maps))
    with pytest.raises(ValueError, match=r"min_area must be an integer in \[1, 112\]"):
        largest_region_scores(all_maps, min_area=113)  # the smallest map is 14x8
    y = [1, 1, 1, 0, 0]
    all_masks = masks + [np.zeros(g.shape, bool) for g in good]
    val = [np.full((5, 7), 0.4), np.full((6, 9), 0.6)]
    result = evaluate_anomaly_maps(val, all_maps, y, all_masks)
    assert result["image_auroc"] == round(roc_auc_score(y, image_scores(all_maps)), 4)
    flat_m = np.concatenate([m.ravel() for m in all_masks])
    flat_a = np.concatenate([a.ravel() for a in all_maps])
    assert result["pixel_auroc"] == round(roc_auc_score(flat_m, flat_a), 4)
    assert result["aupro"] == round(aupro(all_masks, all_maps), 4)
    assert result["threshold"] == pytest.approx(0.6)  # highest validation score
    assert result["good_correct"] == 1.0
    assert result["defect_correct"] == round(np.mean(image_scores(maps) > 0.6), 4)
    with pytest.raises(ValueError, match="y_test"):
        evaluate_anomaly_maps(val, all_maps, y[:4], all_masks)
    with pytest.raises(ValueError, match=r"masks_test\[0\]"):
        evaluate_anomaly_maps(val, all_maps, y, [m.T for m in all_masks])


# --------------------------------------------------------------------------- patches
def test_patch_size_is_chosen_from_the_data():
    imgs = [np.zeros((40, 90)), np.zeros((44, 90))]
    assert patch_size_for(imgs, 64) == 40          # the smallest side of the smallest image
    assert patch_size_for(imgs, 32) == 32          # the largest allowed, when it fits
    assert patch_size_for([np.zeros((45, 90))], 64) == 40   # rounded down to a multiple of 8
    assert patch_size_for([np.zeros((90, 23))], 64) == 16
    assert patch_size_for([np.zeros((90, 30))], 64, multiple=4) == 28
    assert patch_size_for(np.zeros((2, 70, 70)), 64) == 64  # an (N, H, W) array works too
    with pytest.raises(ValueError, match="too small for patches: need at least 8x8"):
        patch_size_for(imgs + [np.zeros((7, 90))], 64)
    with pytest.raises(ValueError, match="largest"):
        patch_size_for(imgs, 4)


@pytest.mark.parametrize("shape, size, stride", [((10, 13), 4, 3), ((40, 90), 16, 4),
                                                 ((17, 17), 17, 5), ((33, 20), 8, 8)])
def test_patch_corners_cover_the_image_to_its_border(shape, size, stride):
    corners = patch_corners(shape, size, stride)
    covered = np.zeros(shape, int)
    for r, c in corners:
        assert 0 <= r <= shape[0] - size and 0 <= c <= shape[1] - size  # inside
        covered[r:r + size, c:c + size] += 1
    assert covered.min() >= 1  # every pixel, the last row and column included
    rows, cols = sorted({r for r, _ in corners}), sorted({c for _, c in corners})
    assert rows[0] == cols[0] == 0
    assert rows[-1] == shape[0] - size and cols[-1] == shape[1] - size
    assert all(0 < b - a <= stride for a, b in zip(rows, rows[1:]))
    assert len(corners) == len(rows) * len(cols) == len(set(corners))


def test_patch_corners_by_hand_and_bad_settings():
    assert patch_corners((10, 13), 4, 3) == [(r, c) for r in (0, 3, 6) for c in (0, 3, 6, 9)]
    assert patch_corners((5, 6), 4, 4) == [(0, 0), (0, 2), (1, 0), (1, 2)]
    with pytest.raises(ValueError, match="smaller than the 8x8 patches"):
        patch_corners((7, 20), 8, 2)
    with pytest.raises(ValueError, match="stride 5 is larger than the patch size 4"):
        patch_corners((20, 20), 4, 5)
    with pytest.raises(ValueError, match="stride"):
        patch_corners((20, 20), 4, 0)


def test_stitch_patches_averages_overlaps_exactly():
    """Four 2x2 patches of a 3x4 map, constant 1, 2, 3, 4: the middle row is covered twice."""
    corners = [(0, 0), (0, 2), (1, 0), (1, 2)]
    patch_maps = np.array([np.full((2, 2), v) for v in (1.0, 2.0, 3.0, 4.0)])
    out = stitch_patches(patch_maps, corners, (3, 4))
    np.testing.assert_allclose(out, [[1, 1, 2, 2], [2, 2, 3, 3], [3, 3, 4, 4]])
    assert out.dtype == np.float32 and out.shape == (3, 4)
    # patches that agree where they overlap give back the map they were cut from
    full = np.random.default_rng(0).random((10, 13))
    corners = patch_corners(full.shape, 4, 3)
    cut = np.stack([full[r:r + 4, c:c + 4] for r, c in corners])
    np.testing.assert_allclose(stitch_patches(cut, corners, full.shape), full, rtol=1e-6)


def test_random_patches_come_from_inside_the_images():
    a = np.arange(20 * 30, dtype=np.float32).reshape(20, 30) / 1000
    b = 0.7 + np.arange(24 * 17, dtype=np.float32).reshape(24, 17) / 2000
    windows = {}
    for img in (a, b):
        for r in range(img.shape[0] - 8 + 1):
            for c in range(img.shape[1] - 8 + 1):
                w = img[r:r + 8, c:c + 8]
                for v in (w, w[:, ::-1], w[::-1, :], w[::-1, ::-1]):
                    windows[v.tobytes()] = v is w
    plain = random_patches([a, b], 200, 8, seed=3, flips=False)
    assert plain.shape == (200, 8, 8, 1) and plain.dtype == np.float32
    assert all(windows.get(p[..., 0].tobytes()) is True for p in plain)  # never padded
    assert {p.min() >= 0.7 for p in plain[..., 0]} == {True, False}  # both images used
    flipped = random_patches([a, b], 200, 8, seed=3)
    assert all(p[..., 0].tobytes() in windows for p in flipped)
    assert any(windows[p[..., 0].tobytes()] is False for p in flipped)  # some flipped
    np.testing.assert_array_equal(flipped, random_patches([a, b], 200, 8, seed=3))
    assert not np.array_equal(flipped, random_patches([a, b], 200, 8, seed=4))
    assert 0.0 <= flipped.min() and flipped.max() <= b.max()
    with pytest.raises(ValueError, match=r"images\[0\].*at least 21x21"):
        random_patches([a, b], 5, 21)


# --------------------------------------------------------------------------- residual maps
@pytest.fixture(scope="module")
def identity():
    """A perfect 'autoencoder': it gives back what it is given, of any size."""
    import keras

    inputs = keras.Input((None, None, 1))
    return keras.Model(inputs, keras.layers.Identity()(inputs))


@pytest.fixture(scope="module")
def blank():
    """An 'autoencoder' that reconstructs every patch as black."""
    import keras

    inputs = keras.Input((None, None, 1))
    return keras.Model(inputs, keras.layers.Rescaling(0.0)(inputs))


def test_residual_maps_of_a_perfect_autoencoder_are_zero(identity):
    rng = np.random.default_rng(0)
    images = [rng.random((20, 45)), rng.random((22, 45)), rng.random((16, 16))]
    for loss in ("l2", "ssim"):
        maps = residual_maps(identity, images, loss, patch_size=16, stride=4)
        assert isinstance(maps, list) and [m.shape for m in maps] == [i.shape for i in images]
        assert max(float(np.abs(m).max()) for m in maps) < 1e-5


def test_residual_maps_stitch_the_patch_residuals(blank, identity):
    """With a black reconstruction every patch's L2 residual at a pixel is that pixel squared,
    so the averaged map is exactly the image squared, at its own size."""
    rng = np.random.default_rng(1)
    images = [rng.random((19, 33)).astype(np.float32), rng.random((24, 17)).astype(np.float32)]
    maps = residual_maps(blank, images, "l2", patch_size=8, stride=3, batch_size=5)
    for img, m in zip(images, maps):
        assert m.shape == img.shape and m.dtype == np.float32
        np.testing.assert_allclose(m, img ** 2, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"images\[0\].*at least 20x20"):
        residual_maps(identity, images, "l2", patch_size=20, stride=5)
    with pytest.raises(ValueError, match="loss must be one of"):
        residual_maps(identity, images, "l1", patch_size=8, stride=2)


def test_smooth_maps_keep_shapes_and_single_pixel_peaks():
    maps = [np.zeros((20, 45)), np.zeros((22, 31))]
    maps[0][10, 20] = 1.0  # one hot pixel, e.g. a thin crack seen by one patch
    smooth = smooth_maps(maps)
    assert [m.shape for m in smooth] == [(20, 45), (22, 31)]
    assert np.all(smooth[1] == 0)
    # the dilation spreads the peak to its 3x3 neighbourhood first, so the blur keeps most of
    # it, where a blur alone would spread it thin
    blurred = ndimage.gaussian_filter(maps[0], 1.0)
    assert smooth[0].max() == pytest.approx(smooth[0][10, 20])
    assert smooth[0][10, 20] > 0.75 and smooth[0][10, 20] > 4 * blurred[10, 20]
    assert np.all(smooth[0][9:12, 19:22] >= blurred[9:12, 19:22])
    dilated = smooth_maps(maps, size=3, sigma=0)
    np.testing.assert_array_equal(dilated[0][9:12, 19:22], 1.0)  # not lowered at all
    assert dilated[0].sum() == 9
    flat = smooth_maps([np.full((6, 9), 0.3)])[0]
    np.testing.assert_allclose(flat, 0.3, rtol=1e-6)
