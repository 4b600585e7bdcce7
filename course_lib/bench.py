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

    python -m course_lib.bench creditcard --csv FILE [--profile P] [--seed S]
                                          [--scaling standard|quantile] [--test-fraction F]
        Credit-card fraud: split the normal rows of FILE (Time, V1..V28, Amount, Class) into
        train and test, fit the scaling and the tabular autoencoder on the training normals
        only, score the test normals and every fraud, and compare with Isolation Forest and
        PCA reconstruction on the same split.  The last line printed is one JSON object
        (auroc, auprc, baseline_iforest_auroc, ..., seconds).  Taught in notebook 04.

    python -m course_lib.bench mvtec --root DIR --category C --loss l2|ssim [--profile P] [--seed S]
        MVTec AD layout (real MVTec AD, textures from build_texture_dataset, or your own): train
        the convolutional autoencoder with L2 or SSIM loss on DIR/C/train/good (a fifth kept
        apart to set the threshold), evaluate its residual maps on DIR/C/test with image AUROC,
        pixel AUROC, AUPRO (FPR <= 0.3) and MVTec's Table 2 ratios.  The last line printed is
        one JSON object.  Taught in notebook 05.

    python -m course_lib.bench ssim-speed [--images 32] [--size 128]
        The course's SSIM map vs scikit-image's on real texture crops: milliseconds, speed
        ratios and the largest difference of the maps (one JSON line).  Taught in notebook 05.

    python -m course_lib.bench mvtec-dictionary --root DIR --category C [--profile P] [--seed S]
                                                [--backbone auto|pretrained|random]
    python -m course_lib.bench mvtec-knn --root DIR --category C [--profile P] [--seed S]
                                         [--coreset random|greedy] [--fraction F] [--backbone ...]
        The same split and metrics as ``mvtec``, for the CNN feature dictionary (PCA 95%,
        k-means 10) and the PatchCore-style nearest-neighbour memory bank of
        ``course_lib.features`` (ImageNet ResNet50 features online, a random-conv stand-in
        offline).  The last line printed is one JSON object.  Taught in notebook 07.

All run offline.  ``.npz`` files hold ``x`` (uint8, (N, 28, 28)) and ``y`` (labels).
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
from dataclasses import dataclass
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


# --------------------------------------------------------------------------- credit-card fraud
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


def creditcard_epochs(profile: Profile | str | None = None) -> int:
    """Maximum epochs of the credit-card autoencoder (early stopping may end sooner).

    ``profile.tabular_epochs``: 10 (fast), 100 (workshop and full, as the seed deck).
    Taught in notebook 04.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    return int(prof.tabular_epochs)


@dataclass
class CreditCardSplit:
    """A credit-card split for one-class training, scaled with training statistics only.

    ``x_train``: scaled normal transactions to train on (float32, (n, 30));
    ``x_val``: scaled validation normals (never trained on: early stopping, thresholds);
    ``x_test``/``y_test``: the held-out normal rows and every fraud (label 1), in row order;
    ``train_rows``/``val_rows``/``test_rows``: their positions in the frame
    (``frame.iloc[rows]``); ``scaler``: the scikit-learn transformer fitted on the training
    rows; ``features``: the column names; ``scaling``: its name.
    Made by :func:`split_creditcard`; taught in notebook 04.
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
        Columns Time, V1..V28, Amount, Class (checked by ``course_lib.data.check_creditcard_frame``).
    test_fraction : float
        Share of the normal rows held out for testing, in (0, 1).
    seed : int
        Seed of the split: the same seed always gives the same rows.
    scaling : {"standard", "quantile"}
        See ``CREDITCARD_SCALINGS``.

    Returns
    -------
    CreditCardSplit

    Taught in notebook 04; used by ``python -m course_lib.bench creditcard``.
    """
    from course_lib.data import CREDITCARD_FEATURES, DataError, check_creditcard_frame

    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}.")
    if scaling not in CREDITCARD_SCALINGS:
        raise ValueError(f"scaling must be one of {CREDITCARD_SCALINGS}, got {scaling!r}.")
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
    perm = np.random.default_rng(seed).permutation(normal)
    test_rows = np.sort(np.concatenate([perm[:n_test], fraud]))
    val_rows = np.sort(perm[n_test:n_test + n_val])
    train_rows = np.sort(perm[n_test + n_val:])
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


def train_tabular_autoencoder(x_train, x_val, profile: Profile | str | None = None,
                              seed: int = 0, epochs: int | None = None, **build_kwargs):
    """Train the seed's credit-card autoencoder on (scaled) normal transactions only.

    ``build_tabular_autoencoder(input_dim, **build_kwargs)`` (MSE, Adam); at most
    :func:`creditcard_epochs` epochs (or ``epochs``), batch size ``profile.batch_size``, seeded,
    silent; early stopping (patience ``CREDITCARD_PATIENCE``, best weights restored) watches
    the loss on the validation normals ``x_val``.  Returns ``(autoencoder, history)``.
    Taught in notebook 04.
    """
    import keras

    from course_lib.config import set_seed
    from course_lib.models import build_tabular_autoencoder

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    x = np.asarray(x_train, dtype=np.float32)
    xv = np.asarray(x_val, dtype=np.float32)
    if x.ndim != 2 or len(x) < 20 or not np.all(np.isfinite(x)):
        raise ValueError(f"x_train must be a finite 2-D array with at least 20 rows, got shape "
                         f"{x.shape}.")
    if xv.ndim != 2 or xv.shape[1] != x.shape[1] or len(xv) == 0 or not np.all(np.isfinite(xv)):
        raise ValueError(f"x_val must be a finite 2-D array with {x.shape[1]} columns, got "
                         f"shape {xv.shape}.")
    set_seed(seed)
    autoencoder, _, _ = build_tabular_autoencoder(input_dim=x.shape[1], **build_kwargs)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=CREDITCARD_PATIENCE,
                                         restore_best_weights=True)
    history = autoencoder.fit(x, x, epochs=creditcard_epochs(prof) if epochs is None else epochs,
                              batch_size=prof.batch_size, shuffle=True,
                              validation_data=(xv, xv), callbacks=[stop], verbose=0)
    return autoencoder, history


def creditcard_baselines(split: CreditCardSplit, seed: int = 0) -> dict:
    """Scores of the two classic baselines on the same split (higher = more anomalous).

    ``"Isolation Forest"``: scikit-learn's ``IsolationForest`` (``CREDITCARD_IFOREST_TREES``
    trees) fitted on the training normals, score = minus its ``score_samples``;
    ``"PCA reconstruction"``: :class:`course_lib.baselines.PCAReconstruction` with
    ``CREDITCARD_PCA_COMPONENTS`` components.  Taught in notebook 04.
    """
    from sklearn.ensemble import IsolationForest

    from course_lib.baselines import PCAReconstruction

    forest = IsolationForest(n_estimators=CREDITCARD_IFOREST_TREES, random_state=seed)
    forest.fit(split.x_train)
    pca = PCAReconstruction(n_components=CREDITCARD_PCA_COMPONENTS, random_state=seed)
    pca.fit(split.x_train)
    return {"Isolation Forest": -forest.score_samples(split.x_test),
            "PCA reconstruction": pca.score_samples(split.x_test)}


def creditcard_one_class(frame, profile: Profile | str | None = None, seed: int = 0,
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

    from course_lib.metrics import anomaly_scores

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
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


def _cmd_creditcard(args) -> int:
    from course_lib.data import read_creditcard_csv

    frame = read_creditcard_csv(args.csv)
    result = creditcard_one_class(frame, profile=args.profile, seed=args.seed,
                                  test_fraction=args.test_fraction, scaling=args.scaling)
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- mvtec: L2 vs SSIM
#: Reconstruction losses of notebook 05: squared error ("l2") or 1 - SSIM ("ssim").
MVTEC_LOSSES = ("l2", "ssim")
#: The convolutional autoencoder of notebook 05, in the style of Bergmann et al. (CVPR 2019):
#: three Conv2D + MaxPooling2D stages (64 -> 8 pixels) and a dense code of 100 numbers (the
#: paper's latent size), mirrored by the decoder.
MVTEC_FILTERS = (16, 32, 32)
MVTEC_CODE_SIZE = 100
MVTEC_LEARNING_RATE = 2e-3
#: Share of the defect-free training images kept apart (never trained on) to set the threshold.
MVTEC_VALIDATION_FRACTION = 0.2


def _check_mvtec_loss(loss: str) -> str:
    if loss not in MVTEC_LOSSES:
        raise ValueError(f"loss must be one of {MVTEC_LOSSES}, got {loss!r}.")
    return loss


def _check_gray_batch(x, name: str = "x") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or len(arr) == 0:
        raise ValueError(f"{name}: expected grayscale images of shape (N, H, W), got shape "
                         f"{arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values.")
    return arr


def build_mvtec_autoencoder(image_shape=(64, 64), loss: str = "l2"):
    """Notebook 05's convolutional autoencoder for grayscale images, compiled with ``loss``.

    ``build_conv_autoencoder`` with ``MVTEC_FILTERS`` and a dense code of ``MVTEC_CODE_SIZE``;
    ``loss="l2"``: mean squared error, ``"ssim"``: ``course_lib.losses.ssim_loss``
    (1 - SSIM, 11 x 11 Gaussian window).  Height and width must be multiples of 8.
    Returns ``(autoencoder, encoder, decoder)``.  Taught in notebook 05.
    """
    from course_lib.losses import ssim_loss
    from course_lib.models import build_conv_autoencoder

    loss_fn = "mse" if _check_mvtec_loss(loss) == "l2" else ssim_loss
    h, w = (int(s) for s in image_shape)
    return build_conv_autoencoder((h, w, 1), filters=MVTEC_FILTERS, code_size=MVTEC_CODE_SIZE,
                                  loss=loss_fn, learning_rate=MVTEC_LEARNING_RATE)


def augment_dihedral(x, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training samples: random images of ``x`` (N, H, W), each randomly flipped and
    turned by a multiple of 90 degrees (square images).  Textures look the same either way,
    so this multiplies the defect-free data.  Taught in notebook 05.
    """
    x = _check_gray_batch(x)
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"augment_dihedral needs square images, got {x.shape[1:]}.")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    rng = np.random.default_rng(seed)
    out = np.empty((n,) + x.shape[1:], dtype=np.float32)
    for i, j in enumerate(rng.integers(0, len(x), n)):
        img = np.rot90(x[j], k=int(rng.integers(4)))
        out[i] = img[:, ::-1] if rng.integers(2) else img
    return out


def split_good_images(x_good, fraction: float = MVTEC_VALIDATION_FRACTION, seed: int = 0):
    """Split defect-free images into (to train on, validation): a seeded ``fraction`` (at least
    two images) is kept apart to set the threshold.  Taught in notebook 05.
    """
    x = _check_gray_batch(x_good, "x_good")
    n_val = max(2, int(round(float(fraction) * len(x))))
    if len(x) - n_val < 2:
        raise ValueError(f"only {len(x)} defect-free images: need at least 4 (2 to train on, "
                         f"2 to set the threshold).")
    order = np.random.default_rng(seed).permutation(len(x))
    return x[np.sort(order[n_val:])], x[np.sort(order[:n_val])]


def train_mvtec_autoencoder(x_good, loss: str = "l2", profile: Profile | str | None = None,
                            seed: int = 0, epochs: int | None = None):
    """Train notebook 05's autoencoder on defect-free images only, with L2 or SSIM loss.

    ``profile.mvtec_samples`` flipped / rotated samples (:func:`augment_dihedral`) of
    ``x_good`` (N, H, W) in [0, 1], ``profile.mvtec_epochs`` epochs (or ``epochs``), batch
    ``profile.batch_size``, seeded, silent.  Returns ``(autoencoder, history)``.
    Taught in notebook 05.
    """
    from course_lib.config import set_seed

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    x = _check_gray_batch(x_good, "x_good")
    set_seed(seed)
    autoencoder, _, _ = build_mvtec_autoencoder(x.shape[1:], loss)
    samples = augment_dihedral(x, prof.mvtec_samples, seed=seed)[..., None]
    history = autoencoder.fit(samples, samples, epochs=prof.mvtec_epochs if epochs is None
                              else epochs, batch_size=prof.batch_size, shuffle=True, verbose=0)
    return autoencoder, history


def residual_maps(autoencoder, x, loss: str = "l2", batch_size: int = 64) -> np.ndarray:
    """Anomaly maps (N, H, W) of images ``x`` from their reconstructions.

    ``loss="l2"``: the squared error ``(x - x_hat)**2`` per pixel; ``"ssim"``:
    ``1 - SSIM`` per pixel (``course_lib.losses.ssim_residual_map``, 11 x 11 window).
    Taught in notebook 05.
    """
    from course_lib.losses import ssim_residual_map

    _check_mvtec_loss(loss)
    x = _check_gray_batch(x)
    recon = autoencoder.predict(x[..., None], batch_size=batch_size, verbose=0)[..., 0]
    if loss == "l2":
        return ((x - recon) ** 2).astype(np.float32)
    return ssim_residual_map(x, recon, batch_size=batch_size)


def evaluate_anomaly_maps(val_maps, test_maps, y_test, masks_test,
                          max_fpr: float = 0.3) -> dict:
    """MVTec-style evaluation of anomaly maps, the same for every model.

    Image score = the map's maximum (``image_scores``); ``image_auroc``; ``pixel_auroc``;
    ``aupro`` up to ``max_fpr``; ``good_correct`` / ``defect_correct``: MVTec AD's Table 2
    ratios with the threshold = the highest score of the defect-free *validation* maps
    ``val_maps`` (``classification_ratios``).  All rounded to 4 digits.  Taught in notebook 05.
    """
    from course_lib.pixel_metrics import (aupro, classification_ratios, image_auroc,
                                          image_scores, pixel_auroc)

    test_scores = image_scores(test_maps)
    ratios = classification_ratios(image_scores(val_maps), test_scores, y_test)

    def r4(v):
        return None if v is None else round(float(v), 4)

    return {"image_auroc": r4(image_auroc(y_test, test_scores)),
            "pixel_auroc": r4(pixel_auroc(masks_test, test_maps)),
            "aupro": r4(aupro(masks_test, test_maps, max_fpr=max_fpr)),
            "good_correct": r4(ratios["good_correct"]),
            "defect_correct": r4(ratios["defective_correct"]),
            "threshold": float(ratios["threshold"])}


def mvtec_baseline_maps(x_fit, x_val, x_test, seed: int = 0) -> dict:
    """Anomaly maps of the two classic baselines, fitted on the same defect-free images.

    Returns ``{name: (val_maps, test_maps)}`` for ``"variation model"``
    (``course_lib.baselines.VariationModel``) and ``"texture inspection"``
    (``course_lib.baselines.TextureInspection``, a Gaussian mixture of 8 x 8 patches).
    Taught in notebook 05.
    """
    from course_lib.baselines import TextureInspection, VariationModel

    out = {}
    for name, model in (("variation model", VariationModel()),
                        ("texture inspection", TextureInspection(max_patches=5000,
                                                              random_state=seed))):
        model.fit(x_fit)
        out[name] = (model.anomaly_map(x_val), model.anomaly_map(x_test))
    return out


def mvtec_experiment(data, loss: str = "l2", profile: Profile | str | None = None,
                     seed: int = 0, return_details: bool = False):
    """Train an L2 or SSIM autoencoder on one MVTec-style category and evaluate its maps.

    Parameters
    ----------
    data : course_lib.mvtec.MVTecData
        From ``load_textures``, ``load_mvtec`` or ``load_mvtec_folder``.
    loss : {"l2", "ssim"}
    profile : Profile or str, optional
    seed : int
    return_details : bool
        Also return ``{"autoencoder", "history", "x_fit", "x_val", "val_maps", "test_maps"}``.

    Returns
    -------
    dict (or (dict, details))
        ``image_auroc``, ``pixel_auroc``, ``aupro``, ``good_correct``, ``defect_correct``,
        ``threshold`` (see :func:`evaluate_anomaly_maps`), ``n_train`` (images trained on),
        ``n_val``, ``n_test``, ``n_defective``, ``image_size``, ``epochs``, ``samples``,
        ``loss``, ``category``, ``seconds``, ``profile``, ``seed``.

    Taught in notebook 05; used by ``python -m course_lib.bench mvtec``.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    _check_mvtec_loss(loss)
    start = time.perf_counter()
    x_fit, x_val = split_good_images(data.x_train, seed=seed)
    autoencoder, history = train_mvtec_autoencoder(x_fit, loss, prof, seed=seed)
    val_maps = residual_maps(autoencoder, x_val, loss)
    test_maps = residual_maps(autoencoder, data.x_test, loss)
    result = evaluate_anomaly_maps(val_maps, test_maps, data.y_test, data.masks_test)
    result.update({
        "n_train": int(len(x_fit)), "n_val": int(len(x_val)), "n_test": int(len(data.x_test)),
        "n_defective": int(np.sum(data.y_test)), "image_size": int(data.x_test.shape[1]),
        "epochs": len(history.history["loss"]), "samples": prof.mvtec_samples, "loss": loss,
        "category": data.category, "seconds": round(time.perf_counter() - start, 1),
        "profile": prof.name, "seed": int(seed)})
    if return_details:
        return result, {"autoencoder": autoencoder, "history": history, "x_fit": x_fit,
                        "x_val": x_val, "val_maps": val_maps, "test_maps": test_maps}
    return result


def _cmd_mvtec(args) -> int:
    from course_lib.mvtec import load_mvtec_folder

    prof = get_profile(args.profile)
    data = load_mvtec_folder(args.root, args.category, size=prof.mvtec_size, verbose=False)
    result = mvtec_experiment(data, loss=args.loss, profile=prof, seed=args.seed)
    print(json.dumps(result), flush=True)
    return 0


def _cmd_mvtec_features(args) -> int:
    from course_lib.features import feature_experiment, load_backbone
    from course_lib.mvtec import load_mvtec_folder

    prof = get_profile(args.profile)
    data = load_mvtec_folder(args.root, args.category, size=prof.mvtec_size, verbose=False)
    backbone = load_backbone(args.backbone, seed=args.seed)
    result = feature_experiment(data, method=args.method, profile=prof, seed=args.seed,
                                backbone=backbone, coreset=getattr(args, "coreset", "greedy"),
                                fraction=getattr(args, "fraction", 0.1))
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- ssim speed
def ssim_speed(n_images: int = 32, size: int = 128, repeats: int = 7, seed: int = 0) -> dict:
    """Time the course's SSIM map against scikit-image's on a batch of real texture crops.

    Crops of ``skimage.data.brick()`` and noisy copies; best of ``repeats`` runs each.  Returns
    milliseconds for scikit-image (one image at a time), ``ssim_residual_map`` (float32, eager)
    and ``ssim_map`` inside ``tf.function``, the speed ratios (skimage time / ours) and the
    largest absolute difference of the maps.  Taught in notebook 05.
    """
    import skimage.data
    from skimage.metrics import structural_similarity

    from course_lib.losses import ssim_map, ssim_residual_map

    rng = np.random.default_rng(seed)
    brick = skimage.data.brick() / 255.0
    corners = [(r, c) for r in range(0, brick.shape[0] - size + 1, size // 2)
               for c in range(0, brick.shape[1] - size + 1, size // 4)]
    x = np.stack([brick[r:r + size, c:c + size] for r, c in corners[:n_images]])
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)

    def best(fn):
        fn()  # warm-up (tracing, caches)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times) * 1e3, out

    def reference():
        return np.stack([structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False, data_range=1.0,
                                               full=True)[1] for a, b in zip(x, y)])

    import tensorflow as tf

    graph_fn = tf.function(lambda a, b: ssim_map(a, b))
    xa, ya = x.astype("float32"), y.astype("float32")
    t_ref, ref = best(reference)
    t_eager, ours = best(lambda: ssim_residual_map(x, y))
    t_graph, _ = best(lambda: graph_fn(xa, ya).numpy())
    return {"images": int(len(x)), "size": size, "skimage_ms": round(t_ref, 1),
            "course_eager_ms": round(t_eager, 1), "course_tf_function_ms": round(t_graph, 1),
            "speedup_eager": round(t_ref / t_eager, 2), "speedup_tf_function": round(t_ref / t_graph, 2),
            "max_abs_diff": float(np.abs((1.0 - ours) - ref).max())}


def _cmd_ssim_speed(args) -> int:
    print(json.dumps(ssim_speed(n_images=args.images, size=args.size)), flush=True)
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
            r = execute_notebook(p, profile=name, data=args.data, kernel_log=os.devnull)
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

    cc = sub.add_parser("creditcard", help="credit-card fraud: AE vs Isolation Forest and PCA")
    cc.add_argument("--csv", required=True,
                    help="CSV (or .csv.gz) with Time, V1..V28, Amount, Class")
    cc.add_argument("--profile", default=None, help="fast | workshop | full (epochs, batch)")
    cc.add_argument("--seed", default=0, type=int)
    cc.add_argument("--scaling", default="standard", choices=CREDITCARD_SCALINGS)
    cc.add_argument("--test-fraction", default=CREDITCARD_TEST_FRACTION, type=float,
                    help="share of the normal rows held out for testing (default %(default)s)")
    cc.set_defaults(func=_cmd_creditcard)

    mv = sub.add_parser("mvtec", help="MVTec-style category: L2 or SSIM autoencoder, pixel metrics")
    mv.add_argument("--root", required=True, help="folder holding <category>/train/good, test/...")
    mv.add_argument("--category", required=True, help="e.g. carpet, or brick for built textures")
    mv.add_argument("--loss", default="l2", choices=MVTEC_LOSSES)
    mv.add_argument("--profile", default=None, help="fast | workshop | full (size, epochs)")
    mv.add_argument("--seed", default=0, type=int)
    mv.set_defaults(func=_cmd_mvtec)

    for name, helptext in (("mvtec-dictionary", "MVTec-style category: CNN feature dictionary"),
                           ("mvtec-knn", "MVTec-style category: PatchCore-style memory bank")):
        fp = sub.add_parser(name, help=helptext)
        fp.add_argument("--root", required=True, help="folder holding <category>/train/good, ...")
        fp.add_argument("--category", required=True, help="e.g. carpet, or brick for textures")
        fp.add_argument("--profile", default=None, help="fast | workshop | full (sizes)")
        fp.add_argument("--seed", default=0, type=int)
        fp.add_argument("--backbone", default="auto", choices=("auto", "pretrained", "random"))
        if name == "mvtec-knn":
            fp.add_argument("--coreset", default="greedy", choices=("random", "greedy"))
            fp.add_argument("--fraction", default=0.1, type=float,
                            help="share of the good patches kept in the bank (default 0.1)")
        fp.set_defaults(func=_cmd_mvtec_features, method="dictionary" if name ==
                        "mvtec-dictionary" else "knn")

    sp = sub.add_parser("ssim-speed", help="SSIM map: the course's vs scikit-image's, speed")
    sp.add_argument("--images", type=int, default=32)
    sp.add_argument("--size", type=int, default=128)
    sp.set_defaults(func=_cmd_ssim_speed)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # DataError is a ValueError: say it plainly
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
