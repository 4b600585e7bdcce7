"""Tests of the anomaly-map baselines of notebook 05 (variation model, texture inspection)."""

import numpy as np
import pytest

from course_lib.baselines import TextureInspection, VariationModel


def _good_images(n=20, size=32, seed=0):
    """Aligned noisy images: a fixed pattern plus small noise (a stand-in for good parts)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    pattern = 0.4 + 0.1 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    return np.clip(pattern + rng.normal(0, 0.03, (n, size, size)), 0, 1)


def _with_square(x, r=10, c=14, side=5):
    out = x.copy()
    out[:, r:r + side, c:c + side] = 1.0
    mask = np.zeros(x.shape[1:], bool)
    mask[r:r + side, c:c + side] = True
    return out, mask


@pytest.mark.parametrize("model, margin", [
    (VariationModel(), 0),
    (TextureInspection(patch_size=4, stride=2, n_components=2), 3),  # patches smear by 3 px
])
def test_planted_bright_square_gets_the_highest_values(model, margin):
    from scipy import ndimage

    good = _good_images()
    model.fit(good)
    test, mask = _with_square(_good_images(3, seed=1))
    maps = np.stack(model.anomaly_map(test))  # a list (TextureInspection) or an array
    assert maps.shape == test.shape
    assert np.all(np.isfinite(maps))
    near = ndimage.binary_dilation(mask, iterations=margin) if margin else mask
    for amap in maps:
        # the 20 highest pixels all lie in (or, for patches, next to) the square ...
        top = np.argsort(amap.ravel())[::-1][:20]
        assert near.ravel()[top].all()
        # ... and the square's pixels score above nearly every pixel away from it
        assert amap[mask].mean() > np.percentile(amap[~near], 99)
    # the same square region scores lower on defect-free images
    clean = np.stack(model.anomaly_map(_good_images(3, seed=2)))
    assert clean[:, mask].mean() < maps[:, mask].mean()


def test_variation_model_is_a_per_pixel_z_score():
    good = _good_images(10)
    vm = VariationModel(eps=0.05).fit(good)
    x = good[:2] + 0.1
    expected = np.abs(x - good.mean(0)) / (good.std(0) + 0.05)
    np.testing.assert_allclose(vm.anomaly_map(x), expected)
    np.testing.assert_allclose(vm.anomaly_map(x[..., None]), expected)  # channel axis of 1


def test_texture_inspection_map_shape():
    good = _good_images(5, size=30)  # 30 is not a multiple of the stride: edges still covered
    ti = TextureInspection(patch_size=6, stride=4, n_components=2).fit(good)
    maps = ti.anomaly_map(good[:2])
    assert isinstance(maps, list) and [m.shape for m in maps] == [(30, 30)] * 2
    assert all(np.all(np.isfinite(m)) for m in maps)


def _texture(h, w, seed):
    """A stripe texture (no fixed position: any crop of it looks the same) with noise."""
    rng = np.random.default_rng(seed)
    xx = np.arange(w)[None, :] + rng.integers(0, 6)
    return np.clip(0.5 + 0.2 * np.sin(xx * np.pi / 3) + rng.normal(0, 0.02, (h, w)), 0, 1) \
        * np.ones((h, 1))


def test_texture_inspection_fits_and_maps_images_of_any_size():
    """Non-square photos of different sizes: fitted together, one map per image at its size,
    and a defect found wherever it lies."""
    good = [_texture(h, w, i) for i, (h, w) in enumerate([(20, 45), (22, 45), (18, 30)])]
    ti = TextureInspection(patch_size=6, stride=3, n_components=3).fit(good)
    test = [_texture(21, 40, 7), _texture(16, 52, 8)]
    test[1][5:9, 30:34] = 1.0
    maps = ti.anomaly_map(test)
    assert [m.shape for m in maps] == [(21, 40), (16, 52)]
    assert maps[1][5:9, 30:34].mean() > maps[0].max()
    peak = np.unravel_index(np.argmax(maps[1]), maps[1].shape)
    assert 2 <= peak[0] <= 12 and 27 <= peak[1] <= 37
    with pytest.raises(ValueError, match="smaller than patch_size"):
        ti.anomaly_map([np.zeros((5, 40))])


def test_variation_model_needs_images_of_one_size():
    good = [_texture(20, 45, 0), _texture(22, 45, 1)]
    with pytest.raises(ValueError, match="one size.*20, 45.*22, 45"):
        VariationModel().fit(good)
    vm = VariationModel().fit([_texture(20, 45, i) for i in range(3)])  # a list of one size
    assert vm.mean_.shape == (20, 45)
    with pytest.raises(ValueError, match="one size"):
        vm.anomaly_map(good)
    assert vm.anomaly_map([_texture(20, 45, 5)]).shape == (1, 20, 45)


@pytest.mark.parametrize("cls", [VariationModel, TextureInspection])
def test_inputs_are_validated(cls):
    model = cls() if cls is VariationModel else cls(patch_size=4, stride=2, n_components=2)
    good = _good_images(5)
    with pytest.raises(ValueError, match="not fitted"):
        model.anomaly_map(good)
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad)
    with pytest.raises(ValueError, match="shape"):
        model.fit(good[0])
    model.fit(good)
    with pytest.raises(ValueError, match="NaN"):
        model.anomaly_map(bad)


def test_variation_model_rejects_other_sizes_and_one_image():
    with pytest.raises(ValueError, match="at least 2"):
        VariationModel().fit(_good_images(1))
    vm = VariationModel().fit(_good_images(4, size=32))
    with pytest.raises(ValueError, match="fitted on"):
        vm.anomaly_map(_good_images(2, size=16))


def test_texture_inspection_rejects_bad_settings():
    with pytest.raises(ValueError, match="stride"):
        TextureInspection(patch_size=4, stride=5).fit(_good_images(3))
    with pytest.raises(ValueError, match="smaller than patch_size"):
        TextureInspection(patch_size=40, stride=4).fit(_good_images(3))
