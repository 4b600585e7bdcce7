import hashlib
import io
import os
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import skimage.io

from course_lib import mvtec
from course_lib.data import DataError
from course_lib.mvtec import (DEFECT_KINDS, MVTEC_AD_CATEGORIES, MVTEC_AD_DOWNLOADS,
                              MVTEC_AD_PAGE, UnsafeArchiveError, build_texture_dataset,
                              download_mvtec, extract_mvtec_archive, load_mvtec_folder,
                              load_textures)

SMALL = dict(size=32, n_train=4, n_test_good=2, n_test_defect=6)


def tree_hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def save(path: Path, img) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    skimage.io.imsave(path, np.asarray(img), check_contrast=False)
    return path


def make_folder(root: Path, category="widget", size=(40, 60)) -> Path:
    """A tiny MVTec-layout category: colour PNG/JPEG images, one defect type with masks."""
    rng = np.random.default_rng(0)
    h, w = size
    for i in range(3):
        save(root / category / "train" / "good" / f"{i:03d}.png",
             (rng.random((h, w, 3)) * 255).astype(np.uint8))
    save(root / category / "test" / "good" / "000.jpg",
         (rng.random((h, w, 3)) * 255).astype(np.uint8))
    save(root / category / "test" / "dent" / "000.png", (rng.random((h, w)) * 255).astype(np.uint8))
    mask = np.zeros((h, w), np.uint8)
    mask[10:20, 20:40] = 255
    save(root / category / "ground_truth" / "dent" / "000_mask.png", mask)
    (root / category / "train" / "good" / ".DS_Store").write_bytes(b"junk")  # ignored
    return root


# --------------------------------------------------------------------------- textures
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
    for texture in mvtec.TEXTURES:
        data = load_mvtec_folder(root, texture, size=32, verbose=False)
        assert data.x_train.shape == (4, 32, 32) and data.x_train.dtype == np.float32
        assert data.x_test.shape == (8, 32, 32) and data.masks_test.shape == (8, 32, 32)
        assert 0 <= data.x_test.min() and data.x_test.max() <= 1
        assert data.y_test.tolist() == [0, 0] + [1] * 6
        assert data.defect_types == sorted(DEFECT_KINDS)
        area = data.masks_test.reshape(8, -1).sum(axis=1)
        assert np.all(area[:2] == 0) and np.all(area[2:] > 0)
        # at their own size the masks are read back exactly as written
        for path, mask in zip(data.test_paths[2:], data.masks_test[2:]):
            p = Path(path)
            saved = skimage.io.imread(root / texture / "ground_truth" / p.parent.name /
                                      f"{p.stem}_mask.png")
            np.testing.assert_array_equal(mask, saved > 127)
        assert data.x_train.std() > 0.05  # real texture, not a flat image


def test_train_and_test_crops_come_from_disjoint_parts_of_the_photo(tmp_path, monkeypatch):
    # a fake "photo" whose pixel value is its row: crops reveal where they were taken
    rows = np.repeat(np.arange(512, dtype=np.float64)[:, None] / 511, 512, axis=1)
    monkeypatch.setattr(mvtec, "_texture_photo", lambda name: rows)
    root = build_texture_dataset(tmp_path / "rows", size=64, crop_size=64, n_train=30,
                                 n_test_good=10, n_test_defect=12, textures=("brick",))
    data = load_mvtec_folder(root, "brick", size=64, verbose=False)
    split = 320 / 511
    assert data.x_train.max() <= (319 / 511) + 1 / 255
    good_pixels = data.x_test[data.masks_test == 0]  # defects change masked pixels only
    assert good_pixels.min() >= split - 1 / 255
    assert data.x_train.max() < good_pixels.min()
    # flips / 90-degree turns: some crops have rows as columns
    turned = [np.ptp(x[0, :]) > np.ptp(x[:, 0]) for x in data.x_train]
    assert 0 < sum(turned) < len(turned)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_defect_is_visible_and_its_mask_exact(kind):
    rng = np.random.default_rng(0)
    img = 0.4 + 0.2 * np.random.default_rng(1).random((64, 64))
    for _ in range(5):
        out, mask = mvtec._defect(kind, img, rng)
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
    monkeypatch.setattr(mvtec, "_build_one_texture", lambda *a: calls.append(a))
    assert build_texture_dataset(**SMALL) == first  # found: nothing rebuilt
    assert calls == [] and (first / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="overwrite"):  # a folder with other settings
        build_texture_dataset(first, size=48, n_train=4, n_test_good=2, n_test_defect=6)

    def crash(folder, name, index, settings):
        (folder / name).mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setattr(mvtec, "_build_one_texture", crash)
    with pytest.raises(RuntimeError):
        build_texture_dataset(tmp_path / "never", **SMALL)
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_load_textures_says_where_the_data_came_from(tmp_path, capsys):
    data = load_textures("gravel", size=32, root=tmp_path / "t", n_train=3, n_test_good=1,
                         n_test_defect=2)
    line = capsys.readouterr().out
    assert line.startswith("Data source: embedded") and "gravel" in line
    assert data.source == "embedded" and len(data.x_train) == 3
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["gravel", "manifest.json"]
    with pytest.raises(ValueError, match="brick"):
        load_textures("marble")


# --------------------------------------------------------------------------- loader
def test_loader_reads_colour_png_and_jpeg_of_any_size(tmp_path):
    root = make_folder(tmp_path)
    data = load_mvtec_folder(root, "widget", size=(20, 30), verbose=False)
    assert data.x_train.shape == (3, 20, 30) and data.x_test.shape == (2, 20, 30)
    assert data.defect_test == ["good", "dent"] and data.y_test.tolist() == [0, 1]
    expected = np.zeros((20, 30), np.uint8)
    expected[5:10, 10:20] = 1  # the 40x60 mask, halved
    np.testing.assert_array_equal(data.masks_test[1], expected)
    assert data.masks_test[0].sum() == 0
    native = load_mvtec_folder(root, "widget", size=None, n_train=2, verbose=False)
    assert native.x_train.shape == (2, 40, 60)


def test_colour_is_converted_to_luminance(tmp_path):
    root = make_folder(tmp_path)
    red = np.zeros((40, 60, 3), np.uint8)
    red[..., 0] = 255
    save(root / "widget" / "train" / "good" / "000.png", red)
    data = load_mvtec_folder(root, "widget", size=None, verbose=False)
    np.testing.assert_allclose(data.x_train[0], 0.2125, atol=1e-6)  # Rec. 709 weight of red


def test_thin_defects_survive_downscaling(tmp_path):
    root = make_folder(tmp_path, size=(128, 128))
    mask = np.zeros((128, 128), np.uint8)
    mask[60, 10:100] = 255  # a 1-pixel scratch
    save(root / "widget" / "ground_truth" / "dent" / "000_mask.png", mask)
    data = load_mvtec_folder(root, "widget", size=16, verbose=False)
    assert data.masks_test[1].sum() > 0


@pytest.mark.parametrize("breakage, message", [
    ("no root", "not found"),
    ("no category", r"categories there: \['widget'\]"),
    ("empty train", "holds no images"),
    ("no test", "test/"),
    ("missing mask", "000_mask.png"),
    ("mask size", "must have its image's size"),
    ("unreadable", "Could not read image"),
    ("sizes differ", "pass size"),
])
def test_loader_errors_say_what_is_wrong(tmp_path, breakage, message):
    root = make_folder(tmp_path / "data")
    category, size = "widget", 32
    cat = root / "widget"
    if breakage == "no root":
        root = tmp_path / "nowhere"
    elif breakage == "no category":
        category = "gadget"
    elif breakage == "empty train":
        for p in (cat / "train" / "good").glob("*.png"):
            p.unlink()
    elif breakage == "no test":
        for p in (cat / "test").rglob("*.*"):
            p.unlink()
    elif breakage == "missing mask":
        (cat / "ground_truth" / "dent" / "000_mask.png").unlink()
    elif breakage == "mask size":
        save(cat / "ground_truth" / "dent" / "000_mask.png", np.zeros((20, 20), np.uint8))
    elif breakage == "unreadable":
        (cat / "train" / "good" / "001.png").write_bytes(b"not a png at all")
    elif breakage == "sizes differ":
        save(cat / "train" / "good" / "001.png", np.zeros((10, 10), np.uint8))
        size = None
    with pytest.raises(DataError, match=message):
        load_mvtec_folder(root, category, size=size, verbose=False)


# --------------------------------------------------------------------------- archives
def make_tar(path: Path, source: Path, arcname_prefix="", mode="w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for p in sorted(source.rglob("*")):
            tar.add(p, arcname=arcname_prefix + str(p.relative_to(source)), recursive=False)
    return path


def add_member(tar, name, data=b"x", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_extract_archive_into_place_and_load(tmp_path):
    src = make_folder(tmp_path / "src")
    (src / "license.txt").write_text("CC BY-NC-SA 4.0")
    root = tmp_path / "mvtec"
    placed = extract_mvtec_archive(make_tar(tmp_path / "w.tar.xz", src, mode="w:xz"), root)
    assert placed == ["widget"] and (root / "license.txt").is_file()
    data = load_mvtec_folder(root, "widget", size=16, verbose=False)
    assert len(data.x_test) == 2
    assert sorted(p.name for p in root.iterdir()) == ["license.txt", "widget"]  # no temp left
    # an archive that wraps the categories in one folder works too; existing ones are kept
    wrapped = make_tar(tmp_path / "wrapped.tar.gz", src, "mvtec_anomaly_detection/")
    assert extract_mvtec_archive(wrapped, root) == []
    assert extract_mvtec_archive(wrapped, root, replace=True) == ["widget"]


@pytest.mark.parametrize("evil", ["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_malicious_archives_are_refused(tmp_path, evil):
    archive = tmp_path / f"{evil}.tar"
    with tarfile.open(archive, "w") as tar:
        add_member(tar, "widget/train/good/000.png")  # a harmless member first
        if evil == "dotdot":
            add_member(tar, "widget/../../evil", b"pwned")
        elif evil == "absolute":
            add_member(tar, str(tmp_path / "abs_evil"), b"pwned")
        elif evil == "symlink":
            add_member(tar, "widget/link", kind=tarfile.SYMTYPE, linkname="../../outside")
            add_member(tar, "widget/link/evil", b"pwned")
        elif evil == "hardlink":
            add_member(tar, "widget/hard", kind=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif evil == "device":
            add_member(tar, "widget/dev", kind=tarfile.CHRTYPE)
    root = tmp_path / "root"
    with pytest.raises(UnsafeArchiveError, match="Refusing"):
        extract_mvtec_archive(archive, root)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "abs_evil").exists()
    assert not (tmp_path / "outside").exists()
    assert list(root.iterdir()) == []  # nothing half-extracted, no temp folder left


def test_corrupted_archive_leaves_nothing_behind(tmp_path):
    src = make_folder(tmp_path / "src")
    good = make_tar(tmp_path / "w.tar.xz", src, mode="w:xz").read_bytes()
    broken = tmp_path / "broken.tar.xz"
    broken.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupted"):
        extract_mvtec_archive(broken, tmp_path / "root")
    assert list((tmp_path / "root").iterdir()) == []


# --------------------------------------------------------------------------- download
@pytest.fixture
def fake_bottle(tmp_path, monkeypatch):
    """A tiny 'bottle' archive served by a monkeypatched downloader (no network)."""
    src = make_folder(tmp_path / "src", category="bottle")
    archive = make_tar(tmp_path / "bottle.tar.xz", src, mode="w:xz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(MVTEC_AD_DOWNLOADS, "bottle",
                        {"url": "https://example.invalid/x/bottle.tar.xz", "sha256": digest})
    calls = []

    def fake_download(url, dest, progress=True):
        calls.append(url)
        dest.write_bytes(archive.read_bytes())

    monkeypatch.setattr(mvtec, "_download", fake_download)
    return calls


def test_download_extracts_and_is_cached(tmp_path, fake_bottle, monkeypatch):
    root = download_mvtec("bottle", tmp_path / "mvtec", progress=False)
    assert (root / "bottle" / "train" / "good").is_dir() and len(fake_bottle) == 1
    assert not (root / ".downloads" / "bottle.tar.xz").exists()  # archive removed after use
    assert download_mvtec("bottle", root) == root and len(fake_bottle) == 1  # no new download
    data = mvtec.load_mvtec("bottle", size=16, root=root, verbose=False)
    assert data.source == "online" and "CC BY-NC-SA" in data.detail
    monkeypatch.setenv("COURSE_DATA", "offline")  # offline: a missing category is not fetched
    with pytest.raises(DataError, match="COURSE_DATA=offline"):
        mvtec.load_mvtec("bottle", root=tmp_path / "elsewhere")
    assert len(fake_bottle) == 1


def test_download_checks_the_checksum(tmp_path, fake_bottle, monkeypatch):
    monkeypatch.setitem(MVTEC_AD_DOWNLOADS["bottle"], "sha256", "0" * 64)
    with pytest.raises(DataError, match="sha256"):
        download_mvtec("bottle", tmp_path / "mvtec", progress=False)
    downloads = tmp_path / "mvtec" / ".downloads"
    assert [p.name for p in downloads.iterdir()] == ["bottle.tar.xz.corrupt"]
    assert not (tmp_path / "mvtec" / "bottle").exists()


def test_failed_download_says_where_to_get_the_data(tmp_path, monkeypatch):
    def offline(url, dest, progress=True):
        dest.with_name(dest.name + ".part").write_bytes(b"12345")  # got 5 bytes, then failed
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(mvtec, "_download", offline)
    with pytest.raises(DataError, match="by hand") as info:
        download_mvtec("carpet", tmp_path / "mvtec")
    assert MVTEC_AD_PAGE in str(info.value) and "carpet.tar.xz" in str(info.value)
    assert "resume the partial download (5 bytes" in str(info.value)
    with pytest.raises(DataError, match=MVTEC_AD_PAGE):
        mvtec.load_mvtec("carpet", root=tmp_path / "mvtec", download=False)
    with pytest.raises(ValueError, match="bottle"):
        download_mvtec("bottles")


def test_download_table_is_complete():
    assert set(MVTEC_AD_DOWNLOADS) == {"all", *MVTEC_AD_CATEGORIES}
    assert len(MVTEC_AD_CATEGORIES) == 15
    for name, info in MVTEC_AD_DOWNLOADS.items():
        assert info["url"].startswith("https://")
        assert info["url"].endswith(("mvtec_anomaly_detection.tar.xz" if name == "all"
                                     else f"/{name}.tar.xz"))
    assert len(MVTEC_AD_DOWNLOADS["all"]["sha256"]) == 64


class FakeResponse:
    def __init__(self, body: bytes, status: int):
        self.body, self.status = io.BytesIO(body), status
        self.headers = {"Content-Length": str(len(body))}

    def read(self, n=-1):
        return self.body.read(n)

    def getcode(self):
        return self.status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("honours_range", [True, False])
def test_interrupted_download_resumes(tmp_path, monkeypatch, honours_range):
    payload = os.urandom(5000)
    seen = []

    def urlopen(request, timeout=None):
        rng = request.get_header("Range")
        seen.append(rng)
        if rng and honours_range:
            start = int(rng.split("=")[1].rstrip("-"))
            return FakeResponse(payload[start:], 206)
        return FakeResponse(payload, 200)

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    dest = tmp_path / "a.tar.xz"
    (tmp_path / "a.tar.xz.part").write_bytes(payload[:1234])  # an interrupted earlier run
    mvtec._download("https://example.invalid/a.tar.xz", dest, progress=False)
    assert dest.read_bytes() == payload and not (tmp_path / "a.tar.xz.part").exists()
    assert seen == ["bytes=1234-"]
