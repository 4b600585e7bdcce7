"""KolektorSDD: real surface cracks on electrical commutators, in MVTec AD layout.

The Kolektor Surface-Defect Dataset (Tabernik, Šela, Skvarč and Skočaj, "Segmentation-based
deep-learning approach for surface-defect detection", Journal of Intelligent Manufacturing,
2019; ViCoS lab, University of Ljubljana, with Kolektor Group; licence CC BY-NC-SA 4.0) holds
grayscale photos of commutator surfaces, 250 pixels wide and 617-642 high (half the original
resolution, as arranged for the course), some with thin dark cracks.

- ``embedded``: a real subset shipped in ``data/kolektorsdd/kolektor`` (48 defect-free
  training images, 16 defect-free and 16 cracked test images with masks), every file checked
  against ``data/kolektorsdd/SHA256SUMS`` on each load;
- ``file``: the whole set (or any other category) in MVTec layout: ``load_kolektor(path=...)``.

There is no automatic download: KolektorSDD is distributed in its own layout from the ViCoS
web site; arrange it in MVTec layout (``<root>/kolektor/train/good`` ...) and pass ``path``.
"""

from __future__ import annotations

from pathlib import Path

from course_lib.checks import DataError
from course_lib.config import Profile, data_dir, get_profile
from course_lib.data.common import CacheItem, path_size
from course_lib.data.mvtec import MVTecData, load_mvtec_folder, verify_embedded_folder

KOLEKTOR_FOLDER = "kolektorsdd"
KOLEKTOR_CATEGORY = "kolektor"
#: sha256 of ``data/kolektorsdd/SHA256SUMS``, which lists the sha256 of every shipped file.
KOLEKTOR_SUMS_SHA256 = "f5307611bb0eaf3b4bfbe4595854e85210035c8fc477b97dad6a7af8a3bb7542"
KOLEKTOR_LICENCE = "CC BY-NC-SA 4.0"


def _verify_embedded() -> Path:
    """Check every shipped file against SHA256SUMS (itself checked); return the folder."""
    return verify_embedded_folder(KOLEKTOR_FOLDER, KOLEKTOR_CATEGORY, KOLEKTOR_SUMS_SHA256,
                                  "KolektorSDD", "load_kolektor(path=...)")


def load_kolektor(profile: Profile | str | None = None, path=None,
                  verbose: bool = True) -> MVTecData:
    """Load KolektorSDD at the profile's image scale: the embedded real subset, or your copy.

    Parameters
    ----------
    profile : Profile or str, optional
        ``profile.mvtec_scale`` and ``profile.mvtec_max_side`` decide the one scale factor of
        all images (their aspect ratio is kept); default: the active profile.
    path : str or Path, optional
        A folder in MVTec layout holding ``kolektor/train/good`` etc. (e.g. the whole
        KolektorSDD arranged so); default: the subset shipped in ``data/``.
    verbose : bool
        Print one line ``Data source: embedded|file | ...``.

    Returns
    -------
    MVTecData
        Images of slightly different heights, as the photos are: lists of 2-D arrays.

    Taught in notebook 05.
    """
    prof = get_profile(profile)
    if path is None:
        root, source = _verify_embedded(), "embedded"
        detail = (f"real KolektorSDD subset shipped in data/{KOLEKTOR_FOLDER} "
                  f"({KOLEKTOR_LICENCE}, Tabernik et al. 2019)")
    else:
        root, source = Path(path), "file"
        detail = f"your KolektorSDD copy in {root}"
    return load_mvtec_folder(root, KOLEKTOR_CATEGORY, scale=prof.mvtec_scale,
                             max_side=prof.mvtec_max_side, verbose=verbose, source=source,
                             detail=detail)


def kolektor_cache_items() -> list:
    """The embedded subset as a :class:`CacheItem` (every file's sha256 checked; no network)."""
    root = data_dir() / KOLEKTOR_FOLDER
    name = "KolektorSDD subset (embedded)"
    try:
        _verify_embedded()
    except DataError as exc:
        state = "missing" if not root.exists() else "corrupted"
        return [CacheItem(name, "embedded", state, root, path_size(root), detail=str(exc)[:120],
                          hint=f"Restore it with `git checkout -- data/{KOLEKTOR_FOLDER}` (or "
                               f"re-clone the course).")]
    return [CacheItem(name, "embedded", "OK", root, path_size(root), detail="sha256 verified")]
