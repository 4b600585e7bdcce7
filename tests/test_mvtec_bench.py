"""Tests of the MVTec-style experiments of notebooks 05 and 07 (``course_lib.experiments``)
and of the commands ``python -m course_lib.bench mvtec|mvtec-dictionary|mvtec-knn``, called
in-process on a tiny built texture set."""

import dataclasses
import json

import numpy as np
import pytest

from course_lib import experiments as E
from course_lib.checks import DataError
from course_lib.cli import bench as cli
from course_lib.config import set_seed
from course_lib.data.mvtec import load_mvtec_folder
from course_lib.data.textures import build_texture_dataset
from course_lib.features import load_backbone
from course_lib.images import augment_dihedral
from course_lib.map_metrics import evaluate_anomaly_maps, residual_maps

METRICS = ("image_auroc", "pixel_auroc", "aupro", "good_correct", "defect_correct")
FIELDS = METRICS + ("threshold", "n_train", "n_val", "n_test", "n_defective", "n_empty_masks",
                    "image_size", "category", "seconds", "profile", "seed")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A tiny MVTec-layout texture set (brick, 64 x 64): 20 good training, 6 good and 12
    defective test images."""
    root = tmp_path_factory.mktemp("textures") / "tex"
    return build_texture_dataset(root, size=64, n_train=20, n_test_good=6, n_test_defect=12,
                                 textures=("brick",))


@pytest.fixture(scope="module")
def tiny(tiny_root):
    return load_mvtec_folder(tiny_root, "brick", size=64, verbose=False)


@pytest.fixture
def no_real_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("COURSE_DATA", "offline")


def check_result(result, n_train=16, n_val=4, n_test=18, n_empty_masks=0):
    for key in FIELDS:
        assert key in result, f"missing {key} in {result}"
    for key in METRICS:
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert (result["n_train"], result["n_val"], result["n_test"]) == (n_train, n_val, n_test)
    assert result["n_defective"] == 12 and result["n_empty_masks"] == n_empty_masks
    assert result["image_size"] == 64
    assert result["category"] == "brick" and result["profile"] == "fast"


# --------------------------------------------------------------------------- helpers
def test_split_good_images_is_seeded_and_disjoint():
    x = np.random.default_rng(0).random((10, 16, 16))
    fit, val = E.split_good_images(x, seed=1)
    assert len(fit) == 8 and len(val) == 2 and fit.dtype == np.float32
    rows = [tuple(a.ravel()[:3]) for a in np.concatenate([fit, val])]
    assert len(set(rows)) == 10  # every image used exactly once
    again = E.split_good_images(x, seed=1)
    assert np.array_equal(again[1], val) and not np.array_equal(E.split_good_images(x)[1], val)
    assert [len(p) for p in E.split_good_images(x[:5])] == [3, 2]  # at least 2 to validate
    with pytest.raises(DataError, match="at least 4"):
        E.split_good_images(x[:3])
    with pytest.raises(DataError, match="fraction"):
        E.split_good_images(x, fraction=1.0)
    # every training sample is a flip / rotation of a training image (same sorted pixels)
    aug = augment_dihedral(x[:5], 12, seed=1)
    assert aug.shape == (12, 16, 16) and aug.dtype == np.float32
    assert all(any(np.allclose(np.sort(a.ravel()), np.sort(b.ravel())) for b in x[:5])
               for a in aug)


def _broken(data, what):
    if what == "all masks empty":
        return dataclasses.replace(data, masks_test=np.zeros_like(data.masks_test))
    keep = data.y_test == (1 if what == "no good test image" else 0)
    return dataclasses.replace(data, x_test=data.x_test[keep], y_test=data.y_test[keep],
                               masks_test=data.masks_test[keep],
                               defect_test=[d for d, k in zip(data.defect_test, keep) if k])


@pytest.mark.parametrize("what, message", [("all masks empty", "empty mask"),
                                           ("no good test image", "needs good"),
                                           ("no defective test image", "needs good")])
def test_data_are_checked_before_any_training(tiny, monkeypatch, what, message):
    def never(*args, **kwargs):
        raise AssertionError("trained or fitted before the data were checked")

    monkeypatch.setattr(E, "train_mvtec_autoencoder", never)
    monkeypatch.setattr(E, "load_backbone", never)
    monkeypatch.setattr(E, "FeatureDictionary", never)
    monkeypatch.setattr(E, "PatchMemoryBank", never)
    data = _broken(tiny, what)
    with pytest.raises(DataError, match=message):
        E.check_mvtec_data(data)
    with pytest.raises(DataError, match=message):
        E.mvtec_autoencoder_experiment(data, "l2", "fast")
    for method in ("dictionary", "knn"):
        with pytest.raises(DataError, match=message):
            E.mvtec_feature_experiment(data, method, "fast")
    assert E.check_mvtec_data(tiny) == 0  # the intact set passes
    partly = tiny.masks_test.copy()
    partly[-1] = 0  # one empty mask among many: counted, not an error
    assert E.check_mvtec_data(dataclasses.replace(tiny, masks_test=partly)) == 1


def test_options_are_checked_before_any_work(tiny, monkeypatch):
    monkeypatch.setattr(E, "load_backbone", lambda *a, **k: pytest.fail("backbone loaded"))
    with pytest.raises(DataError, match="loss"):
        E.mvtec_autoencoder_experiment(tiny, "l1", "fast")
    with pytest.raises(DataError, match="method"):
        E.mvtec_feature_experiment(tiny, "svm", "fast")
    with pytest.raises(DataError, match="coreset"):
        E.mvtec_feature_experiment(tiny, "knn", "fast", coreset="kmeans")
    with pytest.raises(DataError, match="fraction"):
        E.mvtec_feature_experiment(tiny, "knn", "fast", fraction=1.5)


def test_texture_inspection_finds_the_planted_defects(tiny):
    x_fit, x_val = E.split_good_images(tiny.x_train)
    maps = E.mvtec_baseline_maps(x_fit, x_val, tiny.x_test)
    assert set(maps) == {"variation model", "texture inspection"}
    for val_maps, test_maps in maps.values():
        assert val_maps.shape == x_val.shape and test_maps.shape == tiny.x_test.shape
    result = evaluate_anomaly_maps(*maps["texture inspection"], tiny.y_test, tiny.masks_test)
    assert result["pixel_auroc"] > 0.8 and result["image_auroc"] > 0.7, result


def test_feature_experiment_finds_the_planted_defects(tiny):
    backbone = load_backbone("random", verbose=False)
    masks = tiny.masks_test.copy()
    masks[-1] = 0  # a defective image with an empty mask is counted in the result
    data = dataclasses.replace(tiny, masks_test=masks)
    result, details = E.mvtec_feature_experiment(data, "knn", "fast", backbone=backbone,
                                                 coreset="random", fraction=0.5,
                                                 return_details=True)
    check_result(result, n_empty_masks=1)
    assert result["method"] == "knn" and result["coreset"] == "random"
    assert result["fraction"] == 0.5 and result["n_patches"] == 16 * 16 * 16
    assert len(details["model"].bank_) == result["n_patches"] // 2
    assert details["test_maps"].shape == tiny.x_test.shape
    assert result["pixel_auroc"] > 0.8, result


@pytest.mark.slow
def test_autoencoder_experiment_rebuilds_unseen_good_images_better(tiny):
    """Trained on good images only, the model reconstructs *held-apart* good images much
    better than the same network untrained, and its residual maps find the defects."""
    from course_lib.models import build_mvtec_autoencoder

    result, details = E.mvtec_autoencoder_experiment(tiny, "l2", "fast", return_details=True)
    check_result(result)
    assert result["loss"] == "l2" and result["epochs"] == 8 and result["samples"] == 480
    x_val = details["x_val"]
    assert details["val_maps"].shape == x_val.shape and np.all(details["val_maps"] >= 0)
    set_seed(0)
    untrained, _, _ = build_mvtec_autoencoder(x_val.shape[1:], "l2")
    before = float(residual_maps(untrained, x_val, "l2").mean())
    assert float(details["val_maps"].mean()) < 0.7 * before
    assert result["pixel_auroc"] > 0.6, result


# --------------------------------------------------------------------------- commands
@pytest.mark.slow
def test_cli_mvtec_prints_metrics_as_last_json_line(tiny_root, no_real_caches, capsys):
    code = cli.main(["mvtec", "--root", str(tiny_root), "--category", "brick",
                     "--loss", "ssim", "--profile", "fast"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    result = json.loads(out.out.strip().splitlines()[-1])
    check_result(result)
    assert result["loss"] == "ssim" and result["seconds"] > 0
    assert result["pixel_auroc"] > 0.6, result  # the planted defects are found


@pytest.mark.parametrize("command, extra", [("mvtec-dictionary", []),
                                            ("mvtec-knn", ["--coreset", "greedy"])])
def test_cli_feature_commands_print_metrics(tiny_root, no_real_caches, capsys, command, extra):
    code = cli.main([command, "--root", str(tiny_root), "--category", "brick",
                     "--profile", "fast", *extra])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    assert "Backbone: random-conv" in out.out  # offline: the stand-in, and it says so
    result = json.loads(out.out.strip().splitlines()[-1])
    check_result(result)
    assert result["backbone"] == "random-conv"
    assert result["method"] == ("dictionary" if command == "mvtec-dictionary" else "knn")
    assert result["coreset"] == ("greedy" if command == "mvtec-knn" else None)
    assert result["pixel_auroc"] > 0.7, result
