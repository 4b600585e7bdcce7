"""``course_lib.download``: probes and downloads that fail fast, verify before they keep a
file, resume, and unpack archives safely.

Every transfer runs end to end against an HTTP server on 127.0.0.1 (:class:`LocalServer`,
also used by the MNIST, credit-card and cache tests), which can leave out Content-Length, cut
the body short, stall, trickle, ignore or honour Range requests.  Timeouts are patched to at
most a second (:func:`short_timeouts`); a test that waits for one on purpose patches it to a few
tenths of a second, so that it takes a few tenths of a second.
"""
from __future__ import annotations

import errno
import hashlib
import io
import re
import socket
import tarfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from course_lib import download
from course_lib.checks import DataError
from course_lib.download import (UnsafeArchiveError, atomic_write_text, can_connect,
                                 check_tar_readable, download_resumable, extract_tar_safely,
                                 fetch_file, sha256_file)

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY")


# =========================================================================== test servers
class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0: the connection closes after each response (so a body without Content-Length
    ends when the server closes it)."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        owner = self.server.owner
        owner.log.append({"path": self.path, "range": self.headers.get("Range"),
                          "accept_encoding": self.headers.get("Accept-Encoding"),
                          "default_timeout": socket.getdefaulttimeout()})
        data = owner.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        fault = owner.faults.get(self.path, {})
        start, status = 0, 200
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if wanted and not fault.get("ignore_range"):
            start, status = int(wanted.group(1)), 206
            if start >= len(data):
                self.send_response(416)
                if not fault.get("bare_416"):
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if not fault.get("no_length"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if "stall" in fault:  # some bytes, then silence until the server stops
                self.wfile.write(body[:fault["stall"]])
                self.wfile.flush()
                owner.stop.wait(30)
            elif fault.get("trickle"):  # 1 KB every 20 ms; calls on_first_chunk once
                for i in range(0, len(body), 1024):
                    self.wfile.write(body[i:i + 1024])
                    self.wfile.flush()
                    if i == 0 and owner.on_first_chunk is not None:
                        owner.on_first_chunk()
                    if owner.stop.wait(0.02):
                        return
            else:
                self.wfile.write(body[:fault.get("cut", len(body))])  # cut: then hang up
        except OSError:  # the client gave up: that is what some tests want
            pass


class LocalServer:
    """An HTTP server on 127.0.0.1 in a thread, serving ``files`` ({"/name": bytes}).

    ``faults[path]`` changes how a path is served: ``{"no_length": True}`` (no Content-Length),
    ``{"cut": n}`` (send n bytes of the body, then close), ``{"ignore_range": True}``,
    ``{"stall": n}`` (n bytes, then nothing), ``{"trickle": True}`` (slowly),
    ``{"bare_416": True}`` (answer 416 without the file's size).  ``log`` holds
    one dict per request: path, Range header, Accept-Encoding and the process-wide socket
    timeout seen while serving it.
    """

    def __init__(self, files=None):
        self.files = dict(files or {})
        self.faults = {}
        self.log = []
        self.on_first_chunk = None
        self.stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def no_proxy(monkeypatch):
    """Talk to 127.0.0.1 directly, whatever proxy the machine has."""
    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


#: The timeouts of tests that wait for one to expire: the wait is the whole test.  A server
#: that answers gets the defaults of :func:`short_timeouts`, so a busy machine cannot fail it.
WAIT_CONNECT_S, WAIT_READ_S = 0.2, 0.3


def short_timeouts(monkeypatch, connect: float = 0.5, read: float = 1.0):
    monkeypatch.setattr(download, "CONNECT_TIMEOUT_S", connect)
    monkeypatch.setattr(download, "READ_TIMEOUT_S", read)


def closed_port_url(path: str = "/file") -> str:
    """A loopback URL where nobody listens: the connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@contextmanager
def silent_server(path: str = "/file"):
    """A server that accepts connections (the kernel does, from its backlog) but never
    answers a request."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}{path}"


@contextmanager
def unanswered_connect(path: str = "/file"):
    """A server whose accept queue is full, so a new connection is never accepted: connecting
    hangs until the client's connect timeout (as with a host behind a firewall that drops
    packets).  Skips where the OS completes connections beyond the backlog."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        address = s.getsockname()
        fillers = []
        try:
            for _ in range(8):  # fill the queue until a connection attempt hangs
                probe = socket.socket()
                probe.settimeout(0.2)
                fillers.append(probe)
                try:
                    probe.connect(address)
                except (TimeoutError, socket.timeout):
                    break
            else:
                pytest.skip("this OS completes connections beyond a listen backlog")
            yield f"http://127.0.0.1:{address[1]}{path}"
        finally:
            for probe in fillers:
                probe.close()


@pytest.fixture
def server(monkeypatch):
    no_proxy(monkeypatch)
    with LocalServer() as srv:
        yield srv


def _files(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


# =========================================================================== probe and helpers
def test_can_connect_is_true_for_a_server_and_false_fast_otherwise(server, monkeypatch):
    short_timeouts(monkeypatch, connect=0.5)
    assert can_connect(server.url("/"))
    start = time.perf_counter()
    assert not can_connect(closed_port_url())
    assert not can_connect("not a url") and not can_connect("ftp://127.0.0.1/x")
    assert time.perf_counter() - start < 2
    assert server.log == [], "a probe sends no request"


def test_can_connect_waits_only_the_connect_timeout(monkeypatch):
    short_timeouts(monkeypatch, connect=WAIT_CONNECT_S)
    with unanswered_connect() as url:
        start = time.perf_counter()
        assert not can_connect(url)
        assert 0.75 * WAIT_CONNECT_S < time.perf_counter() - start < 2.5


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(PAYLOAD * 5)  # more than one 1 MB block
    assert sha256_file(p) == hashlib.sha256(PAYLOAD * 5).hexdigest()


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first ü\n")
    atomic_write_text(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert _files(tmp_path) == ["out.txt", "sub"]
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):  # a folder in the way: an error, and no temporary file left
        atomic_write_text(tmp_path / "folder", "x")
    assert _files(tmp_path) == ["folder", "out.txt", "sub"]

    def interrupted(src, dst):  # Ctrl-C at the worst moment: after writing, before renaming
        raise KeyboardInterrupt

    monkeypatch.setattr(download.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "third\n")
    assert target.read_text() == "second\n", "the old file must stay whole"
    assert _files(tmp_path) == ["folder", "out.txt", "sub"]


# =========================================================================== fetch_file
def test_fetch_file_verifies_then_renames(server, tmp_path):
    server.files["/payload.bin"] = PAYLOAD
    socket.setdefaulttimeout(None)
    target = tmp_path / "cache" / "payload.bin"
    seen = []

    def verify(path):
        seen.append(path)
        assert not target.exists(), "verify runs before the file gets its final name"
        assert path.read_bytes() == PAYLOAD

    fetch_file(server.url("/payload.bin"), target, known_hash=f"sha256:{PAYLOAD_SHA256}",
               verify=verify, progress=False)
    assert target.read_bytes() == PAYLOAD and len(seen) == 1
    assert _files(target.parent) == ["payload.bin"], "no temporary file may remain"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    fetch_file(server.url("/payload.bin"), tmp_path / "other.bin", known_hash=f"md5:{md5}",
               progress=False)
    assert (tmp_path / "other.bin").read_bytes() == PAYLOAD
    # one connect and one read timeout per connection; the process-wide default never changes
    assert [r["default_timeout"] for r in server.log] == [None, None]
    assert socket.getdefaulttimeout() is None


def test_fetch_file_without_any_check_is_refused(tmp_path):
    with pytest.raises(ValueError, match="known_hash or verify"):
        fetch_file("http://127.0.0.1:9/x", tmp_path / "x")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("fault", [{"cut": 1000}, {"no_length": True, "cut": 1000}, {}])
def test_fetch_file_keeps_nothing_that_fails(server, tmp_path, fault):
    """Cut short (with and without Content-Length) or a wrong file: an error, nothing kept."""
    server.files["/payload.bin"] = PAYLOAD
    server.faults["/payload.bin"] = fault
    expected = PAYLOAD_SHA256 if fault else "0" * 64
    with pytest.raises((OSError, DataError)):
        fetch_file(server.url("/payload.bin"), tmp_path / "payload.bin",
                   known_hash=f"sha256:{expected}", progress=False)
    assert _files(tmp_path) == []


def test_fetch_file_errors_and_interrupts_leave_nothing(server, tmp_path):
    server.files["/payload.bin"] = PAYLOAD
    with pytest.raises(OSError, match="404"):
        fetch_file(server.url("/missing.bin"), tmp_path / "m.bin", known_hash="0" * 64,
                   progress=False)

    def refuse(path):
        raise DataError("not the right content")

    with pytest.raises(DataError, match="right content"):
        fetch_file(server.url("/payload.bin"), tmp_path / "p.bin", verify=refuse,
                   progress=False)

    def ctrl_c(path):
        assert path.stat().st_size == len(PAYLOAD)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_file(server.url("/payload.bin"), tmp_path / "p.bin", verify=ctrl_c,
                   progress=False)
    assert _files(tmp_path) == []


# =========================================================================== timeouts
def _fetch_mnist(url, monkeypatch):
    from course_lib.data import mnist

    monkeypatch.setattr(mnist, "MNIST_URL", url)
    return mnist.fetch_mnist(progress=False)


def _fetch_creditcard(url, monkeypatch):
    from course_lib.data import creditcard

    monkeypatch.setattr(creditcard, "CREDITCARD_URL", url)
    return creditcard.fetch_creditcard(progress=False)


def _resumable(url, monkeypatch, tmp_path):
    return download_resumable(url, tmp_path / "keras" / "datasets" / "big.tar",
                              verify=check_tar_readable, progress=False)


FETCHERS = {"fetch_mnist": lambda url, mp, tmp: _fetch_mnist(url, mp),
            "fetch_creditcard": lambda url, mp, tmp: _fetch_creditcard(url, mp),
            "download_resumable": _resumable}


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    no_proxy(monkeypatch)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


@pytest.mark.parametrize("fetcher", FETCHERS)
def test_a_closed_port_fails_at_once(keras_home, monkeypatch, tmp_path, fetcher):
    short_timeouts(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(OSError):
        FETCHERS[fetcher](closed_port_url(), monkeypatch, tmp_path)
    assert time.perf_counter() - start < 2
    assert [p for p in keras_home.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("fetcher", FETCHERS)
def test_a_server_that_never_answers_fails_after_the_read_timeout(keras_home, monkeypatch,
                                                                  tmp_path, fetcher):
    short_timeouts(monkeypatch, connect=0.5, read=WAIT_READ_S)
    socket.setdefaulttimeout(None)
    with silent_server() as url:
        start = time.perf_counter()
        with pytest.raises(OSError, match="(?i)timed? ?out"):
            FETCHERS[fetcher](url, monkeypatch, tmp_path)
        elapsed = time.perf_counter() - start
    assert 0.8 * WAIT_READ_S < elapsed < 3, f"waited {elapsed:.2f} s, READ_TIMEOUT_S = " \
        f"{WAIT_READ_S}"
    assert [p for p in keras_home.rglob("*") if p.is_file()] == [], "nothing may be cached"
    assert socket.getdefaulttimeout() is None, "the process-wide socket default must not change"


def test_an_unanswered_connection_fails_after_the_connect_timeout(keras_home, monkeypatch,
                                                                  tmp_path):
    short_timeouts(monkeypatch, connect=WAIT_CONNECT_S, read=30.0)
    with unanswered_connect() as url:
        start = time.perf_counter()
        with pytest.raises(OSError):
            fetch_file(url, tmp_path / "x.bin", known_hash="0" * 64, progress=False)
        assert time.perf_counter() - start < 3, "the connect timeout, not the read timeout"


def test_a_stalled_transfer_fails_after_the_read_timeout(server, monkeypatch, tmp_path):
    short_timeouts(monkeypatch, connect=0.5, read=WAIT_READ_S)
    server.files["/payload.bin"] = PAYLOAD
    server.faults["/payload.bin"] = {"stall": 200_000}
    start = time.perf_counter()
    with pytest.raises(OSError):
        fetch_file(server.url("/payload.bin"), tmp_path / "a.bin", known_hash=PAYLOAD_SHA256,
                   progress=False)
    assert _files(tmp_path) == []
    with pytest.raises(OSError):
        download_resumable(server.url("/payload.bin"), tmp_path / "b.bin", progress=False)
    assert time.perf_counter() - start < 4
    assert _files(tmp_path) == ["b.bin.part"], "what arrived is kept for resuming"
    kept = (tmp_path / "b.bin.part").read_bytes()
    assert len(kept) >= 100_000 and kept == PAYLOAD[:len(kept)]


# =========================================================================== download_resumable
def test_resumable_download_with_a_size(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    dest = download_resumable(server.url("/big.bin"), tmp_path / "big.bin",
                              sha256=PAYLOAD_SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD and _files(tmp_path) == ["big.bin"]
    assert server.log[0]["range"] is None
    assert server.log[0]["accept_encoding"] == "identity", "sizes must be those of the file"


def test_cut_without_content_length_stays_part_until_verified_then_resumes(server, tmp_path):
    """No size and no hash: only ``verify`` may let the file take its final name."""
    server.files["/big.bin"] = PAYLOAD
    server.faults["/big.bin"] = {"no_length": True, "cut": 100_000}
    dest = tmp_path / "big.bin"
    calls = []

    def verify(path):
        calls.append(path.stat().st_size)
        if path.read_bytes() != PAYLOAD:
            raise EOFError("the archive ends early")

    with pytest.raises(DataError, match="incomplete or damaged.*run again to resume"):
        download_resumable(server.url("/big.bin"), dest, verify=verify, progress=False)
    assert _files(tmp_path) == ["big.bin.part"] and calls == [100_000]
    with pytest.raises(DataError, match="cannot be verified"):  # nothing to check it with
        download_resumable(server.url("/big.bin"), tmp_path / "other.bin", progress=False)
    assert _files(tmp_path) == ["big.bin.part", "other.bin.part"]
    # the resumed part comes with its Content-Range, which tells the size: still too short
    with pytest.raises(OSError, match="stopped at 200,000 of 300,000 bytes"):
        download_resumable(server.url("/big.bin"), dest, verify=verify, progress=False)
    assert (tmp_path / "big.bin.part").read_bytes() == PAYLOAD[:200_000]
    server.faults.clear()
    download_resumable(server.url("/big.bin"), dest, verify=verify, progress=False)
    assert [r["range"] for r in server.log] == [None, None, "bytes=100000-", "bytes=200000-"]
    assert dest.read_bytes() == PAYLOAD and _files(tmp_path) == ["big.bin", "other.bin.part"]


def test_cut_with_a_known_size_stays_part_and_resumes(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    dest, part = tmp_path / "big.bin", tmp_path / "big.bin.part"
    server.faults["/big.bin"] = {"cut": 150_000}  # Content-Length announced, body cut short
    with pytest.raises(OSError):
        download_resumable(server.url("/big.bin"), dest, progress=False)
    assert _files(tmp_path) == ["big.bin.part"]
    first = part.stat().st_size
    assert 0 < first <= 150_000 and part.read_bytes() == PAYLOAD[:first]
    server.faults["/big.bin"] = {"no_length": True, "cut": 30_000, "ignore_range": True}
    with pytest.raises(OSError, match="stopped at 30,000 of 300,000 bytes"):  # size from caller
        download_resumable(server.url("/big.bin"), dest, expected_size=len(PAYLOAD),
                           progress=False)
    assert _files(tmp_path) == ["big.bin.part"]
    server.faults.clear()
    download_resumable(server.url("/big.bin"), dest, sha256=PAYLOAD_SHA256, progress=False)
    assert [r["range"] for r in server.log] == [None, f"bytes={first}-", "bytes=30000-"]
    assert dest.read_bytes() == PAYLOAD and _files(tmp_path) == ["big.bin"]


def test_wrong_hash_or_size_moves_the_file_to_corrupt(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    dest = tmp_path / "big.bin"
    with pytest.raises(DataError, match="sha256.*moved it to .*big.bin.corrupt"):
        download_resumable(server.url("/big.bin"), dest, sha256="0" * 64, progress=False)
    assert _files(tmp_path) == ["big.bin.corrupt"]
    with pytest.raises(DataError, match="more than the 1,000 expected"):
        download_resumable(server.url("/big.bin"), dest, expected_size=1000, progress=False)
    assert _files(tmp_path) == ["big.bin.corrupt"]


def test_without_a_size_a_hash_mismatch_keeps_the_part_for_resuming(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    server.faults["/big.bin"] = {"no_length": True, "cut": 100_000}
    dest = tmp_path / "big.bin"
    with pytest.raises(DataError, match="incomplete.*run again to resume"):
        download_resumable(server.url("/big.bin"), dest, sha256=PAYLOAD_SHA256, progress=False)
    assert _files(tmp_path) == ["big.bin.part"]
    server.faults.clear()
    download_resumable(server.url("/big.bin"), dest, sha256=PAYLOAD_SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_a_server_ignoring_range_restarts_the_download(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    server.faults["/big.bin"] = {"ignore_range": True}
    (tmp_path / "big.bin.part").write_bytes(b"stale bytes of another attempt")
    download_resumable(server.url("/big.bin"), tmp_path / "big.bin", progress=False)
    assert server.log[0]["range"] == "bytes=30-"
    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD and _files(tmp_path) == ["big.bin"]


def test_a_complete_part_is_verified_when_nothing_is_left_to_fetch(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    part = tmp_path / "big.bin.part"
    part.write_bytes(PAYLOAD)  # the earlier attempt got everything, then stopped
    download_resumable(server.url("/big.bin"), tmp_path / "big.bin", progress=False)
    assert (tmp_path / "big.bin").read_bytes() == PAYLOAD and not part.exists()
    (tmp_path / "again.bin.part").write_bytes(PAYLOAD + b"junk")  # longer: 416 */300000
    with pytest.raises(DataError, match="more than the 300,000 expected"):
        download_resumable(server.url("/big.bin"), tmp_path / "again.bin", progress=False)
    assert _files(tmp_path) == ["again.bin.corrupt", "big.bin"]


def test_a_complete_part_that_fails_verify_is_moved_aside(server, tmp_path):
    """Size unknown and the server has nothing more (416): resuming cannot repair it."""
    server.files["/big.bin"] = PAYLOAD
    server.faults["/big.bin"] = {"no_length": True, "bare_416": True}
    (tmp_path / "big.bin.part").write_bytes(PAYLOAD)

    def damaged(path):
        raise DataError("unexpected end of data")

    with pytest.raises(DataError, match="damaged.*moved it to .*big.bin.corrupt"):
        download_resumable(server.url("/big.bin"), tmp_path / "big.bin", verify=damaged,
                           progress=False)
    assert _files(tmp_path) == ["big.bin.corrupt"]


# =========================================================================== archives
def _tar(path, members, mode="w"):
    """Write a tar archive; members: (name, data) for files, (name, tarfile type, link)."""
    with tarfile.open(path, mode) as tar:
        for name, *rest in members:
            info = tarfile.TarInfo(name)
            if len(rest) == 1:
                info.size = len(rest[0])
                tar.addfile(info, io.BytesIO(rest[0]))
            else:
                info.type, info.linkname = rest
                tar.addfile(info)
    return path


def test_extract_tar_safely_unpacks_a_normal_archive(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [("cat/train/good/000.png", b"png"),
                                           ("cat/readme.txt", b"hello")], "w:gz")
    check_tar_readable(archive)
    out = tmp_path / "out"
    out.mkdir()
    extract_tar_safely(archive, out)
    assert (out / "cat" / "train" / "good" / "000.png").read_bytes() == b"png"


@pytest.mark.parametrize("members, why", [
    ([("/etc/evil", b"x")], "absolute path"),
    ([("a/../../evil", b"x")], r"contains '\.\.'"),
    ([("a/link", tarfile.SYMTYPE, "/etc/passwd")], "is a link"),
    ([("a/hard", tarfile.LNKTYPE, "a/b")], "is a link"),
    ([("a/fifo", tarfile.FIFOTYPE, "")], "special file"),
    ([("/".join(["d"] * 40) + "/f", b"x")], "nested 41 folders deep"),
])
def test_extract_tar_safely_refuses_unsafe_members(tmp_path, members, why):
    archive = _tar(tmp_path / "bad.tar", [("fine.txt", b"ok"), *members])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError, match=why):
        extract_tar_safely(archive, out)
    assert not (tmp_path / "evil").exists()


def test_damaged_archives_are_reported(tmp_path):
    good = _tar(tmp_path / "a.tar.xz", [(f"f{i}.bin", PAYLOAD[:20_000]) for i in range(5)],
                "w:xz")
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="not a complete tar archive"):
        check_tar_readable(cut)
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="incomplete or corrupted"):
        extract_tar_safely(cut, tmp_path / "out")
    with pytest.raises(DataError, match="not found"):
        extract_tar_safely(tmp_path / "none.tar", tmp_path / "out")
    with pytest.raises(DataError, match="it is a folder"):
        extract_tar_safely(tmp_path / "out", tmp_path / "out")


# =========================================================================== faults found later
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Log in to Venue-WiFi</title></head></html>\n"


def test_a_login_page_with_a_content_length_is_never_kept(server, tmp_path):
    """Defect: ``verify`` ran only when the size was unknown, so a captive portal's page served
    with its own Content-Length became the final archive."""
    server.files["/big.tar.xz"] = LOGIN_PAGE  # Content-Length announced: the "right" size
    dest = tmp_path / "big.tar.xz"
    with pytest.raises(DataError, match="is a web page, not the file.*log in first") as info:
        download_resumable(server.url("/big.tar.xz"), dest, verify=check_tar_readable,
                           progress=False)
    assert "big.tar.xz.corrupt" in str(info.value)
    assert _files(tmp_path) == ["big.tar.xz.corrupt"], "no archive, no .part to resume"


def test_a_login_page_without_a_content_length_is_never_kept_nor_resumed(server, tmp_path):
    """Defect: a login page served without Content-Length was kept as ``.part`` ("run again to
    resume"); on a good network the next run appended the real file to it, then threw it all
    away with the advice "log in first"."""
    server.files["/big.tar.xz"] = LOGIN_PAGE
    server.faults["/big.tar.xz"] = {"no_length": True}
    dest = tmp_path / "big.tar.xz"
    with pytest.raises(DataError, match="is a web page, not the file.*log in first"):
        download_resumable(server.url("/big.tar.xz"), dest, verify=check_tar_readable,
                           progress=False)
    assert _files(tmp_path) == ["big.tar.xz.corrupt"], "no .part to resume onto"
    # a .part holding a login page (left by an older version) is started afresh, not resumed
    archive = _tar_bytes([("cat/train/good/000.png", PAYLOAD[:20_000])])
    server.files["/big.tar.xz"] = archive
    (tmp_path / "big.tar.xz.part").write_bytes(LOGIN_PAGE)
    download_resumable(server.url("/big.tar.xz"), dest, verify=check_tar_readable,
                       progress=False)
    assert dest.read_bytes() == archive


def _tar_bytes(members, mode="w:xz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _disk_full(monkeypatch):
    def full(self, tarinfo, targetpath):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "makefile", full)


def test_a_full_disk_while_unpacking_is_not_blamed_on_the_archive(tmp_path, monkeypatch):
    """Defect: a full disk while unpacking said the archive was corrupted: delete it and
    download it again (4.9 GB, verified)."""
    archive = tmp_path / "a.tar.xz"
    archive.write_bytes(_tar_bytes([("cat/train/good/000.png", PAYLOAD[:50_000])]))
    out = tmp_path / "out"
    out.mkdir()
    _disk_full(monkeypatch)
    with pytest.raises(download.DiskFullError, match="the disk is full") as info:
        extract_tar_safely(archive, out)
    text = str(info.value)
    assert "keep it" in text and "free there now" in text
    assert "corrupt" not in text and "Delete" not in text and "download it again" not in text
    assert archive.is_file()


# --------------------------------------------------------------------------- MVTec AD download
@pytest.fixture
def mvtec_server(server, monkeypatch):
    """The MVTec AD 'bottle' archive (a tiny stand-in) served by the local server."""
    from course_lib.data import mvtec_ad

    server.files["/bottle.tar.xz"] = _tar_bytes([("bottle/train/good/000.png", b"png"),
                                                 ("bottle/license.txt", b"CC BY-NC-SA")])
    monkeypatch.setitem(mvtec_ad.MVTEC_AD_DOWNLOADS, "bottle",
                        {"url": server.url("/bottle.tar.xz"), "sha256": None})
    return server


def test_mvtec_full_disk_keeps_the_verified_archive(mvtec_server, tmp_path, monkeypatch):
    from course_lib.data.mvtec_ad import download_mvtec

    root = tmp_path / "mvtec"
    with monkeypatch.context() as patch:
        _disk_full(patch)
        with pytest.raises(download.DiskFullError, match="disk is full.*keep it"):
            download_mvtec("bottle", root, progress=False)
    assert (root / ".downloads" / "bottle.tar.xz").is_file(), "the download must be kept"
    assert not (root / "bottle").exists() and not list(root.glob(".extract-*"))
    assert download_mvtec("bottle", root, progress=False) == root  # space freed: run again
    assert (root / "bottle" / "train" / "good" / "000.png").read_bytes() == b"png"
    assert len(mvtec_server.log) == 1, "not downloaded a second time"


def test_mvtec_login_page_is_not_kept_as_the_archive(mvtec_server, tmp_path):
    from course_lib.data.mvtec_ad import download_mvtec

    mvtec_server.files["/bottle.tar.xz"] = LOGIN_PAGE
    root = tmp_path / "mvtec"
    with pytest.raises(DataError, match="log in first"):
        download_mvtec("bottle", root, progress=False)
    assert _files(root / ".downloads") == ["bottle.tar.xz.corrupt"]


@pytest.mark.parametrize("make", ["folder", "file", "train only"])
def test_mvtec_a_folder_in_the_way_is_named_before_downloading(mvtec_server, tmp_path, make):
    """Defect: a folder named like the category but not in MVTec layout was skipped silently
    (after a download) and the error blamed the archive."""
    from course_lib.data.mvtec_ad import download_mvtec, load_mvtec

    root = tmp_path / "mvtec"
    root.mkdir()
    target = root / "bottle"
    if make == "file":
        target.write_text("mine")
    else:
        (target / ("train" if make == "train only" else "photos")).mkdir(parents=True)
        (target / "notes.txt").write_text("mine")
    for call in (lambda: download_mvtec("bottle", root, progress=False),
                 lambda: load_mvtec("bottle", root=root)):
        with pytest.raises(DataError, match="not an MVTec AD category folder") as info:
            call()
        text = str(info.value)
        assert str(target) in text and "Move it away" in text and "archive" not in text
        assert ("is a file" if make == "file" else "no train/good/ folder") in text
    assert mvtec_server.log == [], "nothing is downloaded for nothing"
    assert (target / "notes.txt").read_text() == "mine" if make != "file" else \
        target.read_text() == "mine"
