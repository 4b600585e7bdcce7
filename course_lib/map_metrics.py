"""Anomaly *maps*: residual maps of a reconstruction, and their metrics (image AUROC, pixel
AUROC, PRO / AUPRO, MVTec's classification ratios).

An anomaly map gives every pixel a score (e.g. ``1 - SSIM`` or the squared error of a
reconstruction); a ground-truth mask marks the defective pixels.  The metrics of the MVTec AD
papers (Bergmann et al., CVPR 2019 and IJCV 2021) judge such maps at three levels:

- images: :func:`image_scores` turns each map into one score (its maximum), :func:`image_auroc`
  ranks them; :func:`classification_ratios` gives the paper's Table 2 numbers (threshold set
  on defect-free validation images only, then the fraction of good and of defective test
  images classified correctly); :func:`largest_region_scores` is the paper's other image
  score (a smallest defect area), which the course does not use;
- pixels: :func:`pixel_auroc`, the ROC AUC over all pixels of all test images;
- regions: :func:`pro_curve` and :func:`aupro`, the per-region overlap (PRO).  Each
  connected defect region counts equally, however large, so one huge defect cannot hide
  many small missed ones; the curve is integrated up to a false positive rate of 0.3 and
  divided by 0.3, so 1 is perfect and a random map scores about 0.15.

Conventions (as in :mod:`course_lib.metrics`): label 1 = defective, 0 = good; higher scores
are more anomalous; an image is flagged iff ``score > threshold``.

- residual maps: :func:`residual_maps` (squared error or ``1 - SSIM`` per pixel);
- one evaluation for every model: :func:`evaluate_anomaly_maps`.

scikit-learn is imported inside the functions, scipy at the top.
"""

from __future__ import annotations

import numpy as np

from scipy import ndimage

from course_lib.checks import (DataError, check_binary_labels, check_image_list, check_mask_list,
                               check_number, check_scores, quote)
from course_lib.images import patch_corners, resize_images, stitch_patches
from course_lib.metrics import threshold_percentile
from course_lib.ssim import ssim_residual_map

DEFAULT_MAX_FPR = 0.3


# --------------------------------------------------------------------------- validation
def _check_maps(maps, name: str = "maps") -> list:
    """Anomaly maps as a list of 2-D float64 arrays (maps may differ in size, like the images
    they belong to); an array (N, H, W) or (N, H, W, 1) is accepted too."""
    return check_image_list(maps, name, dtype=np.float64, what="anomaly maps")


def _flat(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays])


def _check_max_fpr(max_fpr) -> float:
    return check_number("max_fpr", max_fpr, 0.0, 1.0, low_open=True)


# --------------------------------------------------------------------------- image level
def image_scores(maps, reduction: str = "max") -> np.ndarray:
    """One anomaly score per image from its anomaly map.

    Parameters
    ----------
    maps : list of 2-D arrays (one per image, sizes may differ) or an array (N, H, W)
    reduction : {"max", "mean"}
        ``"max"``: the most anomalous pixel (sensitive to small defects, and to noise:
        smooth the maps first if they are noisy); ``"mean"``: the average.

    Returns
    -------
    ndarray of shape (N,)

    Used by :func:`evaluate_anomaly_maps` (the image AUROC of every map method).
    """
    m = _check_maps(maps)
    if reduction == "max":
        return np.array([a.max() for a in m])
    if reduction == "mean":
        return np.array([a.mean() for a in m])
    raise DataError(f"reduction must be 'max' or 'mean', got {reduction!r}.")


def image_auroc(labels, scores) -> float:
    """ROC AUC of image scores: the probability that a defective image outranks a good one.

    Parameters
    ----------
    labels : array-like of shape (N,)
        1 = defective, 0 = good; both must occur.
    scores : array-like of shape (N,)
        Image anomaly scores (e.g. :func:`image_scores`).

    Returns
    -------
    float
        scikit-learn's ``roc_auc_score``; 0.5 is chance, 1 a perfect ranking.

    Taught in notebook 05.
    """
    from sklearn.metrics import roc_auc_score

    s = check_scores(scores)
    y = check_binary_labels(labels, len(s), "labels")
    if y.min() == y.max():
        raise DataError("image_auroc needs both good (0) and defective (1) images in labels; "
                         f"all {len(y)} are {int(y[0])}.")
    return float(roc_auc_score(y, s))


def largest_region_scores(maps, min_area: int = 1, connectivity: int = 2) -> np.ndarray:
    """Per image, the highest threshold at which a defect region of ``min_area`` pixels survives.

    The MVTec AD paper segments a residual map at a pixel threshold and calls the image
    defective when some connected anomalous region is at least ``min_area`` pixels large.
    This function returns, per image, the largest value ``t`` of its map for which the mask
    ``map >= t`` still has a connected region of at least ``min_area`` pixels.  So an image
    is defective at pixel threshold ``T`` exactly when its score is ``>= T``: the image-level
    decision becomes an ordinary score and threshold, and :func:`classification_ratios`
    applies.  With ``min_area=1`` it is the map's maximum.

    Parameters
    ----------
    maps : list of 2-D arrays (one per image, sizes may differ) or an array (N, H, W)
    min_area : int
        Smallest defect area in pixels (at the maps' resolution); at most H * W.
    connectivity : {1, 2}
        1: regions connect through edges (4 neighbours); 2: also corners (8 neighbours).

    Returns
    -------
    ndarray of shape (N,)

    Not called by the notebooks or the benchmark commands, which score an image by its map's
    maximum (:func:`image_scores`, the same as ``min_area=1``); pass its result where they
    pass ``image_scores(maps)`` to try the paper's rule.
    """
    m = _check_maps(maps)
    smallest = min(a.size for a in m)
    if not isinstance(min_area, (int, np.integer)) or isinstance(min_area, bool) or not (
            1 <= min_area <= smallest):
        raise DataError(f"min_area must be an integer in [1, {smallest}] (pixels of the "
                        f"smallest map), got {quote(min_area)}.")
    structure = _structure(connectivity)
    out = np.empty(len(m))
    for i, amap in enumerate(m):
        values = np.unique(amap)  # increasing; the lowest always passes (whole image)

        def big_enough(t, amap=amap):
            labeled, n = ndimage.label(amap >= t, structure=structure)
            return n > 0 and np.bincount(labeled.ravel())[1:].max() >= min_area

        lo, hi = 0, len(values) - 1  # invariant: values[lo] passes
        while lo < hi:  # binary search: passing is monotone (higher t, smaller regions)
            mid = (lo + hi + 1) // 2
            if big_enough(values[mid]):
                lo = mid
            else:
                hi = mid - 1
        out[i] = values[lo]
    return out


def classification_ratios(good_val_scores, test_scores, test_labels,
                          percentile: float = 100.0) -> dict:
    """MVTec AD's Table 2: fractions of good and of defective test images classified correctly.

    The threshold comes from defect-free *validation* images only (images the model did not
    train on and no defective image): by default the highest of their scores, so every
    validation image is classified as good (the paper raises its threshold until this holds).
    Then a test image is called defective iff ``score > threshold``.

    Parameters
    ----------
    good_val_scores : array-like of shape (M,)
        Scores of defect-free validation images.
    test_scores : array-like of shape (N,)
    test_labels : array-like of shape (N,)
        1 = defective, 0 = good.
    percentile : float
        Percentile of ``good_val_scores`` used as the threshold (100: their maximum).

    Returns
    -------
    dict
        ``threshold``; ``good_correct`` (fraction of good test images with score <=
        threshold, ``None`` if there are none) and ``defective_correct`` (fraction of
        defective test images above it, ``None`` if none); ``n_good``, ``n_defective``.

    Part of :func:`evaluate_anomaly_maps` (compare the paper's Table 2).
    """
    t = threshold_percentile(good_val_scores, percentile)
    s = check_scores(test_scores, "test_scores")
    y = check_binary_labels(test_labels, len(s), "test_labels")
    flagged = s > t
    good, bad = y == 0, y == 1
    return {"threshold": float(t),
            "good_correct": float(np.mean(~flagged[good])) if good.any() else None,
            "defective_correct": float(np.mean(flagged[bad])) if bad.any() else None,
            "n_good": int(good.sum()), "n_defective": int(bad.sum())}


# --------------------------------------------------------------------------- pixel level
def pixel_auroc(masks, maps) -> float:
    """ROC AUC over all pixels of all images (scikit-learn's ``roc_auc_score``).

    Parameters
    ----------
    masks : list of 2-D arrays or an array (N, H, W), the maps' shapes
        Ground truth, 1 (or True) = defective pixel; both classes must occur.
    maps : list of 2-D arrays or an array (N, H, W)
        Anomaly maps at the masks' resolution.

    Returns
    -------
    float

    Large defects dominate this number (it counts pixels); see :func:`aupro` for a metric
    that weighs every defect region equally.  Taught in notebook 05.
    """
    from sklearn.metrics import roc_auc_score

    m = _check_maps(maps)
    g = _flat(check_mask_list(masks, [a.shape for a in m]))
    n_defect = int(g.sum())
    if n_defect == 0 or n_defect == g.size:
        raise DataError("pixel_auroc needs both defective and good pixels in masks; found "
                        f"{n_defect} defective of {g.size}.")
    return float(roc_auc_score(g, _flat(m)))


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2):
        raise DataError(f"connectivity must be 1 (4 neighbours) or 2 (8 neighbours), got "
                         f"{connectivity!r}.")

    return ndimage.generate_binary_structure(2, connectivity)


def pro_curve(masks, maps, connectivity: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-region-overlap curve: PRO as a function of the pixel false positive rate.

    For a threshold ``t``, the pixels with ``map > t`` are predicted defective.  Its PRO is the
    mean, over every connected defect region of every mask (all images pooled), of the
    fraction of that region predicted defective; its FPR is the fraction of good pixels (all
    images, including defect-free ones) predicted defective.  Every distinct map value is a
    threshold, as in the MVTec AD evaluation code (Bergmann et al., IJCV 2021).

    Parameters
    ----------
    masks : list of 2-D arrays or an array (N, H, W), the maps' shapes
        Binary ground truth; needs at least one defect region and one good pixel.
    maps : list of 2-D arrays or an array (N, H, W)
    connectivity : {1, 2}
        How region pixels connect: 2 (default, 8 neighbours, as MVTec's code) or 1.

    Returns
    -------
    fpr, pro : ndarrays
        Non-decreasing, from (0, 0) to (1, 1).

    Part of :func:`aupro`.
    """

    maps_list = _check_maps(maps)
    masks_list = check_mask_list(masks, [a.shape for a in maps_list])
    structure = _structure(connectivity)
    weights_list = []
    n_regions = 0
    for mask in masks_list:
        labeled, n = ndimage.label(mask, structure=structure)
        weights = np.zeros(n + 1)
        if n:
            sizes = np.bincount(labeled.ravel())
            weights[1:] = 1.0 / sizes[1:]
        weights_list.append(weights[labeled])
        n_regions += n
    m, g, pro_weight = _flat(maps_list), _flat(masks_list), _flat(weights_list)
    n_good = int(g.size - g.sum())
    if n_regions == 0:
        raise DataError("pro_curve needs at least one defect region in masks (all are empty).")
    if n_good == 0:
        raise DataError("pro_curve needs good pixels in masks (every pixel is a defect).")
    order = np.argsort(m, kind="stable")[::-1]  # highest score first
    scores = m[order]
    fpr = np.cumsum(~g[order]) / n_good
    pro = np.cumsum(pro_weight[order]) / n_regions
    last_of_ties = np.append(scores[1:] != scores[:-1], True)  # one point per threshold
    fpr = np.concatenate([[0.0], np.clip(fpr[last_of_ties], 0.0, 1.0)])
    pro = np.concatenate([[0.0], np.clip(pro[last_of_ties], 0.0, 1.0)])
    return fpr, pro


def aupro(masks, maps, max_fpr: float = DEFAULT_MAX_FPR, connectivity: int = 2) -> float:
    """Normalised area under the PRO curve up to a false positive rate ``max_fpr`` (AUPRO).

    The trapezoidal area under :func:`pro_curve` for FPR in [0, ``max_fpr``] (the curve is
    interpolated linearly at ``max_fpr``), divided by ``max_fpr``: 1 for a map that ranks every
    defect pixel above every good pixel, about ``max_fpr / 2`` (0.15) for a random map.
    ``max_fpr = 0.3`` as in Bergmann et al. and anomalib; false positive rates above it would
    mean a useless segmentation.

    Parameters
    ----------
    masks, maps : lists of 2-D arrays, or arrays (N, H, W)
        As in :func:`pro_curve`.
    max_fpr : float
        Integration limit in (0, 1].
    connectivity : {1, 2}
        As in :func:`pro_curve`.

    Returns
    -------
    float in [0, 1]

    Taught in notebook 05.
    """
    limit = _check_max_fpr(max_fpr)
    fpr, pro = pro_curve(masks, maps, connectivity=connectivity)
    i = int(np.searchsorted(fpr, limit, side="right"))  # fpr[:i] <= limit < fpr[i]
    x, y = fpr[:i], pro[:i]
    if i < len(fpr):
        x0, x1, y0, y1 = fpr[i - 1], fpr[i], pro[i - 1], pro[i]
        x = np.append(x, limit)
        y = np.append(y, y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return area / limit


# --------------------------------------------------------------------------- residual maps
#: Residual maps of notebook 05: squared error ("l2") or 1 - SSIM ("ssim").
RESIDUALS = ("l2", "ssim")


def check_residual(kind: str) -> str:
    """``kind`` if it is one of :data:`RESIDUALS`, else a DataError."""
    if kind not in RESIDUALS:
        raise DataError(f"loss must be one of {RESIDUALS}, got {quote(kind)}.")
    return kind


#: SSIM's contrast constant for the residual maps of patches of surfaces such as the
#: KolektorSDD cracks (notebook 05): differences of contrast below about 0.2 do not count, so
#: the sensor noise of flat, low-contrast surfaces is not mistaken for structure.  Chosen on
#: validation images with synthetic cracks, never on test images (``bench mvtec-ssim-k2``,
#: docs/mvtec_bottle.md); Wang et al.'s 0.03 is kept for whole objects.
PATCH_SSIM_K2 = 0.2


def residual_maps(autoencoder, images, loss, patch_size, stride, batch_size=128,
                  k2=PATCH_SSIM_K2):
    """Anomaly maps of images of any size from a patch autoencoder: each image is tiled with
    overlapping patches (every ``stride`` pixels), each patch is reconstructed, its residual
    ((x - x_hat)**2 for L2, 1 - SSIM for SSIM, with contrast constant ``k2``) computed, and
    the patch residuals averaged back into one map per image (a list, like the images)."""
    check_residual(loss)
    maps = []
    for image in check_image_list(images, "images", min_side=patch_size):
        corners = patch_corners(image.shape, patch_size, stride)
        patches = np.stack([image[r:r + patch_size, c:c + patch_size] for r, c in corners])
        recon = autoencoder.predict(patches[..., None], batch_size=batch_size, verbose=0)
        if loss == "l2":
            residual = (patches - recon[..., 0]) ** 2
        else:
            residual = ssim_residual_map(patches, recon[..., 0], k2=k2)
        maps.append(stitch_patches(residual, corners, image.shape))
    return maps


def whole_image_maps(autoencoder, images, loss, batch_size=32):
    """Anomaly maps of objects from a whole-image autoencoder (notebook 05): each image is
    resized to the autoencoder's input side, rebuilt, its residual ((x - x_hat)**2 for L2,
    1 - SSIM for SSIM; averaged over colour channels) computed at that side and resized back
    to the image's own size, so it lines up with the image's mask.  Returns a list of maps."""
    from skimage.transform import resize

    check_residual(loss)
    images = check_image_list(images, "images", color=autoencoder.input_shape[-1] == 3)
    side = autoencoder.input_shape[1]
    x = resize_images(images, side)
    recon = autoencoder.predict(x, batch_size=batch_size, verbose=0)
    residual = ((x - recon) ** 2 if loss == "l2" else ssim_residual_map(x, recon)).mean(-1)
    return [resize(r, img.shape[:2], order=1) for r, img in zip(residual, images)]


def whole_image_reconstructions(autoencoder, images, batch_size=32) -> list:
    """What a whole-image autoencoder rebuilds of each image, resized back to the image's own
    size: to draw beside the image (grey images give 2-D arrays, colour ones (H, W, 3))."""
    from skimage.transform import resize

    images = check_image_list(images, "images", color=autoencoder.input_shape[-1] == 3)
    recon = autoencoder.predict(resize_images(images, autoencoder.input_shape[1]),
                                batch_size=batch_size, verbose=0)
    return [np.squeeze(resize(r, img.shape[:2], order=1), axis=-1) if r.shape[-1] == 1
            else resize(r, img.shape[:2], order=1) for r, img in zip(recon, images)]


def smooth_maps(maps, size=3, sigma=1.0):
    """Less spotty anomaly maps: every pixel first takes the largest value around it (a
    size x size grey dilation: a thin defect's response widens to its neighbours and its peak
    stays), then a Gaussian blur of sigma pixels evens out the patch noise."""
    return [ndimage.gaussian_filter(ndimage.grey_dilation(m, size=(size, size)), sigma)
            for m in maps]


def evaluate_anomaly_maps(val_maps, test_maps, y_test, masks_test,
                          max_fpr: float = DEFAULT_MAX_FPR) -> dict:
    """MVTec-style evaluation of anomaly maps, the same for every model.

    Image score = the map's maximum (:func:`image_scores`); ``image_auroc``; ``pixel_auroc``;
    ``aupro`` up to ``max_fpr``; ``good_correct`` / ``defect_correct``: MVTec AD's Table 2
    ratios with the threshold = the highest score of the defect-free *validation* maps
    ``val_maps`` (:func:`classification_ratios`); ``threshold``.  All rounded to 4 digits.
    Maps may differ in size (lists of 2-D maps, one per image); labels and masks are checked
    before anything is computed.
    """
    test = _check_maps(test_maps, "test_maps")
    y = check_binary_labels(y_test, len(test), "y_test")
    g = check_mask_list(masks_test, [a.shape for a in test], "masks_test")
    test_scores = image_scores(test)
    ratios = classification_ratios(image_scores(val_maps), test_scores, y)

    def r4(v):
        return None if v is None else round(float(v), 4)

    return {"image_auroc": r4(image_auroc(y, test_scores)),
            "pixel_auroc": r4(pixel_auroc(g, test)),
            "aupro": r4(aupro(g, test, max_fpr=max_fpr)),
            "good_correct": r4(ratios["good_correct"]),
            "defect_correct": r4(ratios["defective_correct"]),
            "threshold": float(ratios["threshold"])}
