"""The offline MVTec-style texture set: real CC0 photographs with synthetic defects.

A small synthetic set that needs no download: :func:`build_texture_dataset` cuts training and
test crops from scikit-image's three real texture photographs (``brick``, ``grass``,
``gravel``: 512 x 512 grayscale, public domain CC0), paints one synthetic defect into each
defective test image (scratches, holes, stains, cracks, foreign particles, contrast patches)
and writes an exact mask of every pixel it changed, in MVTec AD layout, so
:func:`course_lib.data.mvtec.load_mvtec_folder` reads it like the real thing.
:func:`load_textures` builds (once) and loads one texture.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, check_image_list, check_positive_int, quote
from course_lib.config import Profile, cache_dir, get_profile
from course_lib.data.common import CacheItem, path_size
from course_lib.data.mvtec import MVTecData, load_mvtec_folder
from course_lib.download import sha256_file

TEXTURES = ("brick", "grass", "gravel")
DEFECT_KINDS = ("scratch", "hole", "stain", "crack", "particle", "contrast")
TEXTURE_VERSION = 1  # bump when the generator changes, so caches are rebuilt
_SPLIT_ROW = 320     # photo rows [0, 320) give training crops, rows [320, 512) test crops
_PHOTO_SIZE = 512


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


def synthetic_defects(images, kinds=("crack",), seed: int = 0, window: int = 128) -> tuple:
    """One damaged copy of each grey image (a list of 2-D arrays in [0, 1], any sizes): a
    synthetic defect of ``kinds[i % len(kinds)]`` (:data:`DEFECT_KINDS`, the painter of the
    texture set) drawn in a seeded random ``window`` x ``window`` square of image ``i``.

    Returns ``(images, masks)``: float32 images, exact bool masks.  For choosing settings on
    *validation* images (good images never trained on) without looking at any test image.
    """
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    bad = [k for k in kinds if k not in DEFECT_KINDS]
    if bad or not kinds:
        raise DataError(f"kinds must be some of {DEFECT_KINDS}, got {quote(list(kinds))}.")
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for i, img in enumerate(check_image_list(images, "images", unit_range=True)):
        h, w = img.shape[:2]
        wh, ww = min(window, h), min(window, w)
        r, c = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
        crop, m = _defect(kinds[i % len(kinds)], img[r:r + wh, c:c + ww].astype(np.float64),
                          rng)
        new, mask = img.astype(np.float32).copy(), np.zeros((h, w), bool)
        new[r:r + wh, c:c + ww], mask[r:r + wh, c:c + ww] = crop, m
        out.append(new)
        masks.append(mask)
    return out, masks


def _texture_settings(size, n_train, n_test_good, n_test_defect, seed, textures, crop_size):
    size = check_positive_int("size", size, 16)
    crop = (128 if size <= 128 else size) if crop_size is None else crop_size
    crop = check_positive_int("crop_size", crop, 16)
    if crop > _PHOTO_SIZE - _SPLIT_ROW:
        raise DataError(f"crop_size (and size, when crop_size is None) must be at most "
                        f"{_PHOTO_SIZE - _SPLIT_ROW} (the test part of the photo), got {crop}.")
    textures = tuple(textures)
    unknown = [t for t in textures if t not in TEXTURES]
    if unknown or not textures:
        raise DataError(f"textures must be a non-empty subset of {TEXTURES}, got "
                        f"{quote(textures)}.")
    return {"version": TEXTURE_VERSION, "size": size, "crop_size": crop,
            "n_train": check_positive_int("n_train", n_train, 1),
            "n_test_good": check_positive_int("n_test_good", n_test_good, 0),
            "n_test_defect": check_positive_int("n_test_defect", n_test_defect, 0),
            "seed": check_positive_int("seed", seed, 0), "textures": list(textures)}


def default_texture_root(settings: dict) -> Path:
    """Cache folder of a texture dataset, named after its settings."""
    key = json.dumps(settings, sort_keys=True).encode()
    return cache_dir() / (f"textures-{settings['size']}px-seed{settings['seed']}-"
                          f"{hashlib.sha256(key).hexdigest()[:8]}")


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """A square crop resized to ``size`` x ``size`` (bilinear, anti-aliased)."""
    if img.shape == (size, size):
        return img
    from skimage.transform import resize

    return np.clip(resize(img, (size, size), order=1, mode="reflect", anti_aliasing=True,
                          preserve_range=True), 0.0, 1.0)


def _write_png(path: Path, img: np.ndarray) -> None:
    import skimage.io

    skimage.io.imsave(path, img, check_contrast=False)


def _build_one_texture(folder: Path, name: str, index: int, s: dict) -> dict:
    rng = np.random.default_rng([s["seed"], index])
    photo = _texture_photo(name)
    size, crop = s["size"], s["crop_size"]

    def patch(rows):
        p = _crop(photo, rows, crop, rng)
        return _resize(np.ascontiguousarray(p), size)

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
    folder and renamed into place, so it is either complete or absent; its ``manifest.json``
    lists the sha256 of every file.  A later call with the same settings finds it, checks
    every file (:func:`texture_damage`: none missing, changed or added) and returns it; a
    damaged set is rebuilt when it is in the cache (``root=None``), else refused.

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

    Used by :func:`load_textures` (built on first use) and ``python -m course_lib.data
    prefetch --textures``.
    """
    s = _texture_settings(size, n_train, n_test_good, n_test_defect, seed, textures,
                          crop_size)
    in_cache = root is None
    root = Path(root) if root is not None else default_texture_root(s)
    manifest = root / "manifest.json"
    if root.exists() and not overwrite:
        found = _manifest(root).get("settings")
        if found == s:
            damage = texture_damage(root)
            if not damage:
                return root
            if not in_cache:
                raise DataError(f"The texture set {root} fails its check: {damage}. Pass "
                                f"overwrite=True to rebuild it (the same settings give the "
                                f"same files).")
            print(f"Note: the cached texture set {root} fails its check ({damage}); "
                  f"rebuilding it.", file=sys.stderr, flush=True)
        else:
            raise DataError(f"{root} already exists but is not a texture dataset with these "
                            f"settings ({'settings ' + str(found) if found else 'no manifest.json'}"
                            f"). Choose another root, or pass overwrite=True to rebuild it.")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        counts = {name: _build_one_texture(tmp, name, TEXTURES.index(name), s)
                  for name in s["textures"]}
        (tmp / "manifest.json").write_text(json.dumps({
            "settings": s, "images_per_texture": counts, "files": _file_hashes(tmp),
            "source": "scikit-image texture photographs skimage.data.brick(), grass(), "
                      "gravel() (CC0); synthetic defects by course_lib.data.textures"},
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


def _file_hashes(root: Path) -> dict:
    """``{relative path: sha256}`` of every file below ``root`` but ``manifest.json``."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def _manifest(root: Path) -> dict:
    """The folder's ``manifest.json`` as a dict ({} if missing or unreadable)."""
    try:
        found = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def texture_damage(root) -> str:
    """What is wrong with the files of a built texture set ("" if nothing): every file listed
    in its ``manifest.json`` must be there with its sha256, and no other file may be (an
    extra image would be loaded as if it belonged).  A set built before the manifest listed
    its files cannot be checked, and counts as damaged (rebuilding takes seconds)."""
    root = Path(root)
    listed = _manifest(root).get("files")
    if not isinstance(listed, dict) or not listed:
        return "its manifest.json lists no files (built by an older course_lib)"
    found = _file_hashes(root)
    missing = sorted(set(listed) - set(found))
    changed = sorted(n for n in set(listed) & set(found) if found[n] != listed[n])
    extra = sorted(set(found) - set(listed))
    problems = [f"{len(names)} file(s) {what}, e.g. {names[0]}"
                for names, what in ((missing, "missing"), (changed, "changed"),
                                    (extra, "not built by it")) if names]
    return "; ".join(problems)


def texture_settings(profile: Profile | str | None = None) -> dict:
    """The texture-set sizes of a profile: ``size``, ``n_train``, ``n_test_good``,
    ``n_test_defect`` (``profile.texture_*``) and ``seed`` 0, as keyword arguments of
    :func:`build_texture_dataset` and :func:`load_textures`."""
    prof = get_profile(profile)
    return {"size": prof.texture_size, "n_train": prof.texture_n_train,
            "n_test_good": prof.texture_n_test_good, "n_test_defect": prof.texture_n_test_defect,
            "seed": 0}


def load_textures(texture: str = "brick", profile: Profile | str | None = None, root=None,
                  verbose: bool = True, **sizes) -> MVTecData:
    """Load one embedded texture (built on first use by :func:`build_texture_dataset`).

    The offline stand-in for a real MVTec AD texture category: same layout, same loader.

    Parameters
    ----------
    texture : {"brick", "grass", "gravel"}
    profile : Profile or str, optional
        Image size and counts come from it (:func:`texture_settings`; default: the active
        profile).
    root : str or Path, optional
        Where to build it (default: a cache folder named after the settings).
    verbose : bool
        Print the ``Data source: ...`` line.
    **sizes
        Override any of ``size``, ``n_train``, ``n_test_good``, ``n_test_defect``, ``seed``.

    Used by the tests and by `python -m course_lib.data prefetch`; the notebooks use real
    images (a synthetic set teaches little that the real ones do not).
    """
    if texture not in TEXTURES:
        raise DataError(f"Unknown texture {quote(texture)}: expected one of {TEXTURES}.")
    settings = texture_settings(profile)
    unknown = sorted(set(sizes) - set(settings))
    if unknown:
        raise DataError(f"load_textures got unknown setting(s) {unknown}; expected some of "
                        f"{sorted(settings)}.")
    settings.update(sizes)
    folder = build_texture_dataset(root, textures=(texture,), **settings)
    return load_mvtec_folder(folder, texture, verbose=verbose,
                             source="embedded",
                             detail=f"scikit-image's CC0 '{texture}' photo with synthetic "
                                    f"defects, built offline in {folder}")


# --------------------------------------------------------------------------- cache status
def texture_cache_items(profile: Profile | str | None = None) -> list:
    """The texture sets of ``profile`` as :class:`CacheItem`: the manifest's settings, and
    every file against the sha256 the manifest lists (:func:`texture_damage`); no network."""
    prof = get_profile(profile)
    kw = texture_settings(prof)
    items = []
    for texture in TEXTURES:
        settings = _texture_settings(kw["size"], kw["n_train"], kw["n_test_good"],
                                     kw["n_test_defect"], kw["seed"], (texture,), None)
        root = default_texture_root(settings)
        name = f"Texture '{texture}' ({prof.name}, {settings['size']}px)"
        hint = ("python -m course_lib.data prefetch --textures (offline, a few seconds; "
                "else it is built on first use)")
        rebuild = ("python -m course_lib.data prefetch --textures rebuilds it (offline, a few "
                   "seconds; so does the next notebook that loads it)")
        if not root.is_dir():
            items.append(CacheItem(name, "built", "missing", root, hint=hint))
            continue
        if _manifest(root).get("settings") != settings:
            items.append(CacheItem(name, "built", "corrupted", root, path_size(root),
                                   detail="manifest.json missing or different",
                                   hint=f"Delete {root} and run python -m course_lib.data "
                                        f"prefetch --textures."))
            continue
        damage = texture_damage(root)
        items.append(CacheItem(name, "built", "corrupted" if damage else "OK", root,
                               path_size(root), detail=damage or "every file matches its sha256",
                               hint=rebuild if damage else ""))
    return items
