"""Credit-card fraud: the runs of notebook 04 (``bench creditcard``).

:func:`split_creditcard`, :func:`train_tabular_autoencoder`, :func:`creditcard_baselines`,
:func:`creditcard_experiment`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from course_lib.baselines import PCAReconstruction
from course_lib.checks import DataError, check_fraction, check_matrix, quote
from course_lib.config import Profile, get_profile, set_seed
from course_lib.data.creditcard import CREDITCARD_FEATURES, check_creditcard_frame
from course_lib.metrics import anomaly_scores
from course_lib.models import build_tabular_autoencoder
from course_lib.sampling import seeded_partition
from course_lib.training import epoch_progress


#: Share of the normal transactions held out, together with every fraud, as the test set.
CREDITCARD_TEST_FRACTION = 0.3
#: Share of the training normals kept apart as validation normals: early stopping watches them,
#: and thresholds that need no label are set on their scores.
CREDITCARD_VALIDATION_SPLIT = 0.1
CREDITCARD_PATIENCE = 5
#: The PCA baseline keeps as many components as the tabular autoencoder's code (7 units).
CREDITCARD_PCA_COMPONENTS = 7
CREDITCARD_IFOREST_TREES = 200
#: ``standard``: z-scores (StandardScaler); ``quantile``: a rank-based map of every feature to
#: a standard normal shape (QuantileTransformer), which tames heavy tails such as Amount.
CREDITCARD_SCALINGS = ("standard", "quantile")


@dataclass
class CreditCardSplit:
    """A credit-card split for one-class training, scaled with training statistics only.

    ``x_train``: scaled normal transactions to train on (float32, (n, 30));
    ``x_val``: scaled validation normals (never trained on: early stopping, thresholds);
    ``x_test``/``y_test``: the held-out normal rows and every fraud (label 1), in row order;
    ``train_rows``/``val_rows``/``test_rows``: their positions in the frame
    (``frame.iloc[rows]``); ``scaler``: the scikit-learn transformer fitted on the training
    rows; ``features``: the column names; ``scaling``: its name.
    Made by :func:`split_creditcard`.
    """

    x_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    scaler: object
    features: tuple
    scaling: str

    def __str__(self) -> str:
        n_fraud = int(self.y_test.sum())
        return (f"train: {len(self.x_train):,} normal | validation: {len(self.x_val):,} normal | "
                f"test: {len(self.y_test) - n_fraud:,} normal + {n_fraud:,} fraud | "
                f"{len(self.features)} features, '{self.scaling}' scaling fitted on the "
                f"training rows")


def split_creditcard(frame, test_fraction: float = CREDITCARD_TEST_FRACTION, seed: int = 0,
                     scaling: str = "standard") -> CreditCardSplit:
    """Split credit-card transactions for one-class training and scale them.

    A seeded ``test_fraction`` of the *normal* rows plus every fraud form the test set; of
    the other normal rows, a ``CREDITCARD_VALIDATION_SPLIT`` share are validation normals and
    the rest the training set.  The scaling is fitted on the training rows only (never on
    validation or test rows, never on frauds), then applied to all three.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns Time, V1..V28, Amount, Class (checked by ``check_creditcard_frame``).
    test_fraction : float
        Share of the normal rows held out for testing, in (0, 1).
    seed : int
        Seed of the split: the same seed always gives the same rows.
    scaling : {"standard", "quantile"}
        See ``CREDITCARD_SCALINGS``.

    Returns
    -------
    CreditCardSplit

    Taught in notebook 04.
    """
    test_fraction = check_fraction("test_fraction", test_fraction, allow_one=False)
    if scaling not in CREDITCARD_SCALINGS:
        raise DataError(f"scaling must be one of {CREDITCARD_SCALINGS}, got {quote(scaling)}.")
    frame = check_creditcard_frame(frame)
    labels = frame["Class"].to_numpy()
    normal, fraud = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if len(fraud) == 0:
        raise DataError("the data holds no frauds (Class 1): they are needed to evaluate the "
                        "detector (training uses normal rows only).")
    n_test = int(round(test_fraction * len(normal)))
    n_val = int(round(CREDITCARD_VALIDATION_SPLIT * (len(normal) - n_test)))
    if n_test < 1 or n_val < 2 or len(normal) - n_test - n_val < 20:
        raise DataError(f"only {len(normal)} normal rows: too few to train on (at least 20), "
                        f"validate and test with test_fraction={test_fraction}.")
    test_normal, val_rows, train_rows = seeded_partition(len(labels), [n_test, n_val], seed,
                                                         candidates=normal)
    test_rows = np.sort(np.concatenate([test_normal, fraud]))
    features = tuple(CREDITCARD_FEATURES)
    x = frame.loc[:, list(features)].to_numpy(dtype=np.float64)
    if scaling == "standard":
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler()
    else:
        from sklearn.preprocessing import QuantileTransformer

        scaler = QuantileTransformer(output_distribution="normal", random_state=seed,
                                     n_quantiles=min(1000, len(train_rows)))
    scaler.fit(x[train_rows])

    def scaled(rows):
        return scaler.transform(x[rows]).astype(np.float32)

    return CreditCardSplit(
        x_train=scaled(train_rows), x_val=scaled(val_rows), x_test=scaled(test_rows),
        y_test=labels[test_rows].astype(np.int64), train_rows=train_rows, val_rows=val_rows,
        test_rows=test_rows, scaler=scaler, features=features, scaling=scaling)


def train_tabular_autoencoder(x_train, x_val, profile=None, seed=0, epochs=None,
                              progress=False, **build_kwargs):
    """Train a fresh credit-card autoencoder on (scaled) normal transactions only.

    ``build_tabular_autoencoder(input_dim, **build_kwargs)``; at most
    ``profile.tabular_epochs`` epochs (or ``epochs``), batch ``profile.batch_size``, seeded.
    Early stopping watches the loss on the validation normals ``x_val`` (never trained on),
    stops after ``CREDITCARD_PATIENCE`` epochs without improvement and keeps the best
    weights.  Returns ``(autoencoder, history)``.  Taught in notebook 04.
    """
    prof = get_profile(profile)
    x = check_matrix(x_train, "x_train", min_rows=20)
    x_val = check_matrix(x_val, "x_val", n_cols=x.shape[1])
    epochs = prof.tabular_epochs if epochs is None else epochs
    set_seed(seed)                                 # same seed: same weights, same shuffling
    autoencoder, _, _ = build_tabular_autoencoder(input_dim=x.shape[1], **build_kwargs)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=CREDITCARD_PATIENCE,
                                         restore_best_weights=True)
    bar = [epoch_progress(epochs, "tabular autoencoder")] if progress else []
    history = autoencoder.fit(x, x,                # input = target: rebuild normal rows
                              epochs=epochs, batch_size=prof.batch_size, shuffle=True,
                              validation_data=(x_val, x_val),       # normal rows only
                              callbacks=[stop, *bar], verbose=0)
    return autoencoder, history


def creditcard_baselines(split: CreditCardSplit, seed: int = 0) -> dict:
    """Scores of the two classic baselines on the same split (higher = more anomalous).

    ``"Isolation Forest"``: scikit-learn's ``IsolationForest`` (``CREDITCARD_IFOREST_TREES``
    trees) fitted on the training normals, score = minus its ``score_samples``;
    ``"PCA reconstruction"``: :class:`course_lib.baselines.PCAReconstruction` with
    ``CREDITCARD_PCA_COMPONENTS`` components.  Taught in notebook 04.
    """
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=CREDITCARD_IFOREST_TREES, random_state=seed)
    forest.fit(split.x_train)
    pca = PCAReconstruction(n_components=CREDITCARD_PCA_COMPONENTS, random_state=seed)
    pca.fit(split.x_train)
    return {"Isolation Forest": -forest.score_samples(split.x_test),
            "PCA reconstruction": pca.score_samples(split.x_test)}


def creditcard_experiment(frame, profile: Profile | str | None = None, seed: int = 0,
                          test_fraction: float = CREDITCARD_TEST_FRACTION,
                          scaling: str = "standard", return_details: bool = False):
    """The whole credit-card experiment: split, scale, train on normals, score, compare.

    Returns a dict with ``auroc`` and ``auprc`` (autoencoder; fraud = positive class),
    ``baseline_iforest_auroc``, ``baseline_iforest_auprc``, ``baseline_pca_auroc``,
    ``baseline_pca_auprc``, ``n_train`` (training normals), ``n_val`` (validation normals),
    ``n_test`` (test rows), ``n_test_normal``, ``n_fraud``, ``fraud_share_test``, ``epochs``
    (run), ``seconds``, ``profile``, ``seed``, ``scaling``.  The baselines are fitted on the
    same training normals.  With ``return_details`` it returns ``(result, details)``,
    ``details`` = ``{"split", "autoencoder", "scores"}`` (``scores``: model name -> test scores),
    for plots of the same run (the workshop deck).  Taught in notebook 04.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    prof = get_profile(profile)
    start = time.perf_counter()
    split = split_creditcard(frame, test_fraction=test_fraction, seed=seed, scaling=scaling)
    autoencoder, history = train_tabular_autoencoder(split.x_train, split.x_val, prof, seed=seed)
    scores = {"autoencoder": anomaly_scores(autoencoder, split.x_test)}
    scores.update(creditcard_baselines(split, seed=seed))
    y = split.y_test

    def metric(fn, name):
        return round(float(fn(y, scores[name])), 4)

    n_fraud = int(y.sum())
    result = {
        "auroc": metric(roc_auc_score, "autoencoder"),
        "auprc": metric(average_precision_score, "autoencoder"),
        "baseline_iforest_auroc": metric(roc_auc_score, "Isolation Forest"),
        "baseline_iforest_auprc": metric(average_precision_score, "Isolation Forest"),
        "baseline_pca_auroc": metric(roc_auc_score, "PCA reconstruction"),
        "baseline_pca_auprc": metric(average_precision_score, "PCA reconstruction"),
        "n_train": int(len(split.x_train)),
        "n_val": int(len(split.x_val)),
        "n_test": int(len(y)),
        "n_test_normal": int(len(y) - n_fraud),
        "n_fraud": n_fraud,
        "fraud_share_test": round(n_fraud / len(y), 4),
        "epochs": len(history.history["loss"]),
        "seconds": round(time.perf_counter() - start, 1),
        "profile": prof.name,
        "seed": int(seed),
        "scaling": scaling,
    }
    if return_details:
        return result, {"split": split, "autoencoder": autoencoder, "scores": scores}
    return result
