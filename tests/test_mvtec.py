"""Tests of ``course_lib.data.mvtec``: folders in MVTec AD layout, safe extraction and the
resumable, verified download (against a local HTTP server: no network)."""

import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import skimage.io

from course_lib.checks import DataError
from course_lib.data import image_files, mvtec_ad
from course_lib.data.image_files import (image_size, read_gray, read_mask, rescale_image,
                                         rescale_mask)
from course_lib.data.mvtec import (MVTEC_AD_CATEGORIES, MVTEC_AD_PAGE, MVTecData,
                                   category_scale, load_mvtec_folder)
from course_lib.data.mvtec_ad import (MVTEC_AD_DOWNLOADS, download_mvtec, extract_mvtec_archive,
                                      load_mvtec)
from course_lib.download import UnsafeArchiveError


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


def make_photos(root: Path, category="strip") -> Path:
    """Photos as a real line takes them: NON-square, of slightly different heights (40, 42,
    44 x 90), a thin 1-pixel scratch with a 0/255 mask and a blob with a 0/1 mask."""
    rng = np.random.default_rng(1)
    cat = root / category
    for i, h in enumerate((40, 42, 44)):
        save(cat / "train" / "good" / f"{i:03d}.png", (rng.random((h, 90)) * 255).astype(np.uint8))
    save(cat / "test" / "good" / "000.png", (rng.random((42, 90)) * 255).astype(np.uint8))
    scratch = np.zeros((44, 90), np.uint8)
    scratch[21, 10:80] = 255                       # 0/255, one pixel thin
    blob = np.zeros((40, 90), np.uint8)
    blob[8:24, 30:62] = 1                          # 0/1
    for name, mask in (("000", scratch), ("001", blob)):
        save(cat / "test" / "flaw" / f"{name}.png",
             (rng.random(mask.shape) * 255).astype(np.uint8))
        save(cat / "ground_truth" / "flaw" / f"{name}_mask.png", mask)
    return root


# --------------------------------------------------------------------------- loader
def test_loader_reads_colour_png_and_jpeg_of_any_size(tmp_path):
    root = make_folder(tmp_path)
    data = load_mvtec_folder(root, "widget", scale=0.5, verbose=False)
    assert isinstance(data.x_train, list) and isinstance(data.x_test, list)
    assert [x.shape for x in data.x_train] == [(20, 30)] * 3
    assert all(x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
               for x in data.x_train + data.x_test)
    assert data.defect_test == ["good", "dent"] and data.y_test.tolist() == [0, 1]
    expected = np.zeros((20, 30), bool)
    expected[5:10, 10:20] = True  # the 40x60 mask, halved
    np.testing.assert_array_equal(data.masks_test[1], expected)
    assert data.masks_test[1].dtype == bool and data.masks_test[0].shape == (20, 30)
    assert data.masks_test[0].sum() == 0 and data.n_empty_masks == 0
    assert data.scale == 0.5 and data.sizes == "20x30"
    native = load_mvtec_folder(root, "widget", n_train=2, verbose=False)
    assert [x.shape for x in native.x_train] == [(40, 60)] * 2 and native.scale == 1.0
    assert len(native.train_paths) == 2 and native.sizes == "40x60"


def test_non_square_photos_of_different_sizes_keep_their_aspect(tmp_path, capsys):
    """Images of different heights come back as a list, each at its own aspect, all scaled by
    ONE factor (never squashed to a square); masks are scaled with their images."""
    root = make_photos(tmp_path)
    data = load_mvtec_folder(root, "strip")
    line = capsys.readouterr().out.strip()
    assert [x.shape for x in data.x_train] == [(40, 90), (42, 90), (44, 90)]
    assert [x.shape for x in data.x_test] == [(42, 90), (44, 90), (40, 90)]
    assert [m.shape for m in data.masks_test] == [x.shape for x in data.x_test]
    assert [int(m.sum()) for m in data.masks_test] == [0, 70, 16 * 32]  # 0/255 and 0/1 alike
    assert data.scale == 1.0 and data.sizes == "40x90 to 44x90"
    assert line.startswith("Data source: file | MVTec-layout folder")
    assert "3 training and 3 test images (1 good, 2 defective" in line
    assert line.endswith("at 40x90 to 44x90 pixels")  # no "scaled by" at scale 1

    half = load_mvtec_folder(root, "strip", scale=0.5)
    line = capsys.readouterr().out.strip()
    assert [x.shape for x in half.x_train] == [(20, 45), (21, 45), (22, 45)]
    assert [m.shape for m in half.masks_test] == [x.shape for x in half.x_test]
    assert half.scale == 0.5 and line.endswith("at 20x45 to 22x45 pixels, scaled by 0.5")
    blob = half.masks_test[2]
    assert blob.sum() == 8 * 16 and blob[4:12, 15:31].all()  # the 0/1 blob, halved exactly
    # the thin scratch survives (a row of the half-size mask), in the right place
    scratch = half.masks_test[1]
    assert scratch.any() and set(np.nonzero(scratch)[0]) <= {10, 11}
    assert 30 <= scratch.sum() <= 2 * 36

    # max_side: the longest side of the largest image (90) becomes at most 45 pixels, and the
    # factor is the same for all images; it only ever lowers scale
    capped = load_mvtec_folder(root, "strip", max_side=45, verbose=False)
    assert capped.scale == pytest.approx(0.5) and capped.sizes == half.sizes
    smaller = load_mvtec_folder(root, "strip", scale=0.25, max_side=45, verbose=False)
    assert smaller.scale == 0.25 and smaller.sizes == "10x22 to 11x22"
    assert all(m.any() for m in smaller.masks_test[1:])  # defects never vanish
    larger = load_mvtec_folder(root, "strip", scale=2.0, max_side=135, verbose=False)
    assert larger.scale == pytest.approx(1.5) and larger.sizes == "60x135 to 66x135"
    assert [m.shape for m in larger.masks_test] == [x.shape for x in larger.x_test]


def test_category_scale_and_image_size(tmp_path):
    tall = save(tmp_path / "tall.png", np.zeros((300, 120), np.uint8))
    wide = save(tmp_path / "wide.jpg", np.zeros((50, 200, 3), np.uint8))
    assert image_size(tall) == (300, 120) and image_size(wide) == (50, 200)
    assert category_scale([tall, wide]) == 1.0
    assert category_scale([tall, wide], scale=0.5) == 0.5
    assert category_scale([tall, wide], max_side=150) == pytest.approx(0.5)  # 300 -> 150
    assert category_scale([tall, wide], scale=0.25, max_side=150) == 0.25
    assert category_scale([wide], max_side=400, scale=1.5) == 1.5
    with pytest.raises(DataError, match="scale"):
        category_scale([tall], scale=0)
    with pytest.raises(DataError, match="max_side"):
        category_scale([tall], max_side=4)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="Could not read image"):
        image_size(tmp_path / "broken.png")


def test_rescale_keeps_the_aspect_ratio_and_the_range():
    img = np.random.default_rng(0).random((64, 150))
    assert rescale_image(img, 1.0) is img
    half = rescale_image(img, 0.5)
    assert half.shape == (32, 75) and 0 <= half.min() <= half.max() <= 1
    assert rescale_image(img, 1 / 3).shape == (21, 50)
    assert rescale_image(np.ones((10, 30)), 2.0).shape == (20, 60)
    assert rescale_image(np.ones((10, 30)), 2.0).max() <= 1.0
    mask = np.zeros((64, 150), bool)
    mask[:, 100:] = True
    small = rescale_mask(mask, (32, 75))
    assert small.dtype == bool and small[:, 50:].all() and not small[:, :50].any()
    assert rescale_mask(mask, (64, 150)) is mask


def test_colour_is_converted_to_luminance(tmp_path):
    root = make_folder(tmp_path)
    red = np.zeros((40, 60, 3), np.uint8)
    red[..., 0] = 255
    save(root / "widget" / "train" / "good" / "000.png", red)
    data = load_mvtec_folder(root, "widget", verbose=False)
    np.testing.assert_allclose(data.x_train[0], 0.2125, atol=1e-6)  # Rec. 709 weight of red
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 255, 7  # green, nearly transparent: alpha is ignored
    np.testing.assert_allclose(read_gray(save(tmp_path / "g.png", rgba)), 0.7154, atol=1e-6)
    u16 = save(tmp_path / "u16.png", np.full((4, 5), 65535, np.uint16))
    np.testing.assert_allclose(read_gray(u16), 1.0)


def test_thin_defects_survive_downscaling(tmp_path):
    root = make_folder(tmp_path, size=(128, 96))
    mask = np.zeros((128, 96), np.uint8)
    mask[60, 10:90] = 255  # a 1-pixel scratch
    save(root / "widget" / "ground_truth" / "dent" / "000_mask.png", mask)
    data = load_mvtec_folder(root, "widget", scale=0.125, verbose=False)
    assert data.x_test[1].shape == (16, 12) and data.masks_test[1].shape == (16, 12)
    assert data.masks_test[1].sum() > 0
    assert set(np.nonzero(data.masks_test[1])[0]) <= {7, 8}  # where the scratch was
    assert not rescale_mask(np.zeros((128, 96), bool), (16, 12)).any()  # nothing from nothing


@pytest.mark.parametrize("encoding", ["0/255", "0/1", "0/1 16-bit", "0/1 red channel"])
def test_binary_masks_mark_the_same_defect_in_any_encoding(tmp_path, encoding):
    """Masks saved as 0/1 (many labelling tools) mark the same defect as MVTec's 0/255."""
    marked = np.zeros((40, 60), bool)
    marked[10:20, 20:40] = True
    if encoding == "0/255":
        img = marked.astype(np.uint8) * 255
    elif encoding == "0/1":
        img = marked.astype(np.uint8)
    elif encoding == "0/1 16-bit":
        img = marked.astype(np.uint16)
    else:
        img = np.zeros((40, 60, 3), np.uint8)
        img[..., 0] = marked
    path = save(tmp_path / "mask.png", img)
    np.testing.assert_array_equal(read_mask(path), marked)
    root = make_folder(tmp_path / "data")
    save(root / "widget" / "ground_truth" / "dent" / "000_mask.png", img)
    data = load_mvtec_folder(root, "widget", verbose=False)
    np.testing.assert_array_equal(data.masks_test[1], marked)
    half = load_mvtec_folder(root, "widget", scale=0.5, verbose=False)
    assert half.masks_test[1].sum() == marked.sum() // 4  # scaled like the 0/255 mask
    assert data.n_empty_masks == 0


def test_defective_image_with_an_empty_mask_is_reported(tmp_path, capsys):
    root = make_folder(tmp_path)
    save(root / "widget" / "test" / "dent" / "001.png", np.zeros((40, 60), np.uint8))
    save(root / "widget" / "ground_truth" / "dent" / "001_mask.png", np.zeros((40, 60), np.uint8))
    data = load_mvtec_folder(root, "widget", scale=0.8)
    line = capsys.readouterr().out
    assert data.y_test.tolist() == [0, 1, 1] and data.n_empty_masks == 1
    assert line.startswith("Data source: file") and \
        "WARNING: 1 defective image(s) with an empty mask" in line
    assert "WARNING" not in str(load_mvtec_folder(make_folder(tmp_path / "ok"), "widget",
                                                  verbose=False))


def test_category_with_good_test_images_only_loads(tmp_path, capsys):
    root = make_folder(tmp_path)
    for p in (root / "widget" / "test" / "dent").iterdir():
        p.unlink()
    data = load_mvtec_folder(root, "widget", max_side=30)
    assert data.y_test.tolist() == [0] and data.n_empty_masks == 0 and data.defect_types == []
    assert "1 good, 0 defective" in capsys.readouterr().out
    assert data.x_test[0].shape == (20, 30)


@pytest.mark.parametrize("breakage, message", [
    ("no root", "not found"),
    ("no category", r"categories there: \['widget'\]"),
    ("empty train", "holds no images"),
    ("no test", "test/"),
    ("missing mask", "000_mask.png"),
    ("mask size", "must have its image's size"),
    ("unreadable", "Could not read image"),
    ("bad scale", "scale"),
    ("bad max_side", "max_side"),
    ("bad n_train", "n_train"),
])
def test_loader_errors_say_what_is_wrong(tmp_path, breakage, message):
    root = make_folder(tmp_path / "data")
    category, kwargs = "widget", {}
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
    elif breakage == "bad scale":
        kwargs = {"scale": -0.5}
    elif breakage == "bad max_side":
        kwargs = {"max_side": 4}
    elif breakage == "bad n_train":
        kwargs = {"n_train": 0}
    with pytest.raises(DataError, match=message):
        load_mvtec_folder(root, category, verbose=False, **kwargs)


def test_images_of_different_sizes_load_and_masks_follow_them(tmp_path):
    """What the old loader refused (sizes differ) now loads: a 10x10 training image next to
    40x60 ones, and a test image with its mask at another size."""
    root = make_folder(tmp_path)
    save(root / "widget" / "train" / "good" / "001.png", np.zeros((10, 10), np.uint8))
    save(root / "widget" / "test" / "dent" / "001.png", np.zeros((30, 80), np.uint8))
    mask = np.zeros((30, 80), np.uint8)
    mask[4:10, 60:70] = 255
    save(root / "widget" / "ground_truth" / "dent" / "001_mask.png", mask)
    data = load_mvtec_folder(root, "widget", scale=0.5, verbose=False)
    assert [x.shape for x in data.x_train] == [(20, 30), (5, 5), (20, 30)]
    assert data.x_test[2].shape == data.masks_test[2].shape == (15, 40)
    assert data.masks_test[2][2:5, 30:35].all() and data.masks_test[2].sum() == 3 * 5
    assert data.sizes == "5x5 to 20x30"


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
    data = load_mvtec_folder(root, "widget", scale=0.5, verbose=False)
    assert len(data.x_test) == 2 and data.x_test[0].shape == (20, 30)
    assert sorted(p.name for p in root.iterdir()) == ["license.txt", "widget"]  # no temp left
    # an archive that wraps the categories in one folder works too; existing ones are kept
    wrapped = make_tar(tmp_path / "wrapped.tar.gz", src, "mvtec_anomaly_detection/")
    assert extract_mvtec_archive(wrapped, root) == []
    assert extract_mvtec_archive(wrapped, root, replace=True) == ["widget"]
    assert sorted(p.name for p in root.iterdir()) == ["license.txt", "widget"]


def test_replace_touches_category_folders_only(tmp_path):
    """replace=True swaps category folders; the cache's .downloads and other folders of the
    root that the archive happens to name are never replaced or deleted."""
    root = tmp_path / "mvtec"
    (root / ".downloads").mkdir(parents=True)
    (root / ".downloads" / "all.tar.xz.part").write_bytes(b"12345")  # a download in progress
    (root / "notes").mkdir()
    (root / "notes" / "mine.txt").write_text("my notes")
    make_folder(root)  # an older 'widget'
    (root / "widget" / "old.txt").write_text("old")
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        add_member(tar, "widget/train/good/000.png", b"new")
        add_member(tar, ".downloads/train/good/000.png", b"not a download")
        add_member(tar, "notes/train/good/000.png", b"not my notes")
    assert extract_mvtec_archive(archive, root, replace=True) == ["widget"]
    assert (root / ".downloads" / "all.tar.xz.part").read_bytes() == b"12345"
    assert sorted(p.name for p in (root / ".downloads").iterdir()) == ["all.tar.xz.part"]
    assert (root / "notes" / "mine.txt").read_text() == "my notes"
    assert not (root / "notes" / "train").exists()
    assert not (root / "widget" / "old.txt").exists()  # the category itself was replaced
    assert (root / "widget" / "train" / "good" / "000.png").read_bytes() == b"new"
    assert sorted(p.name for p in root.iterdir()) == [".downloads", "notes", "widget"]


def test_absurdly_deep_archive_fails_cleanly(tmp_path):
    """2000 nested folders: a clear DataError (no RecursionError), no temporary folder left."""
    archive = tmp_path / "deep.tar"
    with tarfile.open(archive, "w") as tar:
        add_member(tar, "widget/train/good/000.png")
        for depth in range(1, 2001):
            add_member(tar, "/".join(["d"] * depth), kind=tarfile.DIRTYPE)
        add_member(tar, "/".join(["d"] * 2000) + "/f.png")
    root = tmp_path / "root"
    with pytest.raises(DataError, match="nested .* deep"):
        extract_mvtec_archive(archive, root)
    assert list(root.iterdir()) == []  # no .extract-* folder, nothing half-extracted


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


def test_corrupted_or_wrong_archive_leaves_nothing_behind(tmp_path):
    src = make_folder(tmp_path / "src")
    good = make_tar(tmp_path / "w.tar.xz", src, mode="w:xz").read_bytes()
    broken = tmp_path / "broken.tar.xz"
    broken.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupted"):
        extract_mvtec_archive(broken, tmp_path / "root")
    assert list((tmp_path / "root").iterdir()) == []
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="no folder in MVTec layout"):
        extract_mvtec_archive(make_tar(tmp_path / "docs.tar", tmp_path / "docs", mode="w"),
                              tmp_path / "root")
    assert list((tmp_path / "root").iterdir()) == []
    with pytest.raises(DataError, match="not found"):
        extract_mvtec_archive(tmp_path / "missing.tar.xz", tmp_path / "root")


# --------------------------------------------------------------------------- download
class ArchiveServer:
    """A local HTTP/1.0 server of one file at ``/<name>``, run in a thread.

    ``length``: announce the size (Content-Length); ``cut``: send only that many bytes and
    close, as a server does whose connection drops (without a length, the client sees a clean
    end of the stream); ``ranges``: honour Range requests (206 with Content-Range), else send
    the whole file.  The Range header of every request is recorded in ``requests``.
    """

    def __init__(self, payload: bytes):
        self.payload, self.cut, self.length, self.ranges = payload, None, False, False
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.headers.get("Range"))
                body, status, headers = server.payload, 200, {}
                if server.length:
                    headers["Content-Length"] = str(len(body))
                rng = self.headers.get("Range")
                if server.ranges and rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    body, status = body[start:], 206
                    headers = {"Content-Range": f"bytes {start}-{len(server.payload) - 1}/"
                                                f"{len(server.payload)}",
                               "Content-Length": str(len(body))}
                if server.cut is not None:
                    body = body[:server.cut]
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/x/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def bottle_server(tmp_path, monkeypatch, no_proxy):
    """A tiny 'bottle' archive (.tar.xz) served locally; MVTEC_AD_DOWNLOADS points at it
    (no published sha256, like the real category archives)."""
    src = make_folder(tmp_path / "src", category="bottle")
    archive = make_tar(tmp_path / "bottle.tar.xz", src, mode="w:xz")
    server = ArchiveServer(archive.read_bytes())
    monkeypatch.setitem(MVTEC_AD_DOWNLOADS, "bottle",
                        {"url": server.url("bottle.tar.xz"), "sha256": None})
    yield server
    server.close()


@pytest.mark.parametrize("second_try", ["range", "whole file"])
def test_cut_off_download_never_becomes_the_archive(tmp_path, bottle_server, second_try):
    """No Content-Length and a dropped connection: the partial file stays .part (the old code
    renamed it to the archive, reused by every later run); the next run completes it."""
    root = tmp_path / "mvtec"
    size = len(bottle_server.payload)
    bottle_server.cut = size // 2
    with pytest.raises(DataError, match="Run again") as info:
        download_mvtec("bottle", root, progress=False)
    downloads = root / ".downloads"
    assert not (downloads / "bottle.tar.xz").exists()
    assert (downloads / "bottle.tar.xz.part").stat().st_size == size // 2
    assert not (root / "bottle").exists()
    assert f"{size // 2:,} bytes" in str(info.value) and "by hand" in str(info.value)

    bottle_server.cut, bottle_server.ranges = None, second_try == "range"
    assert download_mvtec("bottle", root, progress=False) == root
    assert bottle_server.requests == [None, f"bytes={size // 2}-"]
    assert list(downloads.iterdir()) == []  # verified, unpacked, then deleted
    data = load_mvtec("bottle", max_side=30, root=root, verbose=False)
    assert data.source == "online" and len(data.x_train) == 3 and data.scale == 0.5
    assert "CC BY-NC-SA" in data.detail


def test_download_is_cached_and_never_fetched_offline(tmp_path, bottle_server, monkeypatch):
    root = tmp_path / "mvtec"
    download_mvtec("bottle", root, progress=False, keep_archive=True)
    assert (root / ".downloads" / "bottle.tar.xz").read_bytes() == bottle_server.payload
    assert download_mvtec("bottle", root) == root and len(bottle_server.requests) == 1
    monkeypatch.setenv("COURSE_DATA", "offline")  # offline: a missing category is not fetched
    with pytest.raises(DataError, match="COURSE_DATA=offline"):
        load_mvtec("bottle", root=tmp_path / "elsewhere")
    assert len(bottle_server.requests) == 1


def test_download_checks_the_checksum(tmp_path, bottle_server, monkeypatch):
    root = tmp_path / "mvtec"
    downloads = root / ".downloads"
    good = hashlib.sha256(bottle_server.payload).hexdigest()
    bottle_server.length = True  # size known: a complete file with a wrong hash is corrupt
    monkeypatch.setitem(MVTEC_AD_DOWNLOADS["bottle"], "sha256", "0" * 64)
    with pytest.raises(DataError, match="sha256"):
        download_mvtec("bottle", root, progress=False)
    assert [p.name for p in downloads.iterdir()] == ["bottle.tar.xz.corrupt"]
    assert not (root / "bottle").exists()
    # an archive saved by hand under the final name is checked too, and moved aside
    (downloads / "bottle.tar.xz.corrupt").unlink()
    (downloads / "bottle.tar.xz").write_bytes(b"a different file")
    monkeypatch.setitem(MVTEC_AD_DOWNLOADS["bottle"], "sha256", good)
    with pytest.raises(DataError, match="moved it to"):
        download_mvtec("bottle", root, progress=False)
    assert [p.name for p in downloads.iterdir()] == ["bottle.tar.xz.corrupt"]
    assert len(bottle_server.requests) == 1
    download_mvtec("bottle", root, progress=False)  # the next run downloads it afresh
    assert (root / "bottle" / "train" / "good").is_dir() and len(bottle_server.requests) == 2


def test_failed_download_says_where_to_get_the_data(tmp_path, monkeypatch, no_proxy):
    with socket.socket() as s:  # a port where nothing listens: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(MVTEC_AD_DOWNLOADS, "carpet",
                        {"url": f"http://127.0.0.1:{port}/x/carpet.tar.xz", "sha256": None})
    part = tmp_path / "mvtec" / ".downloads" / "carpet.tar.xz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"12345")  # an earlier run got 5 bytes
    with pytest.raises(DataError, match="by hand") as info:
        download_mvtec("carpet", tmp_path / "mvtec", progress=False)
    assert MVTEC_AD_PAGE in str(info.value) and "carpet.tar.xz" in str(info.value)
    assert "resume the partial download (5 bytes" in str(info.value)
    assert part.read_bytes() == b"12345"
    with pytest.raises(DataError, match=MVTEC_AD_PAGE):
        load_mvtec("carpet", root=tmp_path / "mvtec", download=False)
    with pytest.raises(DataError, match="bottle"):
        download_mvtec("bottles")
    with pytest.raises(DataError, match="carpet"):
        load_mvtec("carpets")


def test_download_table_is_complete():
    assert set(MVTEC_AD_DOWNLOADS) == {"all", *MVTEC_AD_CATEGORIES}
    assert len(MVTEC_AD_CATEGORIES) == 15
    for name, info in MVTEC_AD_DOWNLOADS.items():
        assert info["url"].startswith("https://")
        assert info["url"].endswith(("mvtec_anomaly_detection.tar.xz" if name == "all"
                                     else f"/{name}.tar.xz"))
        assert mvtec_ad.archive_name(name) == info["url"].rsplit("/", 1)[-1]
    assert len(MVTEC_AD_DOWNLOADS["all"]["sha256"]) == 64


def test_cache_items_list_the_categories_present(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    [summary] = mvtec_ad.mvtec_cache_items()
    assert summary.state == "missing" and "prefetch --mvtec" in summary.hint
    make_folder(mvtec_ad.mvtec_dir(), category="grid")
    [summary] = mvtec_ad.mvtec_cache_items()
    assert summary.state == "OK" and summary.detail.startswith("1/15 categories: grid")
    items = mvtec_ad.mvtec_cache_items(["grid", "wood"])
    assert [(i.name, i.state) for i in items] == [("MVTec AD 'grid'", "OK"),
                                                 ("MVTec AD 'wood'", "missing")]
    assert "wood.tar.xz" in items[1].hint and str(tmp_path) in items[1].hint
    assert len(mvtec_ad.mvtec_cache_items(["all"])) == 15
    grid = load_mvtec("grid", scale=0.5, n_train=2, verbose=False)
    assert isinstance(grid, MVTecData) and grid.sizes == "20x30" and len(grid.x_train) == 2


# --------------------------------------------------------------------------- hostile image files
def _photo(shape=(24, 32)) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((*shape, 3)) * 255).astype(np.uint8)


def test_cmyk_images_are_converted_not_read_as_rgba(tmp_path):
    """Print files in CMYK: their four ink channels passed for RGBA, so a white page read
    black (0.0) and a grey JPEG read black too."""
    from PIL import Image

    Image.new("CMYK", (20, 10), (0, 0, 0, 0)).save(tmp_path / "white.jpg")
    Image.new("CMYK", (20, 10), (0, 0, 0, 128)).save(tmp_path / "grey.jpg")
    np.testing.assert_allclose(read_gray(tmp_path / "white.jpg"), 1.0)
    np.testing.assert_allclose(read_gray(tmp_path / "grey.jpg"), 127 / 255, atol=2 / 255)
    rgb = save(tmp_path / "photo.png", _photo())
    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "photo.tif")   # lossless
    np.testing.assert_allclose(read_gray(tmp_path / "photo.tif"), read_gray(rgb), atol=1e-12)
    mask = Image.new("CMYK", (20, 10), (0, 0, 0, 255))                      # black: good
    mask.paste((0, 0, 0, 0), (5, 2, 9, 6))                                   # white: defect
    mask.save(tmp_path / "mask.tif")
    assert read_mask(tmp_path / "mask.tif").sum() == 16
    root = make_folder(tmp_path / "data")
    Image.new("CMYK", (60, 40), (0, 0, 0, 0)).save(root / "widget" / "test" / "good" / "000.jpg")
    data = load_mvtec_folder(root, "widget", verbose=False)
    np.testing.assert_allclose(data.x_test[0], 1.0)


def test_float_images_outside_0_1_are_refused_not_clipped_to_white(tmp_path):
    values = np.linspace(0, 255, 12 * 16, dtype=np.float32).reshape(12, 16)
    save(tmp_path / "bytes.tif", values)
    with pytest.raises(DataError, match=r"bytes.tif: float pixels must lie in \[0, 1\], found "
                                        r"0 to 255 \(clipping would flatten the image\)"):
        read_gray(tmp_path / "bytes.tif")
    save(tmp_path / "unit.tif", values / 255)
    np.testing.assert_allclose(read_gray(tmp_path / "unit.tif"), values / 255, atol=1e-7)
    save(tmp_path / "nan.tif", np.where(values > 100, np.nan, values / 255).astype(np.float32))
    with pytest.raises(DataError, match="NaN or infinite"):
        read_gray(tmp_path / "nan.tif")
    root = make_folder(tmp_path / "data")
    save(root / "widget" / "train" / "good" / "001.tif", values)
    with pytest.raises(DataError, match="001.tif: float pixels must lie in"):
        load_mvtec_folder(root, "widget", verbose=False)


def test_integer_pixels_of_unknown_range_are_refused(tmp_path):
    """Pillow's 32-bit mode 'I': divided by 2**31 it read almost black."""
    from PIL import Image

    Image.fromarray(np.full((8, 8), 40_000, np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(DataError, match=r"i32.tif: pixels of type int32 are not supported.*"
                                        r"8- or 16-bit unsigned"):
        read_gray(tmp_path / "i32.tif")


def test_jpeg_masks_do_not_count_compression_noise_as_defect(tmp_path):
    """A 100-pixel square saved as JPEG read as 175 defect pixels (every faint halo pixel)."""
    from PIL import Image

    marked = np.zeros((40, 40), bool)
    marked[10:20, 10:20] = True
    Image.fromarray(marked.astype(np.uint8) * 255).save(tmp_path / "mask.jpg", quality=75)
    assert (np.asarray(Image.open(tmp_path / "mask.jpg")) != 0).sum() > 150  # the noise
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.jpg"), marked)
    save(tmp_path / "empty.png", np.zeros((40, 40), np.uint8))
    assert not read_mask(tmp_path / "empty.png").any()
    # lossless masks keep "any nonzero pixel is a defect": labels 1, 2, 3 all count
    labels = np.zeros((40, 40), np.uint8)
    labels[2:12, 2:12], labels[20:30, 2:12], labels[20:30, 20:30] = 1, 2, 3
    np.testing.assert_array_equal(read_mask(save(tmp_path / "labels.png", labels)), labels > 0)


# --------------------------------------------------------------------------- colour
def test_read_rgb_keeps_colour_and_repeats_grey(tmp_path):
    """``read_rgb`` beside ``read_gray``: RGB kept, grey (and grey + alpha) repeated to three
    channels, alpha dropped, CMYK converted, 16-bit scaled; its luminance is read_gray's."""
    from PIL import Image
    from skimage.color import rgb2gray

    photo = _photo()
    rgb = image_files.read_rgb(save(tmp_path / "photo.png", photo))
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.float64
    np.testing.assert_allclose(rgb, photo / 255)
    np.testing.assert_allclose(rgb2gray(rgb), read_gray(tmp_path / "photo.png"), atol=1e-12)
    grey = (photo[..., 0] // 2).astype(np.uint8)
    for name, img in (("grey.png", Image.fromarray(grey)),
                      ("grey_alpha.png", Image.fromarray(grey).convert("LA")),
                      ("grey16.png", Image.fromarray(grey.astype(np.uint16) * 257))):
        img.save(tmp_path / name)
        out = image_files.read_rgb(tmp_path / name)
        assert out.shape == (24, 32, 3), name
        for c in range(3):
            np.testing.assert_allclose(out[..., c], grey / 255, atol=1e-12, err_msg=name)
    Image.fromarray(photo).convert("RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(image_files.read_rgb(tmp_path / "rgba.png"), photo / 255)
    Image.new("CMYK", (20, 10), (0, 0, 0, 0)).save(tmp_path / "white.tif")
    np.testing.assert_allclose(image_files.read_rgb(tmp_path / "white.tif"), 1.0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="Could not read image .*broken.png"):
        image_files.read_rgb(tmp_path / "broken.png")


def test_loader_reads_colour_when_asked(tmp_path, capsys):
    """``color=True``: RGB images (H, W, 3) scaled like grey ones (never the channel axis),
    grey files repeated to three channels, masks unchanged and 2-D; the summary says so."""
    root = make_folder(tmp_path)
    grey = load_mvtec_folder(root, "widget", scale=0.5)
    assert not grey.color and " in grey at 20x30 pixels" in capsys.readouterr().out
    data = load_mvtec_folder(root, "widget", scale=0.5, color=True)
    line = capsys.readouterr().out
    assert data.color and " in colour (RGB) at 20x30 pixels, scaled by 0.5" in line
    assert [x.shape for x in data.x_train + data.x_test] == [(20, 30, 3)] * 5
    assert all(x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
               for x in data.x_train + data.x_test)
    assert data.sizes == grey.sizes == "20x30"
    dent = data.x_test[1]                      # a grey file: three equal channels
    np.testing.assert_array_equal(dent[..., 0], dent[..., 2])
    np.testing.assert_allclose(dent[..., 0], grey.x_test[1], atol=1e-6)
    assert not np.allclose(data.x_train[0][..., 0], data.x_train[0][..., 1])  # real colour
    for a, b in zip(data.masks_test, grey.masks_test):
        assert a.ndim == 2 and a.dtype == bool
        np.testing.assert_array_equal(a, b)
    native = load_mvtec_folder(root, "widget", color=True, verbose=False)
    np.testing.assert_allclose(native.x_train[0], skimage.io.imread(
        root / "widget" / "train" / "good" / "000.png") / 255, atol=1e-6)


def test_load_mvtec_passes_colour_on(tmp_path):
    root = make_folder(tmp_path, category="bottle", size=(30, 30))
    data = load_mvtec("bottle", root=root, download=False, max_side=15, color=True,
                      verbose=False)
    assert data.source == "online" and data.color and data.sizes == "15x15"
    assert {x.shape for x in data.x_train} == {(15, 15, 3)}


def test_rescale_and_category_scale_handle_colour(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((40, 60, 3))
    half = rescale_image(img, 0.5)
    assert half.shape == (20, 30, 3) and 0 <= half.min() <= half.max() <= 1
    for c in range(3):  # each channel scaled on its own, as a grey image is
        np.testing.assert_allclose(half[..., c], rescale_image(img[..., c], 0.5), atol=1e-12)
    assert rescale_image(img, 1.5).shape == (60, 90, 3)
    with pytest.raises(DataError, match=r"rescale_image: expected an image.*shape \(2, 4, 4, 3\)"):
        rescale_image(np.zeros((2, 4, 4, 3)), 0.5)
    paths = [save(tmp_path / "a.png", _photo((40, 80))), save(tmp_path / "b.png", _photo()[..., 0])]
    assert category_scale(paths, 1.0, max_side=40) == 0.5


def test_grey_steps_refuse_colour_images_with_advice():
    """Code written for grey images says what to do with colour ones, not just 'wrong shape'."""
    from course_lib.checks import check_image_batch, check_image_list

    with pytest.raises(DataError, match=r"images\[1\].*colour image.*color=False.*rgb2gray"):
        check_image_list([np.zeros((8, 8)), np.zeros((8, 8, 3))])
    with pytest.raises(DataError, match=r"colour images.*rgb2gray"):
        check_image_batch(np.zeros((2, 8, 8, 3)), "x")


def test_check_image_list_accepts_colour_when_asked():
    from course_lib.checks import check_image_list

    rng = np.random.default_rng(0)
    rgb, grey = rng.random((10, 12, 3)), rng.random((8, 6))
    out = check_image_list([rgb, grey, grey[..., None]], color=True)
    assert [a.shape for a in out] == [(10, 12, 3), (8, 6, 3), (8, 6, 3)]
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in out)
    np.testing.assert_allclose(out[0], rgb, rtol=1e-6)
    np.testing.assert_allclose(out[1][..., 2], grey, rtol=1e-6)
    batch = check_image_list(rng.random((2, 8, 8, 3)), color=True, dtype=np.float64)
    assert [a.shape for a in batch] == [(8, 8, 3)] * 2
    for bad, message in (([rng.random((8, 8, 4))], r"images\[0\].*RGB \(H, W, 3\).*alpha"),
                         ([rgb, np.full((8, 8, 3), np.nan)], r"images\[1\].*NaN"),
                         ([rgb * 2], r"images\[0\].*\[0, 1\]"),
                         ([rgb, rng.random((4, 20, 3))], r"images\[1\].*at least 8x8"),
                         ("image.png", "list of images"), ([], "at least 1 image")):
        with pytest.raises(DataError, match=message):
            check_image_list(bad, color=True, unit_range=True, min_side=8)
