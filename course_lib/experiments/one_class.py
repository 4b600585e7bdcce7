"""One-class MNIST: the runs of notebook 03 (and the autoencoder baseline of notebook 06).

:func:`train_one_class` trains a one-class autoencoder on normal digits only;
:func:`mnist_one_class_experiment` is the whole experiment behind ``bench mnist-one-class``
(split, train, score all ten digits, AUROC against the PCA baseline).
"""

from __future__ import annotations

import time

import keras

from course_lib.baselines import PCAReconstruction
from course_lib.checks import DataError, check_class_labels, check_positive_int
from course_lib.config import Profile, get_profile, set_seed
from course_lib.images import flatten
from course_lib.metrics import anomaly_scores
from course_lib.models import (ONE_CLASS_CODE_SIZE,
                               build_one_class_autoencoder)
from course_lib.training import epoch_progress


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
