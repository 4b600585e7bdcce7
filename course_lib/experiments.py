"""The experiments that the notebooks, the benchmark commands and the workshop deck share.

One naming scheme: ``<data>_<method>_experiment(...)`` runs a whole experiment (split, train
on normal data only, score held-out data, compare with baselines) and returns a dict of
metrics, the same fields that ``python -m course_lib.bench <command>`` prints as JSON; with
``return_details=True`` it also returns the trained model, the split and the scores, for
figures of the very same run.  ``split_*`` make the splits, ``train_*`` train one model.

- MNIST one-class (notebook 03, ``bench mnist-one-class``): :func:`train_one_class`,
  :func:`mnist_one_class_experiment`;
- credit-card fraud (notebook 04, ``bench creditcard``): :func:`split_creditcard`,
  :func:`train_tabular_autoencoder`, :func:`creditcard_baselines`,
  :func:`creditcard_experiment`;
- MVTec-style images (notebooks 05 and 07, ``bench mvtec`` / ``mvtec-dictionary`` /
  ``mvtec-knn``): :func:`split_good_images`, :func:`train_mvtec_autoencoder`,
  :func:`mvtec_baseline_maps`, :func:`mvtec_autoencoder_experiment`,
  :func:`mvtec_feature_experiment`;
- ECG heartbeats (notebook 08, ``bench ecg``): :func:`split_ecg`, :func:`split_ecg_files`,
  :func:`train_ecg_autoencoder`, :func:`ecg_baselines`, :func:`ecg_recall_per_class`,
  :func:`ecg_experiment`;
- :func:`ssim_speed_experiment` (``bench ssim-speed``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from course_lib.baselines import PCAReconstruction, TextureInspection, VariationModel
from course_lib.checks import (DataError, check_class_labels, check_fraction, check_image_list,
                               check_mask_list, check_matrix, check_positive_int, quote)
from course_lib.config import Profile, get_profile, set_seed
from course_lib.data.creditcard import CREDITCARD_FEATURES, check_creditcard_frame
from course_lib.data.ecg import NORMAL_LABEL
from course_lib.features import (BACKBONE_KINDS, CORESETS, METHODS, Backbone, FeatureDictionary,
                                 PatchMemoryBank, learned_backbone, load_backbone)
from course_lib.images import flatten, patch_size_for, random_patches
from course_lib.map_metrics import (check_residual, evaluate_anomaly_maps, residual_maps,
                                    smooth_maps)
from course_lib.metrics import anomaly_scores, threshold_percentile
from course_lib.models import (ECG_CODE_SIZE, ECG_FILTERS, ONE_CLASS_CODE_SIZE,
                               build_conv1d_autoencoder, build_mvtec_autoencoder,
                               build_one_class_autoencoder, build_tabular_autoencoder)
from course_lib.sampling import seeded_partition, seeded_split
from course_lib.training import epoch_progress

# =========================================================================== MNIST one-class
#: The PCA baseline keeps as many components as the one-class autoencoder's code.
PCA_COMPONENTS = ONE_CLASS_CODE_SIZE
#: Share of the normal training images kept apart for early stopping.
ONE_CLASS_VALIDATION_SPLIT = 0.1
ONE_CLASS_PATIENCE = 5


def train_one_class(x_normal, profile=None, seed=0, progress=False):
    """Train a fresh one-class autoencoder on normal images only (uint8 (N, 28, 28)).

    At most ``profile.one_class_epochs`` epochs.  Early stopping watches the loss on the last
    ``ONE_CLASS_VALIDATION_SPLIT`` of the normal images (never trained on), stops after
    ``ONE_CLASS_PATIENCE`` epochs without improvement and keeps the best weights.  Returns
    the trained autoencoder (``autoencoder.history`` holds the losses).  Taught in notebook 03.
    """
    prof = get_profile(profile)
    x = flatten(x_normal)                          # (N, 784) floats in [0, 1]
    set_seed(seed)                                 # same seed: same weights, same shuffling
    autoencoder, _, _ = build_one_class_autoencoder()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=ONE_CLASS_PATIENCE,
                                         restore_best_weights=True)
    bar = [epoch_progress(prof.one_class_epochs, "one-class autoencoder")] if progress else []
    autoencoder.fit(x, x,                          # input = target: rebuild normal images
                    epochs=prof.one_class_epochs, batch_size=prof.batch_size, shuffle=True,
                    validation_split=ONE_CLASS_VALIDATION_SPLIT,  # the last 10%: normal too
                    callbacks=[stop, *bar], verbose=0)
    return autoencoder


def mnist_one_class_experiment(x_train, y_train, x_test, y_test, digit: int,
                               profile: Profile | str | None = None, seed: int = 0) -> dict:
    """One-class MNIST: normal = ``digit``, anomaly = every other digit.

    Trains :func:`train_one_class` on the training images of ``digit`` only, scores every
    test image by its reconstruction error, and fits a PCA baseline with as many components
    as the code on the same images.  Returns a dict with ``digit``, ``auroc`` (autoencoder),
    ``auprc``, ``baseline_pca_auroc``, ``seconds``, ``profile``, ``n_train``, ``n_test``.
    Used by ``python -m course_lib.bench mnist-one-class``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    prof = get_profile(profile)
    digit = check_positive_int("digit", digit, minimum=0)
    y_train = check_class_labels(y_train, len(x_train), "y_train")
    y_test = check_class_labels(y_test, len(x_test), "y_test")
    x_normal = x_train[y_train == digit]
    if len(x_normal) < 20:
        raise DataError(f"only {len(x_normal)} training images of digit {digit}; need at least "
                        f"20 to train on.")
    is_anomaly = (y_test != digit).astype(int)
    if is_anomaly.min() == is_anomaly.max():
        raise DataError(f"the test set must hold both digit {digit} and other digits to "
                        f"compute an AUROC.")
    start = time.perf_counter()
    autoencoder = train_one_class(x_normal, prof, seed=seed)
    scores = anomaly_scores(autoencoder, flatten(x_test))
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


# =========================================================================== credit-card fraud
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


# =========================================================================== MVTec-style images
#: Share of the defect-free training images kept apart (never trained on) to set the threshold.
MVTEC_VALIDATION_FRACTION = 0.2


def split_good_images(x_good, fraction: float = MVTEC_VALIDATION_FRACTION, seed: int = 0):
    """Split defect-free images (a list, sizes may differ) into (to train on, validation): a
    seeded ``fraction`` (at least two images) is kept apart to set the threshold.
    Taught in notebook 05.
    """
    x = check_image_list(x_good, "x_good")
    fraction = check_fraction("fraction", fraction, allow_one=False)
    n_val = max(2, int(round(fraction * len(x))))
    if len(x) - n_val < 2:
        raise DataError(f"only {len(x)} defect-free images: need at least 4 (2 to train on, "
                        f"2 to set the threshold).")
    fit, val = seeded_split(len(x), n_val, seed)
    return [x[i] for i in fit], [x[i] for i in val]


def check_mvtec_data(data) -> int:
    """Check a loaded MVTec-style category *before* any training: good and defective test
    images, and binary masks of the test images' sizes that mark the defects.

    Returns the number of defective test images whose mask is empty (their pixels then count
    as good in the pixel metrics): a few are allowed, all of them are not.  Every MVTec
    experiment calls it first.
    """
    x_test = check_image_list(data.x_test, "x_test")
    y = check_class_labels(data.y_test, len(x_test), "y_test")
    if not (np.any(y == 0) and np.any(y == 1)) or y.max() > 1:
        raise DataError(f"the test set of {quote(data.category)} needs good (0) and defective "
                        f"(1) images, found labels {sorted(set(y.tolist()))[:5]}.")
    masks = check_mask_list(data.masks_test, [x.shape for x in x_test], "masks_test")
    empty = sum(1 for m, label in zip(masks, y) if label == 1 and not m.any())
    if empty == int(np.sum(y == 1)):
        raise DataError(f"every defective test image of {quote(data.category)} has an empty "
                        f"mask: pixel metrics need masks that mark the defects (a mask pixel "
                        f"is a defect wherever it is not 0).")
    return empty


def patch_geometry(images, profile: Profile | str | None = None) -> tuple:
    """``(patch_size, stride)`` for images of any sizes: the profile's ``mvtec_patch``, or less
    when the smallest image is smaller (:func:`course_lib.images.patch_size_for`), and its
    ``mvtec_stride``, or (0, the default) a quarter patch (the MVTec paper: 128-pixel patches
    every 30 pixels); never more than the patch, which would leave pixels uncovered."""
    prof = get_profile(profile)
    size = patch_size_for(images, prof.mvtec_patch)
    return size, min(size, prof.mvtec_stride or max(1, size // 4))


def train_mvtec_autoencoder(images, loss, patch_size, samples, epochs, batch_size=64, seed=0,
                            progress=True):
    """Train notebook 05's patch autoencoder on defect-free images only (a list of images of
    any sizes): ``samples`` random patches, flipped at random, ``epochs`` epochs, L2 or SSIM
    loss.  Returns ``(autoencoder, history)``."""
    set_seed(seed)
    autoencoder, _, _ = build_mvtec_autoencoder(patch_size, loss)
    patches = random_patches(images, samples, patch_size, seed=seed)
    callbacks = [epoch_progress(epochs, f"{loss.upper()} autoencoder")] if progress else []
    history = autoencoder.fit(patches, patches, epochs=epochs, batch_size=batch_size,
                              shuffle=True, callbacks=callbacks, verbose=0)
    return autoencoder, history


def common_crop(images) -> list:
    """Images cut to their common top-left size (for the variation model, which compares
    pixel positions and so needs images of one size)."""
    h = min(img.shape[0] for img in images)
    w = min(img.shape[1] for img in images)
    return [img[:h, :w] for img in images]


def mvtec_baseline_maps(x_fit, x_val, x_test, seed: int = 0, methods=None) -> dict:
    """Anomaly maps of the two classic baselines, fitted on the same defect-free images.

    Returns ``{name: (val_maps, test_maps)}`` (lists of maps at the images' sizes) for
    ``"variation model"`` (:class:`course_lib.baselines.VariationModel`; it compares pixel
    positions, so images of different sizes are cut to their common size and its maps padded
    back with zeros) and ``"texture inspection"`` (:class:`course_lib.baselines.
    TextureInspection`, a Gaussian mixture of 8 x 8 patches).  ``methods``: a subset of
    :data:`BASELINES`.  Taught in notebook 05.
    """
    methods = BASELINES if methods is None else tuple(methods)
    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise DataError(f"unknown baseline(s) {quote(unknown)}: expected some of {BASELINES}.")
    x_fit, x_val = check_image_list(x_fit, "x_fit"), check_image_list(x_val, "x_val")
    x_test = check_image_list(x_test, "x_test")
    out = {}
    if "variation model" in methods:
        every = common_crop(x_fit + x_val + x_test)
        h, w = every[0].shape
        model = VariationModel().fit(np.stack(every[:len(x_fit)]))

        def padded(images):
            crops = np.stack([img[:h, :w] for img in images])
            return [np.pad(m, ((0, img.shape[0] - h), (0, img.shape[1] - w)))
                    for m, img in zip(model.anomaly_map(crops), images)]
        out["variation model"] = (padded(x_val), padded(x_test))
    if "texture inspection" in methods:
        model = TextureInspection(max_patches=5000, random_state=seed).fit(x_fit)
        out["texture inspection"] = (model.anomaly_map(x_val), model.anomaly_map(x_test))
    return out


#: The classic baselines of :func:`mvtec_baseline_maps`.
BASELINES = ("variation model", "texture inspection")


def _data_fields(data, x_fit, x_val, n_empty_masks: int) -> dict:
    return {"n_train": int(len(x_fit)), "n_val": int(len(x_val)),
            "n_test": int(len(data.x_test)), "n_defective": int(np.sum(data.y_test)),
            "n_empty_masks": int(n_empty_masks), "image_size": data.sizes,
            "scale": round(float(data.scale), 4)}


def mvtec_autoencoder_experiment(data, loss: str = "l2", profile: Profile | str | None = None,
                                 seed: int = 0, return_details: bool = False,
                                 progress: bool = False):
    """Train an L2 or SSIM patch autoencoder on one MVTec-style category and evaluate its maps.

    The paper's method at the images' own resolution: random patches of the good images to
    train on; each test image tiled with overlapping patches (:func:`patch_geometry`), their
    residuals averaged into one map (:func:`course_lib.map_metrics.residual_maps`), then
    :func:`course_lib.map_metrics.smooth_maps`.

    Parameters
    ----------
    data : course_lib.data.mvtec.MVTecData
        From ``load_kolektor``, ``load_textures``, ``load_mvtec`` or ``load_mvtec_folder``;
        checked before training (:func:`check_mvtec_data`).
    loss : {"l2", "ssim"}
    profile : Profile or str, optional
        ``mvtec_patch``, ``mvtec_samples``, ``mvtec_epochs``, ``batch_size``.
    seed : int
    return_details : bool
        Also return ``{"autoencoder", "history", "x_fit", "x_val", "val_maps", "test_maps"}``.
    progress : bool
        Show a progress bar while training.

    Returns
    -------
    dict (or (dict, details))
        ``image_auroc``, ``pixel_auroc``, ``aupro``, ``good_correct``, ``defect_correct``,
        ``threshold`` (see :func:`course_lib.map_metrics.evaluate_anomaly_maps`), ``n_train``
        (images trained on), ``n_val``, ``n_test``, ``n_defective``, ``n_empty_masks``
        (defective test images whose mask is empty, see :func:`check_mvtec_data`),
        ``image_size`` (e.g. "313x125 to 318x125"), ``scale``, ``patch_size``, ``stride``,
        ``epochs``, ``samples``, ``loss``, ``category``, ``seconds``, ``profile``, ``seed``.

    Used by ``python -m course_lib.bench mvtec``.
    """
    prof = get_profile(profile)
    check_residual(loss)
    n_empty = check_mvtec_data(data)
    start = time.perf_counter()
    x_fit, x_val = split_good_images(data.x_train, seed=seed)
    size, stride = patch_geometry(x_fit + x_val + list(data.x_test), prof)
    autoencoder, history = train_mvtec_autoencoder(x_fit, loss, size, prof.mvtec_samples,
                                                   prof.mvtec_epochs, prof.batch_size,
                                                   seed=seed, progress=progress)
    val_maps = smooth_maps(residual_maps(autoencoder, x_val, loss, size, stride))
    test_maps = smooth_maps(residual_maps(autoencoder, data.x_test, loss, size, stride))
    result = evaluate_anomaly_maps(val_maps, test_maps, data.y_test, data.masks_test)
    result.update(_data_fields(data, x_fit, x_val, n_empty))
    result.update({
        "patch_size": int(size), "stride": int(stride),
        "epochs": len(history.history["loss"]), "samples": prof.mvtec_samples, "loss": loss,
        "category": data.category, "seconds": round(time.perf_counter() - start, 1),
        "profile": prof.name, "seed": int(seed)})
    if return_details:
        return result, {"autoencoder": autoencoder, "history": history, "x_fit": x_fit,
                        "x_val": x_val, "val_maps": val_maps, "test_maps": test_maps}
    return result


def mvtec_baseline_experiment(data, method: str = "texture inspection",
                              profile: Profile | str | None = None, seed: int = 0) -> dict:
    """One classic baseline (:data:`BASELINES`) on one MVTec-style category, with the same
    split and metrics as :func:`mvtec_autoencoder_experiment`.
    Used by ``python -m course_lib.bench mvtec-baseline``.
    """
    prof = get_profile(profile)
    if method not in BASELINES:
        raise DataError(f"method must be one of {BASELINES}, got {quote(method)}.")
    n_empty = check_mvtec_data(data)
    start = time.perf_counter()
    x_fit, x_val = split_good_images(data.x_train, seed=seed)
    val_maps, test_maps = mvtec_baseline_maps(x_fit, x_val, data.x_test, seed, (method,))[method]
    result = evaluate_anomaly_maps(val_maps, test_maps, data.y_test, data.masks_test)
    result.update(_data_fields(data, x_fit, x_val, n_empty))
    result.update({"method": method, "category": data.category,
                   "seconds": round(time.perf_counter() - start, 1), "profile": prof.name,
                   "seed": int(seed)})
    return result


def feature_backbone(kind: str, x_fit, profile: Profile | str | None = None, seed: int = 0):
    """The backbone of a feature method: ``"pretrained"`` (ImageNet), ``"random"`` (seeded
    random filters), ``"learned"`` (the first stage of an L2 patch autoencoder trained on the
    defect-free images ``x_fit``: features learned from the good images themselves, offline)
    or ``"auto"`` (pretrained when its weights can be had, else learned)."""
    if kind not in BACKBONE_KINDS:
        raise DataError(f"backbone must be one of {BACKBONE_KINDS}, got {quote(kind)}.")
    if kind in ("pretrained", "random"):
        return load_backbone(kind, seed=seed, verbose=False)
    if kind == "auto":
        try:
            return load_backbone("pretrained", seed=seed, verbose=False)
        except OSError:
            pass
    prof = get_profile(profile)
    size, _ = patch_geometry(x_fit, prof)
    autoencoder, _ = train_mvtec_autoencoder(x_fit, "l2", size, prof.mvtec_samples,
                                             prof.mvtec_epochs, prof.batch_size, seed=seed,
                                             progress=False)
    return learned_backbone(autoencoder, x_fit, seed=seed)


def mvtec_feature_experiment(data, method: str = "dictionary",
                             profile: Profile | str | None = None, seed: int = 0,
                             backbone="auto", coreset: str = "greedy", fraction: float = 0.1,
                             return_details: bool = False):
    """Fit a feature dictionary or memory bank on one MVTec-style category and evaluate it.

    The same split as :func:`mvtec_autoencoder_experiment` (:func:`split_good_images`: a
    fifth of the good images set the threshold) and the same metrics.

    Parameters
    ----------
    data : course_lib.data.mvtec.MVTecData
    method : {"dictionary", "knn"}
        :class:`course_lib.features.FeatureDictionary` (PCA 95%, 10 centres) or
        :class:`course_lib.features.PatchMemoryBank`.
    profile : Profile or str, optional
        ``feature_max_patches`` (and, for a learned backbone, the autoencoder's settings).
    seed : int
    backbone : Backbone or {"auto", "pretrained", "learned", "random"}
        A Backbone, or how to get one (:func:`feature_backbone`).
    coreset, fraction
        Of the memory bank.
    return_details : bool
        Also return ``{"model", "x_fit", "x_val", "val_maps", "test_maps", "backbone"}``.

    Returns
    -------
    dict (or (dict, details))
        ``image_auroc``, ``pixel_auroc``, ``aupro``, ``good_correct``, ``defect_correct``,
        ``threshold``, ``n_train``, ``n_val``, ``n_test``, ``n_defective``, ``n_empty_masks``,
        ``image_size``, ``scale``, ``method``, ``backbone``, ``n_patches``, ``coreset``,
        ``fraction``, ``category``, ``seconds``, ``profile``, ``seed``.

    Used by ``python -m course_lib.bench mvtec-dictionary`` / ``mvtec-knn``.
    """
    prof = get_profile(profile)
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}, got {quote(method)}.")
    if method == "knn":  # checked now, not after the features of every image are computed
        if coreset not in CORESETS:
            raise DataError(f"coreset must be one of {CORESETS}, got {quote(coreset)}.")
        fraction = check_fraction("fraction", fraction)
    if not isinstance(backbone, Backbone) and backbone not in BACKBONE_KINDS:
        raise DataError(f"backbone must be one of {BACKBONE_KINDS} or a Backbone, got "
                        f"{quote(backbone)}.")
    n_empty = check_mvtec_data(data)
    start = time.perf_counter()
    x_fit, x_val = split_good_images(data.x_train, seed=seed)
    bb = backbone if isinstance(backbone, Backbone) else feature_backbone(backbone, x_fit,
                                                                          prof, seed)
    if method == "dictionary":
        model = FeatureDictionary(bb, max_patches=prof.feature_max_patches, random_state=seed)
    else:
        model = PatchMemoryBank(bb, coreset=coreset, fraction=fraction,
                                max_patches=prof.feature_max_patches, random_state=seed)
    model.fit(x_fit)
    val_maps, test_maps = model.score_map(x_val), model.score_map(data.x_test)
    result = evaluate_anomaly_maps(val_maps, test_maps, data.y_test, data.masks_test)
    result.update(_data_fields(data, x_fit, x_val, n_empty))
    result.update({
        "method": method, "backbone": bb.name, "n_patches": int(model.n_patches_),
        "coreset": coreset if method == "knn" else None,
        "fraction": float(fraction) if method == "knn" else None,
        "category": data.category, "seconds": round(time.perf_counter() - start, 1),
        "profile": prof.name, "seed": int(seed)})
    if return_details:
        return result, {"model": model, "x_fit": x_fit, "x_val": x_val, "val_maps": val_maps,
                        "test_maps": test_maps, "backbone": bb}
    return result


# =========================================================================== SSIM speed
def ssim_speed_experiment(n_images: int = 32, size: int = 128, repeats: int = 7,
                          seed: int = 0) -> dict:
    """Time the course's SSIM map against scikit-image's on a batch of real texture crops.

    Crops of ``skimage.data.brick()`` (at most as many as fit, overlapping by half) and noisy
    copies; best of ``repeats`` runs each.  Returns ``images``, ``size``, milliseconds for
    scikit-image (one image at a time, ``skimage_ms``), ``ssim_residual_map`` (float32, eager)
    and ``ssim_map`` inside ``tf.function``, the speed ratios (skimage time / ours) and the
    largest absolute difference of the maps.  Used by ``python -m course_lib.bench ssim-speed``.
    """
    import skimage.data
    import tensorflow as tf
    from skimage.metrics import structural_similarity

    from course_lib.ssim import ssim_map, ssim_residual_map

    n_images = check_positive_int("n_images", n_images)
    repeats = check_positive_int("repeats", repeats)
    brick = skimage.data.brick() / 255.0
    size = check_positive_int("size", size, minimum=11)
    if size > min(brick.shape):
        raise DataError(f"size must be at most {min(brick.shape)} (the photo's side), got {size}.")
    rng = np.random.default_rng(seed)
    corners = [(r, c) for r in range(0, brick.shape[0] - size + 1, max(1, size // 2))
               for c in range(0, brick.shape[1] - size + 1, max(1, size // 4))]
    if n_images > len(corners):
        raise DataError(f"at most {len(corners)} crops of {size}x{size} fit in the photo, "
                        f"got n_images={n_images}.")
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

    graph_fn = tf.function(lambda a, b: ssim_map(a, b))
    xa, ya = x.astype("float32"), y.astype("float32")
    t_ref, ref = best(reference)
    t_eager, ours = best(lambda: ssim_residual_map(x, y))
    t_graph, _ = best(lambda: graph_fn(xa, ya).numpy())
    return {"images": int(len(x)), "size": size, "skimage_ms": round(t_ref, 1),
            "course_eager_ms": round(t_eager, 1), "course_tf_function_ms": round(t_graph, 1),
            "speedup_eager": round(t_ref / t_eager, 2), "speedup_tf_function": round(t_ref / t_graph, 2),
            "max_abs_diff": float(np.abs((1.0 - ours) - ref).max())}


# =========================================================================== ECG heartbeats
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

    Taught in notebook 08.
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
    Taught in notebook 08.
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
    to the closest training beat.  Taught in notebook 08.
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
    Taught in notebook 08."""
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
    ``recall_per_class`` (``{label: share flagged}``), ``n_train``, ``n_val``, ``n_test``, ``n_test_normal``, ``n_abnormal``,
    ``length``, ``epochs`` (run), ``seconds``, ``profile``, ``seed``.  With
    ``return_details`` it returns ``(result, details)``, ``details`` = ``{"autoencoder",
    "history", "scores", "val_scores", "threshold"}`` (``scores``: model name -> test
    scores), for figures of the same run.  Used by ``python -m course_lib.bench ecg``.
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
