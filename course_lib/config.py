"""Settings: how big each run is (profiles), where data comes from, seeds and folders.

A *profile* scales data sizes and epochs so that the same notebook runs in seconds
(``fast``, used by the tests), in a few minutes (``workshop``, the default) or at full size
(``full``).  Choose it with the environment variable ``COURSE_PROFILE`` before starting
Jupyter (on Colab: ``%env COURSE_PROFILE=full`` in a cell before ``get_profile()``), or pass a
name to :func:`get_profile`.  ``COURSE_DATA`` (:func:`data_mode`) says whether datasets are
downloaded (``online``), taken from the small real subsets in ``data/`` (``offline``) or
downloaded when the network answers (``auto``, the default).

This module is the bottom layer of ``course_lib``: it imports nothing from the package, and
NumPy and Keras only inside :func:`set_seed`.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

PROFILE_ENV = "COURSE_PROFILE"
DATA_ENV = "COURSE_DATA"
DATA_DIR_ENV = "COURSE_DATA_DIR"
CACHE_ENV = "COURSE_CACHE_DIR"
DEFAULT_PROFILE = "workshop"
DATA_MODES = ("auto", "online", "offline")
#: The repository (the folder holding ``course_lib/``, ``data/`` and ``notebooks/``).
REPO_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """Sizes and epochs for one profile (see the module docstring).

    Attributes
    ----------
    name : str
        ``"fast"``, ``"workshop"`` or ``"full"``.
    n_train, n_test : int or None
        How many MNIST training / test images a notebook uses (``None``: all available).
    epochs : int
        Epochs for a main training run.
    study_epochs : int
        Epochs for each run of a study that trains several models (e.g. bottleneck sizes).
    batch_size : int
        Mini-batch size.
    one_class_epochs : int
        At most this many epochs for the one-class autoencoder (early stopping may end sooner).
    tabular_epochs : int
        At most this many epochs for the credit-card autoencoder (early stopping may end sooner).
    tabular_max_normal : int or None
        At most this many normal transactions of a *downloaded* credit-card file are used
        (a seeded sample, all frauds kept); ``None``: all.  The embedded sample is always whole.
    texture_size : int
        Side in pixels of the offline texture images (built square, from the CC0 photos).
    texture_n_train : int
        Defect-free training images built per texture (a fifth of them are kept apart as
        validation images for the threshold).
    texture_n_test_good, texture_n_test_defect : int
        Good and defective test images built per texture.
    mvtec_scale : float
        One scale factor for all images of an MVTec-style category (1.0: the files' own
        resolution; aspect ratios are always kept).
    mvtec_max_side : int
        At most this many pixels on the longest side after scaling (large photos are scaled
        down further, all of a category by the same factor).
    mvtec_patch : int
        The largest patch side in pixels; smaller images get smaller patches (a multiple of 8
        that fits the smallest image).
    mvtec_stride : int
        Residual maps tile each image with patches every this many pixels; 0 (the default):
        a quarter of the patch side, as the MVTec paper's 128-pixel patches every 30 pixels.
    mvtec_samples : int
        Random training patches (flipped at random) for each patch autoencoder.
    mvtec_epochs : int
        Epochs of each patch autoencoder (L2 and SSIM).
    object_side : int
        Objects (MVTec AD's bottle): the side in pixels, square, at which the images are loaded
        and evaluated (the embedded subset is stored at 256, the paper's object size).
    object_ae_side : int
        Objects: the side of the whole images the autoencoders rebuild (maps are resized back
        to ``object_side`` to be compared with the masks).
    object_epochs : int
        Objects: epochs of each whole-image autoencoder (over the good images and their flips).
    gan_epochs : int
        Epochs of the DCGAN (trained on normal images only).
    anogan_steps : int
        Gradient steps of AnoGAN's latent search per test image (the paper: hundreds).
    anogan_n_test : int
        Test images scored by AnoGAN (the latent search is slow).
    feature_max_patches : int
        At most this many good-image patch features in a feature dictionary / memory bank.
    ecg_epochs : int
        At most this many epochs for the Conv1D autoencoder on ECG heartbeats (early stopping
        may end sooner).
    """

    name: str
    n_train: int | None
    n_test: int | None
    epochs: int
    study_epochs: int
    batch_size: int
    one_class_epochs: int
    tabular_epochs: int = 100
    tabular_max_normal: int | None = None
    texture_size: int = 64
    texture_n_train: int = 200
    texture_n_test_good: int = 30
    texture_n_test_defect: int = 60
    mvtec_scale: float = 0.5
    mvtec_max_side: int = 768
    mvtec_patch: int = 64
    mvtec_stride: int = 0
    mvtec_samples: int = 4000
    mvtec_epochs: int = 6
    object_side: int = 256
    object_ae_side: int = 128
    object_epochs: int = 30
    gan_epochs: int = 40
    anogan_steps: int = 200
    anogan_n_test: int = 200
    feature_max_patches: int = 20000
    ecg_epochs: int = 100

    def as_dict(self) -> dict:
        """The profile as a plain dictionary (for logs and JSON)."""
        return asdict(self)

    def __str__(self) -> str:
        n_train = "all" if self.n_train is None else self.n_train
        n_test = "all" if self.n_test is None else self.n_test
        return (f"profile '{self.name}': {n_train} training / {n_test} test images, "
                f"{self.epochs} epochs (studies {self.study_epochs}, one-class {self.one_class_epochs}), "
                f"batch {self.batch_size}")


PROFILES = {
    "fast": Profile("fast", n_train=2000, n_test=500, epochs=5, study_epochs=3,
                    batch_size=32, one_class_epochs=10, tabular_epochs=10,
                    tabular_max_normal=5000,
                    texture_size=64, texture_n_train=60, texture_n_test_good=15,
                    texture_n_test_defect=30, mvtec_scale=0.5, mvtec_max_side=512,
                    mvtec_patch=64, mvtec_samples=1500, mvtec_epochs=4,
                    object_side=128, object_ae_side=128, object_epochs=15,
                    gan_epochs=30, anogan_steps=50, anogan_n_test=40,
                    feature_max_patches=5000, ecg_epochs=30),
    "workshop": Profile("workshop", n_train=8000, n_test=2000, epochs=15, study_epochs=5,
                        batch_size=64, one_class_epochs=40, tabular_epochs=100,
                        tabular_max_normal=20000,
                        texture_size=64, texture_n_train=200, texture_n_test_good=30,
                        texture_n_test_defect=60, mvtec_scale=0.5, mvtec_max_side=768,
                        mvtec_patch=64, mvtec_samples=4000, mvtec_epochs=6,
                        object_side=256, object_ae_side=128, object_epochs=30,
                        gan_epochs=40, anogan_steps=200, anogan_n_test=100,
                        feature_max_patches=10000, ecg_epochs=100),
    "full": Profile("full", n_train=None, n_test=None, epochs=30, study_epochs=10,
                    batch_size=128, one_class_epochs=80, tabular_epochs=100,
                    tabular_max_normal=None,
                    texture_size=128, texture_n_train=200, texture_n_test_good=30,
                    texture_n_test_defect=60, mvtec_scale=1.0, mvtec_max_side=1536,
                    mvtec_patch=128, mvtec_samples=10000, mvtec_epochs=20,
                    object_side=256, object_ae_side=128, object_epochs=60,
                    gan_epochs=100, anogan_steps=300, anogan_n_test=1000,
                    feature_max_patches=50000, ecg_epochs=200),
}


def env_value(name: str) -> str | None:
    """The environment variable ``name``, or None when it is unset, empty or only blanks.

    Every ``COURSE_*`` variable is read through here, so ``COURSE_PROFILE=`` (set but empty,
    as ``export COURSE_PROFILE=`` or an empty ``.env`` line leaves it) means the default, as
    an unset variable does.
    """
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None


def get_profile(name: Profile | str | None = None) -> Profile:
    """Return the active profile, the one named, or the Profile given.

    Parameters
    ----------
    name : Profile, str or None
        A :class:`Profile` (returned as it is), ``"fast"``, ``"workshop"`` or ``"full"``.
        Default: the environment variable ``COURSE_PROFILE``, else (unset or empty)
        ``"workshop"``.

    Raises
    ------
    ValueError
        An unknown name; the message lists the profiles.

    Taught in notebook 01.
    """
    if isinstance(name, Profile):
        return name
    chosen = name if name is not None else (env_value(PROFILE_ENV) or DEFAULT_PROFILE)
    key = str(chosen).strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"Unknown course profile {str(chosen)[:40]!r}: expected one of {sorted(PROFILES)}. "
            f"Set {PROFILE_ENV}=fast|workshop|full (default {DEFAULT_PROFILE}).")
    return PROFILES[key]


def data_mode(mode: str | None = None) -> str:
    """Where datasets come from: ``"auto"`` (default), ``"online"`` or ``"offline"``.

    ``auto`` downloads the real dataset when the network answers and otherwise falls back to
    the small real subset embedded in ``data/``; ``offline`` never touches the network;
    ``online`` downloads or fails with an error.  Set it with the environment variable
    ``COURSE_DATA`` (unset or empty: ``auto``).
    """
    chosen = mode if mode is not None else (env_value(DATA_ENV) or "auto")
    key = str(chosen).strip().lower()
    if key not in DATA_MODES:
        raise ValueError(f"Unknown data mode {str(chosen)[:40]!r}: expected one of "
                         f"{list(DATA_MODES)} (environment variable {DATA_ENV}).")
    return key


def set_seed(seed: int = 42) -> None:
    """Seed Python, NumPy and Keras/TensorFlow so runs repeat.

    Imports Keras (a few seconds on the first call).  Taught in notebook 01.
    """
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    import keras

    keras.utils.set_random_seed(seed)
    # Run one tiny operation now, so TensorFlow's one-time start-up messages (printed by its C++
    # runtime, not by Python) appear in the setup cell rather than in a later cell.
    keras.ops.convert_to_numpy(keras.ops.zeros((1,)))


# --------------------------------------------------------------------------- folders
def data_dir() -> Path:
    """The folder with the embedded datasets: ``$COURSE_DATA_DIR`` or the repo's ``data/``.

    Resolved from the package, not the current directory, so it works from any notebook.
    """
    env = env_value(DATA_DIR_ENV)
    return Path(env).expanduser() if env else REPO_DIR / "data"


def cache_dir() -> Path:
    """Where downloads and built datasets are kept: ``$COURSE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/course_lib`` (by default ``~/.cache/course_lib``)."""
    env = env_value(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = env_value("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "course_lib"


def keras_dir() -> Path:
    """Keras' own folder, ``$KERAS_HOME`` or ``~/.keras`` (its ``datasets/`` and ``models/``
    caches hold the full MNIST, the credit-card CSV and pretrained weights)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
