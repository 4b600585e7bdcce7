"""Tests of ``course_lib.data.bottle``: the real MVTec AD bottle subset shipped in ``data/``
(every file checked against its SHA256SUMS on each load), the full download (a tiny stand-in
in the cache: no network) and your own copy in MVTec layout."""

import dataclasses
import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from course_lib.checks import DataError
from course_lib.config import data_dir, get_profile
from course_lib.data import bottle as B
from course_lib.data.bottle import BOTTLE_SUMS_SHA256, bottle_cache_items, load_bottle
from course_lib.data.mvtec_ad import mvtec_dir

SHIPPED = data_dir() / B.BOTTLE_FOLDER
FAST, WORKSHOP = get_profile("fast"), get_profile("workshop")
COUNTS = {"bottle/train/good": 209, "bottle/test/good": 10, "bottle/test/broken_large": 10,
          "bottle/test/broken_small": 11, "bottle/test/contamination": 11,
          "bottle/ground_truth/broken_large": 10, "bottle/ground_truth/broken_small": 11,
          "bottle/ground_truth/contamination": 11, "bottle": 2}


@pytest.fixture(scope="module")
def bottle():
    """The shipped subset at the fast profile's side (loaded once: 283 PNG files)."""
    return load_bottle(FAST, source="offline", verbose=False)


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A copy of data/mvtec_bottle that COURSE_DATA_DIR points at (free to damage)."""
    copy = tmp_path / "data" / B.BOTTLE_FOLDER
    shutil.copytree(SHIPPED, copy)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    return copy


def make_bottles(root, side=300, n_train=3, color=True):
    """A tiny bottle category in MVTec layout: square RGB photos, one defect type, masks."""
    rng = np.random.default_rng(0)
    cat = root / "bottle"

    def photo(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (side, side, 3) if color else (side, side)
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(path)

    for i in range(n_train):
        photo(cat / "train" / "good" / f"{i:03d}.png")
    photo(cat / "test" / "good" / "000.png")
    photo(cat / "test" / "broken_large" / "000.png")
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4: side // 2, side // 4: side // 2] = 255
    (cat / "ground_truth" / "broken_large").mkdir(parents=True)
    Image.fromarray(mask).save(cat / "ground_truth" / "broken_large" / "000_mask.png")
    return root


# --------------------------------------------------------------------------- the shipped files
def test_the_shipped_files_match_their_checksum_list():
    sums = SHIPPED / "SHA256SUMS"
    assert hashlib.sha256(sums.read_bytes()).hexdigest() == BOTTLE_SUMS_SHA256
    listed = dict(reversed(line.split("  ", 1))
                  for line in sums.read_text(encoding="utf-8").splitlines())
    on_disk = sorted(p.relative_to(SHIPPED).as_posix() for p in (SHIPPED / "bottle").rglob("*")
                     if p.is_file())
    assert sorted(listed) == on_disk
    folders = {}
    for name in on_disk:
        folders[name.rsplit("/", 1)[0]] = folders.get(name.rsplit("/", 1)[0], 0) + 1
    assert folders == COUNTS
    assert {"bottle/license.txt", "bottle/readme.txt"} <= set(on_disk)
    assert "Attribution-NonCommercial-ShareAlike 4.0" in (SHIPPED / "bottle" / "license.txt") \
        .read_text(encoding="utf-8")
    for name in on_disk:
        if name.endswith(".png"):
            with Image.open(SHIPPED / name) as img:
                assert (img.mode, img.size) == ("L", (256, 256)), name
                if "/ground_truth/" in name:  # resized, then thresholded: 0/255, never empty
                    assert set(np.unique(np.asarray(img)).tolist()) == {0, 255}, name
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert 4e6 < total < 8e6  # "a few MB"


# --------------------------------------------------------------------------- loading
def test_the_subset_loads_at_the_fast_profiles_side(bottle, capsys):
    data = bottle
    assert data.source == "embedded" and data.category == "bottle" and not data.color
    assert (len(data.x_train), len(data.x_test)) == (209, 42)
    assert data.y_test.tolist() == [0] * 10 + [1] * 32
    assert data.defect_types == ["broken_large", "broken_small", "contamination"]
    assert data.defect_test == (["good"] * 10 + ["broken_large"] * 10 + ["broken_small"] * 11
                                + ["contamination"] * 11)
    assert FAST.object_side == 128 and data.scale == 0.5 and data.sizes == "128x128"
    assert {x.shape for x in data.x_train + data.x_test} == {(128, 128)}
    assert all(x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
               for x in data.x_train + data.x_test)
    areas = [int(m.sum()) for m in data.masks_test]
    assert [m.shape for m in data.masks_test] == [(128, 128)] * 42
    assert areas[:10] == [0] * 10 and min(areas[10:]) > 0 and data.n_empty_masks == 0
    assert max(areas[10:]) < 0.5 * 128 * 128
    # the masks sit on the defects: there a photo differs from the mean good bottle most
    mean = np.mean(data.x_train, axis=0)
    pairs = list(zip(data.x_test[10:], data.masks_test[10:]))
    inside = np.mean([np.abs(x - mean)[m].mean() for x, m in pairs])
    outside = np.mean([np.abs(x - mean)[~m].mean() for x, m in pairs])
    assert inside > 3 * outside
    print(data)
    line = capsys.readouterr().out.strip()
    assert line.startswith("Data source: embedded | real MVTec AD bottle subset (256 px grey, ")
    assert "CC BY-NC-SA 4.0" in line and "Bergmann et al., CVPR 2019" in line
    assert line.endswith("(10 good, 32 defective in 3 defect types) in grey at 128x128 pixels, "
                         "scaled by 0.5")


def test_the_workshop_profile_reads_the_files_as_they_are(bottle, capsys):
    data = load_bottle(WORKSHOP, source="offline")
    assert capsys.readouterr().out.startswith("Data source: embedded | real MVTec AD bottle")
    assert data.scale == 1.0 and data.sizes == "256x256"
    first = SHIPPED / "bottle" / "test" / "broken_large" / "002.png"
    assert data.test_paths[10] == str(first)
    np.testing.assert_allclose(data.x_test[10], np.asarray(Image.open(first)) / 255, atol=1e-7)
    mask = np.asarray(Image.open(SHIPPED / "bottle" / "ground_truth" / "broken_large" /
                                 "002_mask.png")) > 0
    np.testing.assert_array_equal(data.masks_test[10], mask)
    # the fast profile's masks are these, halved: the same defects, a quarter of the pixels
    for small, big in zip(bottle.masks_test[10:], data.masks_test[10:]):
        assert abs(small.sum() * 4 - big.sum()) < 0.1 * big.sum() + 60


def test_another_object_side_and_too_much_enlargement(tmp_path):
    root = make_bottles(tmp_path, side=256, color=False)
    data = load_bottle(dataclasses.replace(FAST, object_side=64), path=root, verbose=False)
    assert data.sizes == "64x64" and data.scale == 0.25 and data.masks_test[1].sum() == 16 * 16
    with pytest.raises(DataError, match="too small for the profile's object_side of 2048"):
        load_bottle(dataclasses.replace(FAST, object_side=2048), source="offline")


@pytest.mark.parametrize("damage, message", [
    ("corrupt image", "is corrupted \\(sha256 differs"),
    ("missing mask", "not found"),
    ("corrupt list", "checksum list .* is corrupted"),
    ("missing list", "checksum list .* not found"),
    ("extra image", "not listed in SHA256SUMS"),
])
def test_a_damaged_shipped_file_is_refused_with_how_to_restore_it(data_copy, damage, message):
    def first(folder):
        return sorted((data_copy / "bottle" / folder).iterdir())[0]

    if damage == "corrupt image":
        image = first("test/contamination")
        raw = bytearray(image.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        image.write_bytes(bytes(raw))
    elif damage == "missing mask":
        first("ground_truth/broken_small").unlink()
    elif damage == "corrupt list":
        with open(data_copy / "SHA256SUMS", "a", encoding="utf-8") as f:
            f.write("\n")
    elif damage == "missing list":
        (data_copy / "SHA256SUMS").unlink()
    else:  # an image dropped into the folder would be trained on
        shutil.copy(first("train/good"), data_copy / "bottle" / "train" / "good" / "x.png")
    with pytest.raises(DataError, match=message) as info:
        load_bottle(FAST, source="offline", verbose=False)
    assert "git checkout -- data/mvtec_bottle" in str(info.value)
    assert str(data_copy) in str(info.value)
    [item] = bottle_cache_items()
    assert item.state == "corrupted" and "git checkout -- data/mvtec_bottle" in item.hint


def test_cache_item_says_ok_or_missing(data_copy):
    [item] = bottle_cache_items()
    assert item.state == "OK" and item.path == data_copy and item.kind == "embedded"
    assert item.size == sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    shutil.rmtree(data_copy)
    [item] = bottle_cache_items()
    assert item.state == "missing" and "git checkout" in item.hint
    with pytest.raises(DataError, match="not found.*git checkout"):
        load_bottle(FAST, source="offline", verbose=False)


# --------------------------------------------------------------------------- online and files
@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_online_reads_the_full_download_at_the_profiles_side(cache, capsys):
    """The real category (here a tiny stand-in, already in the cache) in grey, 128 square."""
    make_bottles(mvtec_dir(), side=300)
    data = load_bottle(FAST, source="online")
    line = capsys.readouterr().out.strip()
    assert line.startswith("Data source: online | MVTec AD bottle (full download")
    assert str(mvtec_dir()) in line and "in grey at 128x128 pixels" in line
    assert data.source == "online" and not data.color and data.sizes == "128x128"
    assert data.y_test.tolist() == [0, 1] and data.masks_test[1].any()


def test_auto_falls_back_to_the_subset_and_online_fails_clearly(cache, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise DataError("Could not download MVTec AD 'bottle' (no network)")

    monkeypatch.setattr(B, "load_mvtec", no_network)
    data = load_bottle(WORKSHOP, source="auto")
    out = capsys.readouterr().out
    assert data.source == "embedded" and len(data.x_train) == 209
    assert out.startswith("Could not get MVTec AD 'bottle' (DataError: Could not download")
    assert "using the embedded offline bottle subset instead" in out
    assert "\nData source: embedded | real MVTec AD bottle subset" in out
    with pytest.raises(DataError, match="Could not get MVTec AD 'bottle'.*COURSE_DATA=offline"):
        load_bottle(FAST, source="online")


def test_your_copy_loads_from_its_path(tmp_path, capsys):
    root = make_bottles(tmp_path / "mine", side=256, color=True)
    data = load_bottle(FAST, path=root)
    line = capsys.readouterr().out
    assert line.startswith(f"Data source: file | your MVTec AD bottle copy in {root}")
    assert data.source == "file" and not data.color and data.sizes == "128x128"
    assert data.scale == 0.5 and data.masks_test[1].sum() == 32 * 32
    with pytest.raises(DataError, match="category folder itself: pass the folder above it"):
        load_bottle(FAST, path=root / "bottle")
    with pytest.raises(DataError, match="Category 'bottle' not found"):
        load_bottle(FAST, path=tmp_path)


def test_a_copy_that_is_not_square_is_refused_before_loading(tmp_path, monkeypatch):
    root = make_bottles(tmp_path / "mine", side=64)
    odd = root / "bottle" / "train" / "good" / "001.png"
    Image.new("L", (64, 48)).save(odd)
    loaded = []
    monkeypatch.setattr(B, "load_mvtec_folder", lambda *a, **k: loaded.append(a))
    with pytest.raises(DataError, match=r"must be square and all of one size.*001.png is "
                                        r"48x64.*Crop or pad"):
        load_bottle(FAST, path=root)
    assert loaded == []
