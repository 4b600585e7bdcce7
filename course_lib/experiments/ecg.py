"""ECG heartbeats: the runs of notebook 09 (``bench ecg``).

:func:`split_ecg`, :func:`split_ecg_files`, :func:`train_ecg_autoencoder`,
:func:`ecg_baselines`, :func:`ecg_recall_per_class`, :func:`ecg_experiment`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from course_lib.baselines import PCAReconstruction
from course_lib.checks import DataError, check_class_labels, check_fraction, check_matrix
from course_lib.config import get_profile, set_seed
from course_lib.data.ecg import NORMAL_LABEL
from course_lib.metrics import anomaly_scores, threshold_percentile
from course_lib.models import ECG_CODE_SIZE, ECG_FILTERS, build_conv1d_autoencoder
from course_lib.sampling import seeded_partition, seeded_split
from course_lib.training import epoch_progress


#: Share of the normal beats held out, together with every abnormal beat, as the test set.
ECG_TEST_FRACTION = 0.3
#: Share of the other normal beats kept apart as validation normals (never trained on): early
#: stopping watches their loss, and the threshold is set on their scores only.
ECG_VALIDATION_FRACTION = 0.2
ECG_PATIENCE = 10
ECG_BATCH_SIZE = 16
#: The threshold: this percentile of the validation normals' scores (about 5% false alarms).
ECG_THRESHOLD_PERCENTILE = 95.0
#: The PCA baseline keeps as many components as the Conv1D autoencoder's code.
ECG_PCA_COMPONENTS = ECG_CODE_SIZE
ECG_IFOREST_TREES = 200
#: At least this many normal beats to train on (besides the validation normals).
ECG_MIN_TRAIN = 10


@dataclass
class ECGSplit:
    """Heartbeats split for one-class training, scaled with the training normals' statistics.

    ``x_train``: normal beats to train on; ``x_val``: validation normals (never trained on:
    early stopping and the threshold); ``x_test``/``y_test``: the beats to score and their
    labels (1 = normal, any other label abnormal); beats are float32 (n, length).
    ``center``/``scale``: ONE mean and ONE standard deviation of all training samples,
    subtracted and divided everywhere, so every beat keeps its shape (ECG5000's beats are
    z-normalised already: then they change almost nothing).  Made by :func:`split_ecg` or
    :func:`split_ecg_files`.
    """

    x_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    center: float
    scale: float

    @property
    def is_abnormal(self) -> np.ndarray:
        """1 for every abnormal test beat, 0 for the normal ones (the metrics' convention)."""
        return (self.y_test != NORMAL_LABEL).astype(np.int64)

    def __str__(self) -> str:
        n_abnormal = int(self.is_abnormal.sum())
        return (f"train: {len(self.x_train):,} normal | validation: {len(self.x_val):,} normal "
                f"| test: {len(self.y_test) - n_abnormal:,} normal + {n_abnormal:,} abnormal | "
                f"beats of {self.x_train.shape[1]} samples")


def _ecg_beats(x, y, name: str):
    x = check_matrix(x, f"{name}: beats", min_rows=1)
    return x, check_class_labels(y, len(x), f"{name}: labels")


def _train_and_validation(y, candidates, seed: int, name: str):
    """Seeded (validation rows, training rows) among the normal rows ``candidates``."""
    if len(candidates) == 0:
        raise DataError(f"{name} holds no normal beats (label {NORMAL_LABEL}): the autoencoder "
                        f"learns from normal beats only, so it needs some.")
    n_val = max(2, int(round(ECG_VALIDATION_FRACTION * len(candidates))))
    if len(candidates) - n_val < ECG_MIN_TRAIN:
        raise DataError(f"{name}: only {len(candidates)} normal beats to train on; need at "
                        f"least {ECG_MIN_TRAIN + n_val} ({n_val} of them become validation "
                        f"normals for early stopping and the threshold).")
    return seeded_partition(len(y), [n_val], seed, candidates=candidates)


def _scaled_split(x_train, x_val, x_test, y_test) -> ECGSplit:
    center, scale = float(x_train.mean()), float(x_train.std()) or 1.0

    def scaled(x):
        return ((x - center) / scale).astype(np.float32)

    return ECGSplit(scaled(x_train), scaled(x_val), scaled(x_test),
                    y_test.astype(np.int64), center, scale)


def split_ecg(x, y, test_fraction: float = ECG_TEST_FRACTION, seed: int = 0) -> ECGSplit:
    """Split one set of labelled beats for one-class training.

    A seeded ``test_fraction`` of the normal beats plus every abnormal beat form the test set;
    of the other normal beats, ``ECG_VALIDATION_FRACTION`` are validation normals and the rest
    the training beats.  Scaling statistics come from the training beats only.

    Parameters
    ----------
    x : array-like (N, length)
        Beats (or windows) of the same length.
    y : array-like (N,)
        Labels, 1 = normal (``course_lib.data.ecg``).
    test_fraction : float
        Share of the normal beats held out for testing, in (0, 1).
    seed : int
        Seed of the split: the same seed always gives the same beats.

    Returns
    -------
    ECGSplit

    Taught in notebook 09.
    """
    test_fraction = check_fraction("test_fraction", test_fraction, allow_one=False)
    x, y = _ecg_beats(x, y, "ECG data")
    normal, abnormal = np.flatnonzero(y == NORMAL_LABEL), np.flatnonzero(y != NORMAL_LABEL)
    if len(abnormal) == 0:
        raise DataError("the data hold no abnormal beats (labels other than 1): they are "
                        "needed to evaluate the detector (training uses normal beats only).")
    n_test = int(round(test_fraction * len(normal)))
    test_normal, rest = seeded_split(len(y), n_test, seed, candidates=normal)[::-1]
    val_rows, train_rows = _train_and_validation(y, rest, seed, "the data")
    test_rows = np.sort(np.concatenate([test_normal, abnormal]))
    return _scaled_split(x[train_rows], x[val_rows], x[test_rows], y[test_rows])


def split_ecg_files(x_train, y_train, x_test, y_test, seed: int = 0) -> ECGSplit:
    """A training file and a test file as an :class:`ECGSplit`.

    The normal beats of the training file become training beats and (a seeded
    ``ECG_VALIDATION_FRACTION``) validation normals; its abnormal beats are not used.  Every
    beat of the test file is scored.  Used by ``python -m course_lib.bench ecg``.
    """
    x_train, y_train = _ecg_beats(x_train, y_train, "training file")
    x_test, y_test = _ecg_beats(x_test, y_test, "test file")
    if x_test.shape[1] != x_train.shape[1]:
        raise DataError(f"the test file's beats have {x_test.shape[1]} samples, the training "
                        f"file's {x_train.shape[1]}: both must have the same length.")
    normal = np.flatnonzero(y_train == NORMAL_LABEL)
    val_rows, train_rows = _train_and_validation(y_train, normal, seed, "the training file")
    return _scaled_split(x_train[train_rows], x_train[val_rows], x_test, y_test)


def train_ecg_autoencoder(x_train, x_val, profile=None, seed=0, progress=False):
    """Train a fresh Conv1D autoencoder on normal beats only.

    ``build_conv1d_autoencoder(length)``; at most ``profile.ecg_epochs`` epochs of batches of
    ``ECG_BATCH_SIZE`` beats, seeded.  Early stopping watches the loss on the validation
    normals ``x_val`` (never trained on), stops after ``ECG_PATIENCE`` epochs without
    improvement and keeps the best weights.  Returns ``(autoencoder, history)``.
    Taught in notebook 09.
    """
    prof = get_profile(profile)
    x = check_matrix(x_train, "x_train", min_rows=2)       # (beats, samples)
    x_val = check_matrix(x_val, "x_val", n_cols=x.shape[1])
    set_seed(seed)                                 # same seed: same weights, same shuffling
    autoencoder, _, _ = build_conv1d_autoencoder(length=x.shape[1])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=ECG_PATIENCE,
                                         restore_best_weights=True)
    bar = [epoch_progress(prof.ecg_epochs, "Conv1D autoencoder")] if progress else []
    history = autoencoder.fit(x, x,                # input = target: rebuild normal beats
                              epochs=prof.ecg_epochs, batch_size=ECG_BATCH_SIZE, shuffle=True,
                              validation_data=(x_val, x_val),       # normal beats only
                              callbacks=[stop, *bar], verbose=0)
    return autoencoder, history


def ecg_baselines(split: ECGSplit, seed: int = 0) -> dict:
    """Scores of three classic baselines on the same split (higher = more anomalous), each
    fitted on the training normals only, on the raw beats.

    ``"PCA reconstruction"``: :class:`course_lib.baselines.PCAReconstruction` with
    ``ECG_PCA_COMPONENTS`` components (as many as the autoencoder's code);
    ``"Isolation Forest"``: scikit-learn's, ``ECG_IFOREST_TREES`` trees, score = minus its
    ``score_samples``; ``"nearest normal beat"``: the Euclidean distance from each test beat
    to the closest training beat.  Taught in notebook 09.
    """
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import NearestNeighbors

    pca = PCAReconstruction(n_components=min(ECG_PCA_COMPONENTS, len(split.x_train) - 1),
                            random_state=seed).fit(split.x_train)
    forest = IsolationForest(n_estimators=ECG_IFOREST_TREES, random_state=seed)
    forest.fit(split.x_train)
    nearest = NearestNeighbors(n_neighbors=1).fit(split.x_train)
    return {"PCA reconstruction": pca.score_samples(split.x_test),
            "Isolation Forest": -forest.score_samples(split.x_test),
            "nearest normal beat": nearest.kneighbors(split.x_test)[0][:, 0]}


def ecg_recall_per_class(y_test, flagged) -> dict:
    """Which kinds of abnormal beat a detector catches: ``{label: (flagged, beats)}`` for
    every abnormal label in ``y_test`` (``flagged``: booleans, one per beat).
    Taught in notebook 09."""
    y = np.asarray(y_test)
    flagged = np.asarray(flagged, dtype=bool)
    if flagged.shape != y.shape:
        raise DataError(f"flagged: expected {len(y)} booleans, one per beat, got shape "
                        f"{flagged.shape}.")
    return {int(label): (int(flagged[y == label].sum()), int((y == label).sum()))
            for label in np.unique(y) if label != NORMAL_LABEL}


def ecg_experiment(split: ECGSplit, profile=None, seed: int = 0, return_details: bool = False):
    """The whole ECG experiment on a split: train on normals, threshold, score, compare.

    Trains :func:`train_ecg_autoencoder`, sets the threshold at the
    ``ECG_THRESHOLD_PERCENTILE``-th percentile of the *validation normals'* scores (no
    abnormal beat is used to choose it), scores every test beat and fits the three
    :func:`ecg_baselines` on the same training normals.

    Returns a dict with ``auroc`` and ``auprc`` (autoencoder; abnormal = positive class),
    ``baseline_pca_auroc``/``_auprc``, ``baseline_iforest_auroc``/``_auprc``,
    ``baseline_nn_auroc``/``_auprc`` (nearest normal beat), ``threshold``, ``recall`` and
    ``false_alarm_rate`` at that threshold (``threshold_percentile``: the percentile used),
    ``recall_per_class`` (``{label: share flagged}``), ``n_train``, ``n_val``, ``n_test``,
    ``n_test_normal``, ``n_abnormal``, ``length``, ``epochs`` (run), ``seconds``, ``profile``,
    ``seed``.  With ``return_details`` it returns ``(result, details)``, ``details`` =
    ``{"autoencoder", "history", "scores", "val_scores", "threshold"}`` (``scores``: model
    name -> test scores), for figures of the same run.  Used by ``python -m course_lib.bench ecg``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    prof = get_profile(profile)
    y = split.is_abnormal
    if y.min() == y.max():
        raise DataError("the test beats must include normal (label 1) and abnormal beats to "
                        "compute an AUROC; the test file holds only "
                        f"{'abnormal' if y.min() else 'normal'} ones.")
    factor = 2 ** len(ECG_FILTERS)
    if split.x_train.shape[1] % factor:
        raise DataError(f"beats of {split.x_train.shape[1]} samples: the Conv1D autoencoder "
                        f"halves the length {len(ECG_FILTERS)} times, so it must be a multiple "
                        f"of {factor}. Crop or pad every beat, or cut windows of such a length "
                        f"(course_lib.data.ecg.sliding_windows).")
    start = time.perf_counter()
    autoencoder, history = train_ecg_autoencoder(split.x_train, split.x_val, prof, seed=seed)
    val_scores = anomaly_scores(autoencoder, split.x_val)
    scores = {"autoencoder": anomaly_scores(autoencoder, split.x_test)}
    scores.update(ecg_baselines(split, seed=seed))
    threshold = threshold_percentile(val_scores, ECG_THRESHOLD_PERCENTILE)
    flagged = scores["autoencoder"] > threshold
    result = {"auroc": None, "auprc": None}
    for key, name in (("", "autoencoder"), ("baseline_pca_", "PCA reconstruction"),
                      ("baseline_iforest_", "Isolation Forest"),
                      ("baseline_nn_", "nearest normal beat")):
        result[f"{key}auroc"] = round(float(roc_auc_score(y, scores[name])), 4)
        result[f"{key}auprc"] = round(float(average_precision_score(y, scores[name])), 4)
    per_class = ecg_recall_per_class(split.y_test, flagged)
    result.update({
        "threshold": round(float(threshold), 6),
        "threshold_percentile": ECG_THRESHOLD_PERCENTILE,
        "recall": round(float(flagged[y == 1].mean()), 4),
        "false_alarm_rate": round(float(flagged[y == 0].mean()), 4),
        "recall_per_class": {str(k): round(hit / n, 4) for k, (hit, n) in per_class.items()},
        "n_train": int(len(split.x_train)),
        "n_val": int(len(split.x_val)),
        "n_test": int(len(y)),
        "n_test_normal": int(len(y) - y.sum()),
        "n_abnormal": int(y.sum()),
        "length": int(split.x_train.shape[1]),
        "epochs": len(history.history["loss"]),
        "seconds": round(time.perf_counter() - start, 1),
        "profile": prof.name,
        "seed": int(seed),
    })
    if return_details:
        return result, {"autoencoder": autoencoder, "history": history, "scores": scores,
                        "val_scores": val_scores, "threshold": threshold}
    return result
