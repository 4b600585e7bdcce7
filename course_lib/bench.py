"""Benchmarks and held-apart evaluations, from the command line.

    python -m course_lib.bench notebooks [--profiles fast workshop] [--output docs/benchmarks.md]
                                         [--readme README.md]
        Run every notebook in each profile; record wall seconds and the kernel's peak memory.

    python -m course_lib.bench mnist-one-class --train TRAIN.npz --test TEST.npz --digit D [D ...]
                                               [--profile P] [--seed S]
        Train the course's autoencoder on digit D of TRAIN only, score every TEST image by
        reconstruction error, compare with a PCA reconstruction baseline on the same split.
        The last line printed is one JSON object (auroc, baseline_pca_auroc, seconds, ...).
        Taught in notebook 03.

Both run offline.  ``.npz`` files hold ``x`` (uint8, (N, 28, 28)) and ``y`` (labels).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

from course_lib.config import Profile, get_profile

#: The one-class autoencoder: notebook 01's dense autoencoder made deeper (784-256-64-32-64-256-784),
#: trained with mean squared error.  Chosen on a held-apart split of the MNIST *training* set
#: (never on a test set): it beat the convolutional variants there and trains faster on a CPU.
ONE_CLASS_HIDDEN = (256, 64)
ONE_CLASS_CODE_SIZE = 32
#: The PCA baseline keeps as many components as the autoencoder's code.
PCA_COMPONENTS = ONE_CLASS_CODE_SIZE


# --------------------------------------------------------------------------- mnist one-class
def build_one_class_autoencoder():
    """The autoencoder used for one-class MNIST (see ``ONE_CLASS_*``). Taught in notebook 03."""
    from course_lib.models import build_dense_autoencoder

    return build_dense_autoencoder(code_size=ONE_CLASS_CODE_SIZE, hidden=ONE_CLASS_HIDDEN,
                                   loss="mse", learning_rate=1e-3)


def train_one_class(x_normal, profile: Profile, seed: int = 0):
    """Train the one-class autoencoder on normal images only (uint8 (N, 28, 28)).

    Uses ``profile.one_class_epochs`` epochs with early stopping on a 10% validation split of
    the normal images.  Returns the trained autoencoder.  Taught in notebook 03.
    """
    import keras

    from course_lib.config import set_seed
    from course_lib.data import flatten

    set_seed(seed)
    x = flatten(x_normal)
    ae, _, _ = build_one_class_autoencoder()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5,
                                         restore_best_weights=True)
    ae.fit(x, x, epochs=profile.one_class_epochs, batch_size=profile.batch_size,
           validation_split=0.1, callbacks=[stop], verbose=0)
    return ae


def mnist_one_class(x_train, y_train, x_test, y_test, digit: int,
                    profile: Profile | str | None = None, seed: int = 0) -> dict:
    """One-class MNIST: normal = ``digit``, anomaly = every other digit.

    Returns a dict with ``auroc`` (autoencoder), ``baseline_pca_auroc``, ``auprc``,
    ``seconds``, ``profile``, ``n_train``, ``n_test``, ``digit``.  Taught in notebook 03.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    from course_lib.baselines import PCAReconstruction
    from course_lib.data import DataError, check_labels, flatten
    from course_lib.metrics import anomaly_scores

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    y_train = check_labels(y_train, len(x_train), "y_train")
    y_test = check_labels(y_test, len(x_test), "y_test")
    x_normal = x_train[y_train == digit]
    if len(x_normal) < 20:
        raise DataError(f"only {len(x_normal)} training images of digit {digit}; need at least "
                        f"20 to train on.")
    is_anomaly = (y_test != digit).astype(int)
    if is_anomaly.min() == is_anomaly.max():
        raise DataError(f"the test set must hold both digit {digit} and other digits to "
                        f"compute an AUROC.")
    start = time.perf_counter()
    ae = train_one_class(x_normal, prof, seed=seed)
    scores = anomaly_scores(ae, flatten(x_test))
    pca = PCAReconstruction(n_components=min(PCA_COMPONENTS, len(x_normal) - 1)).fit(
        flatten(x_normal))
    pca_scores = pca.score_samples(flatten(x_test))
    return {
        "digit": int(digit),
        "auroc": round(float(roc_auc_score(is_anomaly, scores)), 4),
        "auprc": round(float(average_precision_score(is_anomaly, scores)), 4),
        "baseline_pca_auroc": round(float(roc_auc_score(is_anomaly, pca_scores)), 4),
        "seconds": round(time.perf_counter() - start, 1),
        "profile": prof.name,
        "n_train": int(len(x_normal)),
        "n_test": int(len(x_test)),
    }


def _cmd_mnist_one_class(args) -> int:
    from course_lib.data import load_npz_images

    x_train, y_train = load_npz_images(args.train)
    x_test, y_test = load_npz_images(args.test)
    results = []
    for digit in args.digit:
        results.append(mnist_one_class(x_train, y_train, x_test, y_test, digit,
                                       profile=args.profile, seed=args.seed))
        print(json.dumps(results[-1]), flush=True)
    if len(results) > 1:  # several digits: the last line summarises them
        print(json.dumps({
            "digits": [r["digit"] for r in results],
            "mean_auroc": round(float(np.mean([r["auroc"] for r in results])), 4),
            "mean_baseline_pca_auroc": round(float(np.mean(
                [r["baseline_pca_auroc"] for r in results])), 4),
            "seconds": round(sum(r["seconds"] for r in results), 1),
            "profile": results[0]["profile"], "n_test": results[0]["n_test"]}))
    return 0


# --------------------------------------------------------------------------- notebooks
def machine_info() -> dict:
    """CPU, cores, Python and library versions, for the benchmark table."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"date": _dt.date.today().isoformat(), "cpu": cpu,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "python": platform.python_version()}
    for pkg in ("keras", "tensorflow"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = "-"
    return info


def benchmark_table(results: dict, info: dict) -> str:
    """Markdown: one row per notebook, seconds and peak memory per profile."""
    profiles = list(results)
    head = "| notebook | " + " | ".join(f"{p}: s | {p}: peak MB" for p in profiles) + " |"
    sep = "|---|" + "---:|---:|" * len(profiles)
    names = [r.notebook for r in next(iter(results.values()))]
    rows = []
    for i, name in enumerate(names):
        cells = []
        for p in profiles:
            r = results[p][i]
            peak = "n/a" if r.peak_mb is None else f"{r.peak_mb:.0f}"
            sec = f"{r.seconds:.0f}" + ("" if r.status == "ok" else " (failed)")
            cells.append(f"{sec} | {peak}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = " | ".join(
        f"**{sum(r.seconds for r in results[p]):.0f}** | "
        f"**{max((r.peak_mb or 0) for r in results[p]):.0f}** (max)" for p in profiles)
    rows.append(f"| **whole course** | {totals} |")
    meta = (f"Measured {info['date']} with `python -m course_lib.bench notebooks` on "
            f"{info['cores']} CPU cores ({info['cpu']}), Python {info['python']}, "
            f"Keras {info['keras']}, TensorFlow {info['tensorflow']}, embedded (offline) data. "
            "Seconds: wall time from kernel start to the last cell. Peak MB: the kernel's peak "
            "resident memory (ru_maxrss).")
    return "\n".join([meta, "", head, sep] + rows)


def _replace_between_markers(path: Path, text: str) -> bool:
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    content = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        return False
    new = pattern.sub(lambda _: f"{start}\n{text}\n{end}", content)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
    return True


def _cmd_notebooks(args) -> int:
    from course_lib.runner import execute_notebook, list_notebooks

    paths = [Path(p) for p in args.notebook] or list_notebooks()
    results = {}
    for prof in args.profiles:
        name = get_profile(prof).name
        results[name] = []
        for p in paths:
            r = execute_notebook(p, profile=name, data=args.data)
            print(f"{name:9s} {p.name:45s} {r.status:6s} {r.seconds:7.1f} s "
                  f"{r.peak_mb if r.peak_mb is not None else 'n/a'} MB", flush=True)
            results[name].append(r)
    table = benchmark_table(results, machine_info())
    print("\n" + table)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_text("# Benchmarks\n\nWritten by `make bench` "
                       "(`python -m course_lib.bench notebooks`); do not edit by hand.\n\n"
                       + table + "\n", encoding="utf-8")
        os.replace(tmp, out)
    if args.readme and not _replace_between_markers(Path(args.readme), table):
        print(f"note: {args.readme} has no <!-- bench:start --> / <!-- bench:end --> markers; "
              "table not inserted", file=sys.stderr)
    ok = all(r.status == "ok" for rs in results.values() for r in rs)
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.bench",
                                     description="Course benchmarks (see the module docstring).")
    sub = parser.add_subparsers(dest="command", required=True)

    nb = sub.add_parser("notebooks", help="time every notebook per profile")
    nb.add_argument("notebook", nargs="*", help="notebooks (default: all)")
    nb.add_argument("--profiles", nargs="+", default=["fast", "workshop"])
    nb.add_argument("--data", default="offline", help="auto | online | offline (default offline)")
    nb.add_argument("--output", default=None, help="write the table to this Markdown file")
    nb.add_argument("--readme", default=None, help="also insert the table between markers")
    nb.set_defaults(func=_cmd_notebooks)

    oc = sub.add_parser("mnist-one-class", help="one-class MNIST AUROC, AE vs PCA")
    oc.add_argument("--train", required=True, help=".npz with x (N,28,28) uint8 and y")
    oc.add_argument("--test", required=True, help=".npz with x (N,28,28) uint8 and y")
    oc.add_argument("--digit", required=True, type=int, choices=range(10), metavar="D",
                    nargs="+", help="normal digit(s); with several, a summary line comes last")
    oc.add_argument("--profile", default=None, help="fast | workshop | full")
    oc.add_argument("--seed", default=0, type=int)
    oc.set_defaults(func=_cmd_mnist_one_class)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # DataError is a ValueError: say it plainly
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
