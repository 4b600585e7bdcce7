"""MVTec AD and look-alike texture data: download, safe extraction, building and loading.

MVTec AD (Bergmann et al., CVPR 2019; MVTec Software GmbH, licence CC BY-NC-SA 4.0) holds
15 categories of industrial images: defect-free training images and test images with
pixel-precise masks of their defects.  Its layout, which every loader here reads::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect type>/*.png
    <root>/<category>/ground_truth/<defect type>/<image name>_mask.png

Three ways to get such a folder:

- :func:`download_mvtec` - the real dataset (about 4.9 GB in all, or one category) from
  MVTec's official location, never stored in this repository; URLs and checksums live in
  :data:`MVTEC_AD_DOWNLOADS`;
- :func:`build_texture_dataset` - an offline, deterministic stand-in built in a few seconds
  from scikit-image's CC0 texture photographs (brick, grass, gravel) with synthetic defects
  (scratches, holes, stains, cracks, foreign particles, contrast patches) and exact masks;
- your own images in the same layout (PNG or JPEG, grayscale or colour, any size).

:func:`load_mvtec_folder` reads any of them into grayscale float32 arrays at a chosen size;
:func:`load_textures` and :func:`load_mvtec` build/download first.  Taught in notebook 05.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib.config import data_mode
from course_lib.data import DataError

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

CACHE_ENV = "COURSE_CACHE_DIR"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CONNECT_TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20

# Embedded textures: scikit-image's CC0 photographs, 512 x 512 grayscale.
TEXTURES = ("brick", "grass", "gravel")
DEFECT_KINDS = ("scratch", "hole", "stain", "crack", "particle", "contrast")
TEXTURE_VERSION = 1  # bump when the generator changes, so caches are rebuilt
_SPLIT_ROW = 320     # photo rows [0, 320) give training crops, rows [320, 512) test crops
_PHOTO_SIZE = 512


def cache_dir() -> Path:
    """Where downloads and built datasets are kept: ``$COURSE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/course_lib`` (by default ``~/.cache/course_lib``).

    Taught in notebook 05.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "course_lib"


def mvtec_dir() -> Path:
    """Default folder of the real MVTec AD: ``cache_dir() / "mvtec_ad"``."""
    return cache_dir() / "mvtec_ad"


def manual_download_message(name: str = "all", root=None) -> str:
    """What to do when the automatic download fails (printed in the error)."""
    root = Path(root) if root is not None else mvtec_dir()
    filename = _archive_name(name)
    return (f"Download MVTec AD by hand from {MVTEC_AD_PAGE} (free for non-commercial use, "
            f"licence {MVTEC_AD_LICENCE}): save '{filename}' into {root / '.downloads'} and "
            f"run again, or unpack it yourself so that {root}/<category>/train/good exists "
            f"(course_lib.mvtec.extract_mvtec_archive does it safely). If the link moved, "
            f"update MVTEC_AD_DOWNLOADS in course_lib/mvtec.py. Offline, use "
            f"load_textures() instead.")


# --------------------------------------------------------------------------- data container
@dataclass
class MVTecData:
    """One category in MVTec layout, loaded as grayscale float32 images in [0, 1].

    Attributes
    ----------
    category : str
    x_train : ndarray (N, H, W) float32
        Defect-free training images.
    x_test : ndarray (M, H, W) float32
    y_test : ndarray (M,) int64
        1 = defective, 0 = good.
    masks_test : ndarray (M, H, W) uint8
        Ground truth, 1 = defective pixel (all 0 for good images).
    defect_test : list of str
        Defect type of each test image (``"good"`` for good ones).
    train_paths, test_paths : list of str
        The files read, in the order of the arrays.
    source, detail : str
        ``"online"`` (real MVTec AD), ``"embedded"`` (built textures) or ``"file"`` (your
        folder), and a sentence on where the data came from.
    """

    category: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    masks_test: np.ndarray
    defect_test: list
    train_paths: list = field(repr=False)
    test_paths: list = field(repr=False)
    source: str = "file"
    detail: str = ""

    @property
    def defect_types(self) -> list:
        """The defect types present in the test set (without ``"good"``), sorted."""
        return sorted(set(self.defect_test) - {"good"})

    def __str__(self) -> str:
        n_bad = int(self.y_test.sum())
        h, w = self.x_train.shape[1:3]
        return (f"Data source: {self.source} | {self.detail} | category '{self.category}': "
                f"{len(self.x_train)} training and {len(self.x_test)} test images "
                f"({len(self.x_test) - n_bad} good, {n_bad} defective in "
                f"{len(self.defect_types)} defect types) at {h}x{w}")


# --------------------------------------------------------------------------- reading files
def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and \
        path.suffix.lower() in IMAGE_EXTENSIONS


def _list_images(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _read(path: Path) -> np.ndarray:
    import skimage.io

    try:
        arr = np.asarray(skimage.io.imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder error
        raise DataError(f"Could not read image {path} ({type(exc).__name__}: {exc}). Replace "
                        f"or delete the file.") from exc
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(f"{path}: expected a 2-D grayscale or colour image, got an array of "
                        f"shape {arr.shape}.")
    return arr


def _read_gray(path: Path) -> np.ndarray:
    """Any image file -> 2-D float64 grayscale in [0, 1]."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    arr = _read(path)
    if arr.ndim == 3:
        channels = arr.shape[-1]
        if channels in (3, 4):
            arr = rgb2gray(arr[..., :3])  # alpha ignored
        elif channels in (1, 2):
            arr = arr[..., 0]              # gray (+ alpha)
        else:
            raise DataError(f"{path}: expected 1 to 4 colour channels, got shape {arr.shape}.")
    if arr.dtype == bool:
        arr = arr.astype(np.float64)
    try:
        arr = img_as_float(arr)
    except ValueError as exc:
        raise DataError(f"{path}: unsupported pixel type {arr.dtype} ({exc}).") from exc
    return np.clip(arr, 0.0, 1.0)


def _read_mask(path: Path) -> np.ndarray:
    """A mask file -> 2-D bool (a pixel is defective where any colour channel is > half)."""
    from skimage.util import img_as_float

    arr = _read(path)
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        arr = arr.max(axis=-1)
    if arr.dtype == bool:
        return arr
    return img_as_float(arr) > 0.5


def _resize(img: np.ndarray, shape: tuple) -> np.ndarray:
    if img.shape == tuple(shape):
        return img
    from skimage.transform import resize

    return np.clip(resize(img, shape, order=1, mode="reflect", anti_aliasing=True,
                          preserve_range=True), 0.0, 1.0)


def _resize_mask(mask: np.ndarray, shape: tuple) -> np.ndarray:
    """Downscale a mask by area coverage (>= half a pixel); a defect never vanishes."""
    if mask.shape == tuple(shape):
        return mask
    frac = _resize(mask.astype(np.float64), shape)
    out = frac >= 0.5
    if mask.any() and not out.any():  # thinner than half a target pixel: keep its trace
        out = frac >= 0.5 * frac.max()
    return out


def _target_shape(size, first_path: Path) -> tuple:
    if size is None:
        return _read_gray(first_path).shape
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        shape = (int(size), int(size))
    else:
        try:
            shape = tuple(int(s) for s in size)
        except (TypeError, ValueError):
            shape = ()
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"size must be an int >= 8, a pair (height, width) or None (keep the "
                         f"files' size), got {size!r}.")
    return shape


def _find_mask(gt_dir: Path, defect: str, image: Path):
    for ext in IMAGE_EXTENSIONS:
        for candidate in (gt_dir / defect / f"{image.stem}_mask{ext}",
                          gt_dir / defect / f"{image.stem}_mask{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def load_mvtec_folder(root, category: str, size=128, n_train: int | None = None,
                      seed: int = 0, verbose: bool = True, source: str = "file",
                      detail: str | None = None) -> MVTecData:
    """Load one category of a folder in MVTec AD layout (real MVTec, built textures or yours).

    Images are read one at a time, converted to grayscale float32 in [0, 1] and resized at
    once (scikit-image, with anti-aliasing), so only the resized set is held in memory.
    Masks are resized by area (a target pixel is defective when at least half of it was).

    Parameters
    ----------
    root : str or Path
        The folder holding ``<category>/train/good``, ``<category>/test/...`` and
        ``<category>/ground_truth/...`` (see the module docstring).
    category : str
        Sub-folder to read, e.g. ``"carpet"`` or ``"brick"``.
    size : int, (int, int) or None
        Output size: 128 -> 128 x 128; ``(h, w)``; ``None`` keeps the files' size (they must
        then all have the same size).
    n_train : int, optional
        Use a seeded random subset of this many training images (default: all).
    seed : int
        Seed of that subset.
    verbose : bool
        Print one line saying what was loaded.
    source, detail : str
        Recorded in the result (set by :func:`load_textures` and :func:`load_mvtec`).

    Returns
    -------
    MVTecData

    Raises
    ------
    DataError
        Missing folders, a category without training or test images, a defective test image
        without its ``<name>_mask.png``, a mask whose size differs from its image's, or a file
        that cannot be read.

    Taught in notebook 05.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Dataset folder {root} not found. Expected the MVTec AD layout "
                        f"<root>/<category>/train/good/*.png; get it with download_mvtec() or "
                        f"build_texture_dataset().")
    cat_dir = root / str(category)
    if not cat_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
        raise DataError(f"Category '{category}' not found in {root}; categories there: "
                        f"{found or 'none'}.")
    train_dir, test_dir, gt_dir = cat_dir / "train" / "good", cat_dir / "test", \
        cat_dir / "ground_truth"
    for folder in (train_dir, test_dir):
        if not folder.is_dir():
            raise DataError(f"{folder} is missing: a category needs train/good/ (defect-free "
                            f"training images) and test/<good|defect type>/.")
    train_files = _list_images(train_dir)
    if not train_files:
        raise DataError(f"{train_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    test_items = []  # (path, defect type), good first, then defect types alphabetically
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
    if n_train is not None:
        if not isinstance(n_train, (int, np.integer)) or n_train < 1:
            raise ValueError(f"n_train must be a positive integer or None, got {n_train!r}.")
        if n_train < len(train_files):
            keep = np.sort(np.random.default_rng(seed).permutation(len(train_files))[:n_train])
            train_files = [train_files[i] for i in keep]

    shape = _target_shape(size, train_files[0])
    native = None if size is not None else shape

    def load(path):
        img = _read_gray(path)
        if native is not None and img.shape != native:
            raise DataError(f"{path} is {img.shape[0]}x{img.shape[1]} but other images are "
                            f"{native[0]}x{native[1]}; pass size=... to resize them.")
        return img, _resize(img, shape).astype(np.float32)

    x_train = np.empty((len(train_files),) + shape, np.float32)
    for i, path in enumerate(train_files):
        x_train[i] = load(path)[1]
    x_test = np.empty((len(test_items),) + shape, np.float32)
    masks = np.zeros((len(test_items),) + shape, np.uint8)
    for i, ((path, _), mask_path) in enumerate(zip(test_items, mask_files)):
        img, x_test[i] = load(path)
        if mask_path is not None:
            mask = _read_mask(mask_path)
            if mask.shape != img.shape:
                raise DataError(f"Mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} but its "
                                f"image {path} is {img.shape[0]}x{img.shape[1]}; a mask must "
                                f"have its image's size.")
            masks[i] = _resize_mask(mask, shape)
    y_test = np.array([int(d != "good") for _, d in test_items], dtype=np.int64)
    data = MVTecData(category=str(category), x_train=x_train, x_test=x_test, y_test=y_test,
                     masks_test=masks, defect_test=[d for _, d in test_items],
                     train_paths=[str(p) for p in train_files],
                     test_paths=[str(p) for p, _ in test_items], source=source,
                     detail=detail or f"MVTec-layout folder {root}")
    if verbose:
        print(data)
    return data


# --------------------------------------------------------------------------- download
def _archive_name(name: str) -> str:
    if name not in MVTEC_AD_DOWNLOADS:
        raise ValueError(f"Unknown MVTec AD download {name!r}: expected 'all' or one of "
                         f"{list(MVTEC_AD_CATEGORIES)}.")
    return MVTEC_AD_DOWNLOADS[name]["url"].rsplit("/", 1)[-1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, dest: Path, progress: bool = True) -> None:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial ``.part`` file.

    A partial file is continued with an HTTP Range request (started again if the server
    ignores it).  ``dest`` appears only once the transfer is complete (atomic rename).
    """
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "course_lib (autoencoder course)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=CONNECT_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to fetch: the .part file is complete
            os.replace(part, dest)
            return
        raise
    with response:
        status = getattr(response, "status", None) or response.getcode()
        if start and status != 206:  # the server ignored the Range request: start again
            start = 0
        length = response.headers.get("Content-Length")
        total = int(length) + start if length and length.isdigit() else None
        with open(part, "ab" if start else "wb") as f, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True,
                     desc=dest.name, disable=not progress) as bar:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size != total:
        raise OSError(f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                      f"run again to resume.")
    os.replace(part, dest)


def _verified_archive(name: str, archive: Path, progress: bool) -> Path:
    """Return the archive, downloading (resumably) and checking its sha256 where known."""
    info = MVTEC_AD_DOWNLOADS[name]
    expected = info.get("sha256")
    if not archive.is_file():
        archive.parent.mkdir(parents=True, exist_ok=True)
        try:
            _download(info["url"], archive, progress=progress)
        except Exception as exc:  # noqa: BLE001 - network, HTTP, disk: all need the same advice
            part = archive.with_name(archive.name + ".part")
            resume = (f"Run again to resume the partial download ({part.stat().st_size} bytes "
                      f"in {part}), or: ") if part.is_file() else ""
            raise DataError(f"Could not download MVTec AD '{name}' from {info['url']} "
                            f"({type(exc).__name__}: {exc}). {resume}"
                            + manual_download_message(name, archive.parent.parent)) from exc
    digest = _sha256(archive)
    if expected and digest != expected.lower():
        bad = archive.with_name(archive.name + ".corrupt")
        os.replace(archive, bad)
        raise DataError(f"{archive} has sha256 {digest[:16]}..., expected {expected[:16]}... "
                        f"(corrupted or a different release); moved it to {bad}. Run again to "
                        f"download it afresh. " + manual_download_message(name,
                                                                          archive.parent.parent))
    if not expected:
        print(f"sha256 of {archive.name}: {digest} (no published checksum to compare with; "
              f"pin it in MVTEC_AD_DOWNLOADS)")
    return archive


def download_mvtec(category: str = "all", root=None, force: bool = False,
                   progress: bool = True, keep_archive: bool = False) -> Path:
    """Download and safely extract MVTec AD (all 15 categories, or one) from MVTec's servers.

    The archive goes to ``<root>/.downloads`` (a partial download is resumed on the next
    call), is checked against its published sha256 where :data:`MVTEC_AD_DOWNLOADS` has one,
    and is unpacked by :func:`extract_mvtec_archive` (a category folder appears only once it
    is complete).  The data are licensed CC BY-NC-SA 4.0 by MVTec Software GmbH: keep them out
    of the repository and cite Bergmann et al. (CVPR 2019).

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
        the archive is unsafe or corrupted, or it lacks the category.

    Taught in notebook 05.
    """
    filename = _archive_name(category)
    root = Path(root) if root is not None else mvtec_dir()
    wanted = MVTEC_AD_CATEGORIES if category == "all" else (category,)
    if not force and all((root / c / "train" / "good").is_dir() for c in wanted):
        return root
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


# --------------------------------------------------------------------------- safe extraction
class UnsafeArchiveError(DataError):
    """An archive member would land outside the target folder, or is a link or device."""


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _checked_members(tar: tarfile.TarFile, dest: Path):
    """Yield the members of ``tar`` one by one, refusing any that could escape ``dest``."""
    dest_real = os.path.realpath(dest)
    for member in tar:
        name = member.name
        parts = re.split(r"[\\/]+", name)
        why = None
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or os.path.isabs(name):
            why = "has an absolute path"
        elif ".." in parts:
            why = "contains '..'"
        elif not _inside(os.path.realpath(os.path.join(dest_real, name)), dest_real):
            why = "would be written outside the target folder"
        elif member.issym() or member.islnk():
            why = f"is a link (to {member.linkname!r}); image archives need none"
        elif not (member.isfile() or member.isdir()):
            why = "is a device, pipe or other special file"
        if why:
            raise UnsafeArchiveError(f"Refusing to extract {tar.name}: member {name!r} {why}. "
                                     f"The archive is damaged or not the official one.")
        yield member


def _category_folders(base: Path) -> list:
    found = [p for p in sorted(base.iterdir()) if p.is_dir() and (p / "train").is_dir()]
    if not found:  # one wrapping folder, e.g. mvtec_anomaly_detection/<category>/...
        subdirs = [p for p in base.iterdir() if p.is_dir()]
        if len(subdirs) == 1:
            return _category_folders(subdirs[0])
    return found


def extract_mvtec_archive(archive, root=None, replace: bool = False) -> list:
    """Safely unpack an MVTec AD ``.tar.xz`` (or any tar in MVTec layout) into ``root``.

    Every member is checked before it is written: absolute paths, ``..``, links and special
    files stop the extraction (also Python's ``filter="data"`` applies where available).
    Everything is unpacked into a temporary folder inside ``root`` first; each complete
    category folder is then moved into place with one rename, so an interrupted extraction
    never leaves a half-filled category behind.

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

    Taught in notebook 05.
    """
    archive = Path(archive)
    root = Path(root) if root is not None else mvtec_dir()
    if not archive.is_file():
        raise DataError(f"Archive {archive} not found.")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _checked_members(tar, tmp)
                if hasattr(tarfile, "data_filter"):  # Python 3.12+, 3.11.4+, 3.10.12+
                    tar.extractall(tmp, members=members, filter="data")
                else:
                    tar.extractall(tmp, members=members)
        except UnsafeArchiveError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError,
                zlib.error) as exc:
            raise DataError(f"Could not unpack {archive} ({type(exc).__name__}: {exc}); it is "
                            f"incomplete or corrupted. Delete it and download it again.") from exc
        folders = _category_folders(tmp)
        if not folders:
            raise DataError(f"{archive} holds no folder in MVTec layout "
                            f"(<category>/train/good/...).")
        placed = []
        for folder in folders:
            target = root / folder.name
            if target.exists():
                if not replace:
                    continue
                trash = root / f".old-{folder.name}-{uuid.uuid4().hex[:8]}"
                os.replace(target, trash)
                os.replace(folder, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(folder, target)
            placed.append(folder.name)
        for extra in folders[0].parent.iterdir():  # licence and readme files next to them
            if extra.is_file() and not (root / extra.name).exists():
                os.replace(extra, root / extra.name)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_mvtec(category: str, size=128, root=None, download: bool = True,
               n_train: int | None = None, seed: int = 0, verbose: bool = True) -> MVTecData:
    """Load one category of the real MVTec AD, downloading it first if needed.

    Parameters
    ----------
    category : str
        One of :data:`MVTEC_AD_CATEGORIES`, e.g. ``"carpet"``.
    size, n_train, seed, verbose
        As in :func:`load_mvtec_folder`.
    root : str or Path, optional
        Folder of the dataset (default :func:`mvtec_dir`).
    download : bool
        Download the category's archive when it is missing (else raise ``DataError``).
        Never done when ``COURSE_DATA=offline`` (see :func:`course_lib.config.data_mode`).

    Taught in notebook 05.
    """
    if category not in MVTEC_AD_CATEGORIES:
        raise ValueError(f"Unknown MVTec AD category {category!r}: expected one of "
                         f"{list(MVTEC_AD_CATEGORIES)}.")
    root = Path(root) if root is not None else mvtec_dir()
    if not (root / category / "train" / "good").is_dir():
        if not download or data_mode() == "offline":
            why = " (COURSE_DATA=offline: no download)" if download else ""
            raise DataError(f"MVTec AD '{category}' not found in {root}{why}. "
                            + manual_download_message(category, root))
        download_mvtec(category, root)
    return load_mvtec_folder(root, category, size=size, n_train=n_train, seed=seed,
                             verbose=verbose, source="online",
                             detail=f"real MVTec AD ({MVTEC_AD_LICENCE}, MVTec Software GmbH) "
                                    f"in {root}")


# --------------------------------------------------------------------------- embedded textures
def _texture_photo(name: str) -> np.ndarray:
    import skimage.data

    photo = np.asarray(getattr(skimage.data, name)(), dtype=np.float64) / 255.0
    if photo.shape != (_PHOTO_SIZE, _PHOTO_SIZE):
        raise DataError(f"skimage.data.{name}() is {photo.shape}, expected "
                        f"{_PHOTO_SIZE}x{_PHOTO_SIZE}; this scikit-image is not supported.")
    return photo


def _crop(photo, rows, crop, rng):
    """A random crop from photo rows [rows[0], rows[1]) with a random flip / 90-degree turn."""
    r = int(rng.integers(rows[0], rows[1] - crop + 1))
    c = int(rng.integers(0, _PHOTO_SIZE - crop + 1))
    patch = np.rot90(photo[r:r + crop, c:c + crop], k=int(rng.integers(4)))
    return patch[:, ::-1] if rng.integers(2) else patch


def _curve_distance(points, shape) -> np.ndarray:
    """Distance of every pixel to a polyline given by dense (row, col) points."""
    from scipy import ndimage

    raster = np.zeros(shape, bool)
    rr = np.clip(np.round(points[:, 0]).astype(int), 0, shape[0] - 1)
    cc = np.clip(np.round(points[:, 1]).astype(int), 0, shape[1] - 1)
    raster[rr, cc] = True
    return ndimage.distance_transform_edt(~raster)


def _dense(vertices, step=0.5) -> np.ndarray:
    out = [vertices[:1]]
    for a, b in zip(vertices[:-1], vertices[1:]):
        n = max(2, int(np.ceil(np.hypot(*(b - a)) / step)))
        out.append(a + (b - a) * np.linspace(0, 1, n)[1:, None])
    return np.concatenate(out)


def _blob(shape, center, radius, rng, wobble=0.25) -> np.ndarray:
    """Signed distance (pixels, > 0 inside) to an irregular closed outline around ``center``."""
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    dy, dx = yy - center[0], xx - center[1]
    theta = np.arctan2(dy, dx)
    r = np.ones(shape)
    for k in (2, 3, 5):
        r += rng.uniform(0, wobble / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return radius * r - np.hypot(dy, dx)


def _apply(img, alpha, target):
    """Blend ``target`` into ``img`` by ``alpha``; the mask is every pixel changed (alpha > 0)."""
    alpha = np.where(alpha >= 0.2, np.clip(alpha, 0.0, 1.0), 0.0)
    return img * (1 - alpha) + np.clip(target, 0.0, 1.0) * alpha, alpha > 0


def _defect(kind: str, img: np.ndarray, rng) -> tuple:
    """Draw one synthetic defect of ``kind``; returns (new image, exact bool mask)."""
    h, w = img.shape
    u = h / 128.0  # scale of widths and radii
    center = rng.uniform(0.2, 0.8, 2) * (h, w)
    if kind == "scratch":  # thin bright curved line (light caught in a groove)
        angle = rng.uniform(0, np.pi)
        half = rng.uniform(0.2, 0.35) * h * np.array([np.sin(angle), np.cos(angle)])
        bend = rng.normal(0, 0.08 * h, 2)
        t = np.linspace(0, 1, 200)[:, None]
        a, b, ctrl = center - half, center + half, center + bend
        pts = (1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t ** 2 * b
        dist = _curve_distance(pts, img.shape)
        alpha = np.clip(1.0 - (dist - rng.uniform(0.4, 1.0) * u), 0.0, 1.0)
        return _apply(img, alpha, np.clip(img + rng.uniform(0.35, 0.55), 0, 1))
    if kind == "crack":  # dark jagged branching line
        def walk(start, direction, n):
            pts = [np.asarray(start, float)]
            for _ in range(n):
                direction += rng.normal(0, 0.3)
                pts.append(pts[-1] + 2.5 * u * np.array([np.sin(direction), np.cos(direction)]))
            return np.array(pts)
        direction = rng.uniform(0, 2 * np.pi)
        main = walk(center, direction, int(rng.integers(14, 24)))
        branch = walk(main[len(main) // 2], direction + rng.choice([-1, 1]) * 0.9,
                      int(rng.integers(5, 10)))
        dist = np.minimum(_curve_distance(_dense(main), img.shape),
                          _curve_distance(_dense(branch), img.shape))
        alpha = np.clip(1.0 - (dist - 0.6 * u), 0.0, 1.0)
        return _apply(img, alpha, img * rng.uniform(0.1, 0.3))
    if kind == "hole":  # dark irregular pit, shaded from one side
        inside = _blob(img.shape, center, rng.uniform(0.06, 0.12) * h, rng)
        alpha = np.clip(inside + 1.0, 0.0, 1.0)
        yy = np.mgrid[:h, :w][0]
        shade = 0.06 + 0.12 * np.clip((yy - center[0]) / (0.15 * h) + 0.5, 0, 1)
        return _apply(img, alpha, shade + rng.normal(0, 0.015, img.shape))
    if kind == "stain":  # darker blotch that keeps the texture, soft edge
        inside = _blob(img.shape, center, rng.uniform(0.1, 0.2) * h, rng, wobble=0.4)
        alpha = np.clip(inside / (3.0 * u), 0.0, 1.0) * rng.uniform(0.7, 0.9)
        return _apply(img, alpha, img * rng.uniform(0.35, 0.55))
    if kind == "particle":  # a few small foreign bits, bright or dark
        out, mask = img, np.zeros(img.shape, bool)
        value = rng.choice([rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0)])
        for _ in range(int(rng.integers(1, 4))):
            spot = center + rng.normal(0, 0.08 * h, 2)
            inside = _blob(img.shape, spot, rng.uniform(1.5, 3.5) * u, rng)
            out, m = _apply(out, np.clip(inside + 1.0, 0, 1),
                            value + rng.normal(0, 0.02, img.shape))
            mask |= m
        return out, mask
    if kind == "contrast":  # rectangular patch with washed-out or exaggerated contrast
        ph, pw = (rng.uniform(0.2, 0.35, 2) * (h, w)).astype(int)
        r0 = int(np.clip(center[0] - ph / 2, 0, h - ph))
        c0 = int(np.clip(center[1] - pw / 2, 0, w - pw))
        alpha = np.zeros(img.shape)
        alpha[r0:r0 + ph, c0:c0 + pw] = 1.0
        mean = img[r0:r0 + ph, c0:c0 + pw].mean()
        gain = rng.choice([rng.uniform(0.15, 0.4), rng.uniform(1.8, 2.4)])
        shift = rng.choice([-1, 1]) * rng.uniform(0.1, 0.2)
        return _apply(img, alpha, np.clip(mean + (img - mean) * gain + shift, 0, 1))
    raise ValueError(f"Unknown defect kind {kind!r}: expected one of {DEFECT_KINDS}.")


def _check_count(name, value, minimum=0):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _texture_settings(size, n_train, n_test_good, n_test_defect, seed, textures, crop_size):
    size = _check_count("size", size, 16)
    crop = (128 if size <= 128 else size) if crop_size is None else crop_size
    crop = _check_count("crop_size", crop, 16)
    if crop > _PHOTO_SIZE - _SPLIT_ROW:
        raise ValueError(f"crop_size (and size, when crop_size is None) must be at most "
                         f"{_PHOTO_SIZE - _SPLIT_ROW} (the test part of the photo), got {crop}.")
    textures = tuple(textures)
    unknown = [t for t in textures if t not in TEXTURES]
    if unknown or not textures:
        raise ValueError(f"textures must be a non-empty subset of {TEXTURES}, got {textures}.")
    return {"version": TEXTURE_VERSION, "size": size, "crop_size": crop,
            "n_train": _check_count("n_train", n_train, 1),
            "n_test_good": _check_count("n_test_good", n_test_good, 0),
            "n_test_defect": _check_count("n_test_defect", n_test_defect, 0),
            "seed": _check_count("seed", seed, 0), "textures": list(textures)}


def default_texture_root(settings: dict) -> Path:
    """Cache folder of a texture dataset, named after its settings."""
    key = json.dumps(settings, sort_keys=True).encode()
    return cache_dir() / (f"textures-{settings['size']}px-seed{settings['seed']}-"
                          f"{hashlib.sha256(key).hexdigest()[:8]}")


def _write_png(path: Path, img: np.ndarray) -> None:
    import skimage.io

    skimage.io.imsave(path, img, check_contrast=False)


def _build_one_texture(folder: Path, name: str, index: int, s: dict) -> dict:
    rng = np.random.default_rng([s["seed"], index])
    photo = _texture_photo(name)
    size, crop = s["size"], s["crop_size"]

    def patch(rows):
        p = _crop(photo, rows, crop, rng)
        return _resize(np.ascontiguousarray(p), (size, size))

    def to_uint8(img):
        return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)

    counts = {}
    train = folder / name / "train" / "good"
    train.mkdir(parents=True)
    for i in range(s["n_train"]):
        _write_png(train / f"{i:03d}.png", to_uint8(patch((0, _SPLIT_ROW))))
    test_rows = (_SPLIT_ROW, _PHOTO_SIZE)
    good = folder / name / "test" / "good"
    good.mkdir(parents=True)
    for i in range(s["n_test_good"]):
        _write_png(good / f"{i:03d}.png", to_uint8(patch(test_rows)))
    counts["good"] = s["n_test_good"]
    for k, kind in enumerate(DEFECT_KINDS):  # defects shared out round-robin
        n = s["n_test_defect"] // len(DEFECT_KINDS) + (k < s["n_test_defect"] % len(DEFECT_KINDS))
        if n == 0:
            continue
        test_dir = folder / name / "test" / kind
        gt_dir = folder / name / "ground_truth" / kind
        test_dir.mkdir(parents=True)
        gt_dir.mkdir(parents=True)
        for i in range(n):
            img, mask = _defect(kind, patch(test_rows), rng)
            _write_png(test_dir / f"{i:03d}.png", to_uint8(img))
            _write_png(gt_dir / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
        counts[kind] = n
    return counts


def build_texture_dataset(root=None, size: int = 128, n_train: int = 200,
                          n_test_good: int = 30, n_test_defect: int = 60, seed: int = 0,
                          textures=TEXTURES, crop_size: int | None = None,
                          overwrite: bool = False) -> Path:
    """Build (once) an offline MVTec-style dataset from scikit-image's CC0 texture photos.

    For each texture (``brick``, ``grass``, ``gravel``: real 512 x 512 grayscale photographs
    bundled with scikit-image, public domain CC0) the training images are random crops from
    the top 320 rows of the photo and the test images random crops from the bottom 192 rows,
    so no test pixel was ever seen in training; every crop is randomly flipped / turned by 90
    degrees.  Defective test images get one synthetic defect each, shared out over
    :data:`DEFECT_KINDS` (scratch, hole, stain, crack, particle, contrast), and an exact mask
    ``ground_truth/<kind>/<name>_mask.png`` of every pixel the defect changed.

    The same settings always give byte-identical files.  The folder is built in a temporary
    folder and renamed into place, so it is either complete or absent; a later call with the
    same settings finds it and returns at once.

    Parameters
    ----------
    root : str or Path, optional
        Dataset folder (it will hold ``<texture>/train``, ``<texture>/test``, ...).  Default:
        a folder under :func:`cache_dir` named after the settings.
    size : int
        Side of the square images in pixels (16 to 192).
    n_train, n_test_good, n_test_defect : int
        Images per texture: training, good test and defective test images.
    seed : int
        Seed of crops and defects.
    textures : tuple of str
        Which of :data:`TEXTURES` to build.
    crop_size : int, optional
        Side of the crops taken from the photo before resizing to ``size`` (default 128, or
        ``size`` when larger): with ``size=64`` the images show the same texture scale as
        at 128, at half the resolution.
    overwrite : bool
        Rebuild even if ``root`` exists.

    Returns
    -------
    Path
        The dataset folder, to pass to :func:`load_mvtec_folder`.

    Taught in notebook 05.
    """
    s = _texture_settings(size, n_train, n_test_good, n_test_defect, seed, textures,
                          crop_size)
    root = Path(root) if root is not None else default_texture_root(s)
    manifest = root / "manifest.json"
    if root.exists() and not overwrite:
        try:
            found = json.loads(manifest.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            found = None
        if found == s:
            return root
        raise DataError(f"{root} already exists but is not a texture dataset with these "
                        f"settings ({'settings ' + str(found) if found else 'no manifest.json'})."
                        f" Choose another root, or pass overwrite=True to rebuild it.")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        counts = {name: _build_one_texture(tmp, name, TEXTURES.index(name), s)
                  for name in s["textures"]}
        (tmp / "manifest.json").write_text(json.dumps({
            "settings": s, "images_per_texture": counts,
            "source": "scikit-image texture photographs skimage.data.brick(), grass(), "
                      "gravel() (CC0); synthetic defects by course_lib.mvtec"},
            indent=1, sort_keys=True) + "\n")
        if root.exists():  # overwrite: swap the old folder out, then delete it
            trash = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(root, trash)
            os.replace(tmp, root)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            try:
                os.replace(tmp, root)
            except OSError:  # built meanwhile by another process: keep theirs if it matches
                if not manifest.is_file():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def load_textures(texture: str = "brick", size: int = 128, root=None, n_train: int = 200,
                  n_test_good: int = 30, n_test_defect: int = 60, seed: int = 0,
                  verbose: bool = True) -> MVTecData:
    """Load one embedded texture (built on first use by :func:`build_texture_dataset`).

    The offline stand-in for a real MVTec AD texture category: same layout, same loader.
    Parameters as in :func:`build_texture_dataset` (only ``texture`` is built) and
    :func:`load_mvtec_folder`.  Taught in notebook 05.
    """
    if texture not in TEXTURES:
        raise ValueError(f"Unknown texture {texture!r}: expected one of {TEXTURES}.")
    folder = build_texture_dataset(root, size=size, n_train=n_train, n_test_good=n_test_good,
                                   n_test_defect=n_test_defect, seed=seed, textures=(texture,))
    return load_mvtec_folder(folder, texture, size=size, verbose=verbose, source="embedded",
                             detail=f"scikit-image's CC0 '{texture}' photo with synthetic "
                                    f"defects, built offline in {folder}")
