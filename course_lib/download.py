"""Downloads that fail fast, verify before they keep anything, and unpack archives safely.

Every dataset and weight file of the course comes through here:

- :func:`can_connect`: the one network probe (a TCP connection, :data:`CONNECT_TIMEOUT_S`);
- :func:`fetch_file`: one file with a known hash or a content check, through pooch's
  ``HTTPDownloader`` (progress bar, requests with a connect and a read timeout);
- :func:`download_resumable`: large archives, resumed from a ``.part`` file with an HTTP
  Range request;
- :func:`extract_tar_safely`: unpacks a tar archive member by member, refusing absolute paths,
  ``..``, links, special files and absurd nesting;
- :func:`atomic_write_text`, :func:`atomic_write_bytes`, :func:`sha256_file`.

Rules they all follow: every connection has the same short connect timeout and a bounded read
timeout (the process-wide socket default is never changed); a file appears under its final
name only after it has been verified (hash, size, or content), by one ``os.replace``; a failure
leaves no half-written file under a final name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import tarfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from course_lib.checks import DataError, quote

#: Seconds to wait for a server to accept a connection (every probe and download).
CONNECT_TIMEOUT_S = 3.0
#: Seconds to wait for the next bytes from a server that accepted the connection.
READ_TIMEOUT_S = 10.0
#: Archives nested deeper than this many folders are refused (no real dataset needs it).
MAX_ARCHIVE_DEPTH = 32
USER_AGENT = "course_lib (Autoencoders and Anomaly Detection with Keras)"
CHUNK_BYTES = 1 << 20
#: Bytes per write of a resumable download: a read waits for a whole chunk, and what a
#: stalled connection leaves unwritten is fetched again, so keep this small.
NETWORK_CHUNK_BYTES = 1 << 16


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DataError(f"expected an http(s) URL, got {quote(url)}.")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def can_connect(url: str, timeout: float | None = None) -> bool:
    """True if the server of ``url`` accepts a TCP connection within ``timeout`` seconds
    (default :data:`CONNECT_TIMEOUT_S`).  Sends nothing; never raises."""
    try:
        host, port = _host_port(url)
        with socket.create_connection((host, port), timeout=timeout or CONNECT_TIMEOUT_S):
            return True
    except (OSError, DataError):
        return False


def sha256_file(path) -> str:
    """The sha256 hex digest of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically, like :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_hash(path, known_hash: str, what: str) -> None:
    """Raise ``DataError`` unless the file at ``path`` has ``known_hash``: ``"sha256:<hex>"`` or
    ``"md5:<hex>"`` (pooch's notation) or a bare sha256."""
    alg, _, expected = known_hash.rpartition(":")
    alg = alg or "sha256"
    digest = hashlib.new(alg)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    found = digest.hexdigest()
    if found != expected.lower():
        raise DataError(f"{what}: {alg} {found[:12]}... differs from the expected "
                        f"{expected[:12]}... (a truncated or different file).")


def fetch_file(url: str, target, known_hash: str | None = None, verify=None,
               progress: bool = True, what: str | None = None) -> Path:
    """Download ``url`` to ``target``: verified first, renamed into place only then.

    The file is streamed (pooch's ``HTTPDownloader``: requests, with a progress bar) into a
    temporary file next to ``target``, checked against ``known_hash`` (``"sha256:..."`` or
    ``"md5:..."``) and/or by ``verify(path)`` (a function that raises :class:`DataError` when
    the content is wrong), and only then renamed to ``target``.  Whatever goes wrong, nothing
    is left behind.

    Raises
    ------
    OSError
        The server could not be reached within :data:`CONNECT_TIMEOUT_S` or stopped sending
        for :data:`READ_TIMEOUT_S` (``requests`` errors are ``OSError`` subclasses).
    DataError
        The download does not match its hash or fails ``verify``.
    ValueError
        Neither ``known_hash`` nor ``verify`` is given: nothing could be verified.
    """
    import pooch

    if not known_hash and verify is None:
        raise ValueError("fetch_file needs known_hash or verify: an unverified download would "
                         "be kept under its final name.")
    target = Path(target)
    what = what or f"download of {url}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    try:
        downloader = pooch.HTTPDownloader(progressbar=progress, chunk_size=NETWORK_CHUNK_BYTES,
                                          timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                                          headers={"User-Agent": USER_AGENT})
        downloader(url, str(tmp), None)
        if known_hash:
            check_hash(tmp, known_hash, what)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, target)
    finally:  # also on KeyboardInterrupt
        if tmp.exists():
            tmp.unlink()
    return target


def download_resumable(url: str, dest, expected_size: int | None = None,
                       sha256: str | None = None, verify=None, progress: bool = True) -> Path:
    """Download a large file to ``dest`` through ``dest.part``, resuming a partial download.

    A ``.part`` file left by an earlier attempt is continued with an HTTP Range request (or
    started again if the server ignores it).  ``dest`` appears only after the whole file has
    been verified: its size against ``expected_size`` or the size the server announced, its
    sha256 when known, else ``verify(part)`` (e.g. "the archive reads to its end"), whether or
    not the size is known: a login page served with its own Content-Length has the "right"
    size.  An incomplete file stays ``.part`` for the next attempt (so does one that fails its
    hash or ``verify`` when its size is unknown: it may just be cut short); a file of the known
    size with a wrong hash or that fails ``verify``, one with too many bytes, one that fails
    while the server has nothing more to send (HTTP 416), and a web page (a login page) of
    any size are moved aside to ``.corrupt``; a ``.part`` that is a web page is never resumed.

    Raises
    ------
    OSError
        No connection within :data:`CONNECT_TIMEOUT_S`, no bytes for :data:`READ_TIMEOUT_S`, an
        HTTP error, or a transfer that stopped early (the ``.part`` file is kept).
    DataError
        The file cannot be verified, or is verified and wrong.
    """
    import requests
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if part.is_file() and _looks_like_html(part):
        part.unlink()  # a login page kept by an earlier attempt: never resume onto it
    start = part.stat().st_size if part.is_file() else 0
    # identity: byte ranges and sizes refer to the file itself, never to a compressed transfer
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
               **({"Range": f"bytes={start}-"} if start else {})}
    total = expected_size
    complete = False  # the server said there is nothing more to send
    with requests.get(url, headers=headers, stream=True,
                      timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response:
        if response.status_code == 416 and start:
            # nothing left to fetch: the .part file may be complete; verify it below
            complete = True
            m = re.search(r"^\s*bytes\s+\*/(\d+)\s*$", response.headers.get("Content-Range", ""))
            if total is None and m:
                total = int(m.group(1))
        else:
            response.raise_for_status()
            if start and response.status_code != 206:  # Range ignored: start again
                start = 0
            announced = _announced_size(response, start)
            if total is None:
                total = announced
            with open(part, "ab" if start else "wb") as f, \
                    tqdm(total=total, initial=start, unit="B", unit_scale=True,
                         desc=dest.name, disable=not progress) as bar:
                for chunk in response.iter_content(chunk_size=NETWORK_CHUNK_BYTES):
                    f.write(chunk)
                    bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        if size < total:
            raise OSError(f"download of {url} stopped at {size:,} of {total:,} bytes; run "
                          f"again to resume from {part}.")
        bad = part.with_name(dest.name + ".corrupt")
        os.replace(part, bad)
        raise DataError(f"download of {url} is {size:,} bytes, more than the {total:,} "
                        f"expected; moved it to {bad}. Run again to download it afresh.")
    if sha256:
        digest = sha256_file(part)
        if digest != sha256.lower() and total is None and not complete \
                and not _looks_like_html(part):
            raise DataError(f"download of {url} has sha256 {digest[:16]}..., expected "
                            f"{sha256[:16]}...: incomplete (the server gave no size) or "
                            f"damaged; kept as {part}: run again to resume (delete it to start "
                            f"afresh).")
        if digest != sha256.lower():
            bad = part.with_name(dest.name + ".corrupt")
            os.replace(part, bad)
            what = (_WEB_PAGE if _looks_like_html(bad) else
                    "corrupted or a different release")
            raise DataError(f"{dest.name} has sha256 {digest[:16]}..., expected "
                            f"{sha256[:16]}... ({what}); moved it to {bad}. Run again to "
                            f"download it afresh.")
    elif verify is not None:
        _verify_part(url, part, dest, verify, whole=complete or total is not None)
    elif total is None:
        raise DataError(f"download of {url}: the server gave no size and no hash is "
                        f"known, so the file cannot be verified; kept as {part}.")
    os.replace(part, dest)
    return dest


def _verify_part(url: str, part: Path, dest: Path, verify, whole: bool) -> None:
    """Run ``verify(part)``.  A failure of a file known to be whole (it has the size the server
    announced, or the server has nothing more to send) is moved aside to ``.corrupt``:
    resuming cannot repair it (a login page of a venue's Wi-Fi served in place of the file
    is such a case), and so is a web page of any size; otherwise it stays ``.part`` to be
    resumed."""
    try:
        verify(part)
    except (DataError, OSError, EOFError) as exc:
        if whole or _looks_like_html(part):  # resuming cannot turn a web page into the file
            bad = part.with_name(dest.name + ".corrupt")
            os.replace(part, bad)
            what = (f"is a web page, not the file ({_WEB_PAGE})" if _looks_like_html(bad) else
                    f"is damaged or not the file expected ({quote(str(exc), 200)})")
            raise DataError(f"download of {url} {what}; moved it to {bad}. Run again to "
                            f"download it afresh.") from exc
        raise DataError(f"download of {url} is incomplete or damaged "
                        f"({quote(str(exc), 200)}); kept as {part}: run again to "
                        f"resume.") from exc


#: What a web page in place of a download usually means.
_WEB_PAGE = ("if this network has a login page (hotel, venue or captive Wi-Fi), log in "
             "first")


def _looks_like_html(path: Path) -> bool:
    """True if the file starts like an HTML page (what captive portals and error pages send)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512).lstrip().lower()
    except OSError:
        return False
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body"))


def _announced_size(response, start: int) -> int | None:
    """The whole file's size from Content-Range (``bytes a-b/total``) or Content-Length."""
    content_range = response.headers.get("Content-Range", "")
    m = re.search(r"/(\d+)\s*$", content_range)
    if m:
        return int(m.group(1))
    length = response.headers.get("Content-Length", "")
    return int(length) + start if length.isdigit() else None


# --------------------------------------------------------------------------- archives
class UnsafeArchiveError(DataError):
    """An archive member would land outside the target folder, is a link or a device, or is
    nested absurdly deep."""


class DiskFullError(DataError):
    """Unpacking stopped because the disk (or the user's quota) is full: the archive is not at
    fault and must be kept."""


#: errno values of a full disk or quota (the archive is fine: free space and run again).
DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def free_space(folder) -> str:
    """The free space in ``folder`` (or the nearest existing folder above it), e.g. ``"1.2 GB"``;
    ``"unknown"`` if it cannot be measured."""
    folder = Path(folder)
    existing = next((p for p in [folder, *folder.parents] if p.is_dir()), None)
    try:
        free = shutil.disk_usage(existing or ".").free
    except OSError:
        return "unknown"
    return f"{free / 1024 ** 3:.1f} GB" if free >= 1024 ** 3 else f"{free / 1024 ** 2:.0f} MB"


def _unpack_error(exc: BaseException, archive: Path, dest: Path) -> DataError:
    """The error for a failed unpack: a full disk, a folder that cannot be written, or (only
    then) an incomplete or corrupted archive."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return DiskFullError(
            f"Could not unpack {archive} into {dest}: the disk is full ({exc.strerror}; "
            f"{free_space(dest)} free there now). The archive is not at fault: keep it, free "
            f"disk space and run again.")
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is not None:
        return DataError(
            f"Could not unpack {archive} into {dest}: cannot write {quote(str(exc.filename))} "
            f"({exc.strerror}). The archive is not at fault: keep it, make {dest} writable (or "
            f"choose another folder) and run again.")
    return DataError(f"Could not unpack {archive} ({type(exc).__name__}: "
                     f"{quote(str(exc), 200)}); it is incomplete or corrupted. Delete it and "
                     f"download it again.")


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _checked_members(tar: tarfile.TarFile, dest: Path, max_depth: int):
    """Yield the members of ``tar`` one by one, refusing any that could escape ``dest``."""
    dest_real = os.path.realpath(dest)
    for member in tar:
        name = member.name
        parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]
        why = None
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or os.path.isabs(name):
            why = "has an absolute path"
        elif ".." in parts:
            why = "contains '..'"
        elif len(parts) > max_depth:
            why = f"is nested {len(parts)} folders deep (at most {max_depth} allowed)"
        elif not _inside(os.path.realpath(os.path.join(dest_real, name)), dest_real):
            why = "would be written outside the target folder"
        elif member.issym() or member.islnk():
            why = f"is a link (to {quote(member.linkname)}); image archives need none"
        elif not (member.isfile() or member.isdir()):
            why = "is a device, pipe or other special file"
        if why:
            raise UnsafeArchiveError(f"Refusing to extract {tar.name}: member {quote(name)} "
                                     f"{why}. The archive is damaged or not the official one.")
        yield member


def extract_tar_safely(archive, dest, max_depth: int = MAX_ARCHIVE_DEPTH) -> Path:
    """Unpack ``archive`` (any tar, compressed or not) into the existing folder ``dest``.

    Every member is checked before it is written (absolute paths, ``..``, links, special
    files, more than ``max_depth`` nested folders: :class:`UnsafeArchiveError`); Python's
    ``filter="data"`` applies too where available.  Unpack into a fresh temporary folder and
    move what you need from it: a failure may leave some members in ``dest``.

    Raises
    ------
    DiskFullError
        The disk or quota filled up while unpacking (a :class:`DataError`; keep the archive).
    DataError
        The archive is unreadable, truncated or corrupted (or unsafe, see above), or ``dest``
        cannot be written (the message says which).
    """
    import lzma
    import zlib

    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"Archive {archive} not found" + (" (it is a folder)."
                                                          if archive.is_dir() else "."))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _checked_members(tar, dest, max_depth)
            if hasattr(tarfile, "data_filter"):  # Python 3.12+, 3.11.4+, 3.10.12+
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - old Pythons
                tar.extractall(dest, members=members)
    except UnsafeArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError,
            zlib.error) as exc:
        raise _unpack_error(exc, archive, dest) from exc
    return dest


def check_tar_readable(archive) -> None:
    """Read a tar archive's member list to its end (for a compressed archive this decompresses
    all of it); raises :class:`DataError` if it is truncated or corrupted."""
    import lzma
    import zlib

    try:
        with tarfile.open(archive, "r:*") as tar:
            for _ in tar:
                pass
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise DataError(f"{archive} is not a complete tar archive ({type(exc).__name__}: "
                        f"{quote(str(exc), 200)}).") from exc
