"""``--save DETECTOR [--alpha A]`` of the benchmark commands: a run that leaves a detector behind.

The options (:func:`save_arguments`), the checks made before any training (:func:`check_save`:
the file can be written, enough normal samples for the split-conformal threshold at ``A``) and
the last step (:func:`keep_detector`: calibrate, check on other samples, save, report).
Shared by :mod:`course_lib.cli.bench` and :mod:`course_lib.cli.bench_images`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, quote
from course_lib.cli.common import check_writable_folder, fraction, output_file


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


def detector_file(text: str) -> Path:
    """argparse type: a ``.keras`` file to write a detector to."""
    path = output_file(text)
    if path.suffix != ".keras":
        raise argparse.ArgumentTypeError(f"a detector file ends in .keras, got {quote(text)}")
    return path


def save_arguments(parser) -> None:
    """Add ``--save`` and ``--alpha`` to a command's parser."""
    parser.add_argument("--save", type=detector_file, default=None, metavar="DETECTOR",
                        help="also save the trained detector (model, preprocessing, score "
                             "and a split-conformal threshold) to this .keras file, for "
                             "course-score")
    parser.add_argument("--alpha", type=fraction(allow_one=False), default=0.05,
                        help="with --save: the false-alarm rate the threshold guarantees on "
                             "normal data (default %(default)s)")
