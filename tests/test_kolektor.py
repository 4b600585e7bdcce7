"""Tests of ``course_lib.data.kolektor``: the real KolektorSDD subset shipped in ``data/``
(every file checked against its SHA256SUMS on each load) and a copy of it in MVTec layout."""

import dataclasses
import hashlib
import shutil

import numpy as np
import pytest

from course_lib.checks import DataError
from course_lib.config import data_dir, get_profile
from course_lib.data import kolektor as K
from course_lib.data.kolektor import (KOLEKTOR_SUMS_SHA256, kolektor_cache_items,
                                      load_kolektor)
from course_lib.data.image_files import image_size

SHIPPED = data_dir() / K.KOLEKTOR_FOLDER
FAST = get_profile("fast")


@pytest.fixture(scope="module")
def kolektor():
    """The shipped subset at the fast profile's scale (loaded once: 96 PNG files)."""
    return load_kolektor(FAST, verbose=False)


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A copy of data/kolektorsdd that COURSE_DATA_DIR points at (free to damage)."""
    copy = tmp_path / "data" / K.KOLEKTOR_FOLDER
    shutil.copytree(SHIPPED, copy)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    return copy


def _listed():
    lines = (SHIPPED / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    return dict(reversed(line.split("  ", 1)) for line in lines)


def test_the_shipped_files_match_their_checksum_list():
    sums = SHIPPED / "SHA256SUMS"
    assert hashlib.sha256(sums.read_bytes()).hexdigest() == KOLEKTOR_SUMS_SHA256
    listed = _listed()
    on_disk = sorted(p.relative_to(SHIPPED).as_posix()
                     for p in (SHIPPED / "kolektor").rglob("*") if p.is_file())
    assert sorted(listed) == on_disk and len(on_disk) == 48 + 16 + 16 + 16
    folders = {}
    for name in on_disk:
        folders.setdefault(name.rsplit("/", 1)[0], []).append(name)
    assert {k: len(v) for k, v in folders.items()} == {
        "kolektor/train/good": 48, "kolektor/test/good": 16, "kolektor/test/crack": 16,
        "kolektor/ground_truth/crack": 16}
    # the photos' own sizes: 250 pixels wide, 620 to 642 high (half the original resolution)
    sizes = {image_size(SHIPPED / name) for name in on_disk}
    assert {w for _, w in sizes} == {250} and 620 <= min(sizes)[0] <= max(sizes)[0] <= 642
    assert len({h for h, _ in sizes}) > 5  # really of different heights


def test_real_cracks_load_at_the_profiles_scale(kolektor, capsys):
    data = kolektor
    assert data.source == "embedded" and data.category == "kolektor"
    assert "KolektorSDD" in data.detail and "CC BY-NC-SA 4.0" in data.detail
    assert (len(data.x_train), len(data.x_test)) == (48, 32)
    assert data.y_test.tolist() == [0] * 16 + [1] * 16 and data.defect_types == ["crack"]
    assert data.scale == FAST.mvtec_scale == 0.5  # 642 * 0.5 is within mvtec_max_side
    shapes = [x.shape for x in data.x_train + data.x_test]
    assert {w for _, w in shapes} == {125} and all(310 <= h <= 321 for h, _ in shapes)
    assert len(set(shapes)) > 5 and data.sizes == "310x125 to 321x125"
    assert [m.shape for m in data.masks_test] == [x.shape for x in data.x_test]
    assert all(x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
               for x in data.x_train + data.x_test)
    areas = [int(m.sum()) for m in data.masks_test]
    assert areas[:16] == [0] * 16 and min(areas[16:]) > 0 and data.n_empty_masks == 0
    assert max(areas[16:]) < 0.05 * 310 * 125  # thin cracks, not blobs
    print(data)
    line = capsys.readouterr().out.strip()
    assert line.startswith("Data source: embedded | real KolektorSDD subset")
    assert line.endswith("at 310x125 to 321x125 pixels, scaled by 0.5")


def test_max_side_scales_every_image_by_one_factor(capsys):
    small = dataclasses.replace(FAST, mvtec_scale=1.0, mvtec_max_side=321)
    data = load_kolektor(small)
    assert capsys.readouterr().out.startswith("Data source: embedded")
    assert data.scale == pytest.approx(321 / 642)
    assert {x.shape[1] for x in data.x_train + data.x_test} == {125}
    assert max(x.shape[0] for x in data.x_test + data.x_train) == 321
    assert all(m.any() for m in data.masks_test[16:])  # the cracks survive


def test_a_copy_loads_from_its_path_as_a_file(tmp_path, kolektor):
    copy = tmp_path / "mine"
    shutil.copytree(SHIPPED / "kolektor", copy / "kolektor")
    data = load_kolektor(FAST, path=copy, verbose=False)
    assert data.source == "file" and str(copy) in data.detail
    assert data.sizes == kolektor.sizes and data.scale == kolektor.scale
    for a, b in zip(data.x_test + data.masks_test, kolektor.x_test + kolektor.masks_test):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DataError, match="not found"):
        load_kolektor(FAST, path=tmp_path / "nowhere", verbose=False)


@pytest.mark.parametrize("damage, message", [
    ("corrupt image", "is corrupted \\(sha256 differs"),
    ("missing mask", "not found"),
    ("corrupt list", "checksum list .* is corrupted"),
    ("missing list", "checksum list .* not found"),
    ("extra image", "not listed in SHA256SUMS"),
])
def test_a_damaged_shipped_file_says_how_to_restore_it(data_copy, damage, message):
    def first(folder):
        return sorted((data_copy / "kolektor" / folder).iterdir())[0]

    if damage == "corrupt image":
        image = first("test/crack")
        raw = bytearray(image.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        image.write_bytes(bytes(raw))
    elif damage == "missing mask":
        first("ground_truth/crack").unlink()
    elif damage == "corrupt list":
        with open(data_copy / "SHA256SUMS", "a", encoding="utf-8") as f:
            f.write("\n")
    elif damage == "missing list":
        (data_copy / "SHA256SUMS").unlink()
    else:  # an image dropped into the folder would be trained on
        shutil.copy(first("train/good"), data_copy / "kolektor" / "train" / "good" / "x.png")
    with pytest.raises(DataError, match=message) as info:
        load_kolektor(FAST, verbose=False)
    assert "git checkout -- data/kolektorsdd" in str(info.value)
    assert str(data_copy) in str(info.value)
    [item] = kolektor_cache_items()
    assert item.state == "corrupted" and "git checkout -- data/kolektorsdd" in item.hint


def test_cache_item_says_ok_or_missing(data_copy):
    [item] = kolektor_cache_items()
    assert item.state == "OK" and item.path == data_copy and item.kind == "embedded"
    assert item.size == sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    shutil.rmtree(data_copy)
    [item] = kolektor_cache_items()
    assert item.state == "missing" and "git checkout" in item.hint
    with pytest.raises(DataError, match="not found.*git checkout"):
        load_kolektor(FAST, verbose=False)


def test_files_are_read_only_once_verified(data_copy, monkeypatch):
    """The checksums are checked before anything is read: a damaged file never reaches the
    loader."""
    calls = []
    monkeypatch.setattr(K, "load_mvtec_folder", lambda *a, **k: calls.append(a))
    (data_copy / "SHA256SUMS").write_text("")
    with pytest.raises(DataError):
        load_kolektor(FAST, verbose=False)
    assert calls == []


def test_a_copy_with_jpeg_masks_and_cmyk_photos_loads_the_same_cracks(tmp_path, kolektor):
    """KolektorSDD arranged by hand: masks saved as JPEG (compression noise around each
    crack is not crack) and a photo converted to CMYK (not read as RGBA, i.e. black)."""
    from PIL import Image

    copy = tmp_path / "mine" / "kolektor"
    shutil.copytree(SHIPPED / "kolektor", copy)
    for png in sorted((copy / "ground_truth" / "crack").glob("*_mask.png")):
        Image.open(png).convert("L").save(png.with_suffix(".jpg"), quality=75)
        png.unlink()
    good = sorted((copy / "test" / "good").glob("*.png"))[0]
    Image.open(good).convert("CMYK").save(good.with_suffix(".tif"))
    good.unlink()
    data = load_kolektor(FAST, path=copy.parent, verbose=False)
    assert len(data.x_test) == 32 and data.y_test.tolist() == kolektor.y_test.tolist()
    np.testing.assert_allclose(data.x_test[0], kolektor.x_test[0], atol=1e-6)
    for mine, shipped in zip(data.masks_test[16:], kolektor.masks_test[16:]):
        overlap = (mine & shipped).sum() / (mine | shipped).sum()
        assert overlap > 0.9, f"a JPEG mask is not its PNG's crack (IoU {overlap:.2f})"
