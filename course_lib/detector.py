"""A detector you can save: a trained autoencoder with its preprocessing, score and threshold.

A model alone is not a detector.  To score new data the same way as in the notebook, you also
need how the data were prepared (the scaler's statistics, the image size, the patch geometry,
the map smoothing), how a reconstruction becomes one score, and the threshold with what it
promises.  :class:`AnomalyDetector` holds all of it in one Keras object, so one ``.keras``
file (Keras' own format: a JSON description and the weights, no pickle) carries everything:

    detector = image_detector(autoencoder, "ssim", max_side=256, sigma=4.0, ...)
    detector.calibrate(good_validation_images, alpha=0.05)   # split-conformal threshold
    save_detector(detector, "bottle.keras")
    detector = load_detector("bottle.keras")                # the same scores, bit for bit
    scores = detector.score(images); flagged = detector.flag(scores)

Four kinds, one per notebook that saves one (:data:`DETECTOR_KINDS`): ``digits`` (notebook 03),
``transactions`` (04), ``images`` (05; whole objects or patches of surfaces) and ``beats``
(09).  ``course-score DETECTOR INPUT`` (:mod:`course_lib.cli.score`) scores files with them.
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from course_lib.checks import (DataError, check_binary_labels, check_fraction, check_image_list,
                               check_matrix, check_number, quote)
from course_lib.config import cache_dir, get_profile
from course_lib.images import flatten
from course_lib.map_metrics import (check_residual, image_scores, residual_maps, smooth_maps,
                                    whole_image_maps)
from course_lib.metrics import anomaly_scores, threshold_conformal
from course_lib.sampling import seeded_split

#: What each kind of detector scores (the words ``course-score`` uses).
DETECTOR_KINDS = {
    "digits": "28 x 28 grey digit images",
    "transactions": "credit-card transactions (a CSV with the columns Time, V1..V28, Amount)",
    "images": "images of an object or a surface",
    "beats": "heartbeats (an ECG file, one beat per line)",
}
#: Whole images: a new image's height/width may differ from the training images' by this much
#: (relative) before it is refused (it would be squashed).
MAX_ASPECT_CHANGE = 0.1
#: Images larger than this (pixels on the longest side, after scaling) are refused.
MAX_IMAGE_SIDE = 4096


@keras.saving.register_keras_serializable(package="course_lib")
class AnomalyDetector(keras.Model):
    """A trained autoencoder, the preprocessing it needs, its score and its threshold.

    Build one with :func:`digit_detector`, :func:`transaction_detector`,
    :func:`image_detector` or :func:`beat_detector`; set its threshold with
    :meth:`calibrate`; keep it with :func:`save_detector` and :func:`load_detector`.

    Attributes
    ----------
    autoencoder : keras.Model
    kind : str
        One of :data:`DETECTOR_KINDS`.
    preprocessing : dict
        Everything the data need before the model sees them (plain numbers, kept in the file).
    threshold, alpha : float or None
        Flag a sample iff its score > ``threshold``; ``alpha`` is the false-alarm rate the
        split-conformal threshold guarantees on normal data like the calibration data.
    n_calibration : int or None
        How many normal samples the threshold was set on.
    about : dict
        Where it came from (notebook, profile, data, date): shown by :meth:`describe`.
    """

    def __init__(self, autoencoder, kind, preprocessing=None, threshold=None, alpha=None,
                 n_calibration=None, about=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in DETECTOR_KINDS:
            raise DataError(f"kind must be one of {list(DETECTOR_KINDS)}, got {quote(kind)}.")
        self.autoencoder = autoencoder
        self.kind = kind
        self.preprocessing = dict(preprocessing or {})
        self.threshold = None if threshold is None else float(threshold)
        self.alpha = None if alpha is None else float(alpha)
        self.n_calibration = None if n_calibration is None else int(n_calibration)
        self.about = dict(about or {})
        self.built = True                      # the autoencoder inside is built already

    def call(self, x):
        return self.autoencoder(x)

    # ----------------------------------------------------------------------- saving
    def get_config(self):
        autoencoder = keras.saving.serialize_keras_object(self.autoencoder)
        autoencoder.pop("compile_config", None)  # scoring needs no loss or optimiser
        return {"name": self.name, "autoencoder": autoencoder, "kind": self.kind,
                "preprocessing": self.preprocessing, "threshold": self.threshold,
                "alpha": self.alpha, "n_calibration": self.n_calibration, "about": self.about}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        autoencoder = keras.saving.deserialize_keras_object(config.pop("autoencoder"))
        return cls(autoencoder, **config)

    # ----------------------------------------------------------------------- scoring
    def prepare(self, x):
        """The model's input: ``x`` validated and prepared exactly as the training data were."""
        p = self.preprocessing
        if self.kind == "digits":
            return flatten(x)
        if self.kind == "transactions":
            x = _feature_matrix(x, p["features"])
            return ((x - np.asarray(p["center"])) / np.asarray(p["scale"])).astype(np.float32)
        if self.kind == "beats":
            x = check_matrix(x, "beats", n_cols=p["length"])
            return ((x - p["center"]) / p["scale"]).astype(np.float32)
        return check_image_list(x, "images", color=p["color"],
                                min_side=p.get("patch_size", 1))

    def anomaly_maps(self, x) -> list:
        """One map per image (``images``: the smoothed residual map at the image's size;
        ``digits``: the squared error per pixel)."""
        p = self.preprocessing
        if self.kind == "digits":
            x = flatten(x)
            recon = self.autoencoder.predict(x, batch_size=256, verbose=0)
            return list(((x - recon) ** 2).reshape(-1, *p["shape"]))
        if self.kind != "images":
            raise DataError(f"a {self.kind} detector has no anomaly maps (only images do).")
        images = self.prepare(x)
        if p["setting"] == "whole":
            maps = whole_image_maps(self.autoencoder, images, p["loss"])
        else:
            maps = residual_maps(self.autoencoder, images, p["loss"], p["patch_size"],
                                 p["stride"], k2=p["k2"])
        return smooth_maps(maps, size=p["dilation"], sigma=p["sigma"])

    def score(self, x, batch_size: int = 256) -> np.ndarray:
        """Anomaly scores (higher = more anomalous): the mean squared reconstruction error, or
        for images the maximum of the anomaly map."""
        if self.kind == "images":
            return image_scores(self.anomaly_maps(x))
        return anomaly_scores(self.autoencoder, self.prepare(x), batch_size=batch_size)

    def flag(self, scores) -> np.ndarray:
        """``True`` where a score is above the threshold (set by :meth:`calibrate`)."""
        if self.threshold is None:
            raise DataError("this detector has no threshold yet: call "
                            "detector.calibrate(normal_data, alpha) first.")
        return np.asarray(scores) > self.threshold

    def calibrate(self, x_normal, alpha: float = 0.05):
        """Set the split-conformal threshold on normal data never trained on: the
        ceil((n + 1)(1 - alpha))-th smallest of their n scores
        (:func:`course_lib.metrics.threshold_conformal`).  Returns the detector."""
        return self.calibrate_scores(self.score(x_normal), alpha)

    def calibrate_scores(self, normal_scores, alpha: float = 0.05):
        """:meth:`calibrate` from scores already computed by this detector's rule (e.g. the
        notebook's ``anomaly_scores`` of its validation normals).  Returns the detector."""
        self.threshold = threshold_conformal(normal_scores, alpha)
        self.alpha, self.n_calibration = float(alpha), int(len(normal_scores))
        return self

    # ----------------------------------------------------------------------- files
    def read_image(self, path) -> np.ndarray:
        """An image file as this detector's input: read grey (or colour) in [0, 1], then
        brought to the training images' scale.  A size it cannot handle is refused."""
        from course_lib.data.image_files import read_gray, read_rgb, rescale_image

        p = self.preprocessing
        if self.kind not in ("digits", "images"):
            raise DataError(f"a {self.kind} detector does not score images.")
        img = (read_rgb if p.get("color") else read_gray)(path)
        h, w = img.shape[:2]
        if self.kind == "digits":
            if (h, w) != tuple(p["shape"]):
                raise DataError(f"{path}: {h} x {w} pixels; this detector scores "
                                f"{p['shape'][0]} x {p['shape'][1]} grey digits (MNIST's "
                                f"size). Resize the image to that size first.")
            return img.astype(np.float32)
        if p["setting"] == "whole":
            aspect = h / w
            if abs(aspect / p["aspect"] - 1) > MAX_ASPECT_CHANGE:
                raise DataError(f"{path}: {h} x {w} pixels (height/width {aspect:.2f}); this "
                                f"detector was trained on images of height/width "
                                f"{p['aspect']:.2f} and would squash it. Crop it to that "
                                f"shape first.")
            scale = p["max_side"] / max(h, w)
        else:
            scale = p["scale"]
        if max(h, w) * scale > MAX_IMAGE_SIDE:
            raise DataError(f"{path}: {h} x {w} pixels is too large for this detector (at most "
                            f"{MAX_IMAGE_SIDE} pixels after scaling by {scale:.3g}).")
        img = rescale_image(img, scale).astype(np.float32)
        side = p.get("patch_size", 1)
        if min(img.shape[:2]) < side:
            raise DataError(f"{path}: {h} x {w} pixels is too small for this detector: scaled "
                            f"by {scale:.3g} it is smaller than one {side}-pixel patch.")
        return img

    # ----------------------------------------------------------------------- words
    def describe(self) -> str:
        """A few lines on what it scores, how, and what its threshold promises."""
        a, p = self.about, self.preprocessing
        origin = ", ".join(f"{k} {v}" for k, v in a.items() if k != "name")
        lines = [f"Detector {quote(a.get('name', self.name))} ({origin})",
                 f"  scores: {DETECTOR_KINDS[self.kind]}", f"  how: {_how(self.kind, p)}"]
        if self.threshold is None:
            lines.append("  threshold: none yet (calibrate it on normal data)")
        else:
            lines += [f"  flags: score > {self.threshold:.6g}, the split-conformal threshold "
                      f"of {self.n_calibration} normal samples:",
                      f"         at most {self.alpha:.0%} false alarms on average on new normal "
                      f"data drawn like them"]
        return "\n".join(lines)


def _how(kind: str, p: dict) -> str:
    if kind == "digits":
        return "pixels / 255, flattened -> dense autoencoder -> mean squared error"
    if kind == "transactions":
        return (f"{len(p['features'])} features standardised with the training rows' mean "
                f"and standard deviation -> autoencoder -> mean squared error")
    if kind == "beats":
        return (f"beats of {p['length']} samples minus {p['center']:.4g}, divided by "
                f"{p['scale']:.4g} (the training beats' mean and standard deviation) -> "
                f"Conv1D autoencoder -> mean squared error")
    colour = "colour" if p["color"] else "grey"
    if p["setting"] == "whole":
        size = (f"{colour}, longest side resized to {p['max_side']} -> whole-image "
                f"autoencoder at {p['side']} x {p['side']}")
    else:
        size = (f"{colour}, scaled by {p['scale']:.3g} -> {p['patch_size']}-pixel patches "
                f"every {p['stride']} pixels")
    return (f"{size} -> {p['loss'].upper()} residual map, dilated ({p['dilation']} x "
            f"{p['dilation']}) and smoothed (sigma {p['sigma']:.3g}) -> score = map maximum")


def _feature_matrix(x, features) -> np.ndarray:
    """A table of transactions -> float64 (n, features) in the detector's column order: a
    pandas DataFrame (named columns, others ignored) or an array already in that order."""
    if hasattr(x, "columns"):
        missing = [f for f in features if f not in x.columns]
        if missing:
            raise DataError(f"the transactions lack the column(s) {missing[:8]}"
                            f"{' ...' if len(missing) > 8 else ''}: this detector needs "
                            f"{', '.join(features[:3])}, ..., {features[-1]}.")
        x = x.loc[:, list(features)].to_numpy(dtype=np.float64)
    return check_matrix(x, "transactions", n_cols=len(features), dtype=np.float64)


# =========================================================================== building
def _about(name: str, notebook: str | None, profile, data) -> dict:
    about = {"name": name}
    if notebook:
        about["notebook"] = notebook
    about["profile"] = get_profile(profile).name
    source = getattr(data, "source", None)
    if source:
        about["data"] = source
    about["saved"] = time.strftime("%Y-%m-%d")
    return about


def digit_detector(autoencoder, name: str = "digits", notebook=None, profile=None, data=None):
    """A detector of odd digits from notebook 03's one-class autoencoder (784 pixels in)."""
    return AnomalyDetector(autoencoder, "digits", {"shape": [28, 28]},
                           about=_about(name, notebook, profile, data))


def transaction_detector(autoencoder, split, name: str = "transactions", notebook=None,
                         profile=None, data=None):
    """A fraud detector from notebook 04's tabular autoencoder and its
    :class:`course_lib.experiments.creditcard.CreditCardSplit` (whose scaler it keeps)."""
    scaler = split.scaler
    if not (hasattr(scaler, "mean_") and hasattr(scaler, "scale_")):
        raise DataError(f"only the 'standard' scaling can be saved in a detector, this split "
                        f"uses {quote(split.scaling)}.")
    pre = {"features": list(split.features), "center": [float(v) for v in scaler.mean_],
           "scale": [float(v) for v in scaler.scale_]}
    return AnomalyDetector(autoencoder, "transactions", pre,
                           about=_about(name, notebook, profile, data))


def beat_detector(autoencoder, split, name: str = "heartbeats", notebook=None, profile=None,
                  data=None):
    """A detector of abnormal heartbeats from notebook 09's Conv1D autoencoder and its
    :class:`course_lib.experiments.ecg.ECGSplit` (whose centre and scale it keeps)."""
    pre = {"length": int(split.x_train.shape[1]), "center": float(split.center),
           "scale": float(split.scale)}
    return AnomalyDetector(autoencoder, "beats", pre,
                           about=_about(name, notebook, profile, data))


def image_detector(autoencoder, loss: str, images, sigma: float, setting: str = "whole",
                   scale: float = 1.0, patch_size=None, stride=None, k2=None, dilation: int = 3,
                   name: str = "images", notebook=None, profile=None, data=None):
    """A detector of defects from notebook 05's autoencoders.

    ``images``: the training images as the model saw them (their size fixes how new image
    files are brought to scale); ``sigma`` and ``dilation``: the map smoothing
    (:func:`course_lib.map_metrics.smooth_maps`).  ``setting="whole"``: the whole-image
    autoencoder (new images resized so their longest side is the training images');
    ``"patches"``: the patch autoencoder with ``patch_size``, ``stride``, SSIM's ``k2``, and
    ``scale``, the factor the image files were scaled by when loaded.
    """
    color = bool(np.ndim(images[0]) == 3 and np.shape(images[0])[-1] == 3)
    images = check_image_list(images, "images", color=color)
    pre = {"setting": setting, "loss": check_residual(loss), "color": bool(color),
           "sigma": check_number("sigma", sigma, 0.0, 100.0), "dilation": int(dilation)}
    if setting == "whole":
        heights = [img.shape[0] for img in images]
        widths = [img.shape[1] for img in images]
        pre.update({"max_side": int(max(max(heights), max(widths))),
                    "aspect": float(np.median(np.divide(heights, widths))),
                    "side": int(autoencoder.input_shape[1])})
    elif setting == "patches":
        from course_lib.map_metrics import PATCH_SSIM_K2

        if patch_size is None or stride is None:
            raise DataError("the patch setting needs patch_size and stride.")
        pre.update({"scale": check_number("scale", scale, 0.0, 4.0, low_open=True),
                    "patch_size": int(patch_size), "stride": int(stride),
                    "k2": float(PATCH_SSIM_K2 if k2 is None else k2)})
    else:
        raise DataError(f"setting must be 'whole' or 'patches', got {quote(setting)}.")
    return AnomalyDetector(autoencoder, "images", pre,
                           about=_about(name, notebook, profile, data))


def calibration_split(is_anomaly, seed: int = 0, fraction: float = 0.5):
    """Rows of a labelled test set, cut for a detector's threshold: a seeded ``fraction`` of
    its normal rows (label 0) to calibrate on, and every other row to check the detector
    on.  Calibration data must be untouched by training, early stopping included: normal
    rows that early stopping watched score optimistically low, and a threshold set on them
    flags more new normal data than alpha.  Returns ``(calibration rows, check rows)``."""
    y = check_binary_labels(is_anomaly, len(np.asarray(is_anomaly)), "is_anomaly")
    fraction = check_fraction("fraction", fraction, allow_one=False)
    normal = np.flatnonzero(y == 0)
    check, calibration = seeded_split(len(y), int(round(fraction * len(normal))), seed,
                                      candidates=normal)
    return calibration, np.sort(np.concatenate([check, np.flatnonzero(y == 1)]))


# =========================================================================== files
def detectors_dir(profile=None) -> Path:
    """Where the notebooks save their detectors: ``<cache>/detectors/<profile>``."""
    return cache_dir() / "detectors" / get_profile(profile).name


def save_detector(detector: AnomalyDetector, path) -> Path:
    """Save a calibrated detector as one ``.keras`` file, atomically (a half-written file is
    never left under ``path``).  Returns the path."""
    if not isinstance(detector, AnomalyDetector):
        raise DataError(f"expected an AnomalyDetector, got {type(detector).__name__}.")
    if detector.threshold is None:
        raise DataError("calibrate the detector before saving it "
                        "(detector.calibrate(normal_data, alpha)): a detector without its "
                        "threshold cannot flag anything.")
    path = Path(path)
    if path.suffix != ".keras":
        raise DataError(f"a detector file must end in .keras, got {quote(path.name)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        detector.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_detector(path) -> AnomalyDetector:
    """Load a detector saved by :func:`save_detector`; a clear :class:`DataError` for a
    missing, damaged or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no detector file at {path}. The notebooks 03, 04, 05 and 09 save "
                        f"theirs in {detectors_dir()} (their last section prints the path).")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a .keras file (not a zip archive): it is damaged, "
                        f"or not a detector. Save it again from its notebook.")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds on a damaged file
        raise DataError(f"{path} could not be loaded as a detector ({type(exc).__name__}: "
                        f"{quote(str(exc), 160)}). It is damaged or was saved by another "
                        f"version of the course; save it again from its notebook.") from exc
    if not isinstance(model, AnomalyDetector):
        raise DataError(f"{path} holds a Keras model ({type(model).__name__}) but not a course "
                        f"detector: wrap it with one of course_lib.detector's *_detector "
                        f"functions, calibrate it and save it with save_detector.")
    return model
