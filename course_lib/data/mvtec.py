"""Folders in MVTec AD layout: load any of them (:func:`load_mvtec_folder`).

MVTec AD (Bergmann et al., CVPR 2019; MVTec Software GmbH, licence CC BY-NC-SA 4.0) holds
15 categories of industrial images: defect-free training images and test images with
pixel-precise masks of their defects.  Its layout, which :func:`load_mvtec_folder` reads::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect type>/*.png
    <root>/<category>/ground_truth/<defect type>/<image name>_mask.png

Three ways to get such a folder:

- :func:`course_lib.data.mvtec_ad.download_mvtec` - the real dataset (about 4.9 GB in all, or
  one category) from MVTec's official location, never stored in this repository
  (:mod:`course_lib.data.mvtec_ad`: download, safe unpacking, :func:`~course_lib.data.mvtec_ad.
  load_mvtec`);
- :func:`course_lib.data.textures.build_texture_dataset` - an offline, deterministic stand-in
  built from scikit-image's CC0 texture photographs with synthetic defects;
- your own images in the same layout (PNG or JPEG, grayscale or colour, any size).

Images are read in grey by default; ``color=True`` keeps their colour ((H, W, 3), grey files
repeated to three channels); the files are read by :mod:`course_lib.data.image_files`.

A mask pixel is a defect wherever it is not zero (masks saved as 0/255, as 0/1 or as labels
1, 2, 3, ... all work); in a JPEG mask, where it is above half the mask's maximum (compression
noise is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, check_number, check_positive_int, quote
from course_lib.data.common import check_file, embedded_file
from course_lib.data.image_files import (IMAGE_EXTENSIONS, image_size, list_images, read_gray,
                                         read_mask, read_rgb, rescale_image, rescale_mask)
from course_lib.download import sha256_file
from course_lib.sampling import seeded_subset

MVTEC_AD_PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
MVTEC_AD_LICENCE = "CC BY-NC-SA 4.0"
MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw",
                 "toothbrush", "transistor", "zipper")
MVTEC_AD_CATEGORIES = MVTEC_TEXTURES + MVTEC_OBJECTS


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
                        f"<root>/<category>/train/good/*.png; get it with "
                        f"course_lib.data.mvtec_ad.download_mvtec() or build_texture_dataset().")
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
    train_files = list_images(train_dir)
    if not train_files:
        raise DataError(f"{train_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    test_items = []
    defect_dirs = sorted((p for p in test_dir.iterdir() if p.is_dir()),
                         key=lambda p: (p.name != "good", p.name))
    for d in defect_dirs:
        test_items += [(p, d.name) for p in list_images(d)]
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
