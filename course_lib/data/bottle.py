"""MVTec AD's bottle: real photos of an object category, whole images at one square size.

MVTec AD (Bergmann, Fauser, Sattlegger and Steger, "MVTec AD - A Comprehensive Real-World
Dataset for Unsupervised Anomaly Detection", CVPR 2019; MVTec Software GmbH, licence
CC BY-NC-SA 4.0) photographs bottles from above, aligned, at 900 x 900 pixels; defective ones
are broken (large or small) or contaminated.  The objects' methods work on whole images, so
every image comes back square, ``profile.object_side`` pixels wide:

- ``embedded``: a real subset shipped in ``data/mvtec_bottle/bottle`` (all 209 training
  images and 42 test images of the official test split: 10 good, 32 defective in three types,
  with masks), resized to 256 x 256 grey; every file is checked against
  ``data/mvtec_bottle/SHA256SUMS`` on each load (``data/build_bottle_subset.py`` rebuilds it);
- ``online``: the whole category of the real MVTec AD, downloaded once
  (:func:`course_lib.data.mvtec_ad.load_mvtec`, or ``python -m course_lib.data prefetch --mvtec
  bottle``) and scaled from 900 pixels to ``profile.object_side``;
- ``file``: any folder in MVTec layout holding ``bottle/``: ``load_bottle(path=...)``.

The photos are nearly achromatic (mean |pixel - its grey| = 0.013 on a 0-1 scale), so grey
loses almost nothing; ``load_mvtec("bottle", color=True)`` gives the full download in colour.
"""

from __future__ import annotations

from pathlib import Path

from course_lib.checks import DataError, check_positive_int
from course_lib.config import Profile, data_dir, data_mode, get_profile
from course_lib.data.common import CacheItem, online_or_embedded, path_size
from course_lib.data.image_files import image_size
from course_lib.data.mvtec import (MVTEC_AD_LICENCE, MVTecData, list_mvtec_files,
                                   load_mvtec_folder, verify_embedded_folder)
from course_lib.data.mvtec_ad import load_mvtec, mvtec_dir

BOTTLE_FOLDER = "mvtec_bottle"
BOTTLE_CATEGORY = "bottle"
#: Side, in pixels, of the shipped images (the MVTec AD paper's size for objects).
BOTTLE_EMBEDDED_SIDE = 256
#: sha256 of ``data/mvtec_bottle/SHA256SUMS``, which lists the sha256 of every shipped file.
BOTTLE_SUMS_SHA256 = "8d09509027c91031c4bd543c213e54c2de98dec039913823bdba15ce6133f2f4"
BOTTLE_CITATION = "Bergmann et al., CVPR 2019"
#: Scaling a user's copy up by more than this is refused (it would only blur).
MAX_UPSCALE = 4.0


def _restore_hint() -> str:
    return f"Restore it with `git checkout -- data/{BOTTLE_FOLDER}` (or re-clone the course)."


def _verify_embedded() -> Path:
    """Check every shipped file against SHA256SUMS (itself checked); return the folder."""
    return verify_embedded_folder(BOTTLE_FOLDER, BOTTLE_CATEGORY, BOTTLE_SUMS_SHA256,
                                  "MVTec AD bottle", "load_bottle(path=...)")


def _files_side(root: Path) -> int:
    """The one side of the category's square images (read from the headers, no decoding)."""
    category = root / BOTTLE_CATEGORY
    if not category.is_dir() and (root / "train" / "good").is_dir():
        raise DataError(f"{root} is a category folder itself: pass the folder above it "
                        f"({root.parent}), the one that holds {BOTTLE_CATEGORY}/.")
    train_files, test_items, _ = list_mvtec_files(root, BOTTLE_CATEGORY)
    sizes = {}
    for path in train_files + [p for p, _ in test_items]:
        sizes.setdefault(image_size(path), path)
    (height, width), first = next(iter(sizes.items()))
    if len(sizes) > 1 or height != width:
        other = list(sizes.items())[-1]
        found = f"{first} is {height}x{width}" + (
            f", {other[1]} is {other[0][0]}x{other[0][1]}" if len(sizes) > 1 else "")
        raise DataError(f"The bottle images in {category} must be square and all of one size "
                        f"(whole images are resized to one square side, as MVTec AD's 900x900 "
                        f"objects): {found}. Crop or pad them to one square size first.")
    return height


def _scale_to(side: int, files_side: int, where: Path) -> float:
    """The factor that brings ``files_side`` to ``side``; a large enlargement is refused."""
    scale = side / files_side
    if scale > MAX_UPSCALE:
        raise DataError(f"The bottle images in {where} are {files_side}x{files_side} pixels, "
                        f"too small for the profile's object_side of {side} (more than "
                        f"{MAX_UPSCALE:g}x enlarged). Use larger images or a profile with a "
                        f"smaller object_side.")
    return scale


def _check_side(data: MVTecData, side: int) -> MVTecData:
    """Every image is ``side`` x ``side`` (the objects' methods rely on it)."""
    wrong = [p for p, img in zip(data.train_paths + data.test_paths, data.x_train + data.x_test)
             if img.shape[:2] != (side, side)]
    if wrong:
        raise DataError(f"{len(wrong)} bottle image(s) did not come out {side}x{side} (e.g. "
                        f"{wrong[0]}): MVTec AD's bottle photos are square; replace the folder "
                        f"with the real category.")
    return data


def _embedded(side: int) -> MVTecData:
    root = _verify_embedded()
    detail = (f"real MVTec AD bottle subset ({BOTTLE_EMBEDDED_SIDE} px grey, part of the "
              f"official test split) shipped in data/{BOTTLE_FOLDER} ({MVTEC_AD_LICENCE}, "
              f"MVTec Software GmbH; {BOTTLE_CITATION})")
    scale = _scale_to(side, BOTTLE_EMBEDDED_SIDE, root / BOTTLE_CATEGORY)
    return load_mvtec_folder(root, BOTTLE_CATEGORY, scale=scale, verbose=False,
                             source="embedded", detail=detail)


def _online(side: int) -> MVTecData:
    data = load_mvtec(BOTTLE_CATEGORY, max_side=side, verbose=False)
    data.detail = (f"MVTec AD bottle (full download, grey; {MVTEC_AD_LICENCE}, MVTec Software "
                   f"GmbH; {BOTTLE_CITATION}) in {mvtec_dir()}")
    return _check_side(data, side)


def load_bottle(profile: Profile | str | None = None, source: str | None = None, path=None,
                verbose: bool = True) -> MVTecData:
    """Load MVTec AD's bottle in grey, every image square at ``profile.object_side`` pixels.

    Parameters
    ----------
    profile : Profile or str, optional
        ``profile.object_side`` is the side of every image (and mask); default: the active
        profile.  The shipped 256-pixel images are resized (masks: resized, then a pixel is
        defective where at least half of it was).
    source : {"auto", "online", "offline"}, optional
        Default: the ``COURSE_DATA`` setting.  ``auto`` uses the full category (downloaded
        once into the cache, about 150 MB) and falls back to the shipped subset with one
        message when it cannot be had; ``offline`` uses the shipped subset; ``online`` fails
        if it cannot download.
    path : str or Path, optional
        A folder in MVTec layout holding ``bottle/train/good`` etc. (square images of one
        size, grey or colour); overrides ``source``.
    verbose : bool
        Print one line ``Data source: online|embedded|file | ...``.

    Returns
    -------
    MVTecData
        Grey float32 images (``object_side`` square), masks of the same size; ``.source``
        tells where they came from.

    Raises
    ------
    DataError
        A shipped file missing or damaged (with how to restore it), a folder not in MVTec
        layout or with images that are not square and of one size, or (``online``) a
        download that failed.
    """
    prof = get_profile(profile)
    side = check_positive_int("profile.object_side", prof.object_side, minimum=8)
    note = ""
    if path is not None:
        root = Path(path)
        scale = _scale_to(side, _files_side(root), root / BOTTLE_CATEGORY)
        data = load_mvtec_folder(root, BOTTLE_CATEGORY, scale=scale, verbose=False,
                                 source="file", detail=f"your MVTec AD bottle copy in {root}")
    else:
        data, _, note = online_or_embedded(data_mode(source), "MVTec AD 'bottle'",
                                           "bottle subset", lambda: _online(side),
                                           lambda: _embedded(side))
    _check_side(data, side)
    if verbose:
        print(note + str(data))
    return data


def bottle_cache_items() -> list:
    """The embedded subset as a :class:`CacheItem` (every file's sha256 checked; no network).

    The full category is one of the real MVTec AD items (``prefetch --mvtec bottle``)."""
    root = data_dir() / BOTTLE_FOLDER
    name = "MVTec AD bottle subset (embedded)"
    try:
        _verify_embedded()
    except DataError as exc:
        state = "missing" if not root.exists() else "corrupted"
        return [CacheItem(name, "embedded", state, root, path_size(root), detail=str(exc)[:120],
                          hint=_restore_hint())]
    return [CacheItem(name, "embedded", "OK", root, path_size(root), detail="sha256 verified")]
