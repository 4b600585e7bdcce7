"""Score new data with a detector saved by a notebook (or by ``bench ... --save``).

    course-score DETECTOR INPUT [--out DIR] [--no-maps] [--profile P]
    (also: python -m course_lib.score ...)

DETECTOR is a ``.keras`` file saved by :func:`course_lib.detector.save_detector`, or the name
of one a notebook saved (``course-score --list`` shows them).  INPUT is what the detector
scores: a folder of images (searched with its subfolders, masks in ``ground_truth/`` skipped;
or one image file) for an image or digit detector, a CSV of transactions for notebook 04's,
an ECG file for notebook 09's.

It writes, in DIR (default ``scores-<INPUT's name>``):

- ``scores.csv``: ``name, score, flagged`` (1 = above the detector's threshold), and
  ``label`` when the input says what is normal (a ``Class`` column, ECG labels, or image
  subfolders ``good/`` beside defect folders, as in MVTec AD's ``test/``);
- ``maps/``: for images, each anomaly map over its image (PNG, the same relative names);
- ``summary.txt``: the summary it prints: how many were flagged, at which alpha, and with
  labels the false-alarm rate and the recall.

Exit codes as every course tool: 0 done, 1 bad data (the message says what to do), 2 a wrong
command line, 130 interrupted.  Nothing is written until every input has been read and scored
(a bad file stops it with its name); each output file is written atomically.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

from course_lib.checks import DataError
from course_lib.cli.common import (ArgumentParser, UsageError, check_writable_folder,
                                   positive_int, profile_name, quiet_tensorflow, quote_path,
                                   run_command)

PROG = "course-score"
#: What each kind of detector (``course_lib.detector.DETECTOR_KINDS``) scores, in a message.
INPUTS = {"digits": "28 x 28 grey digit images", "images": "images",
          "transactions": "credit-card transactions (a CSV with the columns Time, V1..V28, "
                          "Amount)",
          "beats": "heartbeats (an ECG file, one beat per line)"}
#: Images read, scored and mapped per step of the progress bar (digits: many more, they are
#: small and one model call costs more than scoring them).
CHUNK, DIGIT_CHUNK = 16, 1024


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG, description="Score new data with a detector saved by a notebook: a scores "
                               "CSV, anomaly maps for images and a summary.")
    parser.add_argument("detector", nargs="?", help="a .keras file, or the name of a detector "
                                                    "a notebook saved (see --list)")
    parser.add_argument("input", nargs="?", help="a folder of images (or one image), a CSV of "
                                                 "transactions or an ECG file")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for scores.csv, maps/ and summary.txt "
                             "(default: scores-<INPUT's name>)")
    parser.add_argument("--no-maps", action="store_true", help="do not write anomaly maps")
    parser.add_argument("--profile", type=profile_name, default=None,
                        help="where to look up a detector given by name (default: "
                             "$COURSE_PROFILE or workshop)")
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="rows scored at once (transactions, beats)")
    parser.add_argument("--list", action="store_true",
                        help="list the detectors the notebooks saved, and exit")
    return parser


# --------------------------------------------------------------------------- finding things
def saved_detectors(profile=None) -> list:
    """The ``.keras`` files the notebooks saved for ``profile``."""
    from course_lib.config import cache_dir, get_profile

    folder = cache_dir() / "detectors" / get_profile(profile).name
    return sorted(folder.glob("*.keras")) if folder.is_dir() else []


def resolve_detector(text: str, profile=None) -> Path:
    """A detector file: the path ``text``, or the name of one the notebooks saved."""
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"DETECTOR {quote_path(text)} is a folder, not a .keras file")
    if path.is_file():
        return path
    saved = {p.stem: p for p in saved_detectors(profile)}
    if text in saved:
        return saved[text]
    names = ", ".join(saved) or "none yet (run notebook 03, 04, 05 or 09 to the end)"
    raise UsageError(f"detector {quote_path(text)} not found: give a .keras file or the name "
                     f"of a saved one ({names})")


def peek_detector(path: Path) -> dict:
    """The detector's configuration (``kind``, ``preprocessing``, ``threshold``, ...), read from
    the ``.keras`` file's ``config.json`` without Keras: a wrong file or a wrong kind of input
    is reported before TensorFlow's start-up."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not a .keras file (not a zip archive): it is damaged, or "
                        f"not a detector. Save it again from its notebook.") from None
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path} holds no readable config.json ({type(exc).__name__}): it "
                        f"is damaged, or not a Keras file. Save it again from its "
                        f"notebook.") from None
    inner = config.get("config") if isinstance(config, dict) else None
    if config.get("class_name") != "AnomalyDetector" or not isinstance(inner, dict) \
            or inner.get("kind") not in INPUTS:
        raise DataError(f"{path} holds a Keras model ({config.get('class_name')}) but not a "
                        f"course detector: wrap it with one of course_lib.detector's *_detector "
                        f"functions, calibrate it and save it with save_detector.")
    if inner.get("threshold") is None:
        raise DataError(f"{path} has no threshold: calibrate it in its notebook and save it "
                        f"again.")
    return inner


def list_images(folder: Path) -> list:
    """Image files under ``folder`` (subfolders too; hidden ones and MVTec's ``ground_truth``
    masks skipped), sorted by their relative path."""
    from course_lib.data.image_files import IMAGE_EXTENSIONS

    def skipped(parts):
        return any(part.startswith(".") or part == "ground_truth" for part in parts)

    found = [p for p in folder.rglob("*") if p.is_file()
             and p.suffix.lower() in IMAGE_EXTENSIONS
             and not skipped(p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def folder_labels(names: list):
    """Labels from MVTec-style subfolders: ``good/...`` -> 0, any other subfolder -> 1;
    ``None`` unless there is a ``good`` folder and another one beside it."""
    tops = [Path(n).parts[0] if len(Path(n).parts) > 1 else None for n in names]
    if "good" not in tops or None in tops or len(set(tops)) < 2:
        return None
    return np.array([0 if t == "good" else 1 for t in tops])


# --------------------------------------------------------------------------- scoring
def _progress(total: int, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="scoring", unit=unit, file=sys.stderr, leave=False,
                disable=None)


def score_images(detector, input_path: Path, want_maps: bool):
    """``(names, scores, labels, pictures)``: every image read, scored (and mapped)."""
    from course_lib.plots import anomaly_overlay

    if input_path.is_dir():
        paths = list_images(input_path)
        if not paths:
            raise DataError(f"{input_path} holds no images (looked for .png, .jpg, .jpeg, "
                            f".bmp, .tif, .tiff files, in its subfolders too).")
        names = [p.relative_to(input_path).as_posix() for p in paths]
    else:
        paths, names = [input_path], [input_path.name]
    t = detector.threshold
    low, high = (0.0, 1.0) if detector.kind == "digits" else (t / 2, t)
    scores, pictures = [], []
    chunk = DIGIT_CHUNK if detector.kind == "digits" else CHUNK
    with _progress(len(paths), "image") as bar:
        for start in range(0, len(paths), chunk):
            images = [detector.read_image(p) for p in paths[start:start + chunk]]
            if detector.kind == "digits":        # score: the mean error, maps only to look at
                scores.extend(detector.score(np.stack(images)))
                maps = detector.anomaly_maps(images) if want_maps else []
            else:                                # score: the map's maximum
                maps = detector.anomaly_maps(images)
                scores.extend(float(m.max()) for m in maps)
            pictures += [anomaly_overlay(img, m, low, high) for img, m in zip(images, maps)
                         if want_maps]
            bar.update(len(images))
    return names, np.asarray(scores, dtype=np.float64), folder_labels(names), pictures


def read_table(config: dict, input_path: Path):
    """``(x, names, labels)`` of a CSV of transactions or an ECG file, read and checked before
    Keras loads (names: row or beat numbers; labels 1 = anomaly, or ``None``)."""
    if config["kind"] == "transactions":
        from course_lib.data.creditcard import read_creditcard_csv

        frame = read_creditcard_csv(input_path, labels="optional")
        labels = frame["Class"].to_numpy() if "Class" in frame.columns else None
        return frame, [f"row {i + 1}" for i in range(len(frame))], labels
    from course_lib.data.ecg import NORMAL_LABEL, read_beats_to_score

    x, y = read_beats_to_score(input_path, config["preprocessing"]["length"])
    labels = None if y is None else (y != NORMAL_LABEL).astype(int)
    return x, [f"beat {i + 1}" for i in range(len(x))], labels


def score_table(detector, x, batch_size: int) -> np.ndarray:
    """Scores of the rows of ``x`` (a DataFrame or an array), a batch at a time."""
    scores = []
    with _progress(len(x), "row") as bar:
        for start in range(0, len(x), batch_size):
            part = x.iloc[start:start + batch_size] if hasattr(x, "iloc") else \
                x[start:start + batch_size]
            scores.append(detector.score(part, batch_size=batch_size))
            bar.update(len(part))
    return np.concatenate(scores)


def check_input_kind(kind: str, input_path: Path) -> None:
    """A clear error when INPUT is not what a detector of ``kind`` scores."""
    from course_lib.data.image_files import IMAGE_EXTENSIONS

    wants = INPUTS[kind]
    if kind in ("digits", "images"):
        if input_path.is_file() and input_path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"this detector scores {wants}: give a folder of images (or one "
                            f"image file); {input_path} is not an image file.")
    elif input_path.is_dir():
        raise DataError(f"this detector scores {wants}; {input_path} is a folder: give the "
                        f"file.")


# --------------------------------------------------------------------------- writing
def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_scores(path: Path, names, scores, flagged, labels) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "score", "flagged"] + ([] if labels is None else ["label"]))
    for i, (name, score, flag) in enumerate(zip(names, scores, flagged)):
        writer.writerow([name, repr(float(score)), int(flag)]
                        + ([] if labels is None else [int(labels[i])]))
    _atomic_write(path, buffer.getvalue().encode("utf-8"))


def write_maps(folder: Path, names, pictures) -> None:
    from PIL import Image

    for name, picture in zip(names, pictures):
        target = folder / Path(name).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        picture = np.kron(picture, np.ones((4, 4, 1), np.uint8)) if max(picture.shape) < 64 \
            else picture                                  # 28 x 28 digits: 4x larger
        Image.fromarray(picture).save(buffer, format="PNG")
        _atomic_write(target, buffer.getvalue())


def summary(detector, input_path: Path, names, scores, flagged, labels, seconds: float) -> str:
    n, k = len(scores), int(flagged.sum())
    lines = [detector.describe(), "",
             f"Scored {n:,} {'image' if detector.kind in ('digits', 'images') else 'row'}"
             f"{'s' if n != 1 else ''} of {input_path} in {seconds:.1f} s.",
             f"Flagged {k:,} of {n:,} ({k / n:.1%}) with score > {detector.threshold:.6g}. On "
             f"normal data like the {detector.n_calibration} calibration samples, at most "
             f"{detector.alpha:.0%} are flagged on average."]
    if labels is not None:
        normal, anomalous = labels == 0, labels == 1
        if normal.any():
            lines.append(f"  Labelled normal: {int(flagged[normal].sum()):,} of "
                         f"{int(normal.sum()):,} flagged (false-alarm rate "
                         f"{flagged[normal].mean():.1%}; the threshold aims at most "
                         f"{detector.alpha:.0%}).")
        if anomalous.any():
            lines.append(f"  Labelled anomalous: {int(flagged[anomalous].sum()):,} of "
                         f"{int(anomalous.sum()):,} flagged (recall "
                         f"{flagged[anomalous].mean():.1%}).")
    top = np.argsort(-scores, kind="stable")[:5]
    lines.append("Highest scores: " + ", ".join(f"{names[i]} {scores[i]:.4g}" for i in top))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        saved = saved_detectors(args.profile)
        print("\n".join(str(p) for p in saved) if saved else
              "No saved detectors yet: run notebook 03, 04, 05 or 09 to its end.")
        return 0
    if args.detector is None or args.input is None:
        raise UsageError("give DETECTOR and INPUT (or --list)")
    input_path = Path(args.input)
    if not input_path.exists():
        raise UsageError(f"INPUT {quote_path(args.input)} not found")
    detector_path = resolve_detector(args.detector, args.profile)
    out = args.out or Path(f"scores-{input_path.name.split('.')[0] or 'input'}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {quote_path(out)} is a file, not a folder")
    check_writable_folder(out, "--out")
    start = time.perf_counter()
    config = peek_detector(detector_path)            # no Keras yet: mistakes are found fast
    check_input_kind(config["kind"], input_path)
    images = config["kind"] in ("digits", "images")
    if not images:
        x, names, labels = read_table(config, input_path)
    with quiet_tensorflow():                        # Keras loads, and the model
        from course_lib.detector import load_detector

        import keras

        detector = load_detector(detector_path)
        keras.ops.convert_to_tensor(np.zeros(1))   # the backend's devices start here, quietly
    pictures = []
    if images:
        names, scores, labels, pictures = score_images(detector, input_path, not args.no_maps)
    else:
        scores = score_table(detector, x, args.batch_size)
    flagged = detector.flag(scores)
    text = summary(detector, input_path, names, scores, flagged, labels,
                   time.perf_counter() - start)
    out.mkdir(parents=True, exist_ok=True)
    write_scores(out / "scores.csv", names, scores, flagged, labels)
    if pictures:
        write_maps(out / "maps", names, pictures)
    wrote = f"Wrote {out / 'scores.csv'}" + (f" and {len(pictures)} anomaly maps in "
                                             f"{out / 'maps'}" if pictures else "")
    text += "\n" + wrote + "."
    _atomic_write(out / "summary.txt", (text + "\n").encode("utf-8"))
    print(text)
    return 0


def main(argv=None) -> int:
    return run_command(PROG, _run, argv)


if __name__ == "__main__":
    sys.exit(main())

