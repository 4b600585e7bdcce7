"""The real MVTec AD: download it safely, unpack it, load a category, and what is cached.

MVTec AD (Bergmann et al., CVPR 2019; MVTec Software GmbH, licence CC BY-NC-SA 4.0, about
4.9 GB) is never stored in this repository.  :func:`download_mvtec` fetches all of it or one
category from MVTec's official location (URLs and checksums in :data:`MVTEC_AD_DOWNLOADS`:
resumable, verified, renamed only once complete), :func:`extract_mvtec_archive` unpacks an
archive safely (also one downloaded by hand), and :func:`load_mvtec` loads a category,
downloading it first when needed (:func:`course_lib.data.mvtec.load_mvtec_folder` reads it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from course_lib.checks import DataError, quote
from course_lib.config import cache_dir, data_mode
from course_lib.data.common import CacheItem, path_size
from course_lib.data.mvtec import (MVTEC_AD_CATEGORIES, MVTEC_AD_LICENCE, MVTEC_AD_PAGE,
                                   MVTecData, load_mvtec_folder)
from course_lib.download import (check_tar_readable, download_resumable, extract_tar_safely,
                                 sha256_file)

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
            f"link moved, update MVTEC_AD_DOWNLOADS in course_lib/data/mvtec_ad.py. Offline, "
            f"course_lib.data.bottle.load_bottle() reads the bottle subset shipped in data/.")


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
