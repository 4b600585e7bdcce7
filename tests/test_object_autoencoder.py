"""Notebook 05's whole-image (object) autoencoder: the model
(:func:`course_lib.models.build_object_autoencoder`), its training and the paper's "whole"
setting (:mod:`course_lib.experiments.mvtec`), the batches it takes
(:func:`course_lib.images.resize_images`, :func:`course_lib.images.with_flips`) and its maps
(:func:`course_lib.map_metrics.whole_image_maps`), with SSIM's contrast constant ``k2`` passed
through the patch maps.

Tiny data: 64-pixel models trained for one epoch on four images; the real bottle subset only
where the property is about real images (the initialiser)."""

import dataclasses

import numpy as np
import pytest
from skimage.metrics import structural_similarity
from skimage.transform import resize

from course_lib.checks import DataError
from course_lib.config import get_profile
from course_lib.data.mvtec import MVTEC_OBJECTS, MVTecData
from course_lib.experiments import mvtec as E
from course_lib.images import resize_images, with_flips
from course_lib.map_metrics import PATCH_SSIM_K2, residual_maps, whole_image_maps
from course_lib.models import OBJECT_CODE_SIZE, OBJECT_LEARNING_RATE, build_object_autoencoder
from course_lib.ssim import ssim_loss, ssim_residual_map

METRICS = ("image_auroc", "pixel_auroc", "aupro", "good_correct", "defect_correct")


def smooth_images(n, shape, seed=0):
    """``n`` smooth grey images in [0, 1] (a blob of light on a gradient, as a lit object)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:shape[0], :shape[1]] / max(shape)
    out = []
    for _ in range(n):
        r0, c0 = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / 0.05)
        img = 0.2 + 0.2 * cols + 0.5 * blob + rng.normal(0, 0.01, shape)
        out.append(np.clip(img, 0, 1).astype(np.float32))
    return out


def weights(model):
    return [np.asarray(w) for w in model.get_weights()]


# --------------------------------------------------------------------------- the model
@pytest.mark.parametrize("side, channels", [(64, 1), (128, 3), (256, 1)])
def test_object_autoencoder_rebuilds_the_input_shape_through_a_code_of_100(side, channels):
    autoencoder, encoder, decoder = build_object_autoencoder(side, channels, "l2")
    assert autoencoder.input_shape == (None, side, side, channels)
    assert autoencoder.output_shape == autoencoder.input_shape
    assert encoder.output_shape == (None, 1, 1, OBJECT_CODE_SIZE)
    assert decoder.input_shape == (None, 1, 1, OBJECT_CODE_SIZE)
    assert decoder.output_shape == (None, side, side, channels)
    x = np.random.default_rng(0).random((2, side, side, channels)).astype(np.float32)
    out = np.asarray(autoencoder(x))
    assert out.shape == x.shape and 0.0 <= out.min() and out.max() <= 1.0   # sigmoid pixels
    # one 4x4 stride-2 convolution per halving down to 8 x 8 cells, then the 8 x 8 code
    strided = [layer for layer in encoder.layers if getattr(layer, "strides", (1, 1)) == (2, 2)]
    assert len(strided) == int(np.log2(side // 8))


@pytest.mark.parametrize("side", [32, 96, 100, 0, -128, "128", 128.0, True])
def test_object_autoencoder_refuses_sides_that_are_not_powers_of_two(side):
    with pytest.raises(DataError, match=r"side .*" + repr(side).replace(".", r"\.")):
        build_object_autoencoder(side)


def test_object_autoencoder_losses_and_optimiser():
    l2, _, _ = build_object_autoencoder(64, 1, "l2")
    ssim, encoder, _ = build_object_autoencoder(64, 1, "ssim", learning_rate=2e-4, code_size=16)
    assert l2.loss == "mse" and ssim.loss is ssim_loss
    assert float(l2.optimizer.learning_rate) == pytest.approx(OBJECT_LEARNING_RATE)
    assert float(ssim.optimizer.learning_rate) == pytest.approx(2e-4)
    assert encoder.output_shape == (None, 1, 1, 16)
    for loss in ("l1", "SSIM", None):
        with pytest.raises(DataError, match="loss must be one of"):
            build_object_autoencoder(64, 1, loss)


@pytest.fixture(scope="module")
def bottle():
    from course_lib.data.bottle import load_bottle

    return load_bottle("fast", verbose=False)


def test_he_initialiser_lets_the_image_reach_the_output_where_glorots_gives_flat_grey(bottle):
    """The documented cause of the SSIM collapse (notebook 05, "Why He's initialiser?"): on real
    bottles, the untrained model's output varies within each image with He's start, and is
    nearly flat (so SSIM's structure term has no gradient) with the same layers started with
    Glorot's."""
    import keras

    assert bottle.x_train[0].shape == (128, 128)
    x = resize_images(bottle.x_train[:6], 128)
    keras.utils.set_random_seed(0)
    autoencoder, encoder, decoder = build_object_autoencoder(128, 1, "ssim")

    def spread():
        return np.asarray(autoencoder(x)).std(axis=(1, 2, 3))   # within each image

    he = spread()
    for part in (encoder, decoder):
        for layer in part.layers:
            if hasattr(layer, "kernel"):
                layer.kernel.assign(keras.initializers.GlorotUniform(seed=0)(layer.kernel.shape))
    glorot = spread()
    assert he.min() > 1e-3, he
    assert glorot.max() < 1e-4, glorot
    assert he.min() > 100 * glorot.max()


# --------------------------------------------------------------------------- training
def tiny_category(category="widget", n_train=12, side=64, seed=0):
    """An in-memory MVTec-style category of grey ``side`` x ``side`` images: ``n_train`` good
    training images, 2 good and 3 defective test images (a dark or bright square, masked)."""
    rng = np.random.default_rng(seed)
    x_train = smooth_images(n_train, (side, side), seed=seed)
    x_test = smooth_images(5, (side, side), seed=seed + 1)
    masks = [np.zeros((side, side), bool) for _ in x_test]
    for i, value in zip((2, 3, 4), (0.0, 1.0, 0.05)):
        r, c = rng.integers(8, side - 20, 2)
        x_test[i][r:r + 12, c:c + 12] = value
        masks[i][r:r + 12, c:c + 12] = True
    y = np.array([0, 0, 1, 1, 1])
    return MVTecData(category, x_train, x_test, y, masks, ["good"] * 2 + ["square"] * 3,
                     [f"train/{i}.png" for i in range(n_train)],
                     [f"test/{i}.png" for i in range(5)], source="file", detail="tiny")


#: Whole images rebuilt at 64 pixels, one epoch.
TINY = dataclasses.replace(get_profile("fast"), object_ae_side=64, object_epochs=1)


@pytest.fixture(scope="module")
def whole_run():
    """The whole-image setting on a tiny category that is not an MVTec AD object (so the
    setting is forced): 12 good images, 10 to train on (x 4 with the flips), 2 to validate."""
    return E.mvtec_autoencoder_experiment(tiny_category(), "l2", profile=TINY, setting="whole",
                                          return_details=True)


@pytest.mark.slow
def test_whole_image_experiment_on_a_tiny_category(whole_run):
    result, details = whole_run
    assert result["setting"] == "whole" and result["side"] == 64
    assert result["n_train"] == 10 and result["n_val"] == 2 and result["n_test"] == 5
    assert result["samples"] == 4 * result["n_train"]
    assert result["epochs"] == 1 and result["loss"] == "l2" and result["category"] == "widget"
    assert "patch_size" not in result and "stride" not in result
    for key in METRICS:
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert [m.shape for m in details["test_maps"]] == [(64, 64)] * 5
    assert len(details["val_maps"]) == 2


@pytest.mark.slow
def test_train_object_autoencoder_one_epoch_over_the_images_and_their_flips(whole_run):
    _, details = whole_run
    autoencoder, history = details["autoencoder"], details["history"]
    assert autoencoder.input_shape == (None, 64, 64, 1)
    assert list(history.history) == ["loss"] and len(history.history["loss"]) == 1
    assert np.isfinite(history.history["loss"][0])
    # 10 images x 4 (themselves, left-right, up-down, both) = 40 in batches of 16: 3 updates
    # (20 images, left-right flips only, would be 2; the images alone 1)
    assert E.OBJECT_BATCH_SIZE == 16
    assert int(autoencoder.optimizer.iterations) == 3


@pytest.mark.slow
def test_train_object_autoencoder_is_deterministic_for_a_seed(whole_run):
    _, details = whole_run
    again, history = E.train_object_autoencoder(details["x_fit"], "l2", 64, epochs=1, seed=0,
                                                progress=False)
    assert history.history["loss"] == details["history"].history["loss"]
    for a, b in zip(weights(details["autoencoder"]), weights(again)):
        np.testing.assert_array_equal(a, b)


def test_default_setting_and_object_sigma():
    assert all(E.default_setting(c) == "whole" for c in MVTEC_OBJECTS)
    assert "bottle" in MVTEC_OBJECTS
    for category in ("kolektor", "carpet", "brick", "Bottle", ""):
        assert E.default_setting(category) == "patches"
    assert E.SETTINGS == ("whole", "patches")
    assert E.object_sigma(256) == 4.0 and E.object_sigma(128) == 2.0


class Chosen(Exception):
    """Raised by a stand-in training function: says which setting was taken, trains nothing."""


def test_experiment_setting_defaults_by_category_and_refuses_unknown(monkeypatch):
    def whole(*args, **kwargs):
        raise Chosen("whole")

    def patches(*args, **kwargs):
        raise Chosen("patches")

    monkeypatch.setattr(E, "train_object_autoencoder", whole)
    monkeypatch.setattr(E, "train_mvtec_autoencoder", patches)
    for category, setting, expected in [("bottle", None, "whole"), ("widget", None, "patches"),
                                        ("bottle", "patches", "patches"),
                                        ("widget", "whole", "whole")]:
        with pytest.raises(Chosen, match=expected):
            E.mvtec_autoencoder_experiment(tiny_category(category), "ssim", profile=TINY,
                                           setting=setting)
    for bad in ("auto", "Whole", "patch"):
        with pytest.raises(DataError, match=f"setting must be one of .*'{bad}'"):
            E.mvtec_autoencoder_experiment(tiny_category(), profile=TINY, setting=bad)


# --------------------------------------------------------------------------- batches
def test_resize_images_makes_one_float32_batch_like_skimage():
    rng = np.random.default_rng(0)
    grey = [rng.random((30, 40)), rng.random((50, 20)).astype(np.float32)]
    x = resize_images(grey, 16)
    assert x.shape == (2, 16, 16, 1) and x.dtype == np.float32
    for img, out in zip(grey, x):
        ref = resize(img.astype(np.float32), (16, 16), order=1, anti_aliasing=True)
        np.testing.assert_allclose(out[..., 0], ref, atol=1e-6)
    colour = [rng.random((40, 30, 3)), rng.random((24, 24, 3))]
    x = resize_images(colour, 24)
    assert x.shape == (2, 24, 24, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[1], colour[1], atol=1e-6)   # already 24 x 24: unchanged
    assert resize_images(np.zeros((3, 8, 8)), 4).shape == (3, 4, 4, 1)   # a stacked batch
    assert np.allclose(resize_images([np.full((9, 7), 0.25)], 5), 0.25)  # range kept


@pytest.mark.parametrize("images, side, message", [
    ([], 16, "no images"),
    ([np.zeros(10)], 16, r"\(H, W\) or \(H, W, C\)"),
    ([np.zeros((4, 8, 8, 1))], 16, r"\(H, W\) or \(H, W, C\)"),
    ([np.zeros((8, 8))], 0, "side"),
    ([np.zeros((8, 8))], 16.0, "side"),
])
def test_resize_images_refuses_bad_input(images, side, message):
    with pytest.raises(DataError, match=message):
        resize_images(images, side)


def test_resize_images_refuses_a_mix_of_grey_and_colour():
    with pytest.raises(DataError, match=r"images\[1\].*3 channel"):
        resize_images([np.zeros((8, 8)), np.zeros((8, 8, 3))], 4)


@pytest.mark.parametrize("x", [np.zeros((4, 4)), np.zeros(3), np.zeros((1, 2, 3, 4, 5))])
def test_with_flips_refuses_what_is_not_a_batch(x):
    with pytest.raises(DataError, match=r"\(N, H, W, C\)"):
        with_flips(x)


def test_with_flips_adds_exact_mirror_images():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    four = with_flips(x)
    assert four.shape == (8, 3, 4, 2) and four.dtype == x.dtype
    np.testing.assert_array_equal(four[:2], x)
    np.testing.assert_array_equal(four[2:4], np.flip(x, axis=2))       # left-right
    np.testing.assert_array_equal(four[4:6], np.flip(x, axis=1))       # up-down
    np.testing.assert_array_equal(four[6:], np.flip(x, axis=(1, 2)))   # both
    two = with_flips(x, vertical=False)
    assert two.shape == (4, 3, 4, 2)
    np.testing.assert_array_equal(two, four[:4])
    # the channels are never mirrored
    np.testing.assert_array_equal(four[..., 0] % 2, np.zeros((8, 3, 4)))


# --------------------------------------------------------------------------- maps
def keras_model(side, channels, layer):
    import keras

    return keras.Sequential([keras.Input((side, side, channels)), layer])


@pytest.fixture(scope="module")
def identity():
    import keras

    return keras_model(64, 1, keras.layers.Identity())


@pytest.fixture(scope="module")
def grey_half():
    """An 'autoencoder' that rebuilds every image as flat mid-grey."""
    import keras

    return keras_model(64, 1, keras.layers.Lambda(lambda t: keras.ops.zeros_like(t) + 0.5))


def test_whole_image_maps_of_a_perfect_autoencoder_are_zero_at_each_images_size(identity):
    images = smooth_images(2, (80, 80), seed=1) + smooth_images(1, (70, 90), seed=2)
    for loss in ("l2", "ssim"):
        maps = whole_image_maps(identity, images, loss)
        assert isinstance(maps, list) and [m.shape for m in maps] == [(80, 80), (80, 80),
                                                                      (70, 90)]
        assert max(float(np.abs(m).max()) for m in maps) < 1e-5, loss


def test_whole_image_maps_of_a_flat_reconstruction_are_positive(grey_half):
    images = smooth_images(2, (80, 80), seed=1)
    for loss in ("l2", "ssim"):
        maps = whole_image_maps(grey_half, images, loss)
        assert all(m.min() >= 0 and m.mean() > 0.01 for m in maps), loss
    flat = whole_image_maps(grey_half, [np.full((96, 80), 0.9)], "l2")[0]
    assert flat.shape == (96, 80)
    np.testing.assert_allclose(flat, (0.9 - 0.5) ** 2, atol=1e-6)   # (x - x_hat)**2
    with pytest.raises(DataError, match="loss must be one of"):
        whole_image_maps(grey_half, images, "l1")


def test_whole_image_maps_average_the_colour_channels():
    import keras

    half = keras_model(32, 3, keras.layers.Rescaling(0.5))   # x_hat = x / 2
    image = np.zeros((40, 40, 3), np.float32)
    image[..., 0], image[..., 1] = 0.6, 0.2                  # red 0.6, green 0.2, blue 0
    (m,) = whole_image_maps(half, [image], "l2")
    assert m.shape == (40, 40)
    np.testing.assert_allclose(m, (0.3 ** 2 + 0.1 ** 2) / 3, atol=1e-6)


def test_residual_maps_pass_ssims_contrast_constant_through():
    import keras

    faded = keras.Sequential([keras.Input((None, None, 1)),
                              keras.layers.Lambda(lambda t: 0.5 * t + 0.25)])   # less contrast
    image = smooth_images(1, (32, 32), seed=4)[0] + np.random.default_rng(0).normal(0, 0.05,
                                                                                   (32, 32))
    image = np.clip(image, 0, 1).astype(np.float32)
    by_k2 = {}
    for k2 in (0.03, 0.1, 0.2, 0.3):
        (m,) = residual_maps(faded, [image], "ssim", patch_size=16, stride=16, k2=k2)
        # four patches side by side, each its own SSIM residual
        for r in (0, 16):
            for c in (0, 16):
                patch = image[r:r + 16, c:c + 16]
                ref = ssim_residual_map(patch, 0.5 * patch + 0.25, k2=k2)
                np.testing.assert_allclose(m[r:r + 16, c:c + 16], ref, atol=1e-5)
        by_k2[k2] = m
    assert by_k2[0.03].mean() > by_k2[0.1].mean() > by_k2[0.3].mean()   # k2 changes the maps
    assert PATCH_SSIM_K2 in by_k2
    (default,) = residual_maps(faded, [image], "ssim", patch_size=16, stride=16)
    np.testing.assert_array_equal(default, by_k2[PATCH_SSIM_K2])


@pytest.mark.parametrize("k2", [0.03, 0.1])
def test_ssim_residual_map_k2_matches_skimage(k2):
    from skimage import data

    camera = data.camera()[::4, ::4] / 255.0
    blurred = resize(resize(camera, (64, 64)), camera.shape)
    _, ref = structural_similarity(camera, blurred, K2=k2, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=1.0, full=True)
    ours = ssim_residual_map(camera, blurred, k2=k2, dtype="float64")
    assert np.abs(ours - (1 - ref)).max() <= 1e-6
    assert np.abs(ssim_residual_map(camera, blurred, k2=k2) - (1 - ref)).max() <= 1e-3


@pytest.mark.parametrize("bad", [np.full((10, 10), np.nan), np.full((10, 10), 200.0),
                                 np.full((10, 10), -0.5)])
def test_resize_images_refuses_values_outside_the_unit_range(bad):
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        resize_images([np.zeros((10, 10)), bad], 4)


def test_synthetic_defects_takes_one_kind_as_a_string():
    from course_lib.data.textures import synthetic_defects

    images = [np.full((40, 50), 0.6, np.float32), np.full((40, 40), 0.5, np.float32)]
    damaged, masks = synthetic_defects(images, kinds="crack", seed=0, window=32)
    assert [d.shape for d in damaged] == [(40, 50), (40, 40)]
    assert all(m.any() for m in masks)
    assert all(np.allclose(d[~m], i[~m]) for d, m, i in zip(damaged, masks, images))
    with pytest.raises(DataError, match="kinds"):
        synthetic_defects(images, kinds=("crack", "dent"))


def test_whole_image_reconstructions_come_back_at_each_images_size(identity, grey_half):
    from course_lib.map_metrics import whole_image_reconstructions

    images = smooth_images(1, (64, 64), seed=1) + smooth_images(1, (70, 90), seed=2)
    same = whole_image_reconstructions(identity, images)
    assert [r.shape for r in same] == [(64, 64), (70, 90)]
    np.testing.assert_allclose(same[0], images[0], atol=1e-5)   # no resizing at the model side
    flat = whole_image_reconstructions(grey_half, images)
    assert all(np.allclose(r, 0.5) for r in flat)
    with pytest.raises(DataError):
        whole_image_reconstructions(identity, [np.full((64, 64), 2.0)])
