import numpy as np
import pytest
from scipy import ndimage
from skimage import data, filters
from skimage.metrics import structural_similarity

from course_lib.ssim import gaussian_window, ssim_loss, ssim_map, ssim_residual_map

BORDER = 5  # (window_size - 1) // 2: pixels whose window reaches past the image edge


def skimage_ssim(a, b, channel_axis=None):
    """scikit-image's SSIM with the settings of Wang et al. (the reference)."""
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0, full=True,
                                 channel_axis=channel_axis)


def real_pairs():
    rng = np.random.default_rng(0)
    camera = data.camera()[::4, ::4] / 255.0            # 128 x 128
    brick = data.brick()[100:228, 200:328] / 255.0      # 128 x 128
    return {
        "camera+noise": (camera, np.clip(camera + rng.normal(0, 0.1, camera.shape), 0, 1)),
        "camera+blur": (camera, filters.gaussian(camera, sigma=2)),
        "brick+blur": (brick, filters.gaussian(brick, sigma=1.5)),
        "brick+noise": (brick, np.clip(brick + rng.normal(0, 0.05, brick.shape), 0, 1)),
        "camera vs brick": (camera, brick),
    }


def test_gaussian_window_is_the_ndimage_kernel():
    g = gaussian_window(11, 1.5)
    impulse = np.zeros(21)
    impulse[10] = 1.0
    # scikit-image filters with ndimage.gaussian_filter1d(sigma=1.5, truncate=3.5): 11 taps
    ref = ndimage.gaussian_filter1d(impulse, 1.5, truncate=3.5)[5:16]
    np.testing.assert_allclose(g, ref, atol=1e-12)
    assert g.sum() == pytest.approx(1.0) and np.allclose(g, g[::-1])


@pytest.mark.parametrize("name", list(real_pairs()))
def test_ssim_map_matches_skimage_on_real_images(name):
    a, b = real_pairs()[name]
    _, ref = skimage_ssim(a, b)
    ours = np.asarray(ssim_map(a[None], b[None]))[0]
    assert ours.shape == a.shape
    diff = np.abs(ours - ref)
    assert diff[BORDER:-BORDER, BORDER:-BORDER].max() <= 1e-3
    assert diff.max() <= 1e-3  # the mirrored border matches scikit-image's mode="reflect" too
    precise = np.asarray(ssim_map(a[None], b[None], dtype="float64"))[0]
    assert np.abs(precise - ref).max() <= 1e-8


def test_ssim_map_matches_skimage_on_random_batches_with_channels():
    rng = np.random.default_rng(1)
    x = rng.random((3, 40, 50, 2))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    ours = np.asarray(ssim_map(x, y))
    assert ours.shape == x.shape
    for i in range(3):
        _, ref = skimage_ssim(x[i], y[i], channel_axis=-1)
        assert np.abs(ours[i] - ref).max() <= 1e-3
    gray = np.asarray(ssim_map(x[..., 0], y[..., 0]))  # (batch, H, W) in -> (batch, H, W) out
    np.testing.assert_allclose(gray, ours[..., 0], atol=1e-6)


def test_valid_padding_is_tf_image_ssim():
    import tensorflow as tf

    a, b = real_pairs()["camera+noise"]
    x, y = a[None, ..., None].astype(np.float32), b[None, ..., None].astype(np.float32)
    valid = np.asarray(ssim_map(x, y, padding="valid"))
    assert valid.shape == (1, 118, 118, 1)
    mssim, ref = skimage_ssim(a, b)
    assert np.abs(valid[0, ..., 0] - ref[BORDER:-BORDER, BORDER:-BORDER]).max() <= 1e-3
    assert valid.mean() == pytest.approx(float(tf.image.ssim(x, y, max_val=1.0)[0]), abs=1e-4)
    assert valid.mean() == pytest.approx(mssim, abs=1e-4)


def test_ssim_loss_value_and_identity():
    import tensorflow as tf

    pairs = real_pairs()
    x = np.stack([pairs["camera+noise"][0], pairs["brick+blur"][0]])[..., None]
    y = np.stack([pairs["camera+noise"][1], pairs["brick+blur"][1]])[..., None]
    loss = np.asarray(ssim_loss(x, y))
    assert loss.shape == (2,)
    expected = 1 - tf.image.ssim(x.astype(np.float32), y.astype(np.float32), max_val=1.0)
    np.testing.assert_allclose(loss, np.asarray(expected), atol=1e-4)
    np.testing.assert_allclose(np.asarray(ssim_loss(x, x)), 0.0, atol=1e-5)


def test_ssim_loss_trains_a_keras_model():
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 16, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((16, 16, 1)),
                              keras.layers.Conv2D(1, 3, padding="same")])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=ssim_loss)

    def loss():  # what evaluate would print (one batch), without tracing a test step
        return float(keras.ops.mean(ssim_loss(x, model(x))))

    before = loss()
    history = model.fit(x, x, epochs=15, batch_size=16, verbose=0)
    after = loss()
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < 0.5 * before  # gradients flow: learning the identity lowers 1 - SSIM


def test_ssim_residual_map():
    a, b = real_pairs()["brick+noise"]
    _, ref = skimage_ssim(a, b)
    res = ssim_residual_map(np.stack([a, b]), np.stack([b, b]), batch_size=1)
    assert res.shape == (2, 128, 128) and res.dtype == np.float32
    assert np.abs(res[0] - (1 - ref)).max() <= 1e-3
    np.testing.assert_allclose(res[1], 0.0, atol=1e-5)   # identical images: no residual
    single = ssim_residual_map(a, b, dtype="float64")   # one (H, W) image
    assert single.shape == a.shape and np.abs(single - (1 - ref)).max() <= 1e-6
    u8 = ssim_residual_map((a * 255).round().astype(np.uint8)[None],
                           (b * 255).round().astype(np.uint8)[None], data_range=255)
    assert np.abs(u8[0] - (1 - ref)).max() < 0.02  # same images, quantised to uint8


@pytest.mark.parametrize("kwargs, message", [
    ({"x": np.zeros((1, 20, 20)), "y": np.zeros((1, 20, 21))}, "same shape"),
    ({"x": np.zeros((1, 8, 20)), "y": np.zeros((1, 8, 20))}, "at least 11x11"),
    ({"x": np.zeros((20, 20)), "y": np.zeros((20, 20))}, "batch"),
    ({"window_size": 10}, "odd"),
    ({"data_range": -1.0}, "data_range"),
    ({"padding": "full"}, "padding"),
    ({"dtype": "float16"}, "dtype"),
])
def test_ssim_map_rejects_bad_input(kwargs, message):
    args = {"x": np.zeros((1, 20, 20)), "y": np.zeros((1, 20, 20))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ssim_map(**args)


def test_residual_map_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        ssim_residual_map(np.zeros((2, 16, 16)), np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="NaN"):
        ssim_residual_map(np.full((1, 16, 16), np.nan), np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="shape"):
        ssim_residual_map(np.zeros(16), np.zeros(16))


def test_ssim_speed_command_reports_agreement_and_ratios():
    from course_lib.experiments.mvtec import ssim_speed_experiment as ssim_speed

    r = ssim_speed(n_images=4, size=64, repeats=1)
    assert r["images"] == 4 and r["size"] == 64
    assert r["max_abs_diff"] < 1e-3, "the course's map must agree with scikit-image's"
    assert r["skimage_ms"] > 0 and r["speedup_eager"] > 0 and r["speedup_tf_function"] > 0
