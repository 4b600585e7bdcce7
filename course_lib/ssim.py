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

Taught in notebook 05.  Keras is imported inside the functions (importing this module is cheap).
"""

from __future__ import annotations

import numpy as np

PADDINGS = ("same", "valid")


def _check_settings(data_range, window_size, sigma, k1, k2, padding) -> None:
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


def gaussian_window(window_size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The normalised 1-D Gaussian weights of the SSIM window (sum 1, length ``window_size``).

    The 2-D window is the outer product of this vector with itself, so the filter runs as two
    1-D convolutions (rows, then columns).  Taught in notebook 05.
    """
    _check_settings(1.0, window_size, sigma, 0.01, 0.03, "same")
    coords = np.arange(window_size, dtype=np.float64) - (window_size - 1) / 2.0
    g = np.exp(-0.5 * (coords / float(sigma)) ** 2)
    return g / g.sum()


def ssim_map(x, y, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03, padding: str = "same",
             dtype: str = "float32"):
    """Per-pixel SSIM of two batches of images (a Keras tensor, differentiable).

    Parameters
    ----------
    x, y : array-like or tensor of shape (batch, H, W) or (batch, H, W, C)
        Two batches of the same shape, values in a range of width ``data_range``.  Each
        channel is compared separately (as scikit-image does with ``channel_axis=-1``).
        ``H`` and ``W`` must be at least ``window_size``.
    data_range : float
        Width of the value range ``L`` (1.0 for [0, 1] images, 255 for uint8).
    window_size, sigma : int, float
        Size (odd) and standard deviation of the Gaussian window (11 and 1.5).
    k1, k2 : float
        Stabilising constants, ``C1 = (k1 L)^2`` and ``C2 = (k2 L)^2``.
    padding : {"same", "valid"}
        ``"same"``: mirror the image at its borders, output (batch, H, W[, C]) equal to
        scikit-image's full SSIM map; ``"valid"``: windows inside the image only, output
        (batch, H - window_size + 1, W - window_size + 1[, C]) as in ``tf.image.ssim``.
    dtype : {"float32", "float64"}
        Precision of the computation.  float32 (fast, for training) agrees with
        scikit-image to a few 1e-4 at worst (nearly flat windows far from the image's mean
        value, where the variance is a small difference of large numbers); float64 to
        about 1e-9 but runs several times slower on a CPU.

    Returns
    -------
    tensor of ``dtype``, same rank as the input
        SSIM in [-1, 1] per pixel (1: identical windows).

    Raises
    ------
    ValueError
        Shapes that differ or are not (batch, H, W[, C]), images smaller than the window,
        or settings out of range.

    Taught in notebook 05.
    """
    from keras import ops

    _check_settings(data_range, window_size, sigma, k1, k2, padding)
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
    channels = x.shape[-1]
    if channels is None:
        raise ValueError("the channel axis of x must have a known size.")

    # Second moments are taken about each image's mean (a constant, so the local variances
    # are unchanged): this keeps E[x^2] - E[x]^2 from cancelling in bright, flat windows.
    cx = ops.stop_gradient(ops.mean(x, axis=(1, 2), keepdims=True))
    cy = ops.stop_gradient(ops.mean(y, axis=(1, 2), keepdims=True))
    xc, yc = x - cx, y - cy
    # Filter the five local statistics in one pass: stack them along the channel axis.
    stack = ops.concatenate([x, y, xc * xc, yc * yc, xc * yc], axis=-1)
    if padding == "same":
        r = (window_size - 1) // 2
        stack = ops.pad(stack, [[0, 0], [r, r], [r, r], [0, 0]], mode="symmetric")
    g = gaussian_window(window_size, sigma).astype(dtype)
    n = 5 * channels
    kernel_rows = ops.convert_to_tensor(np.tile(g.reshape(window_size, 1, 1, 1), (1, 1, n, 1)))
    kernel_cols = ops.convert_to_tensor(np.tile(g.reshape(1, window_size, 1, 1), (1, 1, n, 1)))
    filtered = ops.depthwise_conv(stack, kernel_rows, padding="valid")
    filtered = ops.depthwise_conv(filtered, kernel_cols, padding="valid")
    mu_x, mu_y, e_xx, e_yy, e_xy = ops.split(filtered, 5, axis=-1)

    c1 = (float(k1) * float(data_range)) ** 2
    c2 = (float(k2) * float(data_range)) ** 2
    dx, dy = mu_x - cx, mu_y - cy
    var_x = e_xx - dx * dx
    var_y = e_yy - dy * dy
    cov_xy = e_xy - dx * dy
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    result = numerator / denominator
    return ops.squeeze(result, axis=-1) if squeeze else result


def ssim_loss(y_true, y_pred):
    """``1 - SSIM`` per image, for ``model.compile(loss=ssim_loss)``.

    Uses the standard settings (11 x 11 Gaussian window, sigma 1.5, data range 1: images in
    [0, 1]) and ``padding="valid"``, so ``1 - ssim_loss`` equals ``tf.image.ssim``.  Inputs of
    shape (batch, H, W) or (batch, H, W, C) with H, W >= 11.

    Returns
    -------
    tensor of shape (batch,)
        Keras averages it over the batch.  0 for a perfect reconstruction, up to 2.

    A model saved after compiling with this loss is reloaded with
    ``keras.models.load_model(path, custom_objects={"ssim_loss": ssim_loss})`` (or
    ``compile=False``).  Taught in notebook 05.
    """
    from keras import ops

    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    s = ssim_map(y_true, y_pred, padding="valid")
    axes = tuple(range(1, len(s.shape)))
    return 1.0 - ops.mean(s, axis=axes)


def ssim_residual_map(x, y, data_range: float = 1.0, window_size: int = 11,
                      sigma: float = 1.5, batch_size: int = 64,
                      dtype: str = "float32") -> np.ndarray:
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

    Returns
    -------
    ndarray of float32, same shape as ``x``
        ``1 - SSIM`` per pixel, in [0, 2]: 0 where the reconstruction matches, large where
        structure differs.  Borders are mirrored (``padding="same"``), so the map lines up
        with the image and its ground-truth mask pixel for pixel.

    Taught in notebook 05.
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
    from keras import ops

    out = np.empty(a.shape, dtype=np.float32)
    for start in range(0, len(a), batch_size):
        stop = start + batch_size
        s = ssim_map(a[start:stop], b[start:stop], data_range=data_range,
                     window_size=window_size, sigma=sigma, padding="same", dtype=dtype)
        out[start:stop] = 1.0 - ops.convert_to_numpy(s)
    return out[0] if single else out
