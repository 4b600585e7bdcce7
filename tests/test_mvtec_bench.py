"""Tests of notebook 05's experiment: ``python -m course_lib.bench mvtec`` and its helpers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from course_lib.bench import (augment_dihedral, evaluate_anomaly_maps, mvtec_baseline_maps,
                              residual_maps, split_good_images, train_mvtec_autoencoder)
from course_lib.mvtec import build_texture_dataset, load_mvtec_folder

FIELDS = ("image_auroc", "pixel_auroc", "aupro", "good_correct", "defect_correct", "n_train",
          "n_test", "seconds", "profile")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A tiny MVTec-layout texture set (brick, 64 x 64): 20 good training, 6 good and 12
    defective test images."""
    root = tmp_path_factory.mktemp("textures") / "tex"
    return build_texture_dataset(root, size=64, n_train=20, n_test_good=6, n_test_defect=12,
                                 textures=("brick",))


def _run_cli(*args):
    env = dict(os.environ, COURSE_DATA="offline", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "course_lib.bench", "mvtec", *args],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("loss", ["l2", "ssim"])
def test_cli_prints_metrics_as_last_json_line(tiny_root, loss):
    out = _run_cli("--root", str(tiny_root), "--category", "brick", "--loss", loss,
                   "--profile", "fast")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in FIELDS:
        assert key in result, f"missing {key} in {result}"
    for key in ("image_auroc", "pixel_auroc", "aupro", "good_correct", "defect_correct"):
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert result["n_train"] == 16 and result["n_val"] == 4 and result["n_test"] == 18
    assert result["profile"] == "fast" and result["loss"] == loss and result["seconds"] > 0
    # the planted defects are well above chance at the pixel level for both losses
    assert result["pixel_auroc"] > 0.6, result


def test_cli_missing_folder_says_what_to_do(tmp_path):
    out = _run_cli("--root", str(tmp_path / "nowhere"), "--category", "brick", "--profile",
                   "fast")
    assert out.returncode == 2
    assert "not found" in out.stderr and "build_texture_dataset" in out.stderr


@pytest.mark.parametrize("loss", ["l2", "ssim"])
def test_training_rebuilds_unseen_good_images_better(tiny_root, loss):
    """Trained on good images, the model reconstructs *held-apart* good images much better
    than an untrained one (lower mean residual), for both losses."""
    data = load_mvtec_folder(tiny_root, "brick", size=64, verbose=False)
    x_fit, x_val = split_good_images(data.x_train)
    residual = {}
    for epochs in (0, None):  # None: the fast profile's epochs
        ae, _ = train_mvtec_autoencoder(x_fit, loss, "fast", epochs=epochs)
        maps = residual_maps(ae, x_val, loss)
        assert maps.shape == x_val.shape and np.all(maps >= 0)
        residual[epochs] = float(maps.mean())
    assert residual[None] < 0.7 * residual[0], residual


def test_texture_inspection_finds_the_planted_defects(tiny_root):
    data = load_mvtec_folder(tiny_root, "brick", size=64, verbose=False)
    x_fit, x_val = split_good_images(data.x_train)
    maps = mvtec_baseline_maps(x_fit, x_val, data.x_test)
    result = evaluate_anomaly_maps(*maps["texture inspection"], data.y_test, data.masks_test)
    assert result["pixel_auroc"] > 0.8 and result["image_auroc"] > 0.7, result


def test_helpers_validate_inputs():
    x = np.random.default_rng(0).random((5, 16, 16))
    aug = augment_dihedral(x, 12, seed=1)
    assert aug.shape == (12, 16, 16) and aug.dtype == np.float32
    # every augmented sample is a flip / rotation of a training image (same sorted pixels)
    assert all(any(np.allclose(np.sort(a.ravel()), np.sort(b.ravel())) for b in x) for a in aug)
    fit, val = split_good_images(x)
    assert len(fit) == 3 and len(val) == 2
    with pytest.raises(ValueError, match="at least 4"):
        split_good_images(x[:3])
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        augment_dihedral(bad, 3)
    with pytest.raises(ValueError, match="loss must be one of"):
        residual_maps(None, x, "l1")
