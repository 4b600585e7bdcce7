"""What is cached, and prefetching (``course_lib.data.cache``; ``python -m course_lib.data
prefetch|status`` called in-process through ``course_lib.cli.data.main``).

Downloads come from a local HTTP server (see ``test_download.LocalServer``) serving small
stand-ins for Keras' MNIST file and the full credit-card CSV; every cache is a temporary folder.
"""
from __future__ import annotations

import _thread
import hashlib
import io
import shutil
import socket

import numpy as np
import pandas as pd
import pytest

from course_lib.checks import DataError
from course_lib.cli.data import main
from course_lib.config import REPO_DIR, get_profile
from course_lib.data import cache as cache_module
from course_lib.data import creditcard as C
from course_lib.data import ecg as E
from course_lib.data import mnist as M
from course_lib.data.cache import cache_status, format_cache_table, prefetch
from course_lib.data.common import CacheItem, human_size
from course_lib.data.mvtec_ad import mvtec_dir
from course_lib.data.textures import load_textures
from test_download import LocalServer, closed_port_url, no_proxy, short_timeouts


def _mnist_bytes() -> bytes:
    buf = io.BytesIO()
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    np.savez(buf, x_train=x, y_train=np.arange(20) % 10, x_test=x[:10], y_test=np.arange(10))
    return buf.getvalue()


def _creditcard_bytes(n_rows=20, n_fraud=2) -> bytes:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n_rows, 30)).round(4),
                         columns=list(C.CREDITCARD_COLUMNS[:-1]))
    frame["Class"] = [1] * n_fraud + [0] * (n_rows - n_fraud)
    return frame.to_csv(index=False).encode()


def _ecg_bytes(n_rows=20, n_abnormal=5) -> bytes:
    beats = np.random.default_rng(0).normal(size=(n_rows, E.ECG_LENGTH)).round(5)
    labels = [0.0] * n_abnormal + [1.0] * (n_rows - n_abnormal)
    return "\n".join(",".join(map(str, [*b, lab])) for b, lab in zip(beats, labels)).encode()


MNIST_BYTES, CREDITCARD_BYTES, ECG_BYTES = _mnist_bytes(), _creditcard_bytes(), _ecg_bytes()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty Keras and course caches under tmp_path; every URL at a closed port."""
    no_proxy(monkeypatch)
    short_timeouts(monkeypatch)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(M, "MNIST_URL", closed_port_url("/mnist.npz"))
    monkeypatch.setattr(M, "MNIST_SHA256", hashlib.sha256(MNIST_BYTES).hexdigest())
    monkeypatch.setattr(C, "CREDITCARD_URL", closed_port_url("/creditcard.csv"))
    monkeypatch.setattr(C, "CREDITCARD_ROWS", 20)
    monkeypatch.setattr(C, "CREDITCARD_FRAUDS", 2)
    monkeypatch.setattr(E, "ECG_URL", closed_port_url("/ecg.csv"))
    monkeypatch.setattr(E, "ECG_ROWS", 20)
    return tmp_path


@pytest.fixture
def server(caches, monkeypatch):
    with LocalServer({"/mnist.npz": MNIST_BYTES, "/creditcard.csv": CREDITCARD_BYTES,
                      "/ecg.csv": ECG_BYTES}) as srv:
        monkeypatch.setattr(M, "MNIST_URL", srv.url("/mnist.npz"))
        monkeypatch.setattr(C, "CREDITCARD_URL", srv.url("/creditcard.csv"))
        monkeypatch.setattr(E, "ECG_URL", srv.url("/ecg.csv"))
        yield srv


def _keras_files(caches):
    return sorted(p.name for p in (caches / "keras").rglob("*") if p.is_file())


def _states():
    return {it.name: it.state for it in cache_status("fast")}


def test_prefetch_all_succeeds_and_lists_sizes(server, caches, capsys):
    rc = main(["prefetch", "--all", "--profile", "fast", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "All 6 item(s) OK" in out
    table = out.split("Prefetch summary")[1]
    for name in ("MNIST full (Keras cache)", "Credit card full (cache)",
                 "ECG 4,998 beats (cache)", "Texture 'brick'", "Texture 'grass'",
                 "Texture 'gravel'"):
        row = next(line for line in table.splitlines() if line.startswith(name))
        assert " OK " in row and ("KB" in row or " B " in row), row
        assert str(caches) in row, f"cache not under tmp_path: {row}"
    assert _keras_files(caches) == ["creditcard.csv", "ecg.csv", "mnist.npz"], \
        "no temporary files"
    assert sorted(r["path"] for r in server.log) == ["/creditcard.csv", "/ecg.csv", "/mnist.npz"]
    # status now sees them, offline, and the loaders use them without downloading again
    states = _states()
    assert states["MNIST full (Keras cache)"] == "OK"
    assert states["Credit card full (cache)"] == "OK"
    assert states["ECG 4,998 beats (cache)"] == "OK"
    assert states["Texture 'gravel' (fast, 64px)"] == "OK"
    assert M.load_mnist(source="online", verbose=False).source == "online"
    assert C.load_creditcard(source="online", verbose=False).source == "online"
    assert E.load_ecg(source="online", verbose=False).source == "online"
    assert len(server.log) == 3
    # notebook 05's own call finds the prefetched texture set (same folder, no rebuild)
    brick = next(it for it in cache_status("fast") if it.name.startswith("Texture 'brick'"))
    stamp = (brick.path / "manifest.json").stat().st_mtime_ns
    data = load_textures("brick", profile=get_profile("fast"), verbose=False)
    assert str(brick.path) in data.detail
    assert (brick.path / "manifest.json").stat().st_mtime_ns == stamp


def test_failed_downloads_exit_nonzero_with_hints_and_leave_nothing(caches, capsys):
    rc = main(["prefetch", "--mnist", "--creditcard", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "2 of 2 item(s) failed" in out and "COURSE_DATA=offline" in out
    hints = out.split("What to do:")[1]
    assert "ConnectionError" in hints
    assert "run prefetch --creditcard again" in hints and "run prefetch --mnist again" in hints
    assert _keras_files(caches) == [], "half-written files left behind"
    states = _states()
    assert states["Credit card full (cache)"] == "missing"
    assert states["MNIST full (Keras cache)"] == "missing"


def test_one_failure_does_not_stop_the_others(server, caches, capsys):
    server.files["/creditcard.csv"] = b"<html>moved</html>\n"  # not the CSV: rejected
    rc = main(["prefetch", "--creditcard", "--mnist", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1 and "1 of 2 item(s) failed" in out
    assert "missing column" in out.split("What to do:")[1]
    assert _keras_files(caches) == ["mnist.npz"]


def test_a_wrong_file_in_the_cache_makes_prefetch_fail(server, caches, capsys):
    M.mnist_cache_path().parent.mkdir(parents=True)
    M.mnist_cache_path().write_bytes(b"not mnist")
    assert main(["prefetch", "--mnist", "--no-progress"]) == 1
    out = capsys.readouterr().out
    hint = out.split("What to do:")[1]
    assert "DataError" in hint and f"delete {M.mnist_cache_path()} and run prefetch" in hint
    assert "Check the network" not in hint
    assert server.log == [], "a present file is verified, not downloaded again"
    assert main(["status"]) == 1, "a corrupted cache is an error for status too"
    assert "corrupted" in capsys.readouterr().out


def test_an_interrupted_prefetch_leaves_nothing(server, caches, capsys):
    server.faults["/creditcard.csv"] = {"trickle": True}
    server.on_first_chunk = _thread.interrupt_main  # Ctrl-C while the bytes come in
    assert main(["prefetch", "--creditcard", "--no-progress"]) == 130
    captured = capsys.readouterr()
    assert "nothing half-written is left" in captured.out and "interrupted" in captured.err
    assert _keras_files(caches) == []


def test_unknown_items_and_categories_list_the_valid_ones(caches, capsys):
    assert main(["prefetch", "--mvtec", "bottles"]) == 2
    err = capsys.readouterr().err
    assert "'bottles'" in err and "bottle" in err and "zipper" in err and "all" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(DataError, match="carpet"):
        prefetch([], mvtec_categories=["carpets"])
    with pytest.raises(DataError, match="Unknown prefetch item.*mnist"):
        prefetch(["fonts"])
    assert main(["status", "--profile", "turbo"]) == 2
    assert "fast" in capsys.readouterr().err


def test_prefetch_mvtec_uses_download_mvtec(caches, monkeypatch, capsys):
    calls = []

    def fake_download(category, root=None, progress=True, **kwargs):
        calls.append(category)
        good = mvtec_dir() / category / "train" / "good"
        good.mkdir(parents=True)
        (good / "000.png").write_bytes(b"x" * 100)
        return mvtec_dir()

    monkeypatch.setattr(cache_module, "download_mvtec", fake_download)
    rc = main(["prefetch", "--mvtec", "bottle", "bottle", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and calls == ["bottle"], "each category once"
    assert "MVTec AD 'bottle'" in out and "100 B" in out
    status = {it.name: it for it in cache_status("fast")}
    assert "bottle" in status["MVTec AD (real, optional)"].detail


def _embedded_copy(caches, monkeypatch):
    """A copy of the repository's data/ folder, used as COURSE_DATA_DIR."""
    copy = caches / "data"
    shutil.copytree(REPO_DIR / "data", copy)
    monkeypatch.setenv("COURSE_DATA_DIR", str(copy))
    return copy


def test_status_reports_damaged_embedded_copies(caches, monkeypatch, capsys):
    copy = _embedded_copy(caches, monkeypatch)
    assert main(["status"]) == 0
    capsys.readouterr()
    raw = bytearray((copy / M.MNIST_SUBSET).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (copy / M.MNIST_SUBSET).write_bytes(bytes(raw))
    rc = main(["status"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "corrupted" in rows["MNIST subset (embedded)"]
    assert " OK " in rows["Credit card sample (embedded)"]
    assert "git checkout -- data/mnist_subset.npz" in out
    (copy / C.CREDITCARD_SAMPLE).unlink()
    assert _states()["Credit card sample (embedded)"] == "missing"
    (copy / C.CREDITCARD_SAMPLE).mkdir()
    item = next(it for it in cache_status("fast") if it.name == "Credit card sample (embedded)")
    assert item.state == "corrupted" and "folder" in item.detail
    assert "Remove the folder" in item.hint


def test_status_checks_the_embedded_kolektor_subset(caches, monkeypatch, capsys):
    """The KolektorSDD subset (data/kolektorsdd) is an embedded item: every file's sha256 is
    checked; a damaged image makes status fail with how to restore it."""
    assert _states()["KolektorSDD subset (embedded)"] == "OK"  # the repository's own copy
    copy = _embedded_copy(caches, monkeypatch)
    assert main(["status"]) == 0
    rows = {line.split("  ")[0]: line for line in capsys.readouterr().out.splitlines()}
    row = rows["KolektorSDD subset (embedded)"]
    assert " OK " in row and str(copy / "kolektorsdd") in row and "MB" in row
    image = sorted((copy / "kolektorsdd" / "kolektor" / "test" / "crack").iterdir())[0]
    image.write_bytes(image.read_bytes()[:-10])
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "corrupted" in rows["KolektorSDD subset (embedded)"]
    assert "git checkout -- data/kolektorsdd" in out
    shutil.rmtree(copy / "kolektorsdd")
    assert _states()["KolektorSDD subset (embedded)"] == "missing"


def test_status_checks_the_embedded_bottle_subset(caches, monkeypatch, capsys):
    """The MVTec AD bottle subset (data/mvtec_bottle) is an embedded item, listed beside the
    optional full download: every file's sha256 is checked; a damaged mask fails status."""
    assert _states()["MVTec AD bottle subset (embedded)"] == "OK"  # the repository's copy
    copy = _embedded_copy(caches, monkeypatch)
    assert main(["status"]) == 0
    rows = {line.split("  ")[0]: line for line in capsys.readouterr().out.splitlines()}
    row = rows["MVTec AD bottle subset (embedded)"]
    assert " OK " in row and str(copy / "mvtec_bottle") in row and "MB" in row
    assert "MVTec AD (real, optional)" in rows
    mask = sorted((copy / "mvtec_bottle" / "bottle" / "ground_truth" / "contamination")
                  .iterdir())[0]
    mask.write_bytes(mask.read_bytes()[:-10])
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "corrupted" in rows["MVTec AD bottle subset (embedded)"]
    assert "git checkout -- data/mvtec_bottle" in out
    shutil.rmtree(copy / "mvtec_bottle")
    assert _states()["MVTec AD bottle subset (embedded)"] == "missing"


def test_status_fails_when_embedded_data_is_missing(caches, monkeypatch, capsys):
    """Defect: status exited 0 with every embedded dataset missing (the doctor reports FAIL
    lines for them: the offline path is broken)."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(caches / "empty"))
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "missing" in rows["MNIST subset (embedded)"]
    assert "git checkout -- data/mnist_subset.npz" in out
    copy = _embedded_copy(caches, monkeypatch)
    assert main(["status"]) == 0, "downloads, textures and MVTec AD missing: fine"
    (copy / E.ECG_EMBEDDED).unlink()
    assert main(["status"]) == 1, "one embedded file missing is enough"


def test_prefetch_says_free_disk_space_when_unpacking_fills_the_disk(caches, monkeypatch,
                                                                     capsys):
    from course_lib.download import DiskFullError

    def full(category, root=None, progress=True, **kwargs):
        raise DiskFullError("Could not unpack bottle.tar.xz: the disk is full")

    monkeypatch.setattr(cache_module, "download_mvtec", full)
    assert main(["prefetch", "--mvtec", "bottle", "--no-progress"]) == 1
    hint = capsys.readouterr().out.split("What to do:")[1]
    assert "the disk is full" in hint and "Free disk space" in hint
    assert "by hand" not in hint, "the download was fine: no advice to download it again"


def test_status_never_touches_the_network(server, caches, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("status must not use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert main(["status", "--profile", "fast"]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and "prefetch --mnist" in out and "nothing was downloaded" in out
    assert server.log == []


def test_format_cache_table_groups_hints_and_details():
    items = [CacheItem("A", "embedded", "OK", None, 1536, detail="sha256 verified"),
             CacheItem("Texture 1", "built", "missing", None, hint="build them"),
             CacheItem("Texture 2", "built", "corrupted", None, 10, detail="manifest differs",
                       hint="build them"),
             CacheItem("B", "download", "failed", None, hint="check the network")]
    text = format_cache_table(items)
    lines = text.splitlines()
    assert lines[0].split() == ["item", "state", "size", "where"] and set(lines[1]) <= {"-", " "}
    assert lines[2].startswith("A ") and "1.5 KB" in lines[2]
    assert "sha256 verified" not in text, "details are shown for problems only"
    assert "  Texture 2: manifest differs" in text
    assert "  Texture 1 (missing), Texture 2 (corrupted): build them" in text
    assert text.count("build them") == 1 and "  B (failed): check the network" in text
    assert [human_size(n) for n in (None, 512, 1536, 3 * 1024 ** 3)] == [
        "-", "512 B", "1.5 KB", "3.0 GB"]
