"""Datasets for the course: MNIST online, offline (embedded real subset) or from your own file.

Every loader says which source it used, so a notebook can state it plainly:

- ``online``: the real, full MNIST through Keras' own download (``keras.datasets.mnist``),
  cached by Keras under ``~/.keras/datasets``;
- ``embedded``: 8,000 training and 2,000 held-apart test images of the official MNIST
  training set, shipped in ``data/mnist_subset.npz`` (CC BY-SA 3.0, see ``data/README.md``);
- ``file``: your own ``.npz`` with ``x`` (uint8, shape (N, 28, 28)) and ``y`` (labels).

The choice between online and embedded follows :func:`course_lib.config.data_mode`
(environment variable ``COURSE_DATA``).  Taught in notebook 01.
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
        raise DataError(f"{name}: holds no images (shape {arr.shape}).")
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

    Taught in notebook 02.
    """
    arr = to_float(x)
    return arr.reshape(arr.shape[0], arr.shape[1], arr.shape[2], 1)


def add_noise(x, std: float = 0.3, seed: int = 0) -> np.ndarray:
    """Add Gaussian pixel noise and clip back to [0, 1] (input for a denoising autoencoder).

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


def _download_keras_mnist() -> tuple[np.ndarray, ...]:
    """Keras' own MNIST download, with short timeouts so a dead network fails fast."""
    if not _keras_mnist_cache().is_file():
        with socket.create_connection(MNIST_HOST, timeout=CONNECT_TIMEOUT_S):
            pass  # the host answers: go ahead
    import keras

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    finally:
        socket.setdefaulttimeout(old)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


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
        mode = data_mode(source)
        arrays = None
        if mode in ("auto", "online"):
            try:
                arrays = _download_keras_mnist()
                src, detail = "online", "full MNIST via keras.datasets.mnist (Keras cache)"
            except Exception as exc:  # noqa: BLE001 - any network/cache failure
                if mode == "online":
                    raise DataError(
                        f"Could not download MNIST ({type(exc).__name__}: {exc}). Check the "
                        f"network, or use the embedded subset with COURSE_DATA=offline.") from exc
                note = (f"Could not download MNIST ({type(exc).__name__}); using the embedded "
                        f"offline subset instead.\n")
        if arrays is None:
            arrays = _load_embedded()
            src, detail = "embedded", (f"real MNIST subset shipped in data/{MNIST_SUBSET} "
                                       f"(CC BY-SA 3.0)")
    x_train, y_train = _subsample(arrays[0], arrays[1], n_train, seed)
    x_test, y_test = _subsample(arrays[2], arrays[3], n_test, seed + 1)
    data = ImageData(x_train, y_train, x_test, y_test, src, detail)
    if verbose:
        print(note + str(data))
    return data
