"""Rebuild data/mvtec_bottle/ from the MVTec AD bottle category (900 x 900 RGB originals).

Usage (from the repo root):
    python data/build_bottle_subset.py [PATH/TO/mvtec_bottle] [--check]

PATH holds ``bottle/`` in MVTec AD layout (default ``../shared/datasets/mvtec_bottle``).  Every
training image and every test image there, with the masks of the defective ones, is written to
``data/mvtec_bottle/bottle/`` under the same names, and MVTec's ``license.txt`` and
``readme.txt`` are copied beside them:

- images: converted to grey with the course's own formula (``skimage.color.rgb2gray``, as
  ``course_lib.data.image_files.read_gray`` reads a colour file), rounded to 8 bits, then resized to
  256 x 256 with Pillow's LANCZOS filter (integer arithmetic: the same pixels everywhere);
- masks: resized to 256 x 256 with LANCZOS, then thresholded at 128 (0/255);
- PNG files written without metadata at one fixed compression level, so the same Pillow and
  zlib give the same bytes; ``SHA256SUMS`` lists every file's sha256.

It also prints how colourful the photos are: the mean |pixel - its grey| (0-1 scale) over the
first 20 training images, the reason the subset is stored in grey.  With ``--check`` nothing is
written: the rebuilt files are compared with the shipped ones (bytes, else pixels).
"""
import hashlib
import io
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import rgb2gray

SIDE = 256          # the MVTec AD paper's image size for objects
MASK_THRESHOLD = 128
N_COLOUR_CHECK = 20
CATEGORY = "bottle"
OUT = Path(__file__).with_name("mvtec_bottle")
TEXT_FILES = ("license.txt", "readme.txt")


def grey_image(path: Path) -> Image.Image:
    """An RGB photo -> 8-bit grey (rgb2gray, rounded) -> SIDE x SIDE (LANCZOS)."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    grey = np.round(rgb2gray(rgb) * 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)


def small_mask(path: Path) -> Image.Image:
    """A 0/255 mask -> SIDE x SIDE (LANCZOS) -> 0/255 again (threshold 128)."""
    mask = Image.open(path).convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return mask.point(lambda v: 255 if v >= MASK_THRESHOLD else 0)


def png_bytes(img: Image.Image) -> bytes:
    """The PNG file of ``img``: no metadata, fixed compression, so the bytes repeat."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def colourfulness(paths) -> float:
    """Mean |channel - grey| over all pixels and channels of ``paths``, on a 0-1 scale."""
    diffs = []
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
        diffs.append(np.abs(rgb - rgb2gray(rgb)[..., None]).mean())
    return float(np.mean(diffs))


def planned_files(src: Path) -> dict:
    """``{relative name: function returning the bytes}`` for every file of the subset."""
    cat = src / CATEGORY
    plan = {}
    for path in sorted(cat.glob("t*/*/*.png")):      # train/good and test/<type>
        plan[path.relative_to(src).as_posix()] = lambda p=path: png_bytes(grey_image(p))
    for path in sorted((cat / "ground_truth").glob("*/*_mask.png")):
        plan[path.relative_to(src).as_posix()] = lambda p=path: png_bytes(small_mask(p))
    for name in TEXT_FILES:
        plan[f"{CATEGORY}/{name}"] = lambda p=cat / name: p.read_bytes()
    return plan


def check(plan: dict) -> int:
    """Compare the rebuilt files with the shipped ones; return the number that differ."""
    bad = 0
    for name, make in plan.items():
        new, old = make(), (OUT / name).read_bytes()
        if new == old:
            continue
        same_pixels = name.endswith(".png") and np.array_equal(
            np.asarray(Image.open(io.BytesIO(new))), np.asarray(Image.open(io.BytesIO(old))))
        print(f"{name}: {'same pixels, other bytes (zlib?)' if same_pixels else 'DIFFERS'}")
        bad += not same_pixels
    return bad


def main(src: str, check_only: bool = False) -> int:
    src = Path(src)
    counts = {f"{d.parent.name}/{d.name}": len(list(d.glob("*.png")))
              for d in sorted((src / CATEGORY).glob("t*/*"))}
    assert counts == {"test/broken_large": 10, "test/broken_small": 11,
                      "test/contamination": 11, "test/good": 10, "train/good": 209}, counts
    plan = planned_files(src)
    train = sorted((src / CATEGORY / "train" / "good").glob("*.png"))[:N_COLOUR_CHECK]
    print(f"mean |pixel - its grey| over {len(train)} training images: "
          f"{colourfulness(train):.4f} (0-1 scale)")
    if check_only:
        bad = check(plan)
        print(f"{len(plan) - bad} of {len(plan)} files match" + (f", {bad} differ" if bad else ""))
        return 1 if bad else 0
    if OUT.exists():
        shutil.rmtree(OUT)
    sums = []
    for name, make in plan.items():
        data = make()
        (OUT / name).parent.mkdir(parents=True, exist_ok=True)
        (OUT / name).write_bytes(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    for name in plan:  # every defective image keeps a visible defect after resizing
        if "/ground_truth/" in name:
            assert np.asarray(Image.open(OUT / name)).any(), f"{name} is empty at {SIDE} px"
    (OUT / "SHA256SUMS").write_text("".join(sums), encoding="utf-8")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    digest = hashlib.sha256((OUT / "SHA256SUMS").read_bytes()).hexdigest()
    print(f"wrote {len(plan)} files to {OUT} ({total / 1e6:.2f} MB); "
          f"sha256 of SHA256SUMS (BOTTLE_SUMS_SHA256): {digest}")
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--check"]
    sys.exit(main(args[0] if args else "../shared/datasets/mvtec_bottle",
                  check_only="--check" in sys.argv[1:]))
