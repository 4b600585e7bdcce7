"""CNN patch features, the feature dictionary (MVTec AD baseline) and a PatchCore-style memory bank.

The MVTec AD paper (Bergmann et al., CVPR 2019) had a "CNN feature dictionary" baseline: the
features of a pretrained CNN (ResNet-18, 512-d) for small patches of defect-free images,
reduced by PCA (95% of the variance) and summarised by k-means (10 centres); a patch far from
every centre is anomalous.  Its modern successor PatchCore (Roth et al., CVPR 2022) keeps *all*
good-patch features in a memory bank (thinned by a coreset) and scores a patch by the distance
to its nearest neighbour in the bank.

- the backbones (which CNN, pretrained, learned or random) live in :mod:`course_lib.backbones`;
- :func:`patch_features`: dense feature maps (h, w, d) of grey or colour images of any sizes
  (:func:`course_lib.backbones.feature_input` gives each image the channels its backbone takes);
  :func:`good_patch_features`: a seeded subset of the good images' patch features, computed a
  few images at a time (what the models fit on);
- :class:`FeatureDictionary` and :class:`PatchMemoryBank`: fit on good images, ``score_map``
  gives anomaly maps (one per image, its size) for the metrics of ``course_lib.map_metrics``;
- :func:`knn_distance`: the memory bank's nearest-neighbour score; :func:`greedy_coreset`,
  :func:`coreset_radius`: the k-center coreset and how well it covers.

The whole evaluation (``python -m course_lib.bench mvtec-dictionary`` / ``mvtec-knn``) is
:func:`course_lib.experiments.mvtec.mvtec_feature_experiment`.

The cells saved from notebook 08 (:func:`patch_features`, :func:`knn_distance`,
:func:`coreset_radius`, :func:`greedy_coreset`) use what the module imports at its top
(NumPy, scikit-learn's ``NearestNeighbors``); the rest imports Keras, the rest of
scikit-learn and scipy inside the functions.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from course_lib.backbones import Backbone, feature_input, load_backbone
from course_lib.checks import DataError, check_features, check_fraction, check_positive_int
from course_lib.config import get_profile
from course_lib.sampling import seeded_subset

CORESETS = ("random", "greedy")
METHODS = ("dictionary", "knn")
#: The greedy coreset of features with more dimensions is chosen on a seeded random
#: projection to this many (Johnson-Lindenstrauss, as PatchCore does); the bank keeps them all.
CORESET_DIMS = 128
#: Images per call of :func:`patch_features` when a model fits or scores many images (memory).
FEATURE_CHUNK = 16
#: Feature cells of mirrored image that :func:`patch_features` adds around every image and cuts
#: off again: the CNN's zero padding then falls on the mirror, not on the image's own border.
MIRROR_CELLS = 4


def patch_features(backbone, images, batch_size=None):
    """Feature maps of images in [0, 1] of any sizes, grey (H, W) or colour (H, W, 3) (a list,
    or an array (N, H, W) or (N, H, W, 3)): a list of (H // stride, W // stride, d) float32
    arrays, one d-dimensional feature vector per ``backbone.stride`` x ``backbone.stride``
    pixels of each image.  Each image is first surrounded by its mirror image (MIRROR_CELLS
    features wide, cut off again after the CNN), so that the CNN's zero padding does not draw
    a dark frame that no good patch inside an image has.  Images per batch: ``batch_size``,
    default ``backbone.batch_size``.  Taught in notebook 08."""
    if not isinstance(backbone, Backbone):
        raise DataError(f"backbone must be a Backbone from load_backbone(), got "
                        f"{type(backbone).__name__}.")
    imgs = feature_input(images, backbone.channels)   # (H, W, channels) each, in [0, 1]
    batch_size = check_positive_int("batch_size", backbone.batch_size if batch_size is None
                                    else batch_size)
    by_shape = {}                    # image size -> the images of that size: one batch each
    for i, img in enumerate(imgs):
        by_shape.setdefault(img.shape, []).append(i)
    out = [None] * len(imgs)
    for (height, width, _), indices in by_shape.items():
        batch = np.stack([imgs[i] for i in indices])                     # (n, H, W, channels)
        pad = MIRROR_CELLS * backbone.stride         # pixels of mirror image around each side
        batch = np.pad(batch, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        if backbone.upscale > 1:     # enlarged first: finer feature maps from a coarse CNN
            batch = np.repeat(np.repeat(batch, backbone.upscale, 1), backbone.upscale, 2)
        if backbone.channels == 3:   # ImageNet models take 0-255 ...
            batch = batch * 255.0
        if backbone.preprocess is not None:          # ... and their own scaling of it
            batch = backbone.preprocess(batch)
        h, w = height // backbone.stride, width // backbone.stride  # whole cells of the image
        for start in range(0, len(indices), batch_size):  # one batch at a time: less memory
            feats = backbone.model.predict_on_batch(batch[start:start + batch_size])
            feats = feats[:, MIRROR_CELLS:MIRROR_CELLS + h, MIRROR_CELLS:MIRROR_CELLS + w]
            for i, f in zip(indices[start:start + batch_size], feats):  # mirror cut off
                out[i] = np.array(f, dtype=np.float32)                  # (h, w, d)
    return out


def upsample_maps(patch_maps, shapes, sigma: float = 2.0) -> list:
    """Patch score maps (h, w) to pixel maps of the images' ``shapes``: bilinear, then Gaussian
    smoothing with ``sigma`` pixels (0: none), as PatchCore does.  Lists in, a list out.
    Taught in notebook 08.
    """
    from scipy import ndimage

    if len(patch_maps) != len(shapes):
        raise DataError(f"got {len(patch_maps)} patch maps for {len(shapes)} image shapes.")
    out = []
    for pm, (h, w) in zip(patch_maps, shapes):
        pm = np.asarray(pm, dtype=np.float64)
        if pm.ndim != 2:
            raise DataError(f"each patch map must be 2-D (h, w), got shape {pm.shape}.")
        big = ndimage.zoom(pm, (h / pm.shape[0], w / pm.shape[1]), order=1, mode="nearest",
                           grid_mode=True)
        out.append((ndimage.gaussian_filter(big, sigma) if sigma > 0 else big).astype(np.float32))
    return out


def good_patch_features(backbone, images, max_patches, random_state=0) -> np.ndarray:
    """A seeded subset of at most ``max_patches`` patch features (n, d) of all the feature
    maps of ``images`` (grey or colour, any sizes), in their original order: exactly the rows
    ``seeded_subset`` would keep of all maps stacked, but computed :data:`FEATURE_CHUNK` images
    at a time, so that memory holds those rows and a few feature maps, not every feature of
    every image (HED: 12.6 MB per 256-pixel image, 2.1 GB for 167 of them).
    Used in notebook 08, and by the models' ``fit``."""
    if not isinstance(backbone, Backbone):
        raise DataError(f"backbone must be a Backbone from load_backbone(), got "
                        f"{type(backbone).__name__}.")
    imgs = feature_input(images, name="images")
    cells = np.array([(img.shape[0] // backbone.stride) * (img.shape[1] // backbone.stride)
                      for img in imgs])
    keep = seeded_subset(int(cells.sum()), check_positive_int("max_patches", max_patches),
                         random_state)
    firsts = np.cumsum(cells) - cells              # index of each image's first patch
    rows = []
    for start in range(0, len(imgs), FEATURE_CHUNK):
        chunk = range(start, min(start + FEATURE_CHUNK, len(imgs)))
        for i, f in zip(chunk, patch_features(backbone, imgs[chunk.start:chunk.stop])):
            mine = keep[(keep >= firsts[i]) & (keep < firsts[i] + cells[i])] - firsts[i]
            rows.append(f.reshape(-1, f.shape[-1])[mine])
    return np.concatenate(rows)


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
        """Fit on defect-free images in [0, 1] (grey or colour, a list or one array): the
        patches :func:`good_patch_features` keeps of all their feature maps (at most
        ``max_patches``, chosen as :meth:`training_patches` would).  Returns ``self``."""
        return self.fit_features(good_patch_features(self._backbone(), x_good,
                                                     self._max_patches(), self.random_state))

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

    def patch_score_maps(self, x) -> list:
        """Anomaly score of every patch of images ``x``: one (h, w) map per image."""
        self._check_fitted()
        imgs = feature_input(x, name="x")
        return [self.patch_scores(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2])
                for start in range(0, len(imgs), FEATURE_CHUNK)
                for f in patch_features(self._backbone(), imgs[start:start + FEATURE_CHUNK])]

    def score_map(self, x) -> list:
        """Pixel anomaly maps of images ``x`` in [0, 1] (grey or colour, a list or one array),
        one per image at its size (H, W); higher = worse."""
        imgs = feature_input(x, name="x")
        return upsample_maps(self.patch_score_maps(imgs), [i.shape[:2] for i in imgs],
                             self.sigma)


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

    Taught in notebook 08.
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


def knn_distance(bank, features, k=1):
    """PatchCore's patch score: the mean Euclidean distance of each row of ``features`` (n, d)
    to its ``k`` nearest rows of the memory ``bank`` (m, d); with k = 1 (the default), the
    distance to the nearest neighbour.  Returns (n,).  Taught in notebook 08."""
    bank, features = check_features(bank, "bank"), check_features(features)
    if bank.shape[1] != features.shape[1]:
        raise DataError(f"features have {features.shape[1]} dimensions, the bank "
                        f"{bank.shape[1]}.")
    # exact brute force: every distance, computed in blocks of matrix products
    search = NearestNeighbors(n_neighbors=check_positive_int("k", k), algorithm="brute")
    search.fit(bank)
    distances, _ = search.kneighbors(features)      # (n, k), nearest first
    return distances.mean(axis=1)


def coreset_radius(features, indices):
    """How well the rows ``indices`` of ``features`` cover all rows: the largest distance of
    any row to its nearest chosen row (smaller = better coverage).  Taught in notebook 08."""
    f = check_features(features)
    idx = np.asarray(indices, dtype=int)
    if idx.ndim != 1 or len(idx) == 0 or idx.min() < 0 or idx.max() >= len(f):
        raise DataError(f"indices must be a non-empty 1-D array of row numbers < {len(f)}.")
    return float(knn_distance(f[idx], f).max())


def greedy_coreset(features, n, random_state=0):
    """Indices of ``n`` rows of ``features`` (m, d) chosen by greedy k-center selection,
    PatchCore's coreset: start from one random row, then again and again add the row that is
    farthest from every row chosen so far.  Taught in notebook 08."""
    f = check_features(features)     # float32: fast, and precise enough to rank distances
    n = check_positive_int("n", n)
    if n > len(f):
        raise DataError(f"n must be at most the number of rows ({len(f)}), got {n}.")
    chosen = [int(np.random.default_rng(random_state).integers(len(f)))]
    sq = (f ** 2).sum(axis=1)        # |a - b|^2 = |a|^2 - 2 a.b + |b|^2: one matrix-vector
    # product per step. min_d2: squared distance of every row to its nearest chosen row
    min_d2 = sq - 2 * f @ f[chosen[0]] + sq[chosen[0]]
    for _ in range(n - 1):
        i = int(np.argmax(min_d2))   # the row worst covered so far
        chosen.append(i)
        min_d2 = np.minimum(min_d2, sq - 2 * f @ f[i] + sq[i])
    return np.asarray(chosen)


def coreset_view(features, seed: int = 0, dims=None) -> np.ndarray:
    """The features (n, d) on which the greedy coreset is chosen: themselves when d <= ``dims``
    (default :data:`CORESET_DIMS`), else a seeded Gaussian random projection to ``dims``
    dimensions (scaled by 1/sqrt(dims)).

    By the Johnson-Lindenstrauss lemma such a projection keeps distances roughly, which is all
    the k-center selection needs; PatchCore chooses its coreset this way too.  Greedy selection
    reads every row once per chosen row, so 128 dimensions instead of HED's 768 make it several
    times faster; the bank then keeps the chosen rows with all their dimensions.
    """
    f = check_features(features)
    dims = CORESET_DIMS if dims is None else check_positive_int("dims", dims)
    if f.shape[1] <= dims:
        return f
    rng = np.random.default_rng(seed)
    projection = rng.normal(size=(f.shape[1], dims)) / np.sqrt(dims)
    return f @ projection.astype(np.float32)


class PatchMemoryBank(_PatchModel):
    """PatchCore-style memory bank: nearest-neighbour distance to good-patch features.

    ``fit`` keeps the patch features of defect-free images (at most ``max_patches``, a
    seeded subset), thinned to a ``fraction`` of them by a ``coreset``: ``"random"`` rows
    or ``"greedy"`` k-center selection (:func:`greedy_coreset`; on features of more than
    :data:`CORESET_DIMS` dimensions it chooses on a seeded random projection of them,
    :func:`coreset_view`, as PatchCore does).  A patch's anomaly score is the Euclidean
    distance to its nearest neighbour in the bank (:func:`knn_distance`, with scikit-learn's
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

    Taught in notebook 08.
    """

    def __init__(self, backbone=None, coreset: str = "greedy", fraction: float = 0.1,
                 max_patches=None, sigma: float = 2.0, random_state: int = 0):
        super().__init__(backbone, max_patches, sigma, random_state)
        self.coreset = coreset
        self.fraction = fraction

    def fit_features(self, features):
        """Fit on precomputed good-patch features (n, d) or (N, h, w, d).  Returns ``self``."""
        if self.coreset not in CORESETS:
            raise DataError(f"coreset must be one of {CORESETS}, got {self.coreset!r}.")
        frac = check_fraction("fraction", self.fraction)
        feats = self.training_patches(features)
        n = max(1, int(round(frac * len(feats))))
        if n >= len(feats):
            idx = np.arange(len(feats))
        elif self.coreset == "greedy":
            idx = greedy_coreset(coreset_view(feats, self.random_state), n,
                                 random_state=self.random_state)
        else:
            idx = np.random.default_rng(self.random_state).choice(len(feats), n, replace=False)
        self.bank_ = feats[idx]
        self.coreset_indices_ = idx
        self.n_features_ = feats.shape[1]
        self.n_patches_ = len(feats)
        return self

    def patch_scores(self, features) -> np.ndarray:
        """Distance of each patch (n, d) to its nearest neighbour in the bank
        (:func:`knn_distance`): (n,)."""
        return knn_distance(self.bank_, self._fitted_features(features))
