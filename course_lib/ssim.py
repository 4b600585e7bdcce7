"""Structural similarity (SSIM) as a Keras loss and as a per-pixel anomaly map.

SSIM (Wang et al., 2004) compares two images in small windows by their luminance (local
mean), contrast (local standard deviation) and structure (local correlation).  An
autoencoder trained with ``1 - SSIM`` instead of the squared error reconstructs edges and
textures rather than their average, and ``1 - SSIM map`` is a residual map that flags
structural defects a squared error misses (Bergmann et al., MVTec AD, CVPR 2019).

Settings (Wang et al. 2004, also used by ``tf.image.ssim`` and scikit-image): a Gaussian
window of 11 x 11 pixels with sigma 1.5, ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with
``k1 = 0.01``, ``k2 = 0.03`` and ``L`` the data range (1 for images in [0, 1]); variances
use the window weights without a sample correction (``use_sample_covariance=False`` in
scikit-image).

- :func:`ssim_map` - the SSIM of every pixel's window, as a Keras tensor;
- :func:`ssim_loss` - ``1 - mean SSIM`` per image, for ``model.compile(loss=ssim_loss)``;
- :func:`ssim_residual_map` - NumPy in, NumPy out: ``1 - SSIM map`` (the anomaly map).

Borders (``padding``): ``"same"`` (the default of :func:`ssim_map`) pads each image by
mirroring it at its edge (``d c b a | a b c d``, scipy's ``mode="reflect"``) so the map has
the image's size and equals scikit-image's ``structural_similarity(..., full=True)`` map at
every pixel; ``"valid"`` keeps only the windows that lie inside the image (the map shrinks
by ``window_size - 1`` pixels in each direction), as ``tf.image.ssim`` does: its mean equals
``tf.image.ssim`` and scikit-image's mean SSIM.

:func:`gaussian_window`, :func:`ssim_map` and :func:`ssim_loss` are written out in notebook 05
(cells ``# Saved in course_lib.ssim as ...``); :func:`prepare_ssim_inputs`,
:func:`gaussian_filter_stack` and :func:`ssim_residual_map` are the plumbing around them.
"""

from __future__ import annotations

import numpy as np
from keras import ops

PADDINGS = ("same", "valid")


def check_ssim_settings(data_range, window_size, sigma, k1, k2, padding) -> None:
    """Raise ValueError unless the SSIM settings are usable: positive finite ``data_range``,
    ``sigma``, ``k1``, ``k2``; an odd ``window_size`` >= 3; ``padding`` "same" or "valid"."""
    for name, value in (("data_range", data_range), ("sigma", sigma), ("k1", k1), ("k2", k2)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    if (not isinstance(window_size, (int, np.integer)) or isinstance(window_size, bool)
            or window_size < 3 or window_size % 2 == 0):
        raise ValueError(f"window_size must be an odd integer >= 3 (11 in Wang et al.), got "
                         f"{window_size!r}.")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")


def gaussian_window(window_size=11, sigma=1.5):
    """The 1-D Gaussian weights of the SSIM window (length window_size, sum 1).  The 2-D
    window is their outer product, so filtering runs as two 1-D passes (rows, then columns)."""
    check_ssim_settings(1.0, window_size, sigma, 0.01, 0.03, "same")
    coords = np.arange(window_size) - (window_size - 1) / 2
    g = np.exp(-0.5 * (coords / sigma) ** 2)
    return g / g.sum()


def prepare_ssim_inputs(x, y, data_range, window_size, sigma, k1, k2, padding, dtype):
    """Check the settings and the two batches; return ``(x, y, squeeze)``: tensors of shape
    (batch, H, W, C) in ``dtype`` and whether a channel axis was added (input (batch, H, W))."""
    check_ssim_settings(data_range, window_size, sigma, k1, k2, padding)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    x = ops.cast(ops.convert_to_tensor(x), dtype)
    y = ops.cast(ops.convert_to_tensor(y), dtype)
    if len(x.shape) != len(y.shape) or len(x.shape) not in (3, 4):
        raise ValueError(f"x and y must be batches of shape (batch, H, W) or (batch, H, W, C), "
                         f"got shapes {tuple(x.shape)} and {tuple(y.shape)}.")
    known = [(a, b) for a, b in zip(x.shape, y.shape) if a is not None and b is not None]
    if any(a != b for a, b in known):
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}.")
    for side in x.shape[1:3]:
        if side is not None and side < window_size:
            raise ValueError(f"images must be at least {window_size}x{window_size} pixels "
                             f"(the SSIM window), got shape {tuple(x.shape)}.")
    squeeze = len(x.shape) == 3
    if squeeze:
        x, y = ops.expand_dims(x, -1), ops.expand_dims(y, -1)
    if x.shape[-1] is None:
        raise ValueError("the channel axis of x must have a known size.")
    return x, y, squeeze


def gaussian_filter_stack(stack, window_size, sigma, padding):
    """Gaussian-weighted window average of every channel of ``stack`` (batch, H, W, n): two
    1-D depthwise convolutions; ``padding="same"`` mirrors the borders first (scipy's
    ``mode="reflect"``, as scikit-image does), ``"valid"`` keeps the windows inside."""
    if padding == "same":
        r = (window_size - 1) // 2
        stack = ops.pad(stack, [[0, 0], [r, r], [r, r], [0, 0]], mode="symmetric")
    g = gaussian_window(window_size, sigma).astype(ops.dtype(stack))
    n = stack.shape[-1]
    rows = ops.convert_to_tensor(np.tile(g.reshape(window_size, 1, 1, 1), (1, 1, n, 1)))
    cols = ops.convert_to_tensor(np.tile(g.reshape(1, window_size, 1, 1), (1, 1, n, 1)))
    return ops.depthwise_conv(ops.depthwise_conv(stack, rows, padding="valid"), cols,
                              padding="valid")


def ssim_map(x, y, data_range=1.0, window_size=11, sigma=1.5, k1=0.01, k2=0.03,
             padding="same", dtype="float32"):
    """Per-pixel SSIM of two batches of images (batch, H, W[, C]): a Keras tensor, so it can
    be a loss.  padding="same": the map has the images' size (equal to scikit-image's full
    map); "valid": only windows inside the image (as tf.image.ssim)."""
    x, y, squeeze = prepare_ssim_inputs(x, y, data_range, window_size, sigma, k1, k2,
                                        padding, dtype)
    # Second moments about each image's mean (a constant: the variances are unchanged) keep
    # E[x^2] - E[x]^2 from cancelling in bright, flat windows.
    cx = ops.stop_gradient(ops.mean(x, axis=(1, 2), keepdims=True))
    cy = ops.stop_gradient(ops.mean(y, axis=(1, 2), keepdims=True))
    xc, yc = x - cx, y - cy
    # The five local statistics, filtered in one pass: means, variances and covariance.
    stats = gaussian_filter_stack(ops.concatenate([x, y, xc * xc, yc * yc, xc * yc], -1),
                                  window_size, sigma, padding)
    mu_x, mu_y, e_xx, e_yy, e_xy = ops.split(stats, 5, axis=-1)
    dx, dy = mu_x - cx, mu_y - cy
    var_x, var_y, cov_xy = e_xx - dx * dx, e_yy - dy * dy, e_xy - dx * dy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    luminance = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    contrast_structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
    ssim = luminance * contrast_structure
    return ops.squeeze(ssim, axis=-1) if squeeze else ssim


def ssim_loss(y_true, y_pred):
    """1 - mean SSIM per image (windows inside the image, as tf.image.ssim), for
    model.compile(loss=ssim_loss): 0 for a perfect reconstruction, at most 2."""
    s = ssim_map(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"), padding="valid")
    return 1.0 - ops.mean(s, axis=tuple(range(1, len(s.shape))))


def ssim_residual_map(x, y, data_range: float = 1.0, window_size: int = 11,
                      sigma: float = 1.5, batch_size: int = 64,
                      dtype: str = "float32", k2: float = 0.03) -> np.ndarray:
    """Anomaly map ``1 - SSIM`` of inputs ``x`` and their reconstructions ``y`` (NumPy).

    Parameters
    ----------
    x, y : array-like of the same shape (N, H, W) or (N, H, W, C)
        Images and reconstructions, values in a range of width ``data_range`` (uint8 images:
        pass ``data_range=255``).  A single image (H, W) is also accepted.
    data_range, window_size, sigma : float, int, float
        As in :func:`ssim_map`.
    batch_size : int
        Images per TensorFlow call (bounds the memory used).
    dtype : {"float32", "float64"}
        Precision of the computation (see :func:`ssim_map`): float32 matches scikit-image's
        map to about 1e-4, float64 to about 1e-9 (three times slower).
    k2 : float
        SSIM's contrast constant, ``C2 = (k2 * data_range)**2`` (Wang et al.: 0.03).  A larger
        value makes windows of little contrast count as alike: differences of contrast or
        structure well below ``k2`` are ignored (for example sensor noise on a flat surface).

    Returns
    -------
    ndarray of float32, same shape as ``x``
        ``1 - SSIM`` per pixel, in [0, 2]: 0 where the reconstruction matches, large where
        structure differs.  Borders are mirrored (``padding="same"``), so the map lines up
        with the image and its ground-truth mask pixel for pixel.

    Used in notebook 05 (by ``residual_maps``).
    """
    a = np.asarray(x)
    b = np.asarray(y)
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same shape, got {a.shape} and {b.shape}.")
    single = a.ndim == 2
    if single:
        a, b = a[None], b[None]
    if a.ndim not in (3, 4) or a.shape[0] == 0:
        raise ValueError(f"expected images of shape (N, H, W) or (N, H, W, C) (or one (H, W) "
                         f"image), got shape {np.asarray(x).shape}.")
    for name, arr in (("x", a), ("y", b)):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"{name}: expected numeric images, got dtype {arr.dtype}.")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or infinite values.")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    out = np.empty(a.shape, dtype=np.float32)
    for start in range(0, len(a), batch_size):
        stop = start + batch_size
        s = ssim_map(a[start:stop], b[start:stop], data_range=data_range,
                     window_size=window_size, sigma=sigma, k2=k2, padding="same",
                     dtype=dtype)
        out[start:stop] = 1.0 - ops.convert_to_numpy(s)
    return out[0] if single else out
