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
from course_lib.data import mvtec
from course_lib.data.mvtec import (MVTEC_AD_CATEGORIES, MVTEC_AD_DOWNLOADS, MVTEC_AD_PAGE,
                                   MVTecData, download_mvtec, extract_mvtec_archive,
                                   load_mvtec, load_mvtec_folder, read_mask, resize_mask)
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


# --------------------------------------------------------------------------- loader
def test_loader_reads_colour_png_and_jpeg_of_any_size(tmp_path):
    root = make_folder(tmp_path)
    data = load_mvtec_folder(root, "widget", size=(20, 30), verbose=False)
    assert data.x_train.shape == (3, 20, 30) and data.x_train.dtype == np.float32
    assert data.x_test.shape == (2, 20, 30) and 0 <= data.x_test.min() <= data.x_test.max() <= 1
    assert data.defect_test == ["good", "dent"] and data.y_test.tolist() == [0, 1]
    expected = np.zeros((20, 30), np.uint8)
    expected[5:10, 10:20] = 1  # the 40x60 mask, halved
    np.testing.assert_array_equal(data.masks_test[1], expected)
    assert data.masks_test[0].sum() == 0 and data.n_empty_masks == 0
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
    assert not resize_mask(np.zeros((128, 128), bool), (16, 16)).any()  # nothing from nothing


@pytest.mark.parametrize("encoding", ["0/255", "0/1", "0/1 16-bit", "0/1 red channel"])
def test_any_nonzero_mask_pixel_is_a_defect(tmp_path, encoding):
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
    data = load_mvtec_folder(root, "widget", size=None, verbose=False)
    np.testing.assert_array_equal(data.masks_test[1], marked)
    assert data.n_empty_masks == 0


def test_defective_image_with_an_empty_mask_is_reported(tmp_path, capsys):
    root = make_folder(tmp_path)
    save(root / "widget" / "test" / "dent" / "001.png", np.zeros((40, 60), np.uint8))
    save(root / "widget" / "ground_truth" / "dent" / "001_mask.png", np.zeros((40, 60), np.uint8))
    data = load_mvtec_folder(root, "widget", size=32)
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
    data = load_mvtec_folder(root, "widget", size=16)
    assert data.y_test.tolist() == [0] and data.n_empty_masks == 0 and data.defect_types == []
    assert "1 good, 0 defective" in capsys.readouterr().out


@pytest.mark.parametrize("breakage, message", [
    ("no root", "not found"),
    ("no category", r"categories there: \['widget'\]"),
    ("empty train", "holds no images"),
    ("no test", "test/"),
    ("missing mask", "000_mask.png"),
    ("mask size", "must have its image's size"),
    ("unreadable", "Could not read image"),
    ("sizes differ", "pass size"),
    ("bad size", "size must be"),
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
    elif breakage == "bad size":
        size = 4
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
    data = load_mvtec("bottle", size=16, root=root, verbose=False)
    assert data.source == "online" and len(data.x_train) == 3 and "CC BY-NC-SA" in data.detail


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
        assert mvtec.archive_name(name) == info["url"].rsplit("/", 1)[-1]
    assert len(MVTEC_AD_DOWNLOADS["all"]["sha256"]) == 64


def test_cache_items_list_the_categories_present(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    [summary] = mvtec.mvtec_cache_items()
    assert summary.state == "missing" and "prefetch --mvtec" in summary.hint
    make_folder(mvtec.mvtec_dir(), category="grid")
    [summary] = mvtec.mvtec_cache_items()
    assert summary.state == "OK" and summary.detail.startswith("1/15 categories: grid")
    items = mvtec.mvtec_cache_items(["grid", "wood"])
    assert [(i.name, i.state) for i in items] == [("MVTec AD 'grid'", "OK"),
                                                 ("MVTec AD 'wood'", "missing")]
    assert "wood.tar.xz" in items[1].hint and str(tmp_path) in items[1].hint
    assert len(mvtec.mvtec_cache_items(["all"])) == 15
    assert isinstance(load_mvtec("grid", size=16, verbose=False), MVTecData)
