"""Image files: read any image file as float pixels in [0, 1], masks as bool, and rescale them.

- :func:`read_gray` / :func:`read_rgb`: grey (H, W) or RGB (H, W, 3) float64 in [0, 1] from
  PNG, JPEG, BMP or TIFF (8- or 16-bit, grey, grey + alpha, RGB, RGBA or CMYK); float pixels
  outside [0, 1] and pixel types of unknown range are refused with a ``DataError``, never
  clipped;
- :func:`read_mask`: a defect mask as bool (0/255, 0/1 or labels; JPEG noise not counted);
- :func:`rescale_image`, :func:`rescale_mask`: scaled with scikit-image (the aspect ratio
  kept; a thin defect never vanishes from its mask);
- :func:`image_size`: an image's size from its header; :func:`list_images`: a folder's images.

Used by the MVTec-layout loaders (:mod:`course_lib.data.mvtec`) and by ``course-score``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from course_lib.checks import DataError, quote

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    """A file with an image extension (:data:`IMAGE_EXTENSIONS`), not hidden."""
    return path.is_file() and not path.name.startswith(".") and \
        path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list:
    """The image files of ``folder`` (not its subfolders), sorted by name."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _pil_mode(path: Path):
    """Pillow's mode of an image file ("L", "RGB", "CMYK", ...), or ``None`` if Pillow cannot
    open it (scikit-image may still read it, e.g. a multi-channel float TIFF)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode
    except Exception:  # noqa: BLE001 - any decoder error: let scikit-image try
        return None


def _read(path: Path) -> np.ndarray:
    """An image file as an array of its own pixel type: (H, W) grey, or (H, W, C) with C = 2
    (grey + alpha), 3 (RGB) or 4 (RGBA).

    CMYK files (print JPEGs and TIFFs) are converted to RGB with Pillow: read as they are, their
    four ink channels would pass for RGBA (a white page would read black).
    """
    import skimage.io

    try:
        if _pil_mode(path) == "CMYK":
            from PIL import Image

            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
        else:
            arr = np.asarray(skimage.io.imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder error
        raise DataError(f"Could not read image {path} ({type(exc).__name__}: "
                        f"{quote(str(exc), 120)}). Replace or delete the file.") from exc
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(f"{path}: expected a 2-D grayscale or colour image, got an array of "
                        f"shape {arr.shape}.")
    return arr


def _unit_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """Pixels as float64 in [0, 1]: uint8 divided by 255, uint16 by 65,535, bool as 0/1.

    Float pixels must already lie in [0, 1]: a float TIFF of 0-255 or of raw sensor values is
    refused, never clipped (that would give a flat white image).  Other integer types (signed,
    32-bit) are refused too: their range cannot be told from the file.
    """
    from skimage.util import img_as_float

    if arr.dtype == bool or arr.dtype in (np.uint8, np.uint16):
        return img_as_float(arr.astype(np.float64) if arr.dtype == bool else arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: pixels of type {arr.dtype} are not supported (their range "
                        f"cannot be told). Save the image with 8- or 16-bit unsigned pixels "
                        f"(e.g. PNG), or as float in [0, 1].")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: holds NaN or infinite pixel values; fix or delete the file.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise DataError(f"{path}: float pixels must lie in [0, 1], found {lo:.4g} to {hi:.4g} "
                        f"(clipping would flatten the image). Divide the set's images by one "
                        f"shared maximum (e.g. 255 or 65,535) before saving them, or save them "
                        f"with 8- or 16-bit unsigned pixels.")
    return np.clip(arr, 0.0, 1.0)


def read_gray(path) -> np.ndarray:
    """Any image file -> 2-D float64 grayscale in [0, 1] (colour by luminance, alpha ignored).

    Converted: CMYK to RGB (Pillow) and RGB to grey; uint8 and uint16 pixels to [0, 1].
    Refused with a :class:`DataError`: float pixels outside [0, 1] (never clipped), pixel
    types whose range is unknown (signed or 32-bit integers), files that cannot be decoded.
    """
    from skimage.color import rgb2gray

    path = Path(path)
    arr = _unit_float(_read(path), path)
    if arr.ndim == 3:
        channels = arr.shape[-1]
        if channels in (3, 4):
            arr = rgb2gray(arr[..., :3])
        elif channels in (1, 2):
            arr = arr[..., 0]              # gray (+ alpha)
        else:
            raise DataError(f"{path}: expected 1 to 4 colour channels, got shape {arr.shape}.")
    return np.clip(arr, 0.0, 1.0)


def read_rgb(path) -> np.ndarray:
    """Any image file -> (H, W, 3) float64 RGB in [0, 1] (alpha ignored).

    Grey files (and grey + alpha) are repeated to three channels; CMYK is converted to RGB
    (Pillow); uint8 and uint16 pixels become [0, 1].  Refused as by :func:`read_gray`.
    """
    from skimage.color import gray2rgb

    path = Path(path)
    arr = _unit_float(_read(path), path)
    if arr.ndim == 3:
        channels = arr.shape[-1]
        if channels in (1, 2):
            arr = arr[..., 0]              # gray (+ alpha)
        elif channels in (3, 4):
            arr = arr[..., :3]
        else:
            raise DataError(f"{path}: expected 1 to 4 colour channels, got shape {arr.shape}.")
    if arr.ndim == 2:
        arr = gray2rgb(arr)
    return np.clip(arr, 0.0, 1.0)


def _is_jpeg(path: Path) -> bool:
    """``True`` for a JPEG file (lossy: its pixel values carry compression noise)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.format in ("JPEG", "MPO")
    except Exception:  # noqa: BLE001 - not something Pillow reads: not a JPEG
        return False


def read_mask(path) -> np.ndarray:
    """A mask file -> 2-D bool: a pixel is a defect where its brightest colour channel (alpha
    ignored; CMYK converted to RGB) is not zero, or, in a JPEG file, above half the mask's
    maximum.

    So masks read exactly whether stored as 0/255 (MVTec AD), as 0/1 (many other tools) or
    as defect labels 1, 2, 3, ... in a lossless file (PNG, TIFF, BMP), and a mask saved as
    JPEG does not count its compression noise (the faint halo around each defect) as defect.
    An all-zero mask is all good.
    """
    path = Path(path)
    arr = _read(path)
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        arr = arr.max(axis=-1)
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: the mask holds NaN or infinite values; save it as a 0/255 "
                        f"PNG.")
    if not _is_jpeg(path):
        return arr != 0
    top = arr.max()
    return arr > top / 2 if top > 0 else np.zeros(arr.shape, bool)


def rescale_image(img: np.ndarray, scale: float) -> np.ndarray:
    """Scale a float image in [0, 1], grey (H, W) or colour (H, W, C), by ``scale`` (both
    sides, so the aspect ratio is kept, never the channels; scikit-image, bilinear with
    anti-aliasing when shrinking)."""
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise DataError(f"rescale_image: expected an image (H, W) or (H, W, channels), got "
                        f"shape {img.shape}.")
    if scale == 1:
        return img
    from skimage.transform import rescale

    channel_axis = -1 if img.ndim == 3 else None
    return np.clip(rescale(img, scale, order=1, mode="reflect", anti_aliasing=scale < 1,
                           preserve_range=True, channel_axis=channel_axis), 0.0, 1.0)


def rescale_mask(mask: np.ndarray, shape: tuple) -> np.ndarray:
    """A bool mask brought to its scaled image's ``shape``: a pixel is defective when at least
    half of it was, and a defect thinner than half a pixel keeps its trace (never vanishes)."""
    if mask.shape == tuple(shape):
        return mask
    from skimage.transform import resize

    frac = resize(mask.astype(np.float64), shape, order=1, mode="reflect",
                  anti_aliasing=True, preserve_range=True)
    out = frac >= 0.5
    if mask.any() and not out.any():
        out = frac >= 0.5 * frac.max()
    return out


def image_size(path) -> tuple:
    """``(height, width)`` of an image file, read from its header (no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as exc:  # noqa: BLE001 - any decoder error
        raise DataError(f"Could not read image {path} ({type(exc).__name__}: "
                        f"{quote(str(exc), 120)}). Replace or delete the file.") from exc
    return height, width
