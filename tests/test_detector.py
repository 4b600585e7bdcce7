"""course_lib.detector: one .keras file holds model, preprocessing, score and threshold.

Every kind is saved and loaded back (scores bitwise identical), scores agree with the
notebooks' own pipelines (the experiments' functions), and bad files and inputs get clear
errors.  Tiny untrained models: saving and scoring do not need a trained one.
"""
from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

from course_lib.checks import DataError  # noqa: E402
from course_lib.data.creditcard import CREDITCARD_COLUMNS  # noqa: E402
from course_lib.detector import (AnomalyDetector, beat_detector, digit_detector,  # noqa: E402
                                 image_detector, load_detector, save_detector,
                                 transaction_detector)
from course_lib.experiments.creditcard import split_creditcard  # noqa: E402
from course_lib.experiments.ecg import split_ecg  # noqa: E402
from course_lib.images import flatten  # noqa: E402
from course_lib.map_metrics import (image_scores, residual_maps, smooth_maps,  # noqa: E402
                                    whole_image_maps)
from course_lib.metrics import anomaly_scores, threshold_conformal  # noqa: E402
from course_lib.models import (build_conv1d_autoencoder, build_mvtec_autoencoder,  # noqa: E402
                               build_object_autoencoder, build_tabular_autoencoder)


def roundtrip(detector, tmp_path, name="d.keras"):
    path = save_detector(detector, tmp_path / name)
    assert path.is_file() and zipfile.is_zipfile(path)
    assert [p.name for p in tmp_path.iterdir()] == [name]      # no temporary file left
    return load_detector(path)


@pytest.fixture(scope="module")
def tabular():
    """One untrained credit-card autoencoder and a split of synthetic transactions, shared."""
    frame = credit_frame()
    return build_tabular_autoencoder(30)[0], frame, split_creditcard(frame, seed=0)


def credit_frame(n=300, n_fraud=6, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 31)) * np.r_[1000, np.ones(28), 50, 0],
                         columns=list(CREDITCARD_COLUMNS))
    frame["Class"] = 0
    frame.loc[:n_fraud - 1, "Class"] = 1
    return frame


# --------------------------------------------------------------------------- the four kinds
def test_digit_detector_roundtrip_is_bitwise_and_matches_notebook_03(tmp_path):
    from course_lib.models import build_dense_autoencoder

    ae, _, _ = build_dense_autoencoder(code_size=4, hidden=(16,))
    x = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    det = digit_detector(ae, name="digit 7", notebook="03").calibrate(x[:19], alpha=0.05)
    assert det.threshold == threshold_conformal(anomaly_scores(ae, flatten(x[:19])), 0.05)
    assert (det.alpha, det.n_calibration) == (0.05, 19)
    back = roundtrip(det, tmp_path)
    assert isinstance(back, AnomalyDetector) and back.kind == "digits"
    scores = det.score(x)
    np.testing.assert_array_equal(back.score(x), scores)           # bit for bit
    np.testing.assert_array_equal(scores, anomaly_scores(ae, flatten(x)))
    assert back.threshold == det.threshold and back.about == det.about
    maps = back.anomaly_maps(x[:3])
    assert maps[0].shape == (28, 28)
    np.testing.assert_allclose([m.mean() for m in maps], scores[:3], rtol=1e-5)
    assert "of 19 normal samples" in back.describe() and "at most 5%" in back.describe()
    np.testing.assert_array_equal(back.flag(scores), scores > det.threshold)
    with pytest.raises(DataError, match="28"):
        back.score(np.zeros((2, 32, 32), np.uint8))


def test_transaction_detector_scales_as_the_split(tabular, tmp_path):
    ae, frame, split = tabular
    det = transaction_detector(ae, split).calibrate(frame.iloc[split.val_rows], alpha=0.1)
    test = frame.iloc[split.test_rows]
    np.testing.assert_array_equal(det.prepare(test), split.x_test)   # sklearn's scaling, exactly
    back = roundtrip(det, tmp_path)
    np.testing.assert_array_equal(back.score(test), anomaly_scores(ae, split.x_test))
    shuffled = test[list(reversed(test.columns))]                  # columns by name, any order
    np.testing.assert_array_equal(back.score(shuffled), back.score(test))
    with pytest.raises(DataError, match="lack the column.*Amount"):
        back.score(test.drop(columns=["Amount"]))
    with pytest.raises(DataError, match="NaN"):
        back.score(test.assign(V3=np.nan))
    with pytest.raises(DataError, match="standard"):
        transaction_detector(ae, split_creditcard(frame, scaling="quantile"))


def test_beat_detector_scales_as_the_split(tmp_path):
    rng = np.random.default_rng(1)
    t = np.linspace(0, 2 * np.pi, 32)
    x = (np.sin(t) * 3 + 1 + 0.1 * rng.normal(size=(80, 32))).astype(np.float32)
    y = np.r_[np.full(60, 1), np.full(20, 2)]
    split = split_ecg(x, y, seed=0)
    ae, _, _ = build_conv1d_autoencoder(32, filters=(4, 4), code_size=4)
    det = beat_detector(ae, split)
    np.testing.assert_array_equal(det.prepare(x), ((x - split.center) / split.scale))
    det.threshold, det.alpha, det.n_calibration = 1.0, 0.1, 9
    back = roundtrip(det, tmp_path)
    np.testing.assert_array_equal(back.score(x), det.score(x))
    with pytest.raises(DataError, match="32 columns"):
        back.score(x[:, :30])


def test_whole_image_detector_matches_notebook_05_maps(tmp_path):
    rng = np.random.default_rng(2)
    images = [rng.random((96, 96)).astype(np.float32) for _ in range(3)]
    ae, _, _ = build_object_autoencoder(64, 1, "ssim", code_size=8)
    det = image_detector(ae, "ssim", images, sigma=1.5, name="bottle")
    expected = image_scores(smooth_maps(whole_image_maps(ae, images, "ssim"), sigma=1.5))
    np.testing.assert_array_equal(det.score(images), expected)
    det.threshold, det.alpha, det.n_calibration = 0.5, 0.05, 42
    back = roundtrip(det, tmp_path)
    np.testing.assert_array_equal(back.score(images), expected)
    assert "longest side resized to 96" in back.describe()


def test_patch_detector_matches_notebook_05_maps(tmp_path):
    rng = np.random.default_rng(3)
    images = [rng.random((40, 56)).astype(np.float32) for _ in range(2)]
    ae, _, _ = build_mvtec_autoencoder(16, "l2")
    det = image_detector(ae, "l2", images, sigma=1.0, setting="patches", scale=0.5,
                         patch_size=16, stride=8)
    expected = image_scores(smooth_maps(residual_maps(ae, images, "l2", 16, 8)))
    det.threshold, det.alpha, det.n_calibration = 0.5, 0.05, 42
    back = roundtrip(det, tmp_path)
    np.testing.assert_array_equal(back.score(images), expected)
    with pytest.raises(DataError, match="at least 16x16"):
        back.score([np.zeros((10, 40), np.float32)])
    from skimage.io import imsave

    imsave(tmp_path / "photo.png", np.zeros((80, 112), np.uint8), check_contrast=False)
    assert back.read_image(tmp_path / "photo.png").shape == (40, 56)   # the files' scale 0.5
    imsave(tmp_path / "tiny.png", np.zeros((24, 200), np.uint8), check_contrast=False)
    with pytest.raises(DataError, match="smaller than one 16-pixel patch"):
        back.read_image(tmp_path / "tiny.png")


# --------------------------------------------------------------------------- image files
def test_read_image_brings_files_to_the_training_scale(tmp_path):
    from skimage.io import imsave

    ae, _, _ = build_object_autoencoder(64, 1, "l2", code_size=8)
    det = image_detector(ae, "l2", [np.zeros((64, 64), np.float32)], sigma=1.0)
    imsave(tmp_path / "big.png", np.full((256, 256, 3), 200, np.uint8), check_contrast=False)
    img = det.read_image(tmp_path / "big.png")            # colour file, 4x larger: grey 64x64
    assert img.shape == (64, 64) and img.dtype == np.float32
    np.testing.assert_allclose(img, 200 / 255, atol=1e-3)
    imsave(tmp_path / "wide.png", np.zeros((40, 120), np.uint8), check_contrast=False)
    with pytest.raises(DataError, match="squash"):
        det.read_image(tmp_path / "wide.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        det.read_image(tmp_path / "broken.png")


# --------------------------------------------------------------------------- bad files
def test_save_needs_a_threshold_and_a_keras_name(tabular, tmp_path):
    ae, _, split = tabular
    det = transaction_detector(ae, split)
    with pytest.raises(DataError, match="calibrate"):
        save_detector(det, tmp_path / "d.keras")
    with pytest.raises(DataError, match="no threshold"):
        det.flag([1.0])
    det.threshold, det.alpha, det.n_calibration = 1.0, 0.05, 20
    with pytest.raises(DataError, match=r"\.keras"):
        save_detector(det, tmp_path / "d.h5")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_file(tabular, tmp_path, monkeypatch):
    ae, _, split = tabular
    det = transaction_detector(ae, split)
    det.threshold, det.alpha, det.n_calibration = 1.0, 0.05, 20
    path = save_detector(det, tmp_path / "d.keras")
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        args[0].write_bytes(b"half")                         # half-written, then the disk fails
        raise OSError("No space left on device")

    monkeypatch.setattr(AnomalyDetector, "save", lambda self, p: broken_save(p))
    with pytest.raises(OSError):
        save_detector(det, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["d.keras"]


def test_load_refuses_missing_damaged_and_foreign_files(tabular, tmp_path):
    with pytest.raises(DataError, match="no detector file"):
        load_detector(tmp_path / "none.keras")
    (tmp_path / "text.keras").write_text("hello")
    with pytest.raises(DataError, match="not a zip"):
        load_detector(tmp_path / "text.keras")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("nothing.txt", "x")
    with pytest.raises(DataError, match="could not be loaded"):
        load_detector(tmp_path / "empty.keras")
    tabular[0].save(tmp_path / "plain.keras")
    with pytest.raises(DataError, match="not a course detector"):
        load_detector(tmp_path / "plain.keras")


def test_unknown_kind_is_refused(tabular):
    with pytest.raises(DataError, match="kind"):
        AnomalyDetector(tabular[0], "sounds")


def test_calibration_split_takes_half_the_normals():
    from course_lib.detector import calibration_split

    y = np.r_[np.zeros(41, int), np.ones(9, int)][np.random.default_rng(0).permutation(50)]
    cal, check = calibration_split(y, seed=3)
    assert len(cal) == 20 and (y[cal] == 0).all() and (np.diff(cal) > 0).all()
    assert set(cal).isdisjoint(check) and len(cal) + len(check) == 50
    assert set(np.flatnonzero(y == 1)) <= set(check)            # every anomaly is checked
    np.testing.assert_array_equal(calibration_split(y, seed=3)[0], cal)   # seeded
    assert not np.array_equal(calibration_split(y, seed=4)[0], cal)
    with pytest.raises(DataError):
        calibration_split([0, 2, 1])
