"""Image batches in the shapes models want: scaling, flattening, a channel axis, noise, flips.

- :func:`to_float`, :func:`flatten`, :func:`add_channel`: uint8 digits -> float32 in [0, 1],
  as (N, 784) vectors for dense models or (N, 28, 28, 1) for convolutional ones;
- :func:`add_noise`: the noisy inputs of a denoising autoencoder;
- :func:`augment_dihedral`: flipped and rotated copies of texture images.

Imports only NumPy and :mod:`course_lib.checks`.
"""

from __future__ import annotations

import numpy as np

from course_lib.checks import check_image_batch, check_number, check_positive_int


def to_float(x, image_shape=(28, 28), name: str = "x") -> np.ndarray:
    """uint8 images -> float32 (N, H, W) in [0, 1] (float input is checked and passed through).

    Accepts (N, H, W) or (N, H, W, 1), uint8 (0-255) or float (0-1); ``image_shape`` is the
    required (H, W) (``None``: any size).
    """
    arr = check_image_batch(x, name, shape=image_shape, unit_range=True, keep_uint8=True,
                            dtype=np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr


def flatten(x) -> np.ndarray:
    """Images (N, 28, 28) -> float32 vectors (N, 784) in [0, 1] for a dense autoencoder.

    Taught in notebook 01.
    """
    arr = to_float(x)
    return arr.reshape(len(arr), -1)


def add_channel(x, name: str = "x") -> np.ndarray:
    """Images (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1] for convolutional models.

    Parameters
    ----------
    x : array-like
        uint8 (0-255) or float (0-1) images of shape (N, 28, 28) or (N, 28, 28, 1).
    name : str
        What the caller calls ``x`` (for error messages).

    Returns
    -------
    ndarray of shape (N, 28, 28, 1), float32 in [0, 1]

    Taught in notebook 02.
    """
    return to_float(x, name=name)[..., None]


def add_noise(x, std: float = 0.3, seed: int = 0) -> np.ndarray:
    """Add Gaussian pixel noise and clip back to [0, 1] (input for a denoising autoencoder).

    Parameters
    ----------
    x : array-like
        uint8 or float images (N, 28, 28) or (N, 28, 28, 1).
    std : float
        Standard deviation of the noise, in units of the [0, 1] pixel range.
    seed : int
        Fixes the noise pattern: with the same seed a larger ``std`` scales the same pattern,
        so errors grow steadily with ``std``.

    Returns
    -------
    ndarray of the input's shape, float32 in [0, 1]

    Taught in notebook 02.
    """
    std = check_number("std", std, low=0.0)
    shape = np.shape(x)
    arr = to_float(x)
    rng = np.random.default_rng(seed)
    noisy = np.clip(arr + rng.normal(0.0, std, size=arr.shape), 0.0, 1.0).astype(np.float32)
    return noisy.reshape(shape)


def augment_dihedral(x, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training samples: random images of ``x`` (N, H, W), each randomly flipped and
    turned by a multiple of 90 degrees (square images).  Textures look the same either way,
    so this multiplies the defect-free data.
    """
    x = check_image_batch(x, "x", dtype=np.float32)
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"augment_dihedral needs square images, got {x.shape[1:]}.")
    n = check_positive_int("n", n)
    rng = np.random.default_rng(seed)
    out = np.empty((n,) + x.shape[1:], dtype=np.float32)
    for i, j in enumerate(rng.integers(0, len(x), n)):
        img = np.rot90(x[j], k=int(rng.integers(4)))
        out[i] = img[:, ::-1] if rng.integers(2) else img
    return out
