"""Input validation: the one :class:`DataError` and every check the course's helpers share.

Each check takes the value and the name the user knows it by, returns the value in the form
the caller needs (a NumPy array of a given dtype, an ``int``, a ``float``) and otherwise raises
:class:`DataError` with a message that says what was expected, what was found and, where it
helps, what to do.  Messages never quote a whole bad value: :func:`quote` caps it.

Like scikit-learn's ``check_array``; imports only NumPy.
"""

from __future__ import annotations

import numbers

import numpy as np

#: At most this many characters of a bad value are quoted in an error message.
MAX_QUOTE = 60
#: The largest class label :func:`check_class_labels` accepts (a larger "label" is a value, not
#: a class number; as a float it could not even be held exactly by an integer).
MAX_CLASS_LABEL = 2**31 - 1


class DataError(ValueError):
    """Data or an argument is missing, corrupted or not in the expected form.

    A ``ValueError``, so code that catches ``ValueError`` also catches it.  The message says
    what was expected and what to do.
    """


def quote(value, limit: int = MAX_QUOTE) -> str:
    """``repr(value)``, shortened to about ``limit`` characters for an error message.

    Long strings and bytes are cut *before* ``repr`` (a 50 MB field never becomes a 50 MB
    message) and the length of the whole value is added: ``'aaaa...' (50,000,000 characters)``.
    """
    if isinstance(value, (str, bytes)) and len(value) > limit:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}... ({len(value):,} {unit})"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- numbers
def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum`` (bools, floats and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DataError(f"{name} must be a whole number >= {minimum}, got {quote(value)}.")
    return int(value)


def check_positive_ints(name: str, values) -> tuple:
    """A non-empty sequence of whole numbers >= 1, as a tuple of ``int``."""
    try:
        values = tuple(values)
    except TypeError:
        raise DataError(f"{name} must be a sequence of whole numbers >= 1, got "
                        f"{quote(values)}.") from None
    if not values:
        raise DataError(f"{name} must hold at least one whole number >= 1, got ().")
    return tuple(check_positive_int(name, v) for v in values)


def check_number(name: str, value, low=None, high=None, low_open: bool = False,
                 high_open: bool = False) -> float:
    """A finite real number in the range given (open or closed at each end), as a ``float``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool):
        v = float("nan")
    ok = np.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise DataError(f"{name} must be a finite number in {interval}, got {quote(value)}.")
    return v


def check_fraction(name: str, value, allow_zero: bool = False, allow_one: bool = True) -> float:
    """A share between 0 and 1: (0, 1] by default; ``allow_zero`` / ``allow_one`` close or
    open the ends."""
    return check_number(name, value, 0.0, 1.0, low_open=not allow_zero, high_open=not allow_one)


# --------------------------------------------------------------------------- images
#: What to do with colour images given to a step that works on grey ones.
GREY_HINT = ("This step works on grayscale images: load them in grey (the MVTec loaders' "
             "default, color=False) or convert them with skimage.color.rgb2gray.")


def _as_array(x, name: str, dtype=None) -> np.ndarray:
    try:
        return np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: expected an array of numbers ({quote(str(exc))}).") from exc


def check_image_batch(x, name: str = "x", *, shape=None, min_images: int = 1,
                      min_side: int = 1, unit_range: bool = False, dtype=np.float64,
                      keep_uint8: bool = False, what: str = "grayscale images") -> np.ndarray:
    """Validate a batch of same-size grayscale images (or anomaly maps) of any size.

    Parameters
    ----------
    x : array-like of shape (N, H, W) or (N, H, W, 1)
        The channel axis of size 1 is dropped.
    name : str
        How the caller calls ``x`` (used in messages).
    shape : (int, int), optional
        Required (H, W), e.g. (28, 28) for MNIST.
    min_images, min_side : int
        At least this many images, each at least ``min_side`` pixels high and wide.
    unit_range : bool
        Float values must lie in [0, 1] (uint8 images are then accepted with any value when
        ``keep_uint8`` is set, else refused with a hint to divide by 255).
    dtype : NumPy dtype
        The dtype returned (float input is converted to it).
    keep_uint8 : bool
        Return uint8 input unchanged (``dtype`` applies to float input only); other integer
        dtypes are then refused, since 0-255 and 0-1 cannot be told apart.  Bool input is
        always read as 0.0 / 1.0.
    what : str
        What the images are, for messages ("anomaly maps").

    Returns
    -------
    ndarray (N, H, W) of ``dtype`` (or uint8 with ``keep_uint8``)

    Raises
    ------
    DataError
        Not numbers, another rank, too few or too small images, another size than ``shape``,
        NaN or infinite values, values outside [0, 1] with ``unit_range``.
    """
    arr = _as_array(x, name)
    if arr.dtype == bool:  # False/True are 0.0/1.0 (never uint8 0/1, which means almost black)
        arr = arr.astype(np.float64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{name}: expected {what} as numbers (uint8 0-255 or float 0-1), got "
                        f"dtype {arr.dtype}.")
    if keep_uint8 and np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
        raise DataError(f"{name}: expected uint8 (0-255) or float (0-1) pixels, got dtype "
                        f"{arr.dtype}. Convert with x.astype(np.uint8) if the values are 0-255, "
                        f"or x.astype(np.float32) if they are 0-1.")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        want = f"(N, {shape[0]}, {shape[1]})" if shape else "(N, H, W)"
        colour = (f" (colour images). {GREY_HINT}" if arr.ndim == 4 and arr.shape[-1] in (3, 4)
                  else ".")
        raise DataError(f"{name}: expected {what} of shape {want} or {want[:-1]}, 1), got "
                        f"shape {arr.shape}{colour}")
    if shape is not None and tuple(arr.shape[1:]) != tuple(shape):
        raise DataError(f"{name}: expected {shape[0]}x{shape[1]} images, got "
                        f"{arr.shape[1]}x{arr.shape[2]} (shape {arr.shape}). Resize them first.")
    if len(arr) < min_images or arr.size == 0:
        size = f" of {shape[0]}x{shape[1]} pixels" if shape else ""
        raise DataError(f"{name}: expected at least {min_images} image(s){size}, got shape "
                        f"{arr.shape}.")
    if min(arr.shape[1:]) < min_side:
        raise DataError(f"{name}: expected {what} of at least {min_side}x{min_side} pixels, "
                        f"got shape {arr.shape}.")
    if arr.dtype == np.uint8 and keep_uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer) and unit_range and not keep_uint8:
        if arr.max() > 1 or arr.min() < 0:
            raise DataError(f"{name}: pixel values must lie in [0, 1], found integers up to "
                            f"{arr.max()} (divide uint8 images by 255).")
    arr = arr.astype(dtype, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{name}: contains {bad} NaN or infinite value(s); clean or drop those "
                        f"images first (for anomaly maps: check the model's output).")
    if unit_range and (arr.min() < -1e-3 or arr.max() > 1 + 1e-3):
        raise DataError(f"{name}: pixel values must lie in [0, 1], found [{arr.min():.3g}, "
                        f"{arr.max():.3g}] (divide uint8 images by 255).")
    return arr


def check_image_list(x, name: str = "images", *, min_images: int = 1, min_side: int = 1,
                     unit_range: bool = False, dtype=np.float32,
                     what: str = "grayscale images", color: bool = False) -> list:
    """Validate images that may differ in size: a list of 2-D arrays (or one (N, H, W) array).

    Real inspection photos rarely share one size, so the MVTec-style code (notebooks 05 and 08)
    works on lists.  Each image may also be (H, W, 1); returns a list of 2-D ``dtype`` arrays.
    Rejects the same things as :func:`check_image_batch`, naming the image (``images[3]``);
    a colour image (H, W, 3) is refused with a message saying how to get grey ones.

    With ``color=True`` (for code that works on RGB, e.g. a pretrained backbone) the images
    may be grey (H, W) or (H, W, 1), or RGB (H, W, 3) (an (N, H, W, 3) array too); all come
    back as (H, W, 3), grey ones repeated to three channels.
    """
    if color:
        return _check_colour_list(x, name, min_images, min_side, unit_range, dtype, what)
    if isinstance(x, np.ndarray) and x.ndim in (3, 4):
        items = list(check_image_batch(x, name, min_images=min_images, min_side=min_side,
                                       unit_range=unit_range, dtype=dtype, what=what))
        return items
    if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)):
        raise DataError(f"{name}: expected a list of 2-D images (or an array (N, H, W)), got "
                        f"{type(x).__name__} of shape {np.shape(x)}.")
    if len(x) < min_images:
        raise DataError(f"{name}: expected at least {min_images} image(s), got {len(x)}.")
    out = []
    for i, img in enumerate(x):
        arr = _as_array(img, f"{name}[{i}]")
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            colour = (f" (a colour image). {GREY_HINT}"
                      if arr.ndim == 3 and arr.shape[-1] in (3, 4) else ".")
            raise DataError(f"{name}[{i}]: expected a 2-D grayscale image, got shape "
                            f"{arr.shape}{colour}")
        out.append(check_image_batch(arr[None], f"{name}[{i}]", min_side=min_side,
                                     unit_range=unit_range, dtype=dtype, what=what)[0])
    return out


def _check_colour_list(x, name, min_images, min_side, unit_range, dtype, what) -> list:
    """:func:`check_image_list` with ``color=True``: a list of (H, W, 3) ``dtype`` arrays."""
    if isinstance(x, np.ndarray) and x.ndim in (3, 4):
        x = list(x)
    if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)):
        raise DataError(f"{name}: expected a list of images (H, W) or (H, W, 3) (or an array "
                        f"(N, H, W, 3)), got {type(x).__name__} of shape {np.shape(x)}.")
    if len(x) < min_images:
        raise DataError(f"{name}: expected at least {min_images} image(s), got {len(x)}.")
    out = []
    for i, img in enumerate(x):
        arr = _as_array(img, f"{name}[{i}]")
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise DataError(f"{name}[{i}]: expected a grey (H, W) or RGB (H, W, 3) image, got "
                            f"shape {arr.shape} (drop an alpha channel with img[..., :3]).")
        if min(arr.shape[:2]) < min_side:
            raise DataError(f"{name}[{i}]: expected {what} of at least {min_side}x{min_side} "
                            f"pixels, got shape {arr.shape}.")
        # the channels as a batch of three 2-D images: the same checks of values and type
        planes = check_image_batch(np.moveaxis(arr, -1, 0), f"{name}[{i}]",
                                   unit_range=unit_range, dtype=dtype, what=what)
        out.append(np.ascontiguousarray(np.moveaxis(planes, 0, -1)))
    return out


def check_mask_list(masks, shapes, name: str = "masks") -> list:
    """Ground-truth masks as a list of bool arrays, one per image, of the images' ``shapes``."""
    if isinstance(masks, np.ndarray) and masks.ndim in (3, 4):
        masks = list(masks[..., 0] if masks.ndim == 4 else masks)
    if not isinstance(masks, (list, tuple)) or len(masks) != len(shapes):
        raise DataError(f"{name}: expected {len(shapes)} masks, one per image, got "
                        f"{len(masks) if isinstance(masks, (list, tuple)) else type(masks).__name__}.")
    out = []
    for i, (m, s) in enumerate(zip(masks, shapes)):
        arr = _as_array(m, f"{name}[{i}]")
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.shape != tuple(s):
            raise DataError(f"{name}[{i}] has shape {arr.shape}, not the same shape as its "
                            f"image and map {tuple(s)}: each mask must match its image pixel "
                            f"for pixel.")
        out.append(check_masks(arr[None], (1,) + tuple(s), f"{name}[{i}]")[0])
    return out


def check_masks(masks, shape, name: str = "masks") -> np.ndarray:
    """Ground-truth masks as a bool array of ``shape`` (N, H, W); values 0/1 or bool."""
    arr = _as_array(masks, name)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != tuple(shape):
        raise DataError(f"{name} and maps must have the same shape (N, H, W), got "
                        f"{arr.shape} and {tuple(shape)}.")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{name}: expected binary masks (0/1 or bool), got dtype {arr.dtype}.")
    bad = ~np.isin(arr, (0, 1))
    if np.any(bad):
        found = np.unique(arr[bad])[:5].tolist()
        raise DataError(f"{name}: expected binary masks of 0 (good) and 1 (defect), found "
                        f"{found}. Threshold them first (e.g. masks > 0).")
    return arr.astype(bool)


# --------------------------------------------------------------------------- scores and labels
def check_scores(scores, name: str = "scores") -> np.ndarray:
    """Scores as a 1-D float64 array: non-empty, finite."""
    arr = _as_array(scores, name, np.float64)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array (one score per sample), got shape "
                        f"{arr.shape}.")
    if len(arr) == 0:
        raise DataError(f"{name}: is empty; need at least one score.")
    if not np.all(np.isfinite(arr)):
        bad = int(len(arr) - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{name}: contains {bad} NaN or infinite value(s); anomaly scores "
                        f"must be finite (check the model's input and output for NaN).")
    return arr


def check_binary_labels(y, n: int, name: str = "y_true") -> np.ndarray:
    """Labels as a 1-D int64 array of 0 (normal) and 1 (anomaly), ``n`` of them."""
    arr = _as_array(y, name)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array of labels, got shape {arr.shape}.")
    if len(arr) != n:
        raise DataError(f"{name} and scores must have the same length, got {len(arr)} labels "
                        f"and {n} scores.")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{name}: labels must be 0 (normal) or 1 (anomaly), got dtype "
                        f"{arr.dtype}.")
    bad = ~np.isin(arr, (0, 1))
    if np.any(bad):
        found = np.unique(arr[bad])[:5].tolist()
        raise DataError(f"{name}: labels must be 0 (normal) or 1 (anomaly), found {found}.")
    return arr.astype(np.int64)


def check_scores_and_labels(y_true, scores) -> tuple:
    """``(labels, scores)`` checked together: 1-D finite scores, 0/1 labels of the same length."""
    s = check_scores(scores)
    return check_binary_labels(y_true, len(s)), s


def check_class_labels(y, n: int, name: str = "y") -> np.ndarray:
    """Integer class labels (digits, heartbeat classes): 1-D, ``n`` of them, whole numbers
    from 0 to :data:`MAX_CLASS_LABEL`, no NaN (floats such as ``3.0`` are accepted)."""
    arr = _as_array(y, name)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{name}: expected {n} labels in a 1-D array, got shape {arr.shape}.")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{name}: labels must be integers, got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating) and not (
            np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise DataError(f"{name}: labels must be whole numbers without NaN.")
    if n and arr.min() < 0:
        raise DataError(f"{name}: labels must be >= 0, got {arr.min():g}.")
    if n and arr.max() > MAX_CLASS_LABEL:
        raise DataError(f"{name}: labels must be class numbers from 0 to {MAX_CLASS_LABEL:,}, "
                        f"got {arr.max():g} (a column of values rather than labels?).")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------- tables and features
def check_matrix(x, name: str = "x", *, min_rows: int = 1, n_cols: int | None = None,
                 dtype=np.float32) -> np.ndarray:
    """A finite 2-D array (rows = samples), at least ``min_rows`` rows, ``n_cols`` columns."""
    arr = _as_array(x, name, dtype)
    if arr.ndim != 2 or len(arr) < min_rows or arr.shape[1] == 0:
        cols = n_cols if n_cols is not None else "d"
        raise DataError(f"{name}: expected a 2-D array (n, {cols}) with at least {min_rows} "
                        f"row(s), got shape {arr.shape}.")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise DataError(f"{name}: expected {n_cols} columns, got {arr.shape[1]}.")
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{name}: contains {bad} NaN or infinite value(s).")
    return arr


def check_features(features, name: str = "features") -> np.ndarray:
    """Patch features as a 2-D float32 array (n, d); feature maps (N, h, w, d) are flattened."""
    arr = _as_array(features, name, np.float32)
    if arr.ndim == 4:
        arr = arr.reshape(-1, arr.shape[-1])
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name}: expected patch features (n, d) or feature maps (N, h, w, d), "
                        f"got shape {np.shape(features)}.")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: contains NaN or infinite values.")
    return arr
