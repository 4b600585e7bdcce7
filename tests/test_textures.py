"""Tests of ``course_lib.data.textures``: the offline MVTec-style texture set."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.io

from course_lib.checks import DataError
from course_lib.config import get_profile
from course_lib.data import textures
from course_lib.data.mvtec import load_mvtec_folder
from course_lib.data.textures import (DEFECT_KINDS, TEXTURES, build_texture_dataset,
                                      load_textures, texture_cache_items, texture_settings)

SMALL = dict(size=32, n_train=4, n_test_good=2, n_test_defect=6)


def tree_hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_texture_dataset_is_deterministic(tmp_path):
    a = build_texture_dataset(tmp_path / "a", **SMALL)
    b = build_texture_dataset(tmp_path / "b", **SMALL)
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert ha == hb and len(ha) == 3 * (4 + 2 + 2 * 6) + 1  # images, masks, manifest
    c = build_texture_dataset(tmp_path / "c", seed=1, **SMALL)
    hc = tree_hashes(c)
    assert sum(hc[k] != ha[k] for k in ha if k.endswith(".png")) > 0.9 * (len(ha) - 1)
    # building one texture alone gives the same files for it
    d = build_texture_dataset(tmp_path / "d", textures=("grass",), **SMALL)
    assert all(ha[k] == v for k, v in tree_hashes(d).items() if k.startswith("grass"))


def test_texture_dataset_loads_like_mvtec(tmp_path):
    root = build_texture_dataset(tmp_path / "tex", **SMALL)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["settings"]["size"] == 32 and "CC0" in manifest["source"]
    for texture in TEXTURES:
        data = load_mvtec_folder(root, texture, verbose=False)
        assert [x.shape for x in data.x_train] == [(32, 32)] * 4
        assert all(x.dtype == np.float32 for x in data.x_train + data.x_test)
        assert [x.shape for x in data.x_test] == [(32, 32)] * 8
        assert [m.shape for m in data.masks_test] == [(32, 32)] * 8
        assert data.scale == 1.0 and data.sizes == "32x32"
        assert all(0 <= x.min() and x.max() <= 1 for x in data.x_test)
        assert data.y_test.tolist() == [0, 0] + [1] * 6
        assert data.defect_types == sorted(DEFECT_KINDS) and data.n_empty_masks == 0
        area = np.array([m.sum() for m in data.masks_test])
        assert np.all(area[:2] == 0) and np.all(area[2:] > 0)
        # at their own size the masks are read back exactly as written
        for path, mask in zip(data.test_paths[2:], data.masks_test[2:]):
            p = Path(path)
            saved = skimage.io.imread(root / texture / "ground_truth" / p.parent.name /
                                      f"{p.stem}_mask.png")
            np.testing.assert_array_equal(mask, saved > 127)
        assert np.std(data.x_train) > 0.05  # real texture, not a flat image
    half = load_mvtec_folder(root, "brick", scale=0.5, verbose=False)
    assert half.sizes == "16x16" and all(m.any() for m in half.masks_test[2:])


def test_train_and_test_crops_come_from_disjoint_parts_of_the_photo(tmp_path, monkeypatch):
    # a fake "photo" whose pixel value is its row: crops reveal where they were taken
    rows = np.repeat(np.arange(512, dtype=np.float64)[:, None] / 511, 512, axis=1)
    monkeypatch.setattr(textures, "_texture_photo", lambda name: rows)
    root = build_texture_dataset(tmp_path / "rows", size=64, crop_size=64, n_train=30,
                                 n_test_good=10, n_test_defect=12, textures=("brick",))
    data = load_mvtec_folder(root, "brick", verbose=False)
    split = 320 / 511
    train_max = max(x.max() for x in data.x_train)
    assert train_max <= (319 / 511) + 1 / 255
    good_pixels = np.concatenate([x[~m] for x, m in zip(data.x_test, data.masks_test)])
    assert good_pixels.min() >= split - 1 / 255  # defects change masked pixels only
    assert train_max < good_pixels.min()
    # flips / 90-degree turns: some crops have rows as columns
    turned = [np.ptp(x[0, :]) > np.ptp(x[:, 0]) for x in data.x_train]
    assert 0 < sum(turned) < len(turned)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_defect_is_visible_and_its_mask_exact(kind):
    rng = np.random.default_rng(0)
    img = 0.4 + 0.2 * np.random.default_rng(1).random((64, 64))
    for _ in range(5):
        out, mask = textures._defect(kind, img, rng)
        changed = out != img
        assert mask.dtype == bool and mask.any()
        assert not np.any(changed & ~mask)  # nothing changes outside the mask
        assert mask.mean() < 0.25  # a local defect
        assert np.abs(out - img)[mask].mean() > 0.08  # visible, not a faint trace
        assert 0 <= out.min() and out.max() <= 1


def test_texture_cache_is_reused_and_built_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    first = build_texture_dataset(**SMALL)
    assert first.parent == tmp_path / "cache"
    stamp = (first / "manifest.json").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(textures, "_build_one_texture", lambda *a: calls.append(a))
    assert build_texture_dataset(**SMALL) == first  # found: nothing rebuilt
    assert calls == [] and (first / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="overwrite"):  # a folder with other settings
        build_texture_dataset(first, size=48, n_train=4, n_test_good=2, n_test_defect=6)

    def crash(folder, name, index, settings):
        (folder / name).mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setattr(textures, "_build_one_texture", crash)
    with pytest.raises(RuntimeError):
        build_texture_dataset(tmp_path / "never", **SMALL)
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    with pytest.raises(RuntimeError):  # overwrite: the old folder survives a failed rebuild
        build_texture_dataset(first, overwrite=True, **SMALL)
    assert (first / "manifest.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("setting, value, message", [
    ("size", 8, "size"), ("crop_size", 256, "crop_size"), ("n_train", 0, "n_train"),
    ("n_test_defect", -1, "n_test_defect"), ("textures", ("marble",), "textures"),
    ("seed", 1.5, "seed"),
])
def test_bad_settings_are_refused(tmp_path, setting, value, message):
    with pytest.raises(DataError, match=message):
        build_texture_dataset(tmp_path / "t", **{**SMALL, setting: value})
    assert not (tmp_path / "t").exists()


def test_load_textures_takes_its_sizes_from_the_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    tiny = dataclasses.replace(get_profile("fast"), texture_size=32, texture_n_train=3,
                               texture_n_test_good=1, texture_n_test_defect=2)
    assert texture_settings(tiny) == {"size": 32, "n_train": 3, "n_test_good": 1,
                                      "n_test_defect": 2, "seed": 0}
    data = load_textures("gravel", tiny)
    line = capsys.readouterr().out
    assert line.startswith("Data source: embedded") and "gravel" in line
    assert data.source == "embedded" and [x.shape for x in data.x_train] == [(32, 32)] * 3
    assert data.scale == 1.0 and "at 32x32 pixels" in line and "scaled" not in line
    assert data.y_test.tolist() == [0, 1, 1]
    # a keyword overrides the profile; root is where it is built
    data = load_textures("gravel", tiny, root=tmp_path / "t", n_train=5, verbose=False)
    assert len(data.x_train) == 5 and data.sizes == "32x32"
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["gravel", "manifest.json"]
    with pytest.raises(DataError, match="brick"):
        load_textures("marble")
    with pytest.raises(DataError, match="n_epochs"):
        load_textures("brick", tiny, n_epochs=3)


def test_cache_items_say_missing_ok_or_corrupted(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    tiny = dataclasses.replace(get_profile("fast"), texture_size=32, texture_n_train=2,
                               texture_n_test_good=1, texture_n_test_defect=1)
    assert [i.state for i in texture_cache_items(tiny)] == ["missing"] * 3
    load_textures("grass", tiny, verbose=False)  # builds the cache folder notebooks use
    states = {i.name.split("'")[1]: i for i in texture_cache_items(tiny)}
    assert [states[t].state for t in TEXTURES] == ["missing", "OK", "missing"]
    manifest = states["grass"].path / "manifest.json"
    manifest.write_text("{}")
    item = [i for i in texture_cache_items(tiny) if "grass" in i.name][0]
    assert item.state == "corrupted" and str(item.path) in item.hint


@pytest.mark.parametrize("damage", ["changed", "deleted", "added"])
def test_a_damaged_cached_set_is_reported_and_rebuilt(tmp_path, monkeypatch, capsys, damage):
    """Defect: only the manifest was checked, so a damaged image was reported OK by status and
    prefetch, and once deleted the loader silently returned fewer images."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    tiny = dataclasses.replace(get_profile("fast"), texture_size=32, texture_n_train=4,
                               texture_n_test_good=1, texture_n_test_defect=1)
    whole = load_textures("grass", tiny, verbose=False)
    item = [i for i in texture_cache_items(tiny) if "grass" in i.name][0]
    assert item.state == "OK"
    files = tree_hashes(item.path)
    image = item.path / "grass" / "train" / "good" / "002.png"
    if damage == "changed":
        image.write_bytes(image.read_bytes()[:-20])
    elif damage == "deleted":
        image.unlink()
    else:
        image.with_name("999.png").write_bytes(image.read_bytes())
    item = [i for i in texture_cache_items(tiny) if "grass" in i.name][0]
    assert item.state == "corrupted" and "prefetch --textures rebuilds it" in item.hint
    words = {"changed": "changed", "deleted": "missing", "added": "not built by it"}[damage]
    assert f"1 file(s) {words}" in item.detail
    assert ("999.png" if damage == "added" else "002.png") in item.detail
    again = load_textures("grass", tiny, verbose=False)  # rebuilt, with a note
    assert "rebuilding it" in capsys.readouterr().err
    assert len(again.x_train) == len(whole.x_train) == 4
    assert tree_hashes(item.path) == files
    assert [i.state for i in texture_cache_items(tiny) if "grass" in i.name] == ["OK"]


def test_a_damaged_set_outside_the_cache_is_refused(tmp_path):
    root = build_texture_dataset(tmp_path / "t", **SMALL)
    (root / "brick" / "test" / "good" / "000.png").unlink()
    with pytest.raises(DataError, match="fails its check: 1 file.s. missing.*overwrite=True"):
        build_texture_dataset(root, **SMALL)
    assert build_texture_dataset(root, overwrite=True, **SMALL) == root
    assert build_texture_dataset(root, **SMALL) == root
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["files"]  # as an older course_lib wrote it: nothing to check the files with
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="lists no files"):
        build_texture_dataset(root, **SMALL)
