"""Classic baselines to compare the autoencoders with (scikit-learn)."""

from __future__ import annotations

import numpy as np


class PCAReconstruction:
    """Anomaly score = squared error of a PCA reconstruction (a linear autoencoder).

    PCA with ``k`` components is the best *linear* autoencoder with a ``k``-dimensional code,
    so it is the natural baseline for a neural one.  Wraps ``sklearn.decomposition.PCA``.

    Parameters
    ----------
    n_components : int or float
        Passed to scikit-learn: a count, or a fraction of variance to keep (e.g. 0.9).

    Taught in notebook 03; used by ``python -m course_lib.bench mnist-one-class``.
    """

    def __init__(self, n_components=0.9, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, x):
        from sklearn.decomposition import PCA

        x = self._flat(x)
        self.pca_ = PCA(n_components=self.n_components, random_state=self.random_state).fit(x)
        return self

    def reconstruct(self, x) -> np.ndarray:
        x = self._flat(x)
        return self.pca_.inverse_transform(self.pca_.transform(x))

    def score_samples(self, x) -> np.ndarray:
        """Mean squared reconstruction error per sample (higher = more anomalous)."""
        x = self._flat(x)
        return np.mean((x - self.reconstruct(x)) ** 2, axis=1)

    @staticmethod
    def _flat(x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"expected a non-empty batch of samples, got shape {x.shape}.")
        x = x.reshape(len(x), -1)
        if not np.all(np.isfinite(x)):
            raise ValueError("input contains NaN or infinite values.")
        return x
