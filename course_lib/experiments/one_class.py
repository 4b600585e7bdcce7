"""One-class MNIST: the runs of notebook 03 (and the autoencoder baseline of notebooks 06, 07).

:func:`train_one_class` trains a one-class autoencoder on normal digits only;
:func:`mnist_one_class_experiment` is the whole experiment behind ``bench mnist-one-class``
(split, train, score all ten digits, AUROC against the PCA baseline; with ``model="vae"`` also
notebook 06's variational autoencoder and its scores, from the same run).
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
from course_lib.vae import build_vae, vae_scores


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


#: The one-class VAE's code: 16 numbers (chosen on a validation split of the training file,
#: docs/mnist_one_class.md); its hidden layers are the autoencoder's.
ONE_CLASS_LATENT = 16


def train_one_class_vae(x_normal, profile=None, seed=0, latent_dim=ONE_CLASS_LATENT, beta=1.0,
                        progress=False):
    """Train a fresh VAE (``build_vae``) on normal images only (uint8 (N, 28, 28)), as
    ``train_one_class`` trains the autoencoder: at most ``profile.one_class_epochs`` epochs,
    early stopping on the negative ELBO of the last ``ONE_CLASS_VALIDATION_SPLIT`` of the
    images, best weights kept.  Returns the VAE.  Taught in notebook 06."""
    prof = get_profile(profile)
    x = flatten(x_normal)
    set_seed(seed)
    vae = build_vae(latent_dim=latent_dim, beta=beta, seed=seed)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=ONE_CLASS_PATIENCE,
                                         restore_best_weights=True)
    bar = [epoch_progress(prof.one_class_epochs, "one-class VAE")] if progress else []
    vae.fit(x, epochs=prof.one_class_epochs, batch_size=prof.batch_size, shuffle=True,
            validation_split=ONE_CLASS_VALIDATION_SPLIT, callbacks=[stop, *bar], verbose=0)
    return vae


#: What ``mnist_one_class_experiment`` can train besides PCA: the autoencoder alone, or both.
ONE_CLASS_MODELS = ("ae", "vae")


def mnist_one_class_experiment(x_train, y_train, x_test, y_test, digit: int,
                               profile: Profile | str | None = None, seed: int = 0,
                               model: str = "ae", return_details: bool = False):
    """One-class MNIST: normal = ``digit``, anomaly = every other digit.

    Trains :func:`train_one_class` on the training images of ``digit`` only, scores every
    test image by its reconstruction error, and fits a PCA baseline with as many components
    as the code on the same images.  Returns a dict with ``digit``, ``auroc`` (autoencoder),
    ``auprc``, ``baseline_pca_auroc``, ``seconds``, ``profile``, ``n_train``, ``n_test``.
    ``model="vae"`` also trains the one-class VAE (:func:`train_one_class_vae`, same
    images and seed) and adds ``vae_auroc`` (its squared error at the mean code, the score
    chosen on validation digits) and ``vae_<score>_auroc`` for every other score of
    :data:`course_lib.vae.VAE_SCORES`, ``vae_epochs`` and ``vae_seconds``.  With
    ``return_details`` it returns ``(result, details)``, ``details`` = ``{"autoencoder"}``.
    Used by ``python -m course_lib.bench mnist-one-class``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    prof = get_profile(profile)
    if model not in ONE_CLASS_MODELS:
        raise DataError(f"model must be one of {list(ONE_CLASS_MODELS)}, got {model!r}.")
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
    result = {
        "digit": int(digit),
        "auroc": round(float(roc_auc_score(is_anomaly, scores)), 4),
        "auprc": round(float(average_precision_score(is_anomaly, scores)), 4),
        "baseline_pca_auroc": round(float(roc_auc_score(is_anomaly, pca_scores)), 4),
        "seconds": round(time.perf_counter() - start, 1),
        "profile": prof.name,
        "n_train": int(len(x_normal)),
        "n_test": int(len(x_test)),
    }
    if model == "vae":
        start = time.perf_counter()
        vae = train_one_class_vae(x_normal, prof, seed=seed)
        by_score = vae_scores(vae, flatten(x_test), seed=seed)
        aurocs = {k: round(float(roc_auc_score(is_anomaly, s)), 4) for k, s in by_score.items()}
        result.update({
            "vae_auroc": aurocs["mse_at_mean"],
            **{f"vae_{k}_auroc": v for k, v in aurocs.items() if k != "mse_at_mean"},
            "vae_epochs": len(vae.history.history["loss"]),
            "vae_seconds": round(time.perf_counter() - start, 1)})
    if return_details:
        return result, {"autoencoder": autoencoder}
    return result
