"""Reconstruction errors and anomaly scores.

An autoencoder trained on normal data reconstructs normal inputs well and unusual inputs
badly; the per-sample reconstruction error is the anomaly score.  Ranking metrics come from
scikit-learn (``roc_auc_score``, ``average_precision_score``).
"""

from __future__ import annotations

import numpy as np


def reconstruction_error(x, x_hat, kind: str = "mse") -> np.ndarray:
    """Per-sample reconstruction error between inputs ``x`` and reconstructions ``x_hat``.

    Parameters
    ----------
    x, x_hat : array-like of the same shape (N, ...)
    kind : {"mse", "mae"}
        Mean squared or mean absolute error over all features of a sample.

    Returns
    -------
    ndarray of shape (N,)

    Taught in notebook 01 (and used as the anomaly score from notebook 03 on).
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_hat, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {a.shape} and {b.shape}.")
    if a.ndim < 1 or len(a) == 0:
        raise ValueError(f"expected a non-empty batch of samples, got shape {a.shape}.")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("x or x_hat contains NaN or infinite values.")
    diff = (a - b).reshape(len(a), -1)
    if kind == "mse":
        return np.mean(diff ** 2, axis=1)
    if kind == "mae":
        return np.mean(np.abs(diff), axis=1)
    raise ValueError(f"kind must be 'mse' or 'mae', got {kind!r}.")


def anomaly_scores(model, x, batch_size: int = 256, kind: str = "mse") -> np.ndarray:
    """Score samples by how badly ``model`` (an autoencoder) reconstructs them.

    Taught in notebook 03; used by ``python -m course_lib.bench``.
    """
    x = np.asarray(x, dtype=np.float32)
    x_hat = model.predict(x, batch_size=batch_size, verbose=0)
    return reconstruction_error(x, x_hat.reshape(x.shape), kind=kind)
