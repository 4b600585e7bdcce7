"""What the dataset loaders share: the online-or-embedded rule, embedded files, cache items.

- :func:`online_or_embedded`: ``auto`` downloads and falls back to the embedded subset with one
  message saying why; ``online`` downloads or raises; ``offline`` never touches the network.
- :func:`embedded_file`: a file shipped in ``data/``, its sha256 checked on every load.
- :func:`check_file`: a file the user named exists and is a file (not a folder);
  :func:`refuse_zip`: and is not a ZIP archive that holds it.
- :class:`CacheItem`: one dataset file or folder and its state, for ``python -m
  course_lib.data status`` and the doctor.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from course_lib.checks import DataError, quote
from course_lib.config import DATA_DIR_ENV, data_dir
from course_lib.download import sha256_file


def check_file(path, what: str, how_to_fix: str = "") -> Path:
    """``path`` as a Path that exists and is a regular file; else a DataError that says which.

    ``what`` names the file for the message ("Credit-card file"); ``how_to_fix`` is appended.
    """
    path = Path(path)
    fix = f" {how_to_fix}" if how_to_fix else ""
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, not a file.{fix}")
    if not path.exists():
        raise DataError(f"{what} {path} not found.{fix}")
    if not path.is_file():
        raise DataError(f"{what} {path} is not a regular file.{fix}")
    return path


def refuse_zip(path: Path, what: str, how_to_fix: str = "") -> None:
    """Raise a DataError if ``path`` is a ZIP archive (Kaggle's ``archive.zip``, say) given
    where the file inside it is expected; the message names the archive's first files and says
    to unzip it.  ``what`` names the file expected ("credit-card CSV")."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError, ValueError):  # a damaged archive: no listing
        names = []
    inside = (f" (it holds {', '.join(quote(n, 40) for n in names[:3])}"
              f"{' ...' if len(names) > 3 else ''})" if names else "")
    fix = f" {how_to_fix}" if how_to_fix else ""
    raise DataError(f"{path} is a ZIP archive{inside}, not the {what} itself: unzip it first "
                    f"(e.g. `unzip {path.name}`) and pass the file inside.{fix}")


def embedded_file(filename: str, sha256: str, what: str) -> Path:
    """The path of ``data/<filename>`` after checking that it exists and has its sha256."""
    fix = (f"Restore it with `git checkout -- data/{filename}` (or re-clone the course); "
           f"set {DATA_DIR_ENV} if data/ lives elsewhere.")
    path = check_file(data_dir() / filename, what, fix)
    digest = sha256_file(path)
    if digest != sha256:
        raise DataError(f"{what} {path} is corrupted (sha256 {digest[:12]}... differs from "
                        f"the expected {sha256[:12]}...). {fix}")
    return path


def _first_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an exception's message, at most ``limit`` characters (long enough
    for a message that names a file and says what to do with it)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def online_or_embedded(mode: str, what: str, kind: str, fetch, load_embedded,
                       where: str = ""):
    """The loaders' shared rule: download (or use the verified download cache), else the
    embedded data.

    Parameters
    ----------
    mode : {"auto", "online", "offline"}
        From :func:`course_lib.config.data_mode`.
    what, kind : str
        "MNIST", "subset": used in the messages.
    fetch, load_embedded : callables without arguments
        The online and the offline path.
    where : str
        Appended to the online error ("from https://...").

    Returns
    -------
    (data, source, note)
        ``source`` is ``"online"`` or ``"embedded"``; ``note`` is the one-line fallback message
        (``""`` if none), which says why the download was not used and what to do.

    Raises
    ------
    DataError
        In ``online`` mode, when the download (or the cached copy) fails.
    """
    if mode in ("auto", "online"):
        try:
            return fetch(), "online", ""
        except Exception as exc:  # noqa: BLE001 - any network, cache or verification failure
            cause = f"{type(exc).__name__}: {_first_line(exc)}"
            if mode == "online":
                # A DataError says itself what is wrong with the file and what to do; any other
                # failure is the network's (or the server's).
                advice = "Or use" if isinstance(exc, DataError) else "Check the network, or use"
                raise DataError(f"Could not get {what}{where}. {cause} {advice} the embedded "
                                f"{kind} with COURSE_DATA=offline.") from exc
            note = (f"Could not get {what} ({cause.rstrip('.')}); using the embedded offline "
                    f"{kind} instead.\n")
            return load_embedded(), "embedded", note
    return load_embedded(), "embedded", ""


# --------------------------------------------------------------------------- cache status
@dataclass
class CacheItem:
    """One dataset file or folder: what it is, where, how big, and its state.

    ``state`` is ``"OK"``, ``"missing"``, ``"corrupted"`` or ``"failed"`` (a prefetch that did
    not succeed); ``kind`` is ``"embedded"`` (shipped in ``data/``), ``"download"`` (cached
    after an online download), ``"built"`` (built offline on first use) or ``"optional"``
    (real MVTec AD); ``hint`` says what to do when the state is not ``"OK"``.
    Used by ``python -m course_lib.data`` and ``python -m course_lib.doctor``.
    """

    name: str
    kind: str
    state: str
    path: Path | None = None
    size: int | None = None
    detail: str = ""
    hint: str = ""


def path_size(path: Path | None) -> int | None:
    """Bytes in a file, or in all files below a folder; ``None`` if it does not exist."""
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(nbytes: int | None) -> str:
    """``1536`` -> ``"1.5 KB"``; ``None`` -> ``"-"``."""
    if nbytes is None:
        return "-"
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def embedded_item(name: str, filename: str, sha256: str) -> CacheItem:
    """The state of an embedded file in ``data/`` (sha256 checked)."""
    path = data_dir() / filename
    fix = (f"Restore it with `git checkout -- data/{filename}` (or re-clone the course); set "
           f"{DATA_DIR_ENV} if data/ lives elsewhere.")
    if path.is_dir():
        return CacheItem(name, "embedded", "corrupted", path, detail="a folder, not a file",
                         hint=f"Remove the folder {path}, then: {fix[0].lower()}{fix[1:]}")
    if not path.is_file():
        return CacheItem(name, "embedded", "missing", path, hint=fix)
    digest = sha256_file(path)
    if digest != sha256:
        return CacheItem(name, "embedded", "corrupted", path, path_size(path),
                         detail=f"sha256 {digest[:12]}... != {sha256[:12]}...", hint=fix)
    return CacheItem(name, "embedded", "OK", path, path_size(path), detail="sha256 verified")


def failure_hint(exc: BaseException, advice: str) -> str:
    """``"<error type>: <first line>. <advice>"`` for a prefetch that failed."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc  # the network error itself
    text = _first_line(cause)
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(cause).__name__}: {text}. {advice}"
