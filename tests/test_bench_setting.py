"""``bench mvtec*`` ``--setting``: the paper's two settings on the command line
(:func:`course_lib.cli.bench_images.whole_images`, :func:`course_lib.cli.bench_images.load_category`).

Whole images ("whole", MVTec AD's objects such as bottle) are loaded at the files' own scale,
longest side the profile's ``object_side``; textures and surfaces ("patches") at the profile's
``mvtec_scale`` and ``mvtec_max_side``.  A tiny bottle-like folder of 300 x 300 grey PNGs;
in-process, the experiments replaced by stand-ins that record what they were given (nothing
is trained here)."""

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from course_lib.cli import bench, bench_images
from course_lib.config import get_profile

#: The four commands that load an MVTec-layout folder, with their required options.
COMMANDS = {"mvtec": [], "mvtec-baseline": ["--method", "variation"],
            "mvtec-knn": ["--backbone", "random"], "mvtec-dictionary": ["--backbone", "random"]}
SIDE = 300


def _png(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def make_category(root: Path, category: str) -> Path:
    """``root/category`` in MVTec layout: 4 good training images, 1 good and 2 cracked test
    images (a dark bar, its mask 255), all 300 x 300 grey."""
    rng = np.random.default_rng(0)
    cat = root / category

    def photo():
        return 100 + rng.integers(0, 40, (SIDE, SIDE))

    for i in range(4):
        _png(cat / "train" / "good" / f"{i:03d}.png", photo())
    _png(cat / "test" / "good" / "000.png", photo())
    for i in range(2):
        img, mask = photo(), np.zeros((SIDE, SIDE), np.uint8)
        img[100 + 40 * i:120 + 40 * i, 50:250] = 5
        mask[100 + 40 * i:120 + 40 * i, 50:250] = 255
        _png(cat / "test" / "crack" / f"{i:03d}.png", img)
        _png(cat / "ground_truth" / "crack" / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench_setting")
    make_category(folder, "bottle")
    make_category(folder, "widget")          # not an MVTec AD object: patches by default
    return folder


def namespace(root, category="bottle", setting="auto", profile="fast", **options):
    values = {"scale": None, "max_side": None, "patch_size": None, "stride": None, **options}
    return Namespace(root=root, category=category, setting=setting, profile=profile, **values)


# --------------------------------------------------------------------------- the parser
@pytest.mark.parametrize("command", COMMANDS)
def test_setting_option_of_the_mvtec_commands(root, command):
    base = [command, "--root", str(root), "--category", "bottle", *COMMANDS[command]]
    parser = bench.build_parser()
    assert parser.parse_args(base).setting == "auto"
    for setting in ("auto", "whole", "patches"):
        assert parser.parse_args(base + ["--setting", setting]).setting == setting


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_setting_is_a_usage_error(root, command, capsys):
    argv = [command, "--root", str(root), "--category", "bottle", *COMMANDS[command],
            "--setting", "object"]
    assert bench.main(argv) == 2
    captured = capsys.readouterr()
    assert "--setting" in captured.err and "'object'" in captured.err
    assert "auto" in captured.err and "whole" in captured.err and "patches" in captured.err
    assert "Traceback" not in captured.err + captured.out and captured.out == ""


def test_whole_images_for_objects_by_default_or_when_asked():
    def whole(category, setting="auto"):
        return bench_images.whole_images(Namespace(category=category, setting=setting))

    assert whole("bottle") and whole("screw") and whole("kolektor", "whole")
    assert not whole("kolektor") and not whole("carpet") and not whole("brick")
    assert not whole("bottle", "patches") and whole("bottle", "whole")
    assert bench_images.whole_images(Namespace(category="bottle"))    # no option: auto


# --------------------------------------------------------------------------- loading
def shapes(data):
    return {img.shape for img in data.x_train + data.x_test} | {m.shape for m in
                                                                 data.masks_test}


@pytest.mark.parametrize("profile", ["fast", "workshop"])
def test_load_category_whole_images_at_the_profiles_object_side(root, profile, capsys):
    prof = get_profile(profile)
    assert SIDE * prof.mvtec_scale != prof.object_side     # the two settings differ here
    whole = bench_images.load_category(namespace(root, "bottle", "auto", profile))
    assert shapes(whole) == {(prof.object_side, prof.object_side)}
    assert whole.scale == pytest.approx(prof.object_side / SIDE)
    assert all(m.any() for m in whole.masks_test[1:]) and not whole.masks_test[0].any()
    side = round(SIDE * prof.mvtec_scale)
    for category, setting in (("bottle", "patches"), ("widget", "auto")):
        patches = bench_images.load_category(namespace(root, category, setting, profile))
        assert shapes(patches) == {(side, side)}, (category, setting)
    forced = bench_images.load_category(namespace(root, "widget", "whole", profile))
    assert shapes(forced) == {(prof.object_side, prof.object_side)}
    assert "bottle" in capsys.readouterr().err             # what was loaded, on stderr


def test_load_category_whole_images_honour_scale_and_max_side(root):
    assert shapes(bench_images.load_category(namespace(root, max_side=64))) == {(64, 64)}
    assert shapes(bench_images.load_category(namespace(root, scale=0.2))) == {(60, 60)}
    assert shapes(bench_images.load_category(namespace(root, setting="patches", max_side=64))) == {
        (64, 64)}


# --------------------------------------------------------------------------- end to end
@pytest.fixture
def recorded(monkeypatch):
    """The MVTec experiments replaced by stand-ins that return what they were given."""
    from course_lib.experiments import mvtec as E

    def record(data, **kwargs):
        return {"sides": sorted({max(img.shape) for img in data.x_train + data.x_test}),
                "setting": kwargs.get("setting")}

    monkeypatch.setattr(E, "mvtec_autoencoder_experiment", record)
    monkeypatch.setattr(E, "mvtec_baseline_experiment", record)
    monkeypatch.setattr(E, "mvtec_feature_experiment", record)


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_load_and_pass_the_setting(root, command, recorded, capsys):
    runs = {}
    for setting in ("auto", "whole", "patches"):
        argv = [command, "--root", str(root), "--category", "bottle", "--profile", "fast",
                *COMMANDS[command], "--setting", setting]
        assert bench.main(argv) == 0, capsys.readouterr().err
        runs[setting] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    fast = get_profile("fast")
    assert runs["auto"]["sides"] == runs["whole"]["sides"] == [fast.object_side]
    assert runs["patches"]["sides"] == [round(SIDE * fast.mvtec_scale)]
    if command == "mvtec":                                  # the autoencoder's two settings
        assert [runs[s]["setting"] for s in runs] == ["whole", "whole", "patches"]


def test_ssim_constant_study_is_patches_only(root, monkeypatch, capsys):
    from course_lib.experiments import mvtec as E

    seen = []
    monkeypatch.setattr(E, "ssim_constant_study",
                        lambda data, **kwargs: seen.append(data.x_train[0].shape) or [{}])
    base = ["mvtec-ssim-k2", "--root", str(root), "--category", "bottle", "--profile", "fast"]
    assert bench.main(base) == 0                         # patches, at the profile's scale
    assert seen == [(150, 150)]
    assert bench.main(base + ["--setting", "whole"]) == 2   # no whole-image study: refused
    assert "--setting" in capsys.readouterr().err and len(seen) == 1


@pytest.mark.parametrize("extra", [["--patch-size", "64"], ["--stride", "16"]])
def test_patch_options_with_whole_images_are_a_usage_error(root, extra, capsys):
    argv = ["mvtec", "--root", str(root), "--category", "bottle", "--profile", "fast", *extra]
    assert bench.main(argv) == 2
    captured = capsys.readouterr()
    assert "--setting patches" in captured.err and "Traceback" not in captured.err


def test_ssim_constant_study_checks_k2_before_training(monkeypatch):
    from course_lib.checks import DataError
    from course_lib.experiments import mvtec as experiments

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking k2")

    monkeypatch.setattr(experiments, "train_mvtec_autoencoder", no_training)
    with pytest.raises(DataError, match="k2"):
        experiments.ssim_constant_study(object(), k2_values=[0.1, 0.00001], profile="fast")


def test_mvtec_save_leaves_a_detector_that_course_score_runs(root, tmp_path, monkeypatch,
                                                             capsys):
    """``--save`` (training replaced by an untrained model): refused before training when the
    validation images cannot give the alpha; else a detector of the run's setting, which
    ``course-score`` runs on the category's test folder.  (The patch setting's detector:
    tests/test_detector.py.)"""
    from types import SimpleNamespace

    from course_lib.cli import score
    from course_lib.detector import load_detector
    from course_lib.experiments import mvtec as E
    from course_lib.models import build_object_autoencoder

    stub = SimpleNamespace(history={"loss": [0.1]})
    monkeypatch.setattr(E, "train_object_autoencoder", lambda images, loss, side, epochs, **k:
                        (build_object_autoencoder(side, 1, loss)[0], stub))
    target = tmp_path / "d.keras"
    argv = ["mvtec", "--root", str(root), "--category", "bottle", "--profile", "fast",
            "--save", str(target)]
    assert bench.main(argv) == 1                 # 2 validation images cannot give alpha 0.05
    assert "needs at least 19" in capsys.readouterr().err and not target.exists()
    assert bench.main(argv + ["--alpha", "0.5"]) == 0
    captured = capsys.readouterr()
    assert "saved detector" in captured.err
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["detector_n_calibration"] == 2 and result["detector_n_checked"] == 3
    detector = load_detector(target)
    assert detector.preprocessing["setting"] == "whole" and detector.n_calibration == 2
    assert score.main([str(target), str(root / "bottle" / "test"),
                       "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "Scored 3 images" in out and "Labelled anomalous: " in out
