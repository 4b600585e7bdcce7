"""Folders in MVTec AD layout: load any of them, and download the real MVTec AD safely.

MVTec AD (Bergmann et al., CVPR 2019; MVTec Software GmbH, licence CC BY-NC-SA 4.0) holds
15 categories of industrial images: defect-free training images and test images with
pixel-precise masks of their defects.  Its layout, which :func:`load_mvtec_folder` reads::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect type>/*.png
    <root>/<category>/ground_truth/<defect type>/<image name>_mask.png

Three ways to get such a folder:

- :func:`download_mvtec` - the real dataset (about 4.9 GB in all, or one category) from
  MVTec's official location, never stored in this repository; URLs and checksums live in
  :data:`MVTEC_AD_DOWNLOADS`;
- :func:`course_lib.data.textures.build_texture_dataset` - an offline, deterministic stand-in
  built from scikit-image's CC0 texture photographs with synthetic defects;
- your own images in the same layout (PNG or JPEG, grayscale or colour, any size).

Images are read in grey by default; ``color=True`` keeps their colour ((H, W, 3), grey files
repeated to three channels).

A mask pixel is a defect wherever it is not zero (masks saved as 0/255, as 0/1 or as labels
1, 2, 3, ... all work); in a JPEG mask, where it is above half the mask's maximum (compression
noise is not counted).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, check_number, check_positive_int, quote
from course_lib.config import cache_dir, data_mode
from course_lib.data.common import CacheItem, check_file, embedded_file, path_size
from course_lib.download import (check_tar_readable, download_resumable, extract_tar_safely,
                                 sha256_file)
from course_lib.sampling import seeded_subset

MVTEC_AD_PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
MVTEC_AD_LICENCE = "CC BY-NC-SA 4.0"
MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw",
                 "toothbrush", "transistor", "zipper")
MVTEC_AD_CATEGORIES = MVTEC_TEXTURES + MVTEC_OBJECTS

# The one place to update when MVTec moves its files (it rotates its mydrive.ch share links).
# "all" is the full archive; sha256 is None where no published checksum is known (the
# download then prints the archive's sha256 so it can be pinned here).
_SHARE = "https://www.mydrive.ch/shares"
MVTEC_AD_DOWNLOADS = {
    "all": {"url": f"{_SHARE}/150996/b52ecdcbf521176e9db9c731f2304b27/download/"
                   "420938113-1629960298/mvtec_anomaly_detection.tar.xz",
            "sha256": "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"},
    "bottle": {"url": f"{_SHARE}/150452/132a93367fb17cdf968dfb5c4013f6e7/download/"
                      "420937370-1629958698/bottle.tar.xz", "sha256": None},
    "cable": {"url": f"{_SHARE}/150453/10f960e07fec2838b2cd512586633a32/download/"
                     "420937413-1629958794/cable.tar.xz", "sha256": None},
    "capsule": {"url": f"{_SHARE}/150454/e0ce6dd74eb150f46c0d98131b3703f2/download/"
                       "420937454-1629958872/capsule.tar.xz", "sha256": None},
    "carpet": {"url": f"{_SHARE}/150455/eac7fbce84d93a5094e13f391170eca4/download/"
                      "420937484-1629959013/carpet.tar.xz", "sha256": None},
    "grid": {"url": f"{_SHARE}/150456/bb0b2e3dc804ccb8b4485e01f8e4493b/download/"
                    "420937487-1629959044/grid.tar.xz", "sha256": None},
    "hazelnut": {"url": f"{_SHARE}/150457/51d49f65e84bdc100ff8035d7dd783ea/download/"
                        "420937545-1629959162/hazelnut.tar.xz", "sha256": None},
    "leather": {"url": f"{_SHARE}/150458/923030ce14e10a7d147e95d0f8885f6b/download/"
                       "420937607-1629959262/leather.tar.xz", "sha256": None},
    "metal_nut": {"url": f"{_SHARE}/150459/c68856a21dca589b0f8ff6d4ee0f18f4/download/"
                         "420937637-1629959294/metal_nut.tar.xz", "sha256": None},
    "pill": {"url": f"{_SHARE}/150460/d4f1c04da67034ccc8d8b5fa3e73f244/download/"
                    "420938129-1629960351/pill.tar.xz", "sha256": None},
    "screw": {"url": f"{_SHARE}/150461/242f454cc6385e5693c4fd4b94567d1e/download/"
                     "420938130-1629960389/screw.tar.xz", "sha256": None},
    "tile": {"url": f"{_SHARE}/150462/5479f0fdc97bc6fa16eab0cb0cf0109f/download/"
                    "420938133-1629960456/tile.tar.xz", "sha256": None},
    "toothbrush": {"url": f"{_SHARE}/150463/895a1a5fb84b958f07417784b060434b/download/"
                          "420938134-1629960477/toothbrush.tar.xz", "sha256": None},
    "transistor": {"url": f"{_SHARE}/150464/99b8ea0332438d64fcc2475ee73f9c29/download/"
                          "420938166-1629960554/transistor.tar.xz", "sha256": None},
    "wood": {"url": f"{_SHARE}/150465/d5b4115b720cdb54d217e75636e6e374/download/"
                    "420938383-1629960649/wood.tar.xz", "sha256": None},
    "zipper": {"url": f"{_SHARE}/150466/bd155b557520edaf692d9bfdb915c24a/download/"
                      "420938385-1629960680/zipper.tar.xz", "sha256": None},
}

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def default_setting(category: str) -> str:
    """The MVTec AD paper's setting for a category: ``"whole"`` for its objects
    (:data:`MVTEC_OBJECTS`: whole images, resized, rebuilt at once), ``"patches"`` for
    everything else (textures and surfaces, rebuilt patch by patch at their own scale)."""
    return "whole" if category in MVTEC_OBJECTS else "patches"


def verify_embedded_folder(folder: str, category: str, sums_sha256: str, label: str,
                           own_copy: str) -> Path:
    """Check an MVTec-layout subset shipped in ``data/<folder>``: its ``SHA256SUMS`` against
    ``sums_sha256``, every listed file against its sum, and that no unlisted image lies in
    ``<category>/`` (it would be loaded too).  ``label`` names the data in errors (e.g.
    ``"KolektorSDD"``), ``own_copy`` the call that loads a user's copy instead.  Returns the
    folder; raises ``DataError`` saying how to restore it."""
    sums = embedded_file(f"{folder}/SHA256SUMS", sums_sha256, f"Embedded {label} checksum list")
    root = sums.parent
    fix = f"Restore it with `git checkout -- data/{folder}` (or re-clone the course)."
    listed = set()
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        path = check_file(root / name, f"Embedded {label} file", fix)
        if sha256_file(path) != digest:
            raise DataError(f"Embedded {label} file {path} is corrupted (sha256 differs "
                            f"from SHA256SUMS). {fix}")
        listed.add(path.relative_to(root).as_posix())
    extra = sorted(p.relative_to(root).as_posix() for p in (root / category).rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.name.startswith(".") and p.relative_to(root).as_posix() not in listed)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise DataError(f"Embedded {label} folder {root} holds an image not listed in "
                        f"SHA256SUMS: {extra[0]}{more}. Remove it, or load your own copy "
                        f"with {own_copy}. {fix}")
    return root


def mvtec_dir() -> Path:
    """Default folder of the real MVTec AD: ``cache_dir() / "mvtec_ad"``."""
    return cache_dir() / "mvtec_ad"


def archive_name(name: str) -> str:
    """The file name of the MVTec AD archive of ``name`` (``"all"`` or a category)."""
    if name not in MVTEC_AD_DOWNLOADS:
        raise DataError(f"Unknown MVTec AD download {quote(name)}: expected 'all' or one of "
                        f"{list(MVTEC_AD_CATEGORIES)}.")
    return MVTEC_AD_DOWNLOADS[name]["url"].rsplit("/", 1)[-1]


def manual_download_message(name: str = "all", root=None) -> str:
    """What to do when the automatic download fails (printed in the error)."""
    root = Path(root) if root is not None else mvtec_dir()
    return (f"Download MVTec AD by hand from {MVTEC_AD_PAGE} (free for non-commercial use, "
            f"licence {MVTEC_AD_LICENCE}): save '{archive_name(name)}' into "
            f"{root / '.downloads'} and run again, or unpack it yourself so that "
            f"{root}/<category>/train/good exists (extract_mvtec_archive does it safely). If the "
            f"link moved, update MVTEC_AD_DOWNLOADS in course_lib/data/mvtec.py. Offline, "
            f"course_lib.data.bottle.load_bottle() reads the bottle subset shipped in data/.")


# --------------------------------------------------------------------------- data container
@dataclass
class MVTecData:
    """One category in MVTec layout: float32 images in [0, 1] (grey, or RGB when loaded with
    ``color=True``), at their own aspect.

    Images keep their own size (photos from a real line rarely share one): ``x_train``,
    ``x_test`` and ``masks_test`` are LISTS of arrays.  All of a category's images were
    scaled by the same factor ``scale`` (1.0: the files' own resolution), never squashed.

    Attributes
    ----------
    category : str
    x_train : list of ndarray (H, W) float32, or (H, W, 3) in colour
        Defect-free training images.
    x_test : list of ndarray (H, W) float32, or (H, W, 3) in colour
    y_test : ndarray (M,) int64
        1 = defective, 0 = good.
    masks_test : list of ndarray (H, W) bool
        Ground truth, True = defective pixel (all False for good images).
    defect_test : list of str
        Defect type of each test image (``"good"`` for good ones).
    train_paths, test_paths : list of str
        The files read, in the order of the lists.
    source, detail : str
        ``"online"`` (real MVTec AD), ``"embedded"`` (data shipped or built offline) or
        ``"file"`` (your folder), and a sentence on where the data came from.
    scale : float
        The factor every image was scaled by.
    """

    category: str
    x_train: list
    x_test: list
    y_test: np.ndarray
    masks_test: list
    defect_test: list
    train_paths: list = field(repr=False)
    test_paths: list = field(repr=False)
    source: str = "file"
    detail: str = ""
    scale: float = 1.0

    @property
    def defect_types(self) -> list:
        """The defect types present in the test set (without ``"good"``), sorted."""
        return sorted(set(self.defect_test) - {"good"})

    @property
    def color(self) -> bool:
        """``True`` when the images are RGB (H, W, 3), ``False`` when grey (H, W)."""
        return any(np.ndim(img) == 3 for img in list(self.x_train) + list(self.x_test))

    @property
    def n_empty_masks(self) -> int:
        """Defective test images whose mask marks no pixel (pixel metrics cannot see them)."""
        return sum(1 for m, y in zip(self.masks_test, self.y_test) if y == 1 and not m.any())

    @property
    def sizes(self) -> str:
        """The image sizes, e.g. ``"313x125"`` or ``"312x125 to 318x125"``."""
        shapes = [img.shape[:2] for img in list(self.x_train) + list(self.x_test)]
        lo, hi = min(shapes), max(shapes)
        text = f"{lo[0]}x{lo[1]}"
        return text if lo == hi else f"{text} to {hi[0]}x{hi[1]}"

    def __str__(self) -> str:
        n_bad = int(self.y_test.sum())
        empty = self.n_empty_masks
        warn = (f"; WARNING: {empty} defective image(s) with an empty mask" if empty else "")
        scale = "" if self.scale == 1 else f", scaled by {self.scale:.3g}"
        colour = "colour (RGB)" if self.color else "grey"
        return (f"Data source: {self.source} | {self.detail} | category '{self.category}': "
                f"{len(self.x_train)} training and {len(self.x_test)} test images "
                f"({len(self.x_test) - n_bad} good, {n_bad} defective in "
                f"{len(self.defect_types)} defect types{warn}) in {colour} at {self.sizes} "
                f"pixels{scale}")


# --------------------------------------------------------------------------- reading files
def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and \
        path.suffix.lower() in IMAGE_EXTENSIONS


def _list_images(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if _is_image(p))


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


def category_scale(paths, scale: float = 1.0, max_side: int | None = None) -> float:
    """The one factor a category's images are scaled by: ``scale``, made smaller if needed so
    that the longest side of the largest image is at most ``max_side`` pixels (read from the
    files' headers: grey or colour alike)."""
    scale = check_number("scale", scale, low=0.0, high=4.0, low_open=True)
    if max_side is not None:
        longest = max(max(image_size(p)) for p in paths)
        scale = min(scale, check_positive_int("max_side", max_side, minimum=8) / longest)
    return scale


def _find_mask(gt_dir: Path, defect: str, image: Path):
    for ext in IMAGE_EXTENSIONS:
        for candidate in (gt_dir / defect / f"{image.stem}_mask{ext}",
                          gt_dir / defect / f"{image.stem}_mask{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def list_mvtec_files(root, category: str) -> tuple:
    """The files of one category: ``(train_files, test_items, mask_files)``.

    ``test_items`` are ``(path, defect type)`` pairs, good images first, then defect types
    alphabetically; ``mask_files`` the mask of each test item (``None`` for good ones).
    Checks the layout without reading any image, so a wrong folder fails at once.
    """
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise DataError(f"Dataset folder {root} {what}. Expected the MVTec AD layout "
                        f"<root>/<category>/train/good/*.png; get it with download_mvtec() or "
                        f"build_texture_dataset().")
    cat_dir = root / str(category)
    if not cat_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
        raise DataError(f"Category {quote(str(category))} not found in {root}; categories "
                        f"there: {found or 'none'}.")
    train_dir, test_dir, gt_dir = cat_dir / "train" / "good", cat_dir / "test", \
        cat_dir / "ground_truth"
    for folder in (train_dir, test_dir):
        if not folder.is_dir():
            raise DataError(f"{folder} is missing: a category needs train/good/ (defect-free "
                            f"training images) and test/<good|defect type>/.")
    train_files = _list_images(train_dir)
    if not train_files:
        raise DataError(f"{train_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    test_items = []
    defect_dirs = sorted((p for p in test_dir.iterdir() if p.is_dir()),
                         key=lambda p: (p.name != "good", p.name))
    for d in defect_dirs:
        test_items += [(p, d.name) for p in _list_images(d)]
    if not test_items:
        raise DataError(f"{test_dir} holds no test images (expected test/good/ and "
                        f"test/<defect type>/ folders of images).")
    mask_files, missing = [], []
    for path, defect in test_items:
        mask = None if defect == "good" else _find_mask(gt_dir, defect, path)
        if defect != "good" and mask is None:
            missing.append(f"{gt_dir / defect / (path.stem + '_mask.png')}")
        mask_files.append(mask)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{len(missing)} defective test image(s) have no mask; expected e.g. "
                        f"{missing[0]}{more}. Every test/<defect>/<name>.png needs "
                        "ground_truth/<defect>/<name>_mask.png.")
    return train_files, test_items, mask_files


def load_mvtec_folder(root, category: str, scale: float = 1.0, max_side: int | None = None,
                      n_train: int | None = None, seed: int = 0, verbose: bool = True,
                      source: str = "file", detail: str | None = None,
                      color: bool = False) -> MVTecData:
    """Load one category of a folder in MVTec AD layout (real MVTec, built textures or yours).

    Images are read one at a time, converted to float32 in [0, 1] (grey, or RGB with
    ``color``) and scaled by ONE
    factor for the whole category (:func:`category_scale`: ``scale``, or less so that no side
    exceeds ``max_side``), so their aspect ratios and relative sizes stay as they are and only
    the scaled set is held in memory.  Images may differ in size.  Masks are scaled like their
    images; any nonzero mask pixel is a defect (0/255 and 0/1 masks both work).

    Parameters
    ----------
    root : str or Path
        The folder holding ``<category>/train/good``, ``<category>/test/...`` and
        ``<category>/ground_truth/...`` (see the module docstring).
    category : str
        Sub-folder to read, e.g. ``"carpet"`` or ``"brick"``.
    scale : float
        Scale factor for every image (1.0: the files' own resolution; 0.5: half).
    max_side : int, optional
        Upper limit, in pixels, for the longest side after scaling (lowers ``scale`` if needed).
    n_train : int, optional
        Use a seeded random subset of this many training images (default: all).
    seed : int
        Seed of that subset.
    verbose : bool
        Print one line saying what was loaded (and how many defective images have an empty
        mask, if any).
    source, detail : str
        Recorded in the result (set by the textures, KolektorSDD and bottle loaders and
        :func:`load_mvtec`).
    color : bool
        ``False`` (default): grey images (H, W), colour converted by luminance
        (:func:`read_gray`).  ``True``: RGB images (H, W, 3), grey files repeated to three
        channels (:func:`read_rgb`).  Masks are 2-D either way.

    Returns
    -------
    MVTecData

    Raises
    ------
    DataError
        Missing folders, a category without training or test images, a defective test image
        without its ``<name>_mask.png``, a mask whose size differs from its image's, or a file
        that cannot be read.
    """
    train_files, test_items, mask_files = list_mvtec_files(root, category)
    if n_train is not None:
        n_train = check_positive_int("n_train", n_train)
        train_files = [train_files[i] for i in seeded_subset(len(train_files), n_train, seed)]
    factor = category_scale(train_files + [p for p, _ in test_items], scale, max_side)

    read = read_rgb if color else read_gray

    def load(path):
        img = read(path)
        return img, rescale_image(img, factor).astype(np.float32)

    x_train = [load(path)[1] for path in train_files]
    x_test, masks = [], []
    for (path, _), mask_path in zip(test_items, mask_files):
        img, small = load(path)
        x_test.append(small)
        if mask_path is None:
            masks.append(np.zeros(small.shape[:2], bool))
            continue
        mask = read_mask(mask_path)
        if mask.shape != img.shape[:2]:
            raise DataError(f"Mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} but its image "
                            f"{path} is {img.shape[0]}x{img.shape[1]}; a mask must have its "
                            f"image's size.")
        masks.append(rescale_mask(mask, small.shape[:2]))
    y_test = np.array([int(d != "good") for _, d in test_items], dtype=np.int64)
    data = MVTecData(category=str(category), x_train=x_train, x_test=x_test, y_test=y_test,
                     masks_test=masks, defect_test=[d for _, d in test_items],
                     train_paths=[str(p) for p in train_files],
                     test_paths=[str(p) for p, _ in test_items], source=source,
                     detail=detail or f"MVTec-layout folder {root}", scale=float(factor))
    if verbose:
        print(data)
    return data


# --------------------------------------------------------------------------- download
def _verified_archive(name: str, archive: Path, progress: bool) -> Path:
    """Return the archive, downloading it (resumably) and verifying it first.

    An archive already under its final name (downloaded earlier, or saved there by hand) is
    checked against its published sha256 where one is known; a mismatch is moved aside to
    ``.corrupt`` so that the next run downloads it afresh.
    """
    info = MVTEC_AD_DOWNLOADS[name]
    if archive.is_file():
        expected = info.get("sha256")
        if expected:
            digest = sha256_file(archive)
            if digest != expected.lower():
                bad = archive.with_name(archive.name + ".corrupt")
                os.replace(archive, bad)
                raise DataError(f"{archive} has sha256 {digest[:16]}..., expected "
                                f"{expected[:16]}... (truncated, corrupted or a different "
                                f"release); moved it to {bad}. Run again to download it "
                                f"afresh, or: " + manual_download_message(name,
                                                                          archive.parent.parent))
        return archive
    try:
        download_resumable(info["url"], archive, sha256=info.get("sha256"),
                           verify=check_tar_readable, progress=progress)
    except Exception as exc:  # noqa: BLE001 - network, HTTP, disk: all need the same advice
        part = archive.with_name(archive.name + ".part")
        resume = (f"Run again to resume the partial download ({part.stat().st_size:,} bytes "
                  f"in {part}), or: ") if part.is_file() else ""
        why = (str(exc).rstrip(".") if isinstance(exc, DataError)  # ours: says what to do
               else f"{type(exc).__name__}: {quote(str(exc), 200)}")
        raise DataError(f"Could not download MVTec AD {quote(name)} from {info['url']} "
                        f"({why}). {resume}"
                        + manual_download_message(name, archive.parent.parent)) from exc
    return archive


def download_mvtec(category: str = "all", root=None, force: bool = False,
                   progress: bool = True, keep_archive: bool = False) -> Path:
    """Download and safely extract MVTec AD (all 15 categories, or one) from MVTec's servers.

    The archive goes to ``<root>/.downloads``: a partial download is kept as ``.part`` and
    resumed on the next call, and the archive gets its final name only once it is verified
    (by its published sha256 where :data:`MVTEC_AD_DOWNLOADS` has one, by its announced size,
    or else by reading the whole archive to its end); an archive already there (e.g. saved by
    hand) is checked against the published sha256 too.  :func:`extract_mvtec_archive` then
    unpacks it (a category folder appears only once it is complete).  The data are licensed
    CC BY-NC-SA 4.0 by MVTec Software GmbH: keep them out of the repository and cite Bergmann
    et al. (CVPR 2019).

    Parameters
    ----------
    category : str
        ``"all"`` (about 4.9 GB) or one of :data:`MVTEC_AD_CATEGORIES` (its own archive).
    root : str or Path, optional
        Where the category folders go (default :func:`mvtec_dir`).
    force : bool
        Download and unpack again even if the folders exist.
    progress : bool
        Show a progress bar.
    keep_archive : bool
        Keep the ``.tar.xz`` after unpacking (default: delete it, saving disk space).

    Returns
    -------
    Path
        ``root``; the data are in ``root / category``.

    Raises
    ------
    DataError
        The download failed (with instructions to download by hand), the checksum differs,
        the archive is unsafe or corrupted, or it lacks the category; a file or a folder not
        in MVTec layout already takes a category's place (checked before downloading; it is
        never replaced); the disk filled up while unpacking (``DiskFullError``: the verified
        archive is kept, so the next run does not download it again).
    """
    filename = archive_name(category)
    root = Path(root) if root is not None else mvtec_dir()
    wanted = MVTEC_AD_CATEGORIES if category == "all" else (category,)
    if not force and all((root / c / "train" / "good").is_dir() for c in wanted):
        return root
    _check_no_blocking_folders(root, wanted, force)
    archive = root / ".downloads" / filename
    if force and archive.is_file():
        archive.unlink()
    archive = _verified_archive(category, archive, progress)
    extract_mvtec_archive(archive, root, replace=force)
    missing = [c for c in wanted if not (root / c / "train" / "good").is_dir()]
    if missing:
        raise DataError(f"{archive} did not contain the MVTec AD categories {missing}. "
                        + manual_download_message(category, root))
    if not keep_archive:
        archive.unlink()
    return root


def _is_category(folder: Path) -> bool:
    return folder.is_dir() and not folder.name.startswith(".") and (folder / "train").is_dir()


def _layout_problem(folder: Path) -> str:
    """What keeps ``folder`` from being an MVTec AD category folder ("" if nothing does)."""
    if folder.is_file():
        return "it is a file, not a folder"
    if (folder / "train" / "good").is_dir():
        return ""
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    listing = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "") if found else "nothing"
    return f"it has no train/good/ folder; it holds {listing}"


def _check_no_blocking_folders(root: Path, wanted, force: bool) -> None:
    """Refuse, before any download, when a wanted category's place in ``root`` is taken by
    something the archive may not replace (a file, or a folder not in MVTec layout: unpacking
    never touches what is not a category folder)."""
    blocking = []
    for c in wanted:
        target = root / c
        replaceable = force and _is_category(target)
        if target.exists() and not replaceable and _layout_problem(target):
            blocking.append(f"{target} ({_layout_problem(target)})")
    if blocking:
        raise DataError(f"{'; '.join(blocking)}: not an MVTec AD category folder, so it is left "
                        f"untouched and the category cannot be unpacked there. Move it away "
                        f"(or delete it if you do not need it) and run again.")


def _category_folders(base: Path, max_wrappers: int = 3) -> list:
    """Category folders in ``base``, or in a single wrapping folder (at most a few levels)."""
    for _ in range(max_wrappers + 1):
        found = [p for p in sorted(base.iterdir()) if _is_category(p)]
        if found:
            return found
        subdirs = [p for p in base.iterdir() if p.is_dir()]
        if len(subdirs) != 1:
            return []
        base = subdirs[0]
    return []


def extract_mvtec_archive(archive, root=None, replace: bool = False) -> list:
    """Safely unpack an MVTec AD ``.tar.xz`` (or any tar in MVTec layout) into ``root``.

    Everything is unpacked into a temporary folder inside ``root`` first, member by member
    with :func:`course_lib.download.extract_tar_safely` (absolute paths, ``..``, links, special
    files and absurd nesting stop it).  Each complete *category* folder (one with a ``train/``
    folder, name not starting with ".") is then moved into place with one rename; nothing
    else in ``root`` is ever replaced or deleted (the ``.downloads`` cache included).  The
    temporary folder is removed whatever happens.

    Parameters
    ----------
    archive : str or Path
        The archive (e.g. downloaded by hand from MVTec's page).
    root : str or Path, optional
        Target folder (default :func:`mvtec_dir`).
    replace : bool
        Replace category folders that already exist (default: keep them).

    Returns
    -------
    list of str
        The categories moved into ``root``.

    Raises
    ------
    DataError
        Unreadable or corrupted archive, no category folder inside; ``UnsafeArchiveError``
        (a ``DataError``) for a member that could escape ``root``.
    """
    archive = Path(archive)
    root = Path(root) if root is not None else mvtec_dir()
    if not archive.is_file():
        raise DataError(f"Archive {archive} " + ("is a folder, not a file." if archive.is_dir()
                                                 else "not found."))
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        extract_tar_safely(archive, tmp)
        folders = _category_folders(tmp)
        if not folders:
            raise DataError(f"{archive} holds no folder in MVTec layout "
                            f"(<category>/train/good/...).")
        placed = []
        for folder in folders:
            target = root / folder.name
            if target.exists():
                if not replace or not _is_category(target):
                    continue  # never replace what is not a category folder
                trash = root / f".old-{folder.name}-{uuid.uuid4().hex[:8]}"
                os.replace(target, trash)
                os.replace(folder, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(folder, target)
            placed.append(folder.name)
        for extra in folders[0].parent.iterdir():  # licence and readme files next to them
            if extra.is_file() and not extra.name.startswith(".") and \
                    not (root / extra.name).exists():
                os.replace(extra, root / extra.name)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_mvtec(category: str, scale: float = 1.0, max_side: int | None = None, root=None,
               download: bool = True, n_train: int | None = None, seed: int = 0,
               verbose: bool = True, color: bool = False) -> MVTecData:
    """Load one category of the real MVTec AD, downloading it first if needed.

    Parameters
    ----------
    category : str
        One of :data:`MVTEC_AD_CATEGORIES`, e.g. ``"carpet"``.
    scale, max_side, n_train, seed, verbose, color
        As in :func:`load_mvtec_folder` (``color=True``: the photos' RGB, (H, W, 3)).
    root : str or Path, optional
        Folder of the dataset (default :func:`mvtec_dir`).
    download : bool
        Download the category's archive when it is missing (else raise ``DataError``).
        Never done when ``COURSE_DATA=offline`` (see :func:`course_lib.config.data_mode`).

    Used by ``course-bench mvtec --category <name>`` for the real MVTec AD categories.
    """
    if category not in MVTEC_AD_CATEGORIES:
        raise DataError(f"Unknown MVTec AD category {quote(category)}: expected one of "
                        f"{list(MVTEC_AD_CATEGORIES)}.")
    root = Path(root) if root is not None else mvtec_dir()
    if not (root / category / "train" / "good").is_dir():
        _check_no_blocking_folders(root, (category,), force=False)
        if not download or data_mode() == "offline":
            why = " (COURSE_DATA=offline: no download)" if download else ""
            raise DataError(f"MVTec AD '{category}' not found in {root}{why}. "
                            + manual_download_message(category, root))
        download_mvtec(category, root)
    return load_mvtec_folder(root, category, scale=scale, max_side=max_side, n_train=n_train,
                             seed=seed, verbose=verbose, source="online", color=color,
                             detail=f"real MVTec AD ({MVTEC_AD_LICENCE}, MVTec Software GmbH) "
                                    f"in {root}")


# --------------------------------------------------------------------------- cache status
def mvtec_cache_items(categories=None) -> list:
    """Real MVTec AD categories present in :func:`mvtec_dir` as :class:`CacheItem`.

    Without ``categories``: one summary line (for ``status``); with a list (or ``["all"]``):
    one item per category.  No network.
    """
    root = mvtec_dir()
    wanted = list(MVTEC_AD_CATEGORIES) if categories is None else list(categories)
    if "all" in wanted:
        wanted = list(MVTEC_AD_CATEGORIES)
    present = [c for c in wanted if (root / c / "train" / "good").is_dir()]
    if categories is None:
        if not present:
            return [CacheItem("MVTec AD (real, optional)", "optional", "missing", root,
                              hint="python -m course_lib.data prefetch --mvtec CATEGORY "
                                   "(CC BY-NC-SA 4.0; only if you want the real data).")]
        return [CacheItem("MVTec AD (real, optional)", "optional", "OK", root,
                          path_size(root), detail=f"{len(present)}/{len(wanted)} categories: "
                                                  + ", ".join(present))]
    return [CacheItem(f"MVTec AD '{c}'", "optional", "OK" if c in present else "missing",
                      root / c, path_size(root / c) if c in present else None,
                      hint="" if c in present else mvtec_hint(c))
            for c in wanted]


def mvtec_hint(category: str) -> str:
    """What to do when the MVTec AD download of ``category`` failed (short form)."""
    folder = mvtec_dir() / ".downloads"
    return (f"Run it again (a partial download resumes), or download "
            f"'{archive_name(category)}' by hand from {MVTEC_AD_PAGE} into "
            f"{folder} and run again. Offline, course_lib.data.bottle reads the bottle subset "
            f"shipped in data/.")
