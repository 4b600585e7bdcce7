"""Image batches in the shapes models want: scaling, flattening, a channel axis, noise, patches.

- :func:`to_float`, :func:`flatten`, :func:`add_channel`: uint8 digits -> float32 in [0, 1],
  as (N, 784) vectors for dense models or (N, 28, 28, 1) for convolutional ones;
- :func:`add_noise`: the noisy inputs of a denoising autoencoder;
- patches of images of any size (notebooks 05 and 08): :func:`patch_size_for` chooses a patch
  size from the data, :func:`random_patches` cuts training patches, :func:`patch_corners` and
  :func:`stitch_patches` tile an image with overlapping patches and average what comes back.

Imports only NumPy and :mod:`course_lib.checks`.
"""

from __future__ import annotations

import numpy as np

from course_lib.checks import (DataError, check_image_batch, check_image_list, check_number,
                               check_positive_int)


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


# --------------------------------------------------------------------------- patches
def patch_size_for(images, largest: int, multiple: int = 8) -> int:
    """The patch size for ``images`` of any sizes: ``largest``, or less if the smallest side of
    the smallest image is shorter, rounded down to a multiple of ``multiple`` (so that three
    2x poolings and upsamplings fit).  "Patch sizes chosen from the data": a 250-pixel-wide
    photo gets 64-pixel patches from ``largest=64``, a 40-pixel crop gets 40."""
    images = check_image_list(images, "images")
    multiple = check_positive_int("multiple", multiple)
    largest = check_positive_int("largest", largest, minimum=multiple)
    side = min(min(img.shape) for img in images)
    if side < multiple:
        raise DataError(f"images of {side} pixels are too small for patches: need at least "
                        f"{multiple}x{multiple}.")
    return min(largest, side) // multiple * multiple


def patch_corners(shape, size: int, stride: int) -> list:
    """Top-left corners ``(row, col)`` of ``size`` x ``size`` patches every ``stride`` pixels
    that cover an image of ``shape``; the last row and column of patches end at the border."""
    size, stride = check_positive_int("size", size), check_positive_int("stride", stride)
    if stride > size:
        raise DataError(f"stride {stride} is larger than the patch size {size}: the patches "
                        f"would leave pixels uncovered.")
    h, w = (int(v) for v in shape)
    if min(h, w) < size:
        raise DataError(f"an image of {h}x{w} pixels is smaller than the {size}x{size} patches.")
    rows = list(range(0, h - size + 1, stride))
    cols = list(range(0, w - size + 1, stride))
    rows += [h - size] if rows[-1] != h - size else []
    cols += [w - size] if cols[-1] != w - size else []
    return [(r, c) for r in rows for c in cols]


def random_patches(images, n, size, seed=0, flips=True):
    """``n`` random ``size`` x ``size`` patches of ``images`` (a list of 2-D arrays of any
    sizes), at the images' own resolution; with ``flips``, each is flipped left-right and
    up-down at random (a texture looks the same flipped).  Returns (n, size, size, 1)."""
    images = check_image_list(images, "images", min_side=size)
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 1), np.float32)
    for i in range(n):
        img = images[rng.integers(len(images))]
        r = rng.integers(img.shape[0] - size + 1)  # a random corner
        c = rng.integers(img.shape[1] - size + 1)
        patch = img[r:r + size, c:c + size]
        if flips and rng.integers(2):
            patch = patch[:, ::-1]
        if flips and rng.integers(2):
            patch = patch[::-1, :]
        out[i, ..., 0] = patch
    return out


def stitch_patches(patch_maps, corners, shape):
    """One map of ``shape`` from per-patch maps (k, size, size) at ``corners``: every pixel
    gets the MEAN of the patches that cover it (overlapping patches, as in the MVTec paper)."""
    total = np.zeros(shape, np.float64)
    count = np.zeros(shape, np.float64)
    size = patch_maps.shape[1]
    for patch_map, (r, c) in zip(patch_maps, corners):
        total[r:r + size, c:c + size] += patch_map
        count[r:r + size, c:c + size] += 1
    return (total / count).astype(np.float32)


def resize_images(images, side: int) -> np.ndarray:
    """Images of any sizes (a list of 2-D arrays, or (H, W, C) colour) resized to
    ``side`` x ``side`` (scikit-image, anti-aliased): a batch (N, side, side, C) of float32, C = 1
    for grey.  The whole-image autoencoder of notebook 05 takes objects at one size."""
    from skimage.transform import resize

    side = check_positive_int("side", side)
    out = []
    for i, img in enumerate(images):
        img = np.asarray(img, np.float32)
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise DataError(f"expected images of shape (H, W) or (H, W, C), got {img.shape}.")
        if not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
            raise DataError(f"images[{i}] has values outside [0, 1] (or NaN): scale images to "
                            f"[0, 1] first (the course's loaders do).")
        if out and img.shape[-1] != out[0].shape[-1]:
            raise DataError(f"images[{i}] has {img.shape[-1]} channel(s), images[0] "
                            f"{out[0].shape[-1]}: make them all grey or all colour.")
        out.append(resize(img, (side, side), order=1, anti_aliasing=True,
                          preserve_range=True).astype(np.float32))
    if not out:
        raise DataError("no images to resize.")
    return np.stack(out)


def with_flips(x, vertical: bool = True) -> np.ndarray:
    """A batch (N, H, W, C) and its mirror images: left-right, and with ``vertical`` also
    up-down and both (an object seen from above, like a bottle, looks as good flipped)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise DataError(f"expected a batch (N, H, W, C), got shape {x.shape}.")
    out = [x, x[:, :, ::-1]]
    if vertical:
        out += [x[:, ::-1], x[:, ::-1, ::-1]]
    return np.concatenate(out)
