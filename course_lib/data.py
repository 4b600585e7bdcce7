"""Datasets for the course: MNIST online, offline (embedded real subset) or from your own file.

Every loader says which source it used, so a notebook can state it plainly:

- ``online``: the real, full MNIST through Keras' own download (``keras.datasets.mnist``),
  cached by Keras under ``~/.keras/datasets``;
- ``embedded``: 8,000 training and 2,000 held-apart test images of the official MNIST
  training set, shipped in ``data/mnist_subset.npz`` (CC BY-SA 3.0, see ``data/README.md``);
- ``file``: your own ``.npz`` with ``x`` (uint8, shape (N, 28, 28)) and ``y`` (labels).

The choice between online and embedded follows :func:`course_lib.config.data_mode`
(environment variable ``COURSE_DATA``).  Taught in notebook 01.

Credit-card fraud (notebook 04) works the same way with :func:`load_creditcard`: the full
ULB data downloaded from ``CREDITCARD_URL`` (online), a real sample of it shipped in
``data/creditcard_sample.csv.gz`` (embedded, ODbL) or your own CSV (file).
"""

from __future__ import annotations

import hashlib
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_lib.config import Profile, data_mode, get_profile

DATA_DIR_ENV = "COURSE_DATA_DIR"
MNIST_SUBSET = "mnist_subset.npz"
MNIST_SUBSET_SHA256 = "00b1b7d4ad1d895b8eeba72e983f732205301df70cd221d72c78a5bdafee5f9f"
MNIST_HOST = ("storage.googleapis.com", 443)  # where keras.datasets.mnist downloads from
CONNECT_TIMEOUT_S = 3.0
DOWNLOAD_TIMEOUT_S = 30.0


class DataError(ValueError):
    """Raised when data is missing, corrupted or not in the expected form."""


def data_dir() -> Path:
    """The folder with the embedded datasets: ``$COURSE_DATA_DIR`` or the repo's ``data/``.

    Resolved from the package, not the current directory, so it works from any notebook.
    """
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data"


@dataclass
class ImageData:
    """Train/test images with labels, and where they came from.

    ``x_*`` are uint8 arrays of shape (N, 28, 28); ``y_*`` integer labels.
    ``source`` is ``"online"``, ``"embedded"`` or ``"file"``; ``detail`` says more.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    detail: str

    def __str__(self) -> str:
        return (f"Data source: {self.source} | {self.detail} | "
                f"{len(self.x_train)} training and {len(self.x_test)} test images")


# --------------------------------------------------------------------------- validation
def check_images(x, name: str = "x", image_shape: tuple = (28, 28)) -> np.ndarray:
    """Validate a batch of grayscale images and return it as a NumPy array.

    Accepts uint8 images (any value 0-255) or float images with values in [0, 1], of shape
    (N, H, W) or (N, H, W, 1) with (H, W) == ``image_shape``.  Rejects NaN/inf, other shapes,
    other dtypes and out-of-range values with a message saying what was expected.
    Used by every loader and model helper; taught in notebook 01.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - anything that is not array-like
        raise DataError(f"{name}: could not be read as an array ({exc}).") from exc
    h, w = image_shape
    if arr.ndim == 4 and arr.shape[-1] == 1:
        spatial = arr.shape[1:3]
    elif arr.ndim == 3:
        spatial = arr.shape[1:]
    else:
        raise DataError(f"{name}: expected images of shape (N, {h}, {w}) or (N, {h}, {w}, 1), "
                        f"got shape {arr.shape}.")
    if tuple(spatial) != (h, w):
        raise DataError(f"{name}: expected {h}x{w} images, got {spatial[0]}x{spatial[1]} "
                        f"(shape {arr.shape}). Resize them first.")
    if len(arr) == 0:
        raise DataError(f"{name}: holds no images (shape {arr.shape}); expected a non-empty "
                        f"batch of {h}x{w} images.")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{name}: expected uint8 (0-255) or float (0-1) pixels, got dtype "
                        f"{arr.dtype}.")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{name}: contains {bad} NaN or infinite values; clean or drop "
                        f"those images first.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(f"{name}: float pixels must lie in [0, 1], got range [{lo:.3g}, "
                        f"{hi:.3g}]. Divide uint8 images by 255 (see to_float).")
    return arr


def check_image_batch(x, name: str = "x", dtype=np.float64, min_images: int = 1,
                      min_side: int = 1, unit_range: bool = False,
                      what: str = "grayscale images") -> np.ndarray:
    """Validate a batch of same-size grayscale images (or anomaly maps) of any size.

    Accepts shape (N, H, W) or (N, H, W, 1) (the channel axis is dropped) and returns a
    ``dtype`` array (N, H, W).  Rejects non-numbers, other shapes, fewer than ``min_images``
    images, sides below ``min_side``, NaN/inf and, with ``unit_range``, values outside [0, 1],
    each with a message that says what was expected.  The MVTec-size sibling of
    :func:`check_images`, used by the baselines (notebook 05), the anomaly-map metrics
    (notebook 05) and the feature models (notebook 07).
    """
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: expected an array of numbers of shape (N, H, W) "
                        f"({exc}).") from exc
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise DataError(f"{name}: expected {what} of shape (N, H, W) or (N, H, W, 1), got "
                        f"shape {arr.shape}.")
    if len(arr) < min_images or arr.size == 0:
        raise DataError(f"{name}: expected at least {min_images} image(s), got shape "
                        f"{arr.shape}.")
    if min(arr.shape[1:]) < min_side:
        raise DataError(f"{name}: expected {what} of at least {min_side}x{min_side} pixels, "
                        f"got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{name}: contains {bad} NaN or infinite value(s); clean or drop those "
                        f"images first (for anomaly maps: check the model's output).")
    if unit_range and (arr.min() < -1e-3 or arr.max() > 1 + 1e-3):
        raise DataError(f"{name}: pixel values must lie in [0, 1], found [{arr.min():.3g}, "
                        f"{arr.max():.3g}] (divide uint8 images by 255).")
    return arr


def check_labels(y, n: int, name: str = "y") -> np.ndarray:
    """Validate integer class labels: 1-D, ``n`` of them, non-negative, no NaN."""
    arr = np.asarray(y)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{name}: expected {n} labels in a 1-D array, got shape {arr.shape}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{name}: labels must be whole numbers without NaN.")
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name}: labels must be integers, got dtype {arr.dtype}.")
    if n and arr.min() < 0:
        raise DataError(f"{name}: labels must be >= 0, got {arr.min()}.")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------- transforms
def to_float(x) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (float input is checked and passed through).

    Taught in notebook 01.
    """
    arr = check_images(x)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32)


def flatten(x) -> np.ndarray:
    """Images (N, 28, 28) -> float32 vectors (N, 784) in [0, 1] for the dense autoencoder.

    Taught in notebook 01.
    """
    arr = to_float(x)
    return arr.reshape(len(arr), -1)


def add_channel(x) -> np.ndarray:
    """Images (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1] for convolutional models.

    Parameters
    ----------
    x : array-like
        uint8 (0-255) or float (0-1) images of shape (N, 28, 28) or (N, 28, 28, 1).

    Returns
    -------
    ndarray of shape (N, 28, 28, 1), float32 in [0, 1]

    Taught in notebook 02.
    """
    arr = to_float(x)
    return arr.reshape(arr.shape[0], arr.shape[1], arr.shape[2], 1)


def add_noise(x, std: float = 0.3, seed: int = 0) -> np.ndarray:
    """Add Gaussian pixel noise and clip back to [0, 1] (input for a denoising autoencoder).

    Parameters
    ----------
    x : array-like
        uint8 or float images (see :func:`check_images`).
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
    if not np.isfinite(std) or std < 0:
        raise ValueError(f"std must be a finite number >= 0, got {std}.")
    arr = to_float(x)
    rng = np.random.default_rng(seed)
    return np.clip(arr + rng.normal(0.0, std, size=arr.shape), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- loaders
def _read_npz(path: Path, what: str, how_to_fix: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found at {path}. {how_to_fix}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise DataError(f"{what} at {path} is corrupted or not a NumPy .npz file "
                        f"({type(exc).__name__}: {exc}). {how_to_fix}") from exc


def load_npz_images(path, image_shape: tuple = (28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """Load your own images from an ``.npz`` with ``x`` (uint8, (N, 28, 28)) and ``y`` (labels).

    Returns ``(x, y)`` after validation; errors name the file and what was expected.
    Used by ``load_mnist(path=...)`` and ``python -m course_lib.bench``; taught in notebook 01.
    """
    fix = ("Save your data with numpy: np.savez_compressed(path, x=images_uint8, y=labels).")
    arrays = _read_npz(Path(path), f"Image file {path}", fix)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {missing}; found {sorted(arrays)}. {fix}")
    x = check_images(arrays["x"], name=f"{path}: x", image_shape=image_shape)
    if x.ndim == 4:
        x = x[..., 0]
    if x.dtype != np.uint8:
        x = np.round(x * 255).astype(np.uint8)
    y = check_labels(arrays["y"], len(x), name=f"{path}: y")
    return x, y


def _load_embedded() -> tuple[np.ndarray, ...]:
    path = data_dir() / MNIST_SUBSET
    fix = (f"Restore it with `git checkout -- data/{MNIST_SUBSET}` (or re-clone the course), "
           f"or rebuild it with data/build_mnist_subset.py.")
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != MNIST_SUBSET_SHA256:
            raise DataError(f"Embedded MNIST subset {path} is corrupted (sha256 {digest[:12]}... "
                            f"differs from the expected {MNIST_SUBSET_SHA256[:12]}...). {fix}")
    arrays = _read_npz(path, "Embedded MNIST subset", fix)
    return (check_images(arrays["x_train"], "embedded x_train"), arrays["y_train"].astype(np.int64),
            check_images(arrays["x_test"], "embedded x_test"), arrays["y_test"].astype(np.int64))


def _keras_mnist_cache() -> Path:
    base = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return base / "datasets" / "mnist.npz"


MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"  # Keras' own


def _download_keras_mnist() -> tuple[np.ndarray, ...]:
    """Keras' MNIST file, downloaded atomically into Keras' cache, with short timeouts.

    ``keras.utils.get_file`` fetches into a temporary folder next to the cache and checks the
    sha256 that Keras itself uses; only a verified file is renamed into
    ``~/.keras/datasets/mnist.npz``, so a failed or interrupted download leaves nothing behind.
    """
    import tempfile

    cache = _keras_mnist_cache()
    if not cache.is_file():
        with socket.create_connection(MNIST_HOST, timeout=CONNECT_TIMEOUT_S):
            pass  # the host answers: go ahead
        import keras

        cache.parent.mkdir(parents=True, exist_ok=True)
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".mnist-") as tmp:
                path = keras.utils.get_file("mnist.npz", origin=MNIST_URL, file_hash=MNIST_SHA256,
                                            cache_dir=tmp, cache_subdir=".")
                os.replace(path, cache)
        finally:
            socket.setdefaulttimeout(old)
    arrays = _read_npz(cache, "Cached MNIST", f"Delete {cache} and run again to download it anew.")
    return (check_images(arrays["x_train"], "MNIST x_train"), arrays["y_train"].astype(np.int64),
            check_images(arrays["x_test"], "MNIST x_test"), arrays["y_test"].astype(np.int64))


def _online_or_embedded(mode: str, what: str, kind: str, fetch, load_embedded, where: str = ""):
    """The loaders' shared rule: download (or use the download cache), else the embedded data.

    Returns ``(data, source, note)``; ``note`` is the one-line fallback message ("" if none).
    In ``online`` mode a failure raises a DataError saying what to do instead.
    """
    if mode in ("auto", "online"):
        try:
            return fetch(), "online", ""
        except Exception as exc:  # noqa: BLE001 - any network, cache or verification failure
            if mode == "online":
                raise DataError(
                    f"Could not download {what}{where} ({type(exc).__name__}: {exc}). Check the "
                    f"network, or use the embedded {kind} with COURSE_DATA=offline.") from exc
            note = (f"Could not download {what} ({type(exc).__name__}); using the embedded "
                    f"offline {kind} instead.\n")
            return load_embedded(), "embedded", note
    return load_embedded(), "embedded", ""


def _subsample(x, y, n, seed):
    if n is None or n >= len(x):
        return x, y
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[idx], y[idx]


def load_mnist(source: str | None = None, path=None, profile: Profile | str | None = None,
               n_train: int | None = None, n_test: int | None = None, seed: int = 0,
               verbose: bool = True) -> ImageData:
    """Load MNIST, sized by the profile, from the network, the embedded subset or your file.

    Parameters
    ----------
    source : {"auto", "online", "offline"}, optional
        Default: the ``COURSE_DATA`` setting (``auto``).  ``auto`` tries Keras' download (a few
        seconds at most when there is no network) and falls back to the embedded subset with
        one message; ``offline`` uses the embedded subset; ``online`` fails if it cannot download.
    path : str or Path, optional
        Your own ``.npz`` with ``x`` (uint8 (N, 28, 28)) and ``y``; a seeded 1/7 of it becomes
        the test split (as 10,000 of MNIST's 70,000).  Overrides ``source``.
    profile : Profile or str, optional
        Decides ``n_train`` / ``n_test`` unless given (default: the active profile).
    seed : int
        Seed of the subsampling, so a profile always sees the same images.
    verbose : bool
        Print one line saying which source was used.

    Returns
    -------
    ImageData
        uint8 images (N, 28, 28) and labels; ``.source`` tells where they came from.

    Taught in notebook 01.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    n_train = prof.n_train if n_train is None else n_train
    n_test = prof.n_test if n_test is None else n_test
    note = ""
    if path is not None:
        x, y = load_npz_images(path)
        n_hold = max(1, len(x) // 7)
        idx = np.random.default_rng(seed).permutation(len(x))
        arrays = (x[idx[n_hold:]], y[idx[n_hold:]], x[idx[:n_hold]], y[idx[:n_hold]])
        src, detail = "file", f"your file {path} (seeded 6/7 train, 1/7 test split)"
    else:
        arrays, src, note = _online_or_embedded(data_mode(source), "MNIST", "subset",
                                                _download_keras_mnist, _load_embedded)
        detail = ("full MNIST via keras.datasets.mnist (Keras cache)" if src == "online" else
                  f"real MNIST subset shipped in data/{MNIST_SUBSET} (CC BY-SA 3.0)")
    x_train, y_train = _subsample(arrays[0], arrays[1], n_train, seed)
    x_test, y_test = _subsample(arrays[2], arrays[3], n_test, seed + 1)
    data = ImageData(x_train, y_train, x_test, y_test, src, detail)
    if verbose:
        print(note + str(data))
    return data


# =========================================================================== credit-card fraud
# Notebook 04.  The ULB Machine Learning Group's credit-card transactions (Kaggle
# "creditcardfraud", ODbL 1.0): Time, V1..V28 (PCA components), Amount, Class (1 = fraud).

#: The public copy of the full CSV (used by the TensorFlow "imbalanced data" tutorial).
CREDITCARD_URL = "https://storage.googleapis.com/download.tensorflow.org/data/creditcard.csv"
#: sha256 of the file at ``CREDITCARD_URL``.  ``None``: no published checksum could be reached,
#: so a download is verified by its *content* (columns, row and fraud counts) instead.  Put the
#: digest here once it is known and it will be checked as well.
CREDITCARD_SHA256: str | None = None
CREDITCARD_CACHE_NAME = "creditcard.csv"
CREDITCARD_SAMPLE = "creditcard_sample.csv.gz"
CREDITCARD_SAMPLE_SHA256 = "95119525e4cdcf4f1eb1b3e2cb621da217231cb84874e1132bf5937837a37464"
CREDITCARD_COLUMNS = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class")
#: The 30 model inputs (every column but ``Class``).
CREDITCARD_FEATURES = CREDITCARD_COLUMNS[:-1]
CREDITCARD_ROWS = 284_807      # the full data: two days of September 2013 ...
CREDITCARD_FRAUDS = 492        # ... of which 0.172% are frauds
CREDITCARD_DAYS = 2
_CREDITCARD_FORMAT = ("expected a CSV with a header row and the 31 columns Time, V1, ..., V28, "
                      "Amount, Class (Class: 0 = normal, 1 = fraud), as in the Kaggle file "
                      "creditcard.csv")


@dataclass
class TabularData:
    """Credit-card transactions and where they came from (see :func:`load_creditcard`).

    ``frame`` is a pandas DataFrame with the columns ``CREDITCARD_COLUMNS`` (features float64,
    ``Class`` int64: 1 = fraud); ``source`` is ``"online"``, ``"embedded"`` or ``"file"``;
    ``detail`` says more.  Taught in notebook 04.
    """

    frame: "pandas.DataFrame"  # noqa: F821 - pandas is imported lazily
    source: str
    detail: str

    @property
    def n_fraud(self) -> int:
        """Number of fraudulent transactions (``Class == 1``)."""
        return int(self.frame["Class"].sum())

    @property
    def fraud_rate(self) -> float:
        """Share of frauds among all transactions (0.00172 in the full data)."""
        return self.n_fraud / max(1, len(self.frame))

    def __str__(self) -> str:
        return (f"Data source: {self.source} | {self.detail} | {len(self.frame):,} transactions, "
                f"{self.n_fraud:,} frauds ({self.fraud_rate:.2%})")


def check_creditcard_frame(frame, name: str = "data"):
    """Validate credit-card transactions and return a clean copy in the canonical form.

    Accepts a pandas DataFrame with the columns Time, V1..V28, Amount, Class in any order, plus
    at most one extra *leading* column (an index written by ``to_csv``), which is dropped.
    Rejects missing or unknown columns, non-numeric values, NaN or infinite values, ``Class``
    values other than 0/1 and data without normal rows, with a :class:`DataError` that names
    the problem and says what to do.

    Returns
    -------
    pandas.DataFrame
        Columns in the order of ``CREDITCARD_COLUMNS``: features float64, ``Class`` int64;
        a fresh ``RangeIndex``.

    Used by :func:`load_creditcard` and ``python -m course_lib.bench creditcard``;
    taught in notebook 04.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}.")
    expected = list(CREDITCARD_COLUMNS)
    cols = [str(c).strip() for c in frame.columns]
    frame = frame.set_axis(cols, axis=1)
    if len(cols) == len(expected) + 1 and cols[0] not in expected and set(cols[1:]) == set(expected):
        frame = frame.iloc[:, 1:]  # a leading index column, as written by DataFrame.to_csv
        cols = cols[1:]
    if len(set(cols)) != len(cols):
        dup = sorted({c for c in cols if cols.count(c) > 1})
        raise DataError(f"{name}: duplicated column(s) {dup}; {_CREDITCARD_FORMAT}.")
    missing = [c for c in expected if c not in cols]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing}; found {cols[:8]}"
                        f"{' ...' if len(cols) > 8 else ''}. {_CREDITCARD_FORMAT[0].upper()}"
                        f"{_CREDITCARD_FORMAT[1:]}.")
    extra = [c for c in cols if c not in expected]
    if extra:
        raise DataError(f"{name}: unexpected column(s) {extra}; drop them (only one extra "
                        f"leading index column is tolerated). {_CREDITCARD_FORMAT[0].upper()}"
                        f"{_CREDITCARD_FORMAT[1:]}.")
    if len(frame) == 0:
        raise DataError(f"{name}: holds no rows; {_CREDITCARD_FORMAT}.")
    out = {}
    for col in expected:
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.isna() & values.notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"{name}: column {col!r} holds non-numeric values, e.g. "
                                f"{values.iloc[row]!r} in data row {row} (counting from 0). "
                                f"Every column must hold numbers; fix or drop those rows.")
            values = numeric
        arr = values.to_numpy(dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise DataError(f"{name}: column {col!r} has {len(rows)} missing (NaN) or infinite "
                            f"value(s), first in data row {int(rows[0])} (counting from 0). Fill "
                            f"or drop those rows first (e.g. frame.dropna()).")
        out[col] = arr
    labels = out["Class"]
    odd = np.unique(labels[(labels != 0) & (labels != 1)])
    if len(odd):
        found = [int(v) if float(v).is_integer() else float(v) for v in odd[:5]]
        raise DataError(f"{name}: column 'Class' must be 0 (normal) or 1 (fraud), found "
                        f"{found}. Recode the labels to 0/1.")
    if not (labels == 0).any():
        raise DataError(f"{name}: no normal transactions (Class 0). The autoencoder learns from "
                        f"normal rows only, so the data must contain some.")
    clean = pd.DataFrame(out, columns=expected)
    clean["Class"] = labels.astype(np.int64)
    return clean


def read_creditcard_csv(path, name: str | None = None):
    """Read and validate a credit-card CSV (``.csv`` or ``.csv.gz``); see ``check_creditcard_frame``.

    Errors name the file and say what was expected.  Used by ``load_creditcard(path=...)`` and
    ``python -m course_lib.bench creditcard --csv FILE``; taught in notebook 04.
    """
    import pandas as pd

    path = Path(path)
    name = name or str(path)
    if not path.is_file():
        raise DataError(f"Credit-card file {path} not found; {_CREDITCARD_FORMAT}.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            EOFError, ValueError) as exc:
        raise DataError(f"{name} could not be read as a CSV file ({type(exc).__name__}: {exc}); "
                        f"{_CREDITCARD_FORMAT}.") from exc
    return check_creditcard_frame(frame, name=name)


def _load_creditcard_embedded():
    path = data_dir() / CREDITCARD_SAMPLE
    fix = (f"Restore it with `git checkout -- data/{CREDITCARD_SAMPLE}` (or re-clone the course); "
           f"see data/README.md.")
    if not path.is_file():
        raise DataError(f"Embedded credit-card sample not found at {path}. {fix}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != CREDITCARD_SAMPLE_SHA256:
        raise DataError(f"Embedded credit-card sample {path} is corrupted (sha256 {digest[:12]}... "
                        f"differs from the expected {CREDITCARD_SAMPLE_SHA256[:12]}...). {fix}")
    return read_creditcard_csv(path, name=f"embedded sample {path.name}")


def creditcard_cache_path() -> Path:
    """Where the downloaded full CSV is cached: ``$KERAS_HOME/datasets/creditcard.csv``
    (default ``~/.keras/datasets``, next to Keras' MNIST)."""
    return _keras_mnist_cache().parent / CREDITCARD_CACHE_NAME


def _http_download(url: str, target: Path) -> None:
    """Stream ``url`` into ``target`` with a progress bar (pooch; short timeouts)."""
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=True, chunk_size=2 ** 20,
                                      timeout=(CONNECT_TIMEOUT_S, DOWNLOAD_TIMEOUT_S))
    downloader(url, str(target), None)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_full_creditcard(path: Path, what: str):
    """Check that ``path`` is the full dataset; return it as a clean DataFrame."""
    if CREDITCARD_SHA256 is not None:
        digest = _sha256_file(path)
        if digest != CREDITCARD_SHA256:
            raise DataError(f"{what}: sha256 {digest[:12]}... differs from the expected "
                            f"{CREDITCARD_SHA256[:12]}...")
    import pandas as pd

    header = list(pd.read_csv(path, nrows=0).columns)
    if header != list(CREDITCARD_COLUMNS):
        raise DataError(f"{what}: columns {header[:5]}... are not exactly "
                        f"{list(CREDITCARD_COLUMNS[:5])}...")
    frame = read_creditcard_csv(path, name=what)
    n_fraud = int(frame["Class"].sum())
    if len(frame) != CREDITCARD_ROWS or n_fraud != CREDITCARD_FRAUDS:
        raise DataError(f"{what}: {len(frame):,} rows with {n_fraud:,} frauds, expected "
                        f"{CREDITCARD_ROWS:,} rows with {CREDITCARD_FRAUDS} frauds (a truncated "
                        f"or different file).")
    return frame


def _fetch_creditcard():
    """The full dataset from the cache, or downloaded into it first; returns a clean DataFrame.

    The download goes to a temporary file next to the cache entry, is verified, and only then
    renamed into place (atomic), so an interrupted or wrong download never leaves a file in the
    cache.  A dead network fails within ``CONNECT_TIMEOUT_S`` seconds.
    """
    from urllib.parse import urlsplit

    target = creditcard_cache_path()
    if target.is_file():
        try:
            return _verify_full_creditcard(target, f"cached copy {target}")
        except DataError as exc:
            raise DataError(f"{exc} Delete {target} and run again to download a fresh copy.") from exc
    parts = urlsplit(CREDITCARD_URL)
    with socket.create_connection((parts.hostname, parts.port or 443), timeout=CONNECT_TIMEOUT_S):
        pass  # the host answers: go ahead
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        _http_download(CREDITCARD_URL, tmp)
        frame = _verify_full_creditcard(tmp, f"download of {CREDITCARD_URL}")
        os.replace(tmp, target)
    finally:  # also on KeyboardInterrupt: never leave a half file behind
        if tmp.exists():
            tmp.unlink()
    return frame


def _cap_normal_rows(frame, max_normal: int | None, seed: int):
    """Keep every fraud and at most ``max_normal`` normal rows (seeded), in the original order."""
    labels = frame["Class"].to_numpy()
    normal = np.flatnonzero(labels == 0)
    if max_normal is None or len(normal) <= max_normal:
        return frame, False
    keep_normal = np.random.default_rng(seed).choice(normal, size=max_normal, replace=False)
    keep = np.sort(np.concatenate([keep_normal, np.flatnonzero(labels == 1)]))
    return frame.iloc[keep].reset_index(drop=True), True


def creditcard_max_normal(profile: Profile | str | None = None) -> int | None:
    """How many normal transactions a profile uses at most (``None``: all).

    ``profile.tabular_max_normal``: 5,000 (fast), 20,000 (workshop), all (full).  The embedded
    sample (3,102 normal rows) is always used whole.  Taught in notebook 04.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    return prof.tabular_max_normal


def load_creditcard(source: str | None = None, path=None, profile: Profile | str | None = None,
                    verbose: bool = True, seed: int = 0) -> TabularData:
    """Load the credit-card fraud data: full download, embedded real sample or your CSV.

    Parameters
    ----------
    source : {"auto", "online", "offline"}, optional
        Default: the ``COURSE_DATA`` setting (``auto``).

        - ``online``: the full data (284,807 transactions over two days, 492 frauds) from
          ``CREDITCARD_URL`` (about 150 MB, once; cached under ``~/.keras/datasets``, see
          :func:`creditcard_cache_path`).  Fails with a :class:`DataError` if it cannot.
        - ``offline``: the real sample shipped in ``data/creditcard_sample.csv.gz``: 3,102
          normal and 236 fraudulent transactions of the same data, rows unchanged.  Frauds are
          *enriched* there: about 7% of the rows instead of 0.172%.
        - ``auto``: try the download (a dead network fails within a few seconds) and fall back
          to the embedded sample with one message.
    path : str or Path, optional
        Your own CSV (or ``.csv.gz``) with the columns Time, V1..V28, Amount, Class (an extra
        leading index column is tolerated).  Overrides ``source``.
    profile : Profile or str, optional
        Caps the number of *normal* rows (:func:`creditcard_max_normal`); frauds are all kept.
    verbose : bool
        Print one line ``Data source: <online|embedded|file> | ...``.
    seed : int
        Seed of the subsampling of normal rows.

    Returns
    -------
    TabularData
        ``.frame`` (pandas DataFrame, validated by :func:`check_creditcard_frame`),
        ``.source`` and ``.detail``.

    Notes
    -----
    What is verified: the embedded sample by its sha256 on every load.  The download (and the
    cached copy, on every load) by its *content*: exactly the 31 expected columns in order,
    all values numeric and finite, ``Class`` 0/1, exactly 284,807 rows and 492 frauds; and by
    its sha256 only if ``CREDITCARD_SHA256`` is set (it is ``None`` because no published
    checksum of that copy could be reached).  Not verified: the feature *values* themselves, so
    a copy with the same shape and counts but altered numbers would pass.

    Taught in notebook 04.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    note = ""
    if path is not None:
        frame = read_creditcard_csv(path)
        src, detail = "file", f"your file {path}"
    else:
        frame, src, note = _online_or_embedded(
            data_mode(source), "the credit-card data", "sample", _fetch_creditcard,
            _load_creditcard_embedded, where=f" from {CREDITCARD_URL}")
        detail = (f"full ULB credit-card data, 2 days of September 2013 (ODbL), cached at "
                  f"{creditcard_cache_path()}" if src == "online" else
                  f"real ULB sample shipped in data/{CREDITCARD_SAMPLE} (ODbL; frauds enriched)")
    frame, capped = _cap_normal_rows(frame, creditcard_max_normal(prof), seed)
    if capped:
        detail += (f" | profile '{prof.name}': {int((frame['Class'] == 0).sum()):,} normal rows "
                   f"(seeded sample) and all frauds")
    data = TabularData(frame, src, detail)
    if verbose:
        print(note + str(data))
    return data


# =========================================================================== prefetch and status
# ``python -m course_lib.data prefetch|status``: get every dataset before the workshop (venue
# networks are slow or closed) and see what is present offline.  Reuses the loaders' own
# downloaders, so the files land exactly where the notebooks look for them.

PREFETCH_ITEMS = ("mnist", "creditcard", "textures")


@dataclass
class CacheItem:
    """One dataset file or folder: what it is, where, how big, and its state.

    ``state`` is ``"OK"``, ``"missing"``, ``"corrupted"`` or ``"failed"`` (a prefetch that did
    not succeed); ``kind`` is ``"embedded"`` (shipped in ``data/``), ``"download"`` (cached
    after an online download), ``"built"`` (built offline on first use) or ``"optional"``
    (real MVTec AD); ``hint`` says what to do when the state is not ``"OK"``.
    Used by ``python -m course_lib.data`` and ``python -m course_lib.doctor``.
    """

    name: str
    kind: str
    state: str
    path: Path | None = None
    size: int | None = None
    detail: str = ""
    hint: str = ""


def _path_size(path: Path | None) -> int | None:
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human_size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def _embedded_item(name: str, filename: str, sha256: str) -> CacheItem:
    path = data_dir() / filename
    if not path.is_file():
        return CacheItem(name, "embedded", "missing", path,
                         hint=f"Restore it with `git checkout -- data/{filename}` (or re-clone "
                              f"the course); set {DATA_DIR_ENV} if data/ lives elsewhere.")
    digest = _sha256_file(path)
    if digest != sha256:
        return CacheItem(name, "embedded", "corrupted", path, _path_size(path),
                         detail=f"sha256 {digest[:12]}... != {sha256[:12]}...",
                         hint=f"Restore it with `git checkout -- data/{filename}` "
                              f"(or re-clone the course).")
    return CacheItem(name, "embedded", "OK", path, _path_size(path), detail="sha256 verified")


def _keras_mnist_item() -> CacheItem:
    path = _keras_mnist_cache()
    if not path.is_file():
        return CacheItem("MNIST full (Keras cache)", "download", "missing", path,
                         hint="python -m course_lib.data prefetch --mnist (offline, the "
                              "embedded subset is used instead).")
    digest = _sha256_file(path)
    if digest != MNIST_SHA256:
        return CacheItem("MNIST full (Keras cache)", "download", "corrupted", path,
                         _path_size(path), detail=f"sha256 {digest[:12]}... differs from Keras'",
                         hint=f"Delete {path} and run python -m course_lib.data prefetch --mnist.")
    return CacheItem("MNIST full (Keras cache)", "download", "OK", path, _path_size(path),
                     detail="sha256 verified")


def _creditcard_cache_item() -> CacheItem:
    path = creditcard_cache_path()
    if not path.is_file():
        return CacheItem("Credit card full (cache)", "download", "missing", path,
                         hint="python -m course_lib.data prefetch --creditcard (about 150 MB; "
                              "offline, the embedded sample is used instead).")
    size = _path_size(path)
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8", "replace").strip().replace('"', "").split(",")
    if header != list(CREDITCARD_COLUMNS):
        return CacheItem("Credit card full (cache)", "download", "corrupted", path, size,
                         detail="unexpected header",
                         hint=f"Delete {path} and run python -m course_lib.data prefetch "
                              f"--creditcard.")
    return CacheItem("Credit card full (cache)", "download", "OK", path, size,
                     detail="header checked (rows and frauds are checked on every load)")


def _texture_kwargs(profile: Profile) -> dict:
    """The texture-dataset settings a profile uses in notebook 05 (see ``load_textures``)."""
    return {"size": profile.mvtec_size, "n_train": profile.mvtec_n_train,
            "n_test_good": profile.mvtec_n_test_good,
            "n_test_defect": profile.mvtec_n_test_defect, "seed": 0}


def _texture_root(texture: str, profile: Profile) -> tuple:
    from course_lib import mvtec

    kw = _texture_kwargs(profile)
    settings = mvtec._texture_settings(kw["size"], kw["n_train"], kw["n_test_good"],
                                       kw["n_test_defect"], kw["seed"], (texture,), None)
    return mvtec.default_texture_root(settings), settings


def _texture_items(profile: Profile) -> list:
    import json

    from course_lib import mvtec

    items = []
    for texture in mvtec.TEXTURES:
        root, settings = _texture_root(texture, profile)
        name = f"Texture '{texture}' ({profile.name}, {settings['size']}px)"
        hint = (f"python -m course_lib.data prefetch --textures (offline, a few seconds; "
                f"else it is built on first use)")
        if not root.is_dir():
            items.append(CacheItem(name, "built", "missing", root, hint=hint))
            continue
        try:
            found = json.loads((root / "manifest.json").read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            found = None
        if found != settings:
            items.append(CacheItem(name, "built", "corrupted", root, _path_size(root),
                                   detail="manifest.json missing or different",
                                   hint=f"Delete {root} and run python -m course_lib.data "
                                        f"prefetch --textures."))
        else:
            items.append(CacheItem(name, "built", "OK", root, _path_size(root),
                                   detail="manifest matches"))
    return items


def _mvtec_items(categories=None) -> list:
    from course_lib import mvtec

    root = mvtec.mvtec_dir()
    wanted = list(mvtec.MVTEC_AD_CATEGORIES) if categories is None else list(categories)
    if "all" in wanted:
        wanted = list(mvtec.MVTEC_AD_CATEGORIES)
    present = [c for c in wanted if (root / c / "train" / "good").is_dir()]
    if categories is None:  # status: one summary line
        if not present:
            return [CacheItem("MVTec AD (real, optional)", "optional", "missing", root,
                              hint="python -m course_lib.data prefetch --mvtec CATEGORY "
                                   "(CC BY-NC-SA 4.0; only if you want the real data).")]
        return [CacheItem("MVTec AD (real, optional)", "optional", "OK", root,
                          _path_size(root), detail=f"{len(present)}/{len(wanted)} categories: "
                                                   + ", ".join(present))]
    return [CacheItem(f"MVTec AD '{c}'", "optional", "OK" if c in present else "missing",
                      root / c, _path_size(root / c) if c in present else None,
                      hint="" if c in present else _mvtec_hint(c))
            for c in wanted]


def _mvtec_hint(category: str) -> str:
    """What to do when the MVTec AD download of ``category`` failed (short form)."""
    from course_lib import mvtec

    folder = mvtec.mvtec_dir() / ".downloads"
    return (f"Run it again (a partial download resumes), or download "
            f"'{mvtec._archive_name(category)}' by hand from {mvtec.MVTEC_AD_PAGE} into "
            f"{folder} and run again. Offline, notebook 05 uses the texture set instead.")


def cache_status(profile: Profile | str | None = None) -> list:
    """What is present offline, without touching the network.

    Returns a list of :class:`CacheItem`: the embedded MNIST subset and credit-card sample
    (sha256 checked), Keras' MNIST cache (sha256 checked), the cached full credit-card CSV
    (header checked), the texture sets of ``profile`` (default: the active one) and the real
    MVTec AD categories present.  Used by ``python -m course_lib.data status`` and
    ``python -m course_lib.doctor``; see the README, "Before the workshop".
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    return [_embedded_item("MNIST subset (embedded)", MNIST_SUBSET, MNIST_SUBSET_SHA256),
            _embedded_item("Credit card sample (embedded)", CREDITCARD_SAMPLE,
                           CREDITCARD_SAMPLE_SHA256),
            _keras_mnist_item(), _creditcard_cache_item(), *_texture_items(prof),
            *_mvtec_items()]


def format_cache_table(items) -> str:
    """A plain-text table of :class:`CacheItem` (name, state, size, where), then the hints."""
    rows = [("item", "state", "size", "where")]
    rows += [(it.name, it.state, _human_size(it.size), str(it.path or "-")) for it in items]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 5)
    details = [f"  {it.name}: {it.detail}" for it in items if it.detail and it.state != "OK"]
    by_hint = {}  # one line per distinct hint (e.g. the three textures share one)
    for it in items:
        if it.state != "OK" and it.hint:
            by_hint.setdefault(it.hint, []).append(f"{it.name} ({it.state})")
    hints = [f"  {', '.join(names)}: {hint}" for hint, names in by_hint.items()]
    if details:
        lines += ["", "Details:", *details]
    if hints:
        lines += ["", "What to do:", *hints]
    return "\n".join(lines)


def _failure_hint(item: str, exc: BaseException) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc  # the network error itself
    text = str(cause).splitlines()[0] if str(cause) else ""
    why = f"{type(cause).__name__}: {text if len(text) <= 160 else text[:157] + '...'}"
    if item == "mnist":
        return (f"{why}. Check the network (storage.googleapis.com must answer) and run "
                f"prefetch --mnist again; without it the notebooks use the embedded subset.")
    if item == "creditcard":
        cached = creditcard_cache_path()
        fix = (f"the cached copy is bad: delete {cached} and run prefetch --creditcard again"
               if cached.is_file() else "check the network and disk space (about 150 MB) and "
               "run prefetch --creditcard again")
        return f"{why}. {fix[0].upper()}{fix[1:]}. Without it notebook 04 uses the embedded sample."
    if item == "textures":
        return (f"{why}. Needs scikit-image (pip install -r requirements.txt) and a writable "
                f"cache folder (set COURSE_CACHE_DIR).")
    return f"{why}. {_mvtec_hint(item.split(':', 1)[-1])}"


def prefetch(items=PREFETCH_ITEMS, mvtec_categories=(), profile: Profile | str | None = None,
             progress: bool = True) -> list:
    """Download and verify datasets now, so the workshop runs without the network.

    Parameters
    ----------
    items : iterable of str
        Any of :data:`PREFETCH_ITEMS`: ``"mnist"`` (Keras' full MNIST, sha256-checked),
        ``"creditcard"`` (the full CSV, content-verified), ``"textures"`` (the offline texture
        sets of ``profile``, built with :func:`course_lib.mvtec.build_texture_dataset`).
    mvtec_categories : iterable of str
        Real MVTec AD categories (or ``"all"``) to download with
        :func:`course_lib.mvtec.download_mvtec`.
    profile : Profile or str, optional
        Whose texture sizes to build (default: the active profile).
    progress : bool
        Show the downloaders' progress bars.

    Returns
    -------
    list of CacheItem
        One per requested dataset (textures: one per texture), ``state`` ``"OK"`` or
        ``"failed"`` with a ``hint``.  Every downloader writes atomically, so a failure leaves
        no partial file in the cache (MVTec AD keeps a resumable ``.part`` in its
        ``.downloads`` folder).

    See the README, "Before the workshop".
    """
    from course_lib import mvtec

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    unknown = [i for i in items if i not in PREFETCH_ITEMS]
    if unknown:
        raise ValueError(f"Unknown prefetch item(s) {unknown}: expected {list(PREFETCH_ITEMS)}.")
    bad = [c for c in mvtec_categories if c not in mvtec.MVTEC_AD_DOWNLOADS]
    if bad:
        raise ValueError(f"Unknown MVTec AD category {bad}: expected 'all' or one of "
                         f"{list(mvtec.MVTEC_AD_CATEGORIES)}.")
    results = []

    def attempt(key, name, run, check):
        print(f"--> {name}", flush=True)
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - report every failure, go on with the rest
            item = check()
            item.name, item.state, item.hint = name, "failed", _failure_hint(key, exc)
            results.append(item)
            print(f"    failed: {type(exc).__name__}", flush=True)
            return
        except KeyboardInterrupt:
            print("    interrupted: nothing half-written is left in the cache.", flush=True)
            raise
        item = check()
        item.name = name
        results.append(item)

    if "mnist" in items:
        attempt("mnist", "MNIST full (Keras cache)", _download_keras_mnist, _keras_mnist_item)
    if "creditcard" in items:
        attempt("creditcard", "Credit card full (cache)", _fetch_creditcard,
                _creditcard_cache_item)
    if "textures" in items:
        kw = _texture_kwargs(prof)
        for i, texture in enumerate(mvtec.TEXTURES):
            attempt("textures", f"Texture '{texture}' ({prof.name}, {kw['size']}px)",
                    lambda t=texture: mvtec.build_texture_dataset(textures=(t,), **kw),
                    lambda i=i: _texture_items(prof)[i])
    for category in dict.fromkeys(mvtec_categories):
        targets = mvtec.MVTEC_AD_CATEGORIES if category == "all" else (category,)
        attempt(f"mvtec:{category}", f"MVTec AD '{category}'",
                lambda c=category: mvtec.download_mvtec(c, progress=progress),
                lambda t=targets: _merge_mvtec(_mvtec_items(t)))
    return results


def _merge_mvtec(items: list) -> CacheItem:
    if len(items) == 1:
        return items[0]
    ok = all(it.state == "OK" for it in items)
    root = items[0].path.parent
    return CacheItem("MVTec AD 'all'", "optional", "OK" if ok else "missing", root,
                     _path_size(root) if ok else None)


def main(argv=None) -> int:
    """Command line: ``python -m course_lib.data prefetch|status``; returns the exit code.

    ``prefetch [--all | --mnist --creditcard --textures --mvtec CATEGORY ...] [--profile P]``
    downloads and verifies, then prints a table (exit 1 if anything requested failed);
    ``status`` shows what is present offline without touching the network (exit 1 if
    something present is corrupted).  See the README, "Before the workshop".
    """
    import argparse

    from course_lib import mvtec

    parser = argparse.ArgumentParser(
        prog="python -m course_lib.data",
        description="Get the course's datasets before the workshop, or see what is cached.")
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("prefetch", help="download and verify datasets now",
                         description="Download and verify datasets into the caches the "
                                     "notebooks use. Without options: --all.")
    pre.add_argument("--all", action="store_true",
                     help="MNIST, credit card and textures (not MVTec AD: 4.9 GB, "
                          "non-commercial licence; ask for it with --mvtec)")
    pre.add_argument("--mnist", action="store_true", help="full MNIST into Keras' cache")
    pre.add_argument("--creditcard", action="store_true",
                     help="full credit-card CSV (about 150 MB)")
    pre.add_argument("--textures", action="store_true",
                     help="build the offline texture sets (no network)")
    pre.add_argument("--mvtec", nargs="+", metavar="CATEGORY", default=[],
                     help=f"real MVTec AD categories: 'all' or {', '.join(mvtec.MVTEC_AD_CATEGORIES)}")
    pre.add_argument("--profile", default=None,
                     help="whose texture sizes to build (default: $COURSE_PROFILE or workshop)")
    pre.add_argument("--no-progress", action="store_true", help="hide progress bars")
    st = sub.add_parser("status", help="what is present offline (no network)")
    st.add_argument("--profile", default=None,
                    help="whose texture sets to look for (default: $COURSE_PROFILE or workshop)")
    args = parser.parse_args(argv)

    try:
        prof = get_profile(args.profile)
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "status":
        items = cache_status(prof)
        print(f"Datasets present offline (profile '{prof.name}'; nothing was downloaded):\n")
        print(format_cache_table(items))
        return 1 if any(it.state == "corrupted" for it in items) else 0

    bad = [c for c in args.mvtec if c not in mvtec.MVTEC_AD_DOWNLOADS]
    if bad:
        pre.error(f"unknown MVTec AD category {', '.join(map(repr, bad))}: choose 'all' or "
                     f"one of {', '.join(mvtec.MVTEC_AD_CATEGORIES)}")
    items = [k for k in PREFETCH_ITEMS if getattr(args, k)]
    if args.all or (not items and not args.mvtec):
        items = list(PREFETCH_ITEMS)
    results = prefetch(items, args.mvtec, prof, progress=not args.no_progress)
    failed = [r for r in results if r.state != "OK"]
    print(f"\nPrefetch summary (profile '{prof.name}'):\n")
    print(format_cache_table(results))
    if failed:
        print(f"\n{len(failed)} of {len(results)} item(s) failed; see 'What to do' above. "
              f"The notebooks still run offline on the embedded data (COURSE_DATA=offline).")
        return 1
    print(f"\nAll {len(results)} item(s) OK: the notebooks will find them without the network.")
    return 0


if __name__ == "__main__":
    import sys

    # Run the copy imported as course_lib.data (the one course_lib.mvtec uses), not __main__.
    from course_lib.data import main as _main

    sys.exit(_main())
