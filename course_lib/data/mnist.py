"""MNIST: online (full, verified), offline (embedded real subset) or from your own file.

Every load says which source it used:

- ``online``: the real, full MNIST (70,000 images), the same file ``keras.datasets.mnist``
  uses, downloaded once into Keras' cache (``~/.keras/datasets/mnist.npz``) and checked against
  Keras' sha256 on every load;
- ``embedded``: 8,000 training and 2,000 held-apart test images of the official MNIST
  training set, shipped in ``data/mnist_subset.npz`` (CC BY-SA 3.0, see ``data/README.md``);
- ``file``: your own ``.npz`` with ``x`` (uint8, shape (N, 28, 28)) and ``y`` (labels).

The choice between online and embedded follows :func:`course_lib.config.data_mode`
(environment variable ``COURSE_DATA``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, check_class_labels, check_image_batch, quote
from course_lib.config import Profile, data_mode, get_profile, keras_dir
from course_lib.data.common import (CacheItem, check_file, embedded_file, embedded_item,
                                    online_or_embedded, path_size)
from course_lib.download import fetch_file, sha256_file
from course_lib.sampling import seeded_split, seeded_subset

MNIST_SUBSET = "mnist_subset.npz"
MNIST_SUBSET_SHA256 = "00b1b7d4ad1d895b8eeba72e983f732205301df70cd221d72c78a5bdafee5f9f"
#: Where ``keras.datasets.mnist`` downloads from, and the sha256 Keras itself checks.
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
IMAGE_SHAPE = (28, 28)


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


def mnist_cache_path() -> Path:
    """Keras' MNIST file: ``$KERAS_HOME/datasets/mnist.npz`` (default ``~/.keras``)."""
    return keras_dir() / "datasets" / "mnist.npz"


def _read_npz(path: Path, what: str, how_to_fix: str) -> dict:
    """The arrays of an ``.npz`` file by name; a DataError for anything else (a single-array
    ``.npy`` file, a damaged or pickled file), which says what it is and ``how_to_fix``."""
    path = check_file(path, what, how_to_fix)
    try:
        # mmap_mode: a .npy file given by mistake is not read into memory just to be refused
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(loaded, np.ndarray):
            with loaded as f:
                return {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        # numpy's own message for a file that is no NumPy file at all advises allow_pickle,
        # which would run code from the file: never pass that on
        why = ("" if "allow_pickle" in str(exc) else
               f" ({type(exc).__name__}: {quote(str(exc), 120)})")
        raise DataError(f"{what} {path} is corrupted or not a NumPy .npz file{why}. "
                        f"{how_to_fix}") from exc
    raise DataError(f"{what} {path} is a .npy file holding one array ({loaded.dtype}, shape "
                    f"{loaded.shape}), not an .npz file of named arrays. {how_to_fix}")


def _digits(x, name: str) -> np.ndarray:
    """uint8 (N, 28, 28) images; floats in [0, 1] are scaled to 0-255."""
    x = check_image_batch(x, name, shape=IMAGE_SHAPE, unit_range=True, keep_uint8=True,
                          dtype=np.float32)
    return x if x.dtype == np.uint8 else np.round(x * 255).astype(np.uint8)


def load_npz_images(path, image_shape: tuple = IMAGE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Load your own images from an ``.npz`` with ``x`` (uint8, (N, 28, 28)) and ``y`` (labels).

    Returns ``(x, y)`` after validation; errors name the file and what was expected.
    Used by ``load_mnist(path=...)`` and ``python -m course_lib.bench mnist-one-class``.
    """
    fix = "Save your data with numpy: np.savez_compressed(path, x=images_uint8, y=labels)."
    arrays = _read_npz(Path(path), "Image file", fix)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        found = ", ".join(quote(k, 30) for k in sorted(arrays)[:10]) or "none"
        raise DataError(f"{path}: missing array(s) {missing}; found {found}. {fix}")
    if tuple(image_shape) != IMAGE_SHAPE:
        x = check_image_batch(arrays["x"], f"{path}: x", shape=image_shape, unit_range=True,
                              keep_uint8=True)
    else:
        x = _digits(arrays["x"], f"{path}: x")
    y = check_class_labels(arrays["y"], len(x), name=f"{path}: y")
    return x, y


def _load_embedded() -> tuple:
    path = embedded_file(MNIST_SUBSET, MNIST_SUBSET_SHA256, "Embedded MNIST subset")
    arrays = _read_npz(path, "Embedded MNIST subset",
                       "Rebuild it with data/build_mnist_subset.py or re-clone the course.")
    return (_digits(arrays["x_train"], "embedded x_train"), arrays["y_train"].astype(np.int64),
            _digits(arrays["x_test"], "embedded x_test"), arrays["y_test"].astype(np.int64))


def _check_keras_mnist(path: Path) -> None:
    digest = sha256_file(path)
    if digest != MNIST_SHA256:
        raise DataError(f"{path} is not Keras' MNIST file (sha256 {digest[:12]}... differs "
                        f"from {MNIST_SHA256[:12]}...). Delete it and run again to download it "
                        f"anew (python -m course_lib.data prefetch --mnist).")


def fetch_mnist(progress: bool = True) -> tuple:
    """The full MNIST as ``(x_train, y_train, x_test, y_test)`` from Keras' cache, downloaded
    into it first if missing.

    The cached file is checked against Keras' sha256 on *every* call: a wrong or damaged file
    raises :class:`DataError` naming the file to delete.  A download goes to a temporary file
    next to the cache entry, is verified, and only then renamed into place; a dead network
    fails within a few seconds (:data:`course_lib.download.CONNECT_TIMEOUT_S`).
    Used by :func:`load_mnist` and ``python -m course_lib.data prefetch --mnist``.
    """
    cache = mnist_cache_path()
    if cache.is_dir():
        raise DataError(f"{cache} is a folder, not Keras' MNIST file. Remove it and run again.")
    if not cache.is_file():
        fetch_file(MNIST_URL, cache, known_hash=f"sha256:{MNIST_SHA256}", progress=progress,
                   what=f"download of {MNIST_URL}")
    _check_keras_mnist(cache)
    fix = f"Delete {cache} and run again to download it anew."
    arrays = _read_npz(cache, "Cached MNIST", fix)
    return (_digits(arrays["x_train"], "MNIST x_train"), arrays["y_train"].astype(np.int64),
            _digits(arrays["x_test"], "MNIST x_test"), arrays["y_test"].astype(np.int64))


def load_mnist(source: str | None = None, path=None, profile: Profile | str | None = None,
               n_train: int | None = None, n_test: int | None = None, seed: int = 0,
               verbose: bool = True) -> ImageData:
    """Load MNIST, sized by the profile, from the network, the embedded subset or your file.

    Parameters
    ----------
    source : {"auto", "online", "offline"}, optional
        Default: the ``COURSE_DATA`` setting (``auto``).  ``auto`` tries the download (a few
        seconds at most when there is no network) and falls back to the embedded subset with
        one message; ``offline`` uses the embedded subset; ``online`` fails if it cannot
        download (or if the cached file is not Keras' MNIST).
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
    prof = get_profile(profile)
    n_train = prof.n_train if n_train is None else n_train
    n_test = prof.n_test if n_test is None else n_test
    note = ""
    if path is not None:
        x, y = load_npz_images(path)
        if len(x) < 2:
            raise DataError(f"{path}: holds {len(x)} image(s); need at least 2 to split into "
                            f"training and test images.")
        train, test = seeded_split(len(x), max(1, len(x) // 7), seed)
        arrays = (x[train], y[train], x[test], y[test])
        src, detail = "file", f"your file {path} (seeded 6/7 train, 1/7 test split)"
    else:
        arrays, src, note = online_or_embedded(data_mode(source), "MNIST", "subset",
                                               fetch_mnist, _load_embedded,
                                               where=f" from {MNIST_URL}")
        detail = ("full MNIST (Keras' mnist.npz, sha256 verified)" if src == "online" else
                  f"real MNIST subset shipped in data/{MNIST_SUBSET} (CC BY-SA 3.0)")
    keep_train = seeded_subset(len(arrays[0]), n_train, seed)
    keep_test = seeded_subset(len(arrays[2]), n_test, seed + 1)
    data = ImageData(arrays[0][keep_train], arrays[1][keep_train], arrays[2][keep_test],
                     arrays[3][keep_test], src, detail)
    if verbose:
        print(note + str(data))
    return data


# --------------------------------------------------------------------------- cache status
def mnist_cache_items() -> list:
    """The embedded subset and Keras' MNIST cache as :class:`CacheItem` (sha256 checked; no
    network).  Used by ``python -m course_lib.data status``."""
    path = mnist_cache_path()
    embedded = embedded_item("MNIST subset (embedded)", MNIST_SUBSET, MNIST_SUBSET_SHA256)
    name = "MNIST full (Keras cache)"
    if path.is_dir():
        return [embedded, CacheItem(name, "download", "corrupted", path,
                                    detail="a folder, not Keras' MNIST file",
                                    hint=f"Remove the folder {path} and run python -m "
                                         f"course_lib.data prefetch --mnist.")]
    if not path.is_file():
        return [embedded, CacheItem(name, "download", "missing", path,
                                    hint="python -m course_lib.data prefetch --mnist (offline, "
                                         "the embedded subset is used instead).")]
    digest = sha256_file(path)
    if digest != MNIST_SHA256:
        return [embedded, CacheItem(name, "download", "corrupted", path, path_size(path),
                                    detail=f"sha256 {digest[:12]}... differs from Keras'",
                                    hint=f"Delete {path} and run python -m course_lib.data "
                                         f"prefetch --mnist.")]
    return [embedded, CacheItem(name, "download", "OK", path, path_size(path),
                                detail="sha256 verified")]
