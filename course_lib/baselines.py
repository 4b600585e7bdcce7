"""Classic baselines to compare the autoencoders with (scikit-learn, NumPy).

- :class:`PCAReconstruction`: the best *linear* autoencoder (notebooks 03, 04);
- :class:`VariationModel`: per-pixel mean and spread of aligned good images (notebook 05);
- :class:`TextureInspection`: a Gaussian mixture of small patches (notebook 05).
"""

from __future__ import annotations

import numpy as np

from course_lib.checks import (DataError, check_image_list, check_number,
                               check_positive_int)
from course_lib.images import patch_corners, stitch_patches
from course_lib.sampling import seeded_subset


class PCAReconstruction:
    """Anomaly score = squared error of a PCA reconstruction (a linear autoencoder).

    PCA with ``k`` components is the best *linear* autoencoder with a ``k``-dimensional code,
    so it is the natural baseline for a neural one.  Wraps ``sklearn.decomposition.PCA``.

    Parameters
    ----------
    n_components : int or float
        Passed to scikit-learn: a count, or a fraction of variance to keep (e.g. 0.9).

    Taught in notebook 03; ``creditcard_baselines`` uses it too.
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
        try:
            x = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"x: expected an array of numbers ({exc}).") from exc
        if x.ndim < 2 or len(x) == 0:
            raise DataError(f"expected a non-empty batch of samples, got shape {x.shape}.")
        x = x.reshape(len(x), -1)
        if not np.all(np.isfinite(x)):
            raise DataError("input contains NaN or infinite values.")
        return x


# --------------------------------------------------------------------------- anomaly maps
def _check_images(x, name: str = "x", min_images: int = 1) -> np.ndarray:
    """Grayscale images of ONE size as float64 (N, H, W) (a list or an array; a trailing
    channel axis of 1 is dropped); images of different sizes get a clear error."""
    images = check_image_list(x, name, min_images=min_images, dtype=np.float64)
    shapes = sorted({img.shape for img in images})
    if len(shapes) > 1:
        raise DataError(f"{name}: the variation model compares pixel positions, so it needs "
                        f"images of one size; got sizes from {shapes[0]} to {shapes[-1]} (cut "
                        f"them to a common size first).")
    return np.stack(images)


class VariationModel:
    """MVTec AD's *variation model*: how far each pixel is from its usual value.

    ``fit`` learns the per-pixel mean and standard deviation of defect-free images that are
    *aligned* (every pixel shows the same part of the object in every image, as with
    centred bottles or screws); the anomaly map of an image is
    ``|x - mean| / (std + eps)``, a per-pixel z-score.  It needs no training beyond two
    averages and is a strong baseline for aligned objects; on textures, where nothing is
    aligned, the mean is a flat grey and the map mostly measures the texture itself
    (Bergmann et al., CVPR 2019, Table 2 reports it for objects only).

    Parameters
    ----------
    eps : float
        Added to the standard deviation, so pixels that never change (std 0) do not give
        infinite scores.  In the images' units (0.01 for images in [0, 1]).

    One of the classic baselines of :func:`course_lib.experiments.mvtec.mvtec_baseline_maps`.
    """

    def __init__(self, eps: float = 0.01):
        self.eps = eps

    def fit(self, x_good):
        """Learn the per-pixel mean and std of defect-free images (N >= 2, (N, H, W)).

        Returns ``self``.
        """
        check_number("eps", self.eps, low=0.0, low_open=True)
        x = _check_images(x_good, "x_good", min_images=2)
        self.mean_ = x.mean(axis=0)
        self.std_ = x.std(axis=0)
        return self

    def anomaly_map(self, x) -> np.ndarray:
        """``|x - mean| / (std + eps)`` per pixel: ndarray (N, H, W), higher = more anomalous."""
        if not hasattr(self, "mean_"):
            raise DataError("VariationModel is not fitted yet: call fit(x_good) first.")
        arr = _check_images(x)
        if arr.shape[1:] != self.mean_.shape:
            raise DataError(f"x: images of size {arr.shape[1:]} given, but the model was fitted "
                             f"on {self.mean_.shape}.")
        return np.abs(arr - self.mean_) / (self.std_ + self.eps)


class TextureInspection:
    """A simple *texture-inspection model*: a Gaussian mixture of small patches.

    In the spirit of the texture-inspection baseline of the MVTec AD paper (Bergmann et al.,
    CVPR 2019), which models the distribution of local texture features of defect-free
    images: every ``patch_size`` x ``patch_size`` patch (taken every ``stride`` pixels) is a
    feature vector of its pixels; ``fit`` fits a scikit-learn ``GaussianMixture`` to the
    patches of defect-free images; the anomaly map is the *negative log-likelihood* of each
    patch under that mixture, averaged over the patches that cover a pixel (so it has the
    image's size).  Unlike the variation model it ignores where a patch lies, so it suits
    textures.

    Parameters
    ----------
    patch_size : int
        Side of the square patches in pixels (>= 2).
    stride : int
        Step between patches (<= ``patch_size`` so every pixel is covered).
    n_components : int
        Gaussians in the mixture.
    max_patches : int
        At most this many training patches (a seeded random subset) are used by ``fit``.
    random_state : int
        Seed of the subset and of the mixture's initialisation.

    One of the classic baselines of :func:`course_lib.experiments.mvtec.mvtec_baseline_maps`.
    """

    def __init__(self, patch_size: int = 8, stride: int = 4, n_components: int = 5,
                 max_patches: int = 10000, random_state: int = 0):
        self.patch_size = patch_size
        self.stride = stride
        self.n_components = n_components
        self.max_patches = max_patches
        self.random_state = random_state

    def _check_settings(self, shape) -> None:
        for name in ("patch_size", "stride", "n_components", "max_patches"):
            check_positive_int(name, getattr(self, name))
        if self.patch_size < 2 or self.stride > self.patch_size:
            raise DataError(f"need patch_size >= 2 and stride <= patch_size (every pixel "
                             f"covered), got patch_size={self.patch_size}, stride={self.stride}.")
        if min(shape) < self.patch_size:
            raise DataError(f"images of size {shape} are smaller than patch_size "
                             f"{self.patch_size}.")

    def _patches(self, img: np.ndarray):
        """Patches of one image every ``stride`` pixels (the last ones end at the border):
        ``(patches (k, patch_size**2), corners)``."""
        corners = patch_corners(img.shape, self.patch_size, self.stride)
        p = self.patch_size
        return np.stack([img[r:r + p, c:c + p].ravel() for r, c in corners]), corners

    def fit(self, x_good):
        """Fit the mixture to the patches of defect-free images (a list of images of any
        sizes, or (N, H, W)).  Returns ``self``."""
        from sklearn.mixture import GaussianMixture

        images = check_image_list(x_good, "x_good", dtype=np.float64)
        for img in images:
            self._check_settings(img.shape)
        feats = np.concatenate([self._patches(img)[0] for img in images])
        feats = feats[seeded_subset(len(feats), self.max_patches, self.random_state)]
        if len(feats) < self.n_components:
            raise DataError(f"only {len(feats)} training patches for {self.n_components} "
                            f"mixture components: give more or larger images.")
        self.gmm_ = GaussianMixture(n_components=self.n_components, covariance_type="full",
                                    reg_covar=1e-4, random_state=self.random_state).fit(feats)
        return self

    def anomaly_map(self, x) -> list:
        """Per-pixel mean negative log-likelihood of the patches covering it, one map per image
        (a list, the images' sizes); higher = worse."""
        if not hasattr(self, "gmm_"):
            raise DataError("TextureInspection is not fitted yet: call fit(x_good) first.")
        maps = []
        for img in check_image_list(x, "x", dtype=np.float64):
            self._check_settings(img.shape)
            feats, corners = self._patches(img)
            nll = -self.gmm_.score_samples(feats)
            p = self.patch_size
            maps.append(stitch_patches(np.repeat(nll, p * p).reshape(-1, p, p), corners,
                                       img.shape))
        return maps
