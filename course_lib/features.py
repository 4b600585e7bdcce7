"""CNN patch features, the feature dictionary (MVTec AD baseline) and a PatchCore-style memory bank.

The MVTec AD paper (Bergmann et al., CVPR 2019) had a "CNN feature dictionary" baseline: the
features of a pretrained CNN (ResNet-18, 512-d) for small patches of defect-free images,
reduced by PCA (95% of the variance) and summarised by k-means (10 centres); a patch far from
every centre is anomalous.  Its modern successor PatchCore (Roth et al., CVPR 2022) keeps *all*
good-patch features in a memory bank (thinned by a coreset) and scores a patch by the distance
to its nearest neighbour in the bank.

- :func:`load_backbone`: an ImageNet-pretrained ``keras.applications`` ResNet50 (intermediate
  layer) when its weights can be had, otherwise an offline stand-in that needs no download (a
  fixed, seeded random convolutional network); it says which one it used;
- :func:`patch_features`: dense feature maps (N, h, w, d) of grayscale images (N, H, W);
- :class:`FeatureDictionary` and :class:`PatchMemoryBank`: fit on good images, ``score_map``
  gives anomaly maps (N, H, W) for the metrics of ``course_lib.map_metrics``;
- :func:`greedy_coreset`, :func:`coreset_radius`: the k-center coreset and how well it covers.

The whole evaluation (``python -m course_lib.bench mvtec-dictionary`` / ``mvtec-knn``) is
:func:`course_lib.experiments.mvtec_feature_experiment`.

Taught in notebook 07.  Keras, scikit-learn and scipy are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib.checks import (DataError, check_features, check_fraction, check_image_batch,
                               check_positive_int, quote)
from course_lib.config import data_mode, get_profile, keras_dir
from course_lib.download import CONNECT_TIMEOUT_S, can_connect, fetch_file
from course_lib.sampling import seeded_subset

BACKBONE_KINDS = ("auto", "pretrained", "random")
CORESETS = ("random", "greedy")
METHODS = ("dictionary", "knn")
#: The pretrained backbone: ResNet50 up to ``conv3_block4_out`` (512 channels, stride 8); the
#: images are enlarged twice first, so one feature covers 4 x 4 pixels of the original image.
PRETRAINED_LAYER = "conv3_block4_out"
PRETRAINED_UPSCALE = 2
PRETRAINED_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: Where keras.applications downloads them from, and the md5 Keras itself checks.
PRETRAINED_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                          + PRETRAINED_WEIGHTS_FILE)
PRETRAINED_WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"
#: The offline stand-in: three random (seeded, never trained) conv layers, stride 4.
RANDOM_FILTERS = (32, 64, 128)


@dataclass
class Backbone:
    """A feature extractor and what it is (made by :func:`load_backbone`).

    Attributes
    ----------
    model : keras.Model
        Maps a batch (N, H', W', channels) to feature maps (N, h, w, d).
    name : str
        ``"resnet50-imagenet"`` or ``"random-conv"``.
    description : str
        One sentence for the notebook: which network, which layer, and why.
    pretrained : bool
        True for ImageNet weights.
    channels : int
        Input channels (3 for ImageNet models: grayscale is replicated).
    upscale : int
        Images are enlarged by this factor before the model.
    stride : int
        Pixels of the *original* image between two neighbouring features.
    """

    model: object
    name: str
    description: str
    pretrained: bool
    channels: int = 1
    upscale: int = 1
    stride: int = 4
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"Backbone '{self.name}': {self.description}"


# --------------------------------------------------------------------------- validation
def _check_images(x, name: str = "x") -> np.ndarray:
    """Grayscale images (N, H, W) (or (N, H, W, 1)) in [0, 1], at least 16x16, as float32."""
    return check_image_batch(x, name, dtype=np.float32, min_side=16, unit_range=True)


# --------------------------------------------------------------------------- backbones
def pretrained_weights_path() -> Path:
    """Keras' cache file of the ImageNet ResNet50 weights (``~/.keras/models/...``)."""
    return keras_dir() / "models" / PRETRAINED_WEIGHTS_FILE


def _load_pretrained() -> Backbone:
    """ResNet50 with ImageNet weights up to ``PRETRAINED_LAYER``; fails fast without network.

    The weights are fetched into Keras' own cache with the course's downloader (md5 checked,
    connect and read timeouts), then loaded from that file.
    """
    import keras

    path = pretrained_weights_path()
    if not path.is_file():
        if data_mode() == "offline":
            raise OSError(f"COURSE_DATA=offline: the ImageNet weights are not in Keras' cache "
                          f"({path}) and may not be downloaded.")
        if not can_connect(PRETRAINED_WEIGHTS_URL):
            raise OSError(f"cannot reach storage.googleapis.com within {CONNECT_TIMEOUT_S:.0f} s "
                          "to download the ImageNet weights of ResNet50 (about 95 MB).")
        fetch_file(PRETRAINED_WEIGHTS_URL, path, known_hash=f"md5:{PRETRAINED_WEIGHTS_MD5}",
                   what="ImageNet weights of ResNet50")
    base = keras.applications.ResNet50(include_top=False, weights=str(path),
                                       input_shape=(None, None, 3))
    model = keras.Model(base.input, base.get_layer(PRETRAINED_LAYER).output,
                        name="resnet50_conv3")
    return Backbone(model, "resnet50-imagenet",
                    f"ResNet50 pretrained on ImageNet, layer '{PRETRAINED_LAYER}' (512 features "
                    f"per 4 x 4 pixels of the image, enlarged {PRETRAINED_UPSCALE}x first)",
                    pretrained=True, channels=3, upscale=PRETRAINED_UPSCALE, stride=4)


def random_conv_backbone(seed: int = 0) -> Backbone:
    """The offline stand-in: a small convolutional network with fixed random weights.

    Three seeded, never-trained Conv2D + ReLU layers (``RANDOM_FILTERS`` = 32, 64, 128
    filters) with two 2 x 2 average poolings (stride 4, like the paper's 16 x 16 patches at
    stride 4), then a 3 x 3 average of neighbouring features (as PatchCore aggregates a
    neighbourhood); one 128-d feature per 4 x 4 pixels, seeing about 28 x 28 pixels.  Random
    filters are generic edge and blob detectors: far weaker than learned ImageNet features,
    but they need no download.  What ``load_backbone("auto")`` falls back to offline.
    """
    import keras

    init = keras.initializers.HeNormal
    inputs = keras.Input((None, None, 1), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(inputs)
    for i, (filters, size) in enumerate(zip(RANDOM_FILTERS, (5, 3, 3))):
        x = keras.layers.Conv2D(filters, size, padding="same", activation="relu",
                                kernel_initializer=init(seed=seed + i), name=f"conv_{i}")(x)
        if i < 2:
            x = keras.layers.AveragePooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.AveragePooling2D(3, strides=1, padding="same", name="neighbourhood")(x)
    model = keras.Model(inputs, x, name="random_conv")
    return Backbone(model, "random-conv",
                    "offline stand-in: 3 random (seeded, untrained) conv layers, 128 features "
                    "per 4 x 4 pixels (no download needed)", pretrained=False, channels=1,
                    upscale=1, stride=4, extra={"seed": seed})


def load_backbone(kind: str = "auto", seed: int = 0, verbose: bool = True) -> Backbone:
    """The CNN that turns image patches into feature vectors.

    Parameters
    ----------
    kind : {"auto", "pretrained", "random"}
        ``"pretrained"``: ResNet50 with ImageNet weights (``keras.applications``, weights
        downloaded once into Keras' cache, about 95 MB), cut at ``PRETRAINED_LAYER``; raises
        ``OSError`` at once (within ``CONNECT_TIMEOUT_S``) when the weights are not cached and
        the server cannot be reached, or ``COURSE_DATA=offline``.  ``"random"``: the offline
        stand-in :func:`random_conv_backbone`.  ``"auto"`` (default): pretrained when possible,
        else the stand-in, saying why.
    seed : int
        Seed of the random stand-in.
    verbose : bool
        Print one line ``Backbone: ...`` saying which one is used.

    Returns
    -------
    Backbone

    Taught in notebook 07.
    """
    if kind not in BACKBONE_KINDS:
        raise DataError(f"kind must be one of {BACKBONE_KINDS}, got {quote(kind)}.")
    why = ""
    if kind in ("auto", "pretrained"):
        try:
            backbone = _load_pretrained()
        except Exception as exc:  # noqa: BLE001 - network, HTTP, disk: same fallback
            if kind == "pretrained":
                raise OSError(f"Could not load the pretrained backbone ({exc}). Use "
                              "load_backbone('random') offline, or run where the internet "
                              "is reachable (e.g. Colab).") from exc
            why = f" (pretrained weights unavailable: {exc})"
            backbone = random_conv_backbone(seed)
    else:
        backbone = random_conv_backbone(seed)
    if verbose:
        print(f"Backbone: {backbone.name} | {backbone.description}{why}")
    return backbone


def patch_features(backbone: Backbone, x, batch_size: int = 32) -> np.ndarray:
    """Dense feature maps of images: one feature vector per ``backbone.stride`` pixels.

    Parameters
    ----------
    backbone : Backbone
        From :func:`load_backbone`.
    x : array-like (N, H, W)
        Grayscale images in [0, 1]; replicated to 3 channels (and scaled to ImageNet's input
        convention) for pretrained models.
    batch_size : int

    Returns
    -------
    ndarray (N, h, w, d) float32
        ``h = H / stride`` (rounded up), ``d`` features per position.

    Taught in notebook 07.
    """
    if not isinstance(backbone, Backbone):
        raise DataError(f"backbone must be a Backbone from load_backbone(), got "
                         f"{type(backbone).__name__}.")
    imgs = _check_images(x)
    batch_size = check_positive_int("batch_size", batch_size)
    if backbone.upscale > 1:
        imgs = np.repeat(np.repeat(imgs, backbone.upscale, axis=1), backbone.upscale, axis=2)
    batch = imgs[..., None]
    if backbone.pretrained:
        import keras

        batch = keras.applications.resnet50.preprocess_input(
            np.repeat(batch, 3, axis=-1) * 255.0)
    feats = backbone.model.predict(batch, batch_size=batch_size, verbose=0)
    return np.asarray(feats, dtype=np.float32)


def upsample_maps(patch_maps, shape, sigma: float = 2.0) -> np.ndarray:
    """Patch score maps (N, h, w) to pixel maps (N, H, W): bilinear, then Gaussian smoothing
    with ``sigma`` pixels (0: none), as PatchCore does.  Taught in notebook 07.
    """
    from scipy import ndimage

    m = np.asarray(patch_maps, dtype=np.float64)
    if m.ndim != 3:
        raise DataError(f"patch_maps must have shape (N, h, w), got {m.shape}.")
    h, w = (int(s) for s in shape)
    out = np.empty((len(m), h, w), np.float32)
    for i, pm in enumerate(m):
        big = ndimage.zoom(pm, (h / pm.shape[0], w / pm.shape[1]), order=1, mode="nearest",
                           grid_mode=True)
        out[i] = ndimage.gaussian_filter(big, sigma) if sigma > 0 else big
    return out


# --------------------------------------------------------------------------- models
class _PatchModel:
    """Shared mechanics: features of images, a seeded subset of training patches, maps."""

    def __init__(self, backbone=None, max_patches=None, sigma=2.0, random_state=0):
        self.backbone = backbone
        self.max_patches = max_patches
        self.sigma = sigma
        self.random_state = random_state

    def _max_patches(self) -> int:
        if self.max_patches is None:
            return int(get_profile().feature_max_patches)
        return check_positive_int("max_patches", self.max_patches)

    def _backbone(self) -> Backbone:
        if self.backbone is None:
            self.backbone = load_backbone("auto")
        return self.backbone

    def training_patches(self, features) -> np.ndarray:
        """The good-patch features a fit uses: at most ``max_patches`` rows of ``features``
        ((n, d) or (N, h, w, d)), a seeded subset in their original order."""
        feats = check_features(features)
        return feats[seeded_subset(len(feats), self._max_patches(), self.random_state)]

    def fit(self, x_good):
        """Fit on defect-free images (N, H, W) in [0, 1].  Returns ``self``."""
        feats = patch_features(self._backbone(), x_good)
        return self.fit_features(feats)

    def _check_fitted(self):
        if not hasattr(self, "n_features_"):
            raise DataError(f"{type(self).__name__} is not fitted yet: call fit(x_good) first.")

    def _fitted_features(self, features) -> np.ndarray:
        """Check that the model is fitted and ``features`` (n, d) match its dimension."""
        self._check_fitted()
        f = check_features(features)
        if f.shape[1] != self.n_features_:
            raise DataError(f"features have {f.shape[1]} dimensions, the "
                             f"{type(self).__name__} was fitted on {self.n_features_}.")
        return f

    def patch_score_maps(self, x) -> np.ndarray:
        """Anomaly score of every patch of images ``x``: (N, h, w)."""
        self._check_fitted()
        feats = patch_features(self._backbone(), x)
        scores = self.patch_scores(feats.reshape(-1, feats.shape[-1]))
        return scores.reshape(feats.shape[:3])

    def score_map(self, x) -> np.ndarray:
        """Pixel anomaly maps (N, H, W) of images ``x`` (N, H, W) in [0, 1]; higher = worse."""
        imgs = _check_images(x)
        return upsample_maps(self.patch_score_maps(imgs), imgs.shape[1:], self.sigma)


class FeatureDictionary(_PatchModel):
    """The MVTec AD paper's CNN feature dictionary: PCA, then k-means centres of good patches.

    ``fit`` takes the patch features of defect-free images (at most ``max_patches``, a seeded
    subset), keeps the PCA components that explain ``variance`` of their variance, and runs
    k-means with ``n_clusters`` centres in that space: the *dictionary*.  A patch's anomaly
    score is its Euclidean distance (in PCA space) to the nearest centre.

    Parameters
    ----------
    backbone : Backbone, optional
        Default: ``load_backbone("auto")`` on first use.
    variance : float in (0, 1)
        Share of the variance the PCA keeps (the paper: 0.95).
    n_clusters : int
        Dictionary size (the paper: 10).
    max_patches : int, optional
        Default ``get_profile().feature_max_patches``.
    sigma : float
        Smoothing of the upsampled maps in pixels.
    random_state : int

    Taught in notebook 07.
    """

    def __init__(self, backbone=None, variance: float = 0.95, n_clusters: int = 10,
                 max_patches=None, sigma: float = 2.0, random_state: int = 0):
        super().__init__(backbone, max_patches, sigma, random_state)
        self.variance = variance
        self.n_clusters = n_clusters

    def fit_features(self, features):
        """Fit on precomputed good-patch features (n, d) or (N, h, w, d).  Returns ``self``."""
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        v = check_fraction("variance", self.variance, allow_one=False)
        k = check_positive_int("n_clusters", self.n_clusters)
        feats = self.training_patches(features)
        if len(feats) < max(k, 2):
            raise DataError(f"only {len(feats)} training patches for {k} dictionary centres.")
        self.pca_ = PCA(n_components=v, svd_solver="full").fit(feats)
        z = self.pca_.transform(feats)
        self.kmeans_ = KMeans(n_clusters=k, n_init=3, random_state=self.random_state).fit(z)
        self.centers_ = self.kmeans_.cluster_centers_.astype(np.float64)
        self.n_features_ = feats.shape[1]
        self.n_patches_ = len(feats)
        return self

    def patch_scores(self, features) -> np.ndarray:
        """Distance of each patch (n, d) to its nearest dictionary centre (PCA space): (n,)."""
        f = self._fitted_features(features)
        z = self.pca_.transform(f).astype(np.float64)
        d2 = ((z ** 2).sum(1)[:, None] - 2 * z @ self.centers_.T
              + (self.centers_ ** 2).sum(1)[None, :])
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def greedy_coreset(features, n: int, random_state: int = 0) -> np.ndarray:
    """Indices of ``n`` rows chosen by greedy k-center selection (PatchCore's coreset).

    Start from one random row; then repeatedly add the row farthest from every row chosen so
    far.  This keeps the rare, outlying patches that a random subset tends to miss, so the
    subset *covers* the data well: every row lies close to some chosen row (compare
    :func:`coreset_radius`).  Used by :class:`PatchMemoryBank` with ``coreset="greedy"``.
    """
    f = check_features(features)  # float32: twice as fast, precise enough to rank distances
    n = check_positive_int("n", n)
    if n > len(f):
        raise DataError(f"n must be at most the number of rows ({len(f)}), got {n}.")
    rng = np.random.default_rng(random_state)
    chosen = [int(rng.integers(len(f)))]
    sq = (f ** 2).sum(1)
    min_d2 = sq - 2 * f @ f[chosen[0]] + sq[chosen[0]]
    for _ in range(n - 1):
        i = int(np.argmax(min_d2))
        chosen.append(i)
        min_d2 = np.minimum(min_d2, sq - 2 * f @ f[i] + sq[i])
    return np.asarray(chosen)


def coreset_radius(features, indices) -> float:
    """How well a subset covers the rows: the largest distance of any row to its nearest
    chosen row (smaller = better coverage).  Taught in notebook 07.
    """
    from sklearn.neighbors import NearestNeighbors

    f = check_features(features)
    idx = np.asarray(indices, dtype=int)
    if idx.ndim != 1 or len(idx) == 0 or idx.min() < 0 or idx.max() >= len(f):
        raise DataError(f"indices must be a non-empty 1-D array of row numbers < {len(f)}.")
    dist, _ = NearestNeighbors(n_neighbors=1).fit(f[idx]).kneighbors(f)
    return float(dist.max())


class PatchMemoryBank(_PatchModel):
    """PatchCore-style memory bank: nearest-neighbour distance to good-patch features.

    ``fit`` keeps the patch features of defect-free images (at most ``max_patches``, a
    seeded subset), thinned to a ``fraction`` of them by a ``coreset``: ``"random"`` rows
    or ``"greedy"`` k-center selection (:func:`greedy_coreset`).  A patch's anomaly score is
    the Euclidean distance to its nearest neighbour in the bank (scikit-learn's
    ``NearestNeighbors``).  Unlike the dictionary's 10 centres, the bank remembers every kind
    of normal patch, rare ones included.

    Parameters
    ----------
    backbone : Backbone, optional
    coreset : {"random", "greedy"}
    fraction : float in (0, 1]
        Share of the (subsampled) training patches kept in the bank.
    max_patches : int, optional
        Default ``get_profile().feature_max_patches``.
    sigma : float
    random_state : int

    Taught in notebook 07.
    """

    def __init__(self, backbone=None, coreset: str = "greedy", fraction: float = 0.1,
                 max_patches=None, sigma: float = 2.0, random_state: int = 0):
        super().__init__(backbone, max_patches, sigma, random_state)
        self.coreset = coreset
        self.fraction = fraction

    def fit_features(self, features):
        """Fit on precomputed good-patch features (n, d) or (N, h, w, d).  Returns ``self``."""
        from sklearn.neighbors import NearestNeighbors

        if self.coreset not in CORESETS:
            raise DataError(f"coreset must be one of {CORESETS}, got {self.coreset!r}.")
        frac = check_fraction("fraction", self.fraction)
        feats = self.training_patches(features)
        n = max(1, int(round(frac * len(feats))))
        if n >= len(feats):
            idx = np.arange(len(feats))
        elif self.coreset == "greedy":
            idx = greedy_coreset(feats, n, random_state=self.random_state)
        else:
            idx = np.random.default_rng(self.random_state).choice(len(feats), n, replace=False)
        self.bank_ = feats[idx]
        self.coreset_indices_ = idx
        self.nn_ = NearestNeighbors(n_neighbors=1).fit(self.bank_)
        self.n_features_ = feats.shape[1]
        self.n_patches_ = len(feats)
        return self

    def patch_scores(self, features) -> np.ndarray:
        """Distance of each patch (n, d) to its nearest neighbour in the bank: (n,)."""
        f = self._fitted_features(features)
        return self.nn_.kneighbors(f)[0][:, 0]
