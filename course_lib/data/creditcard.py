"""Credit-card fraud (notebook 04): full download, embedded real sample, or your own CSV.

The ULB Machine Learning Group's credit-card transactions (Kaggle "creditcardfraud", ODbL 1.0):
``Time``, ``V1``..``V28`` (PCA components), ``Amount`` and ``Class`` (1 = fraud).

- ``online``: the full CSV (284,807 rows, about 150 MB) from ``CREDITCARD_URL``, cached under
  ``~/.keras/datasets`` and checked by its content (columns, rows, frauds) on every load;
- ``embedded``: a real sample shipped in ``data/creditcard_sample.csv.gz`` (frauds enriched);
- ``file``: your own CSV with the same columns.

Every CSV is checked *before* pandas parses it: each data row must have as many fields as the
header (a shifted or cut row is named by its line), so a malformed file fails within seconds
with the right message instead of loading with shifted columns.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, quote
from course_lib.config import Profile, data_mode, get_profile, keras_dir
from course_lib.data.common import (CacheItem, check_file, embedded_file, embedded_item,
                                    online_or_embedded, path_size, refuse_zip)
from course_lib.download import check_hash, fetch_file
from course_lib.sampling import seeded_subset

#: The public copy of the full CSV (used by the TensorFlow "imbalanced data" tutorial).
CREDITCARD_URL = "https://storage.googleapis.com/download.tensorflow.org/data/creditcard.csv"
#: sha256 of the file at ``CREDITCARD_URL``.  ``None``: no published checksum could be reached,
#: so a download is verified by its *content* (columns, row and fraud counts) instead.  Put the
#: digest here once it is known and it will be checked as well.
CREDITCARD_SHA256: str | None = None
CREDITCARD_CACHE_NAME = "creditcard.csv"
CREDITCARD_SAMPLE = "creditcard_sample.csv.gz"
CREDITCARD_SAMPLE_SHA256 = "95119525e4cdcf4f1eb1b3e2cb621da217231cb84874e1132bf5937837a37464"
CREDITCARD_COLUMNS = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class")
#: The 30 model inputs (every column but ``Class``).
CREDITCARD_FEATURES = CREDITCARD_COLUMNS[:-1]
CREDITCARD_ROWS = 284_807      # the full data: two days of September 2013 ...
CREDITCARD_FRAUDS = 492        # ... of which 0.172% are frauds
CREDITCARD_DAYS = 2
#: A header line longer than this is not a CSV header of 31 names.
MAX_HEADER_BYTES = 1 << 16
_FORMAT = ("expected a CSV with a header row and the 31 columns Time, V1, ..., V28, Amount, "
           "Class (Class: 0 = normal, 1 = fraud), as in the Kaggle file creditcard.csv")


@dataclass
class TabularData:
    """Credit-card transactions and where they came from (see :func:`load_creditcard`).

    ``frame`` is a pandas DataFrame with the columns ``CREDITCARD_COLUMNS`` (features float64,
    ``Class`` int64: 1 = fraud); ``source`` is ``"online"``, ``"embedded"`` or ``"file"``;
    ``detail`` says more.
    """

    frame: "pandas.DataFrame"  # noqa: F821 - pandas is imported lazily
    source: str
    detail: str

    @property
    def n_fraud(self) -> int:
        """Number of fraudulent transactions (``Class == 1``)."""
        return int(self.frame["Class"].sum())

    @property
    def fraud_rate(self) -> float:
        """Share of frauds among all transactions (0.00172 in the full data)."""
        return self.n_fraud / max(1, len(self.frame))

    def __str__(self) -> str:
        return (f"Data source: {self.source} | {self.detail} | {len(self.frame):,} transactions, "
                f"{self.n_fraud:,} frauds ({self.fraud_rate:.2%})")


def check_creditcard_frame(frame, name: str = "data", labels: str = "required"):
    """Validate credit-card transactions and return a clean copy in the canonical form.

    Accepts a pandas DataFrame with the columns Time, V1..V28, Amount, Class in any order, plus
    at most one extra *leading* column (an index written by ``to_csv``), which is dropped.
    Rejects missing or unknown columns, non-numeric values, NaN or infinite values, ``Class``
    values other than 0/1 and data without normal rows, with a :class:`DataError` that names
    the problem and says what to do.  ``labels="optional"`` (transactions to score): the
    ``Class`` column may be missing, and the rows may all be frauds.

    Returns
    -------
    pandas.DataFrame
        Columns in the order of ``CREDITCARD_COLUMNS``: features float64, ``Class`` int64;
        a fresh ``RangeIndex``.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}.")
    if labels not in ("required", "optional"):
        raise DataError(f"labels must be 'required' or 'optional', got {quote(labels)}.")
    expected = list(CREDITCARD_COLUMNS)
    cols = [str(c).strip() for c in frame.columns]
    if labels == "optional" and "Class" not in cols:
        expected = list(CREDITCARD_FEATURES)
    frame = frame.set_axis(cols, axis=1)
    if len(cols) == len(expected) + 1 and cols[0] not in expected and set(cols[1:]) == set(expected):
        frame = frame.iloc[:, 1:]  # a leading index column, as written by DataFrame.to_csv
        cols = cols[1:]
    shown = ", ".join(quote(c, 30) for c in cols[:8]) + (" ..." if len(cols) > 8 else "")
    if len(set(cols)) != len(cols):
        dup = sorted({c for c in cols if cols.count(c) > 1})
        raise DataError(f"{name}: duplicated column(s) {', '.join(quote(c, 30) for c in dup[:5])}; "
                        f"{_FORMAT}.")
    missing = [c for c in expected if c not in cols]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}; "
                        f"found {shown}. {_FORMAT[0].upper()}{_FORMAT[1:]}.")
    extra = [c for c in cols if c not in expected]
    if extra:
        raise DataError(f"{name}: unexpected column(s) {', '.join(quote(c, 30) for c in extra[:5])}; "
                        f"drop them (only one extra leading index column is tolerated). "
                        f"{_FORMAT[0].upper()}{_FORMAT[1:]}.")
    if len(frame) == 0:
        raise DataError(f"{name}: holds no rows; {_FORMAT}.")
    out = {}
    for col in expected:
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.isna() & values.notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"{name}: column {col!r} holds non-numeric values, e.g. "
                                f"{quote(values.iloc[row])} in data row {row} (counting from "
                                f"0). Every column must hold numbers; fix or drop those rows.")
            values = numeric
        arr = values.to_numpy(dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise DataError(f"{name}: column {col!r} has {len(rows)} missing (NaN) or infinite "
                            f"value(s), first in data row {int(rows[0])} (counting from 0). Fill "
                            f"or drop those rows first (e.g. frame.dropna()).")
        out[col] = arr
    clean = pd.DataFrame(out, columns=expected)
    if "Class" not in expected:
        return clean
    classes = out["Class"]
    odd = np.unique(classes[(classes != 0) & (classes != 1)])
    if len(odd):
        found = [int(v) if float(v).is_integer() else float(v) for v in odd[:5]]
        raise DataError(f"{name}: column 'Class' must be 0 (normal) or 1 (fraud), found "
                        f"{found}. Recode the labels to 0/1.")
    if labels == "required" and not (classes == 0).any():
        raise DataError(f"{name}: no normal transactions (Class 0). The autoencoder learns from "
                        f"normal rows only, so the data must contain some.")
    clean["Class"] = classes.astype(np.int64)
    return clean


# --------------------------------------------------------------------------- reading CSV files
def _read_bytes(path: Path, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic == b"\x1f\x8b":  # gzip, whatever the file's name
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:  # zlib: damaged .gz
        raise DataError(f"{name} could not be read ({type(exc).__name__}: "
                        f"{quote(str(exc), 120)}); it is damaged or not a CSV file: "
                        f"{_FORMAT}.") from exc


def _lf_line_ends(raw: bytes) -> bytes:
    """``raw`` with old-Mac line ends (a lone CR) turned into LF; LF and CRLF files are
    returned as they are (no copy)."""
    n_cr = raw.count(b"\r")
    if n_cr and n_cr != raw.count(b"\r\n"):
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return raw


def _header_fields(raw: bytes, name: str) -> list:
    end = raw.find(b"\n", 0, MAX_HEADER_BYTES + 1)
    if end < 0 and len(raw) > MAX_HEADER_BYTES:
        raise DataError(f"{name}: the first line is longer than {MAX_HEADER_BYTES:,} bytes, so "
                        f"it is not a header row; {_FORMAT}.")
    line = raw[: end if end >= 0 else len(raw)].rstrip(b"\r")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: the first line is not UTF-8 text ({exc.reason}); "
                        f"{_FORMAT}.") from exc
    fields = next(csv.reader([text]), [])
    if not fields or not any(f.strip() for f in fields):
        raise DataError(f"{name}: the file is empty or its first line is blank; {_FORMAT}.")
    return fields


def _first_row_with_wrong_width(raw: bytes, n_fields: int):
    """``(line number, fields found, line text)`` of the first non-blank data line whose number
    of fields differs from ``n_fields``, or ``None``.

    Counts commas with NumPy in blocks of about 8 MB (whole lines), so a 150 MB file takes a
    second and one line of millions of fields is found at once.  Lines with quotes are counted
    again with the csv module (a quoted field may hold a comma).
    """
    start = raw.find(b"\n") + 1
    if start == 0:
        return None
    line_no = 2
    has_quotes = raw.find(b'"', start) >= 0
    block = 8 << 20
    while start < len(raw):
        stop = raw.find(b"\n", min(start + block, len(raw)))
        stop = len(raw) if stop < 0 else stop + 1
        buf = np.frombuffer(raw, dtype=np.uint8, count=stop - start, offset=start)
        newlines = np.flatnonzero(buf == 10)
        line_starts = np.r_[0, newlines + 1]
        line_ends = np.r_[newlines, len(buf)]
        commas = np.flatnonzero(buf == 44)
        counts = np.bincount(np.searchsorted(newlines, commas), minlength=len(line_starts)) + 1
        lengths = line_ends - line_starts
        ends_cr = np.zeros(len(lengths), bool)
        nonempty = lengths > 0
        ends_cr[nonempty] = buf[line_ends[nonempty] - 1] == 13
        blank = (lengths - ends_cr) <= 0
        for i in np.flatnonzero(~blank & (counts != n_fields)):
            text = bytes(buf[line_starts[i]:line_ends[i]]).rstrip(b"\r")
            found = int(counts[i])
            if has_quotes and b'"' in text:
                row = next(csv.reader([text.decode("utf-8", "replace")]), [])
                found = len(row)
                if found == n_fields:
                    continue
            return line_no + int(i), found, text
        line_no += len(newlines)
        start = stop
    return None


def read_creditcard_csv(path, name: str | None = None, labels: str = "required"):
    """Read and validate a credit-card CSV (``.csv`` or ``.csv.gz``).

    Before pandas parses anything, every data row must have as many fields as the header: a
    row with one more field (which pandas would silently turn into an index, shifting every
    column), a trailing comma, or a line of millions of fields is reported by its line number,
    within seconds.  Then :func:`check_creditcard_frame` checks the columns and values.
    Lines may end in LF, CRLF or a lone CR (old Mac files); a ZIP archive (Kaggle's
    ``archive.zip``) is refused with a message to unzip it.

    ``labels="optional"``: transactions to score, ``Class`` may be missing
    (:func:`check_creditcard_frame`).  Used by ``load_creditcard(path=...)``,
    ``python -m course_lib.bench creditcard`` and ``course-score``.
    """
    import pandas as pd

    path = check_file(path, "Credit-card file", _FORMAT[0].upper() + _FORMAT[1:] + ".")
    name = name or str(path)
    refuse_zip(path, "credit-card CSV", "Kaggle's archive.zip holds creditcard.csv.")
    raw = _lf_line_ends(_read_bytes(path, name))
    header = _header_fields(raw, name)
    if len(header) > 1 and not header[-1].strip():
        raise DataError(f"{name}: the header row ends with a comma (an unnamed last column); "
                        f"remove the trailing comma from it and from every row that has one. "
                        f"{_FORMAT[0].upper()}{_FORMAT[1:]}.")
    bad = _first_row_with_wrong_width(raw, len(header))
    if bad is not None:
        line_no, found, text = bad
        why = ""
        if found == len(header) + 1 and text.endswith(b","):
            why = " (it ends with a comma: remove the trailing comma from every row)"
        elif found > len(header):
            why = " (a shifted row, or a field with an unquoted comma)"
        raise DataError(f"{name}: line {line_no:,} has {found:,} fields but the header has "
                        f"{len(header)}{why}. Every row must have one value per column; "
                        f"{_FORMAT}.")
    try:
        frame = pd.read_csv(io.BytesIO(raw), index_col=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as exc:
        raise DataError(f"{name} could not be read as a CSV file ({type(exc).__name__}: "
                        f"{quote(str(exc), 200)}); {_FORMAT}.") from exc
    if frame.shape[1] == len(header):  # the names as written: pandas renames duplicates (V4.1)
        frame.columns = header
    return check_creditcard_frame(frame, name=name, labels=labels)


def _load_embedded():
    path = embedded_file(CREDITCARD_SAMPLE, CREDITCARD_SAMPLE_SHA256,
                         "Embedded credit-card sample")
    return read_creditcard_csv(path, name=f"embedded sample {path.name}")


def creditcard_cache_path() -> Path:
    """Where the downloaded full CSV is cached: ``$KERAS_HOME/datasets/creditcard.csv``
    (default ``~/.keras/datasets``, next to Keras' MNIST)."""
    return keras_dir() / "datasets" / CREDITCARD_CACHE_NAME


def _verify_full(path: Path, what: str):
    """Check that ``path`` is the full dataset; return it as a clean DataFrame."""
    if CREDITCARD_SHA256 is not None:
        check_hash(path, CREDITCARD_SHA256, what)
    frame = read_creditcard_csv(path, name=what)
    n_fraud = int(frame["Class"].sum())
    if len(frame) != CREDITCARD_ROWS or n_fraud != CREDITCARD_FRAUDS:
        raise DataError(f"{what}: {len(frame):,} rows with {n_fraud:,} frauds, expected "
                        f"{CREDITCARD_ROWS:,} rows with {CREDITCARD_FRAUDS} frauds (a truncated "
                        f"or different file).")
    return frame


def fetch_creditcard(progress: bool = True):
    """The full dataset from the cache, or downloaded into it first; a clean DataFrame.

    The download goes to a temporary file next to the cache entry, is verified by its content
    (and sha256, when ``CREDITCARD_SHA256`` is set), and only then renamed into place, so an
    interrupted or wrong download never leaves a file in the cache.  A dead network fails
    within a few seconds.  Used by :func:`load_creditcard` and ``python -m course_lib.data
    prefetch --creditcard``.
    """
    target = creditcard_cache_path()
    if target.exists():
        try:
            return _verify_full(check_file(target, "Cached credit-card file"),
                                f"cached copy {target}")
        except DataError as exc:  # the advice first: callers may show only the first 500 chars
            raise DataError(f"Delete {target} and run again to download a fresh copy: it is "
                            f"not the full credit-card data. {exc}") from exc
    frames = []

    def verify(tmp):
        frames.append(_verify_full(Path(tmp), f"download of {CREDITCARD_URL}"))

    fetch_file(CREDITCARD_URL, target, verify=verify, progress=progress)
    return frames[0]


def _cap_normal_rows(frame, max_normal: int | None, seed: int):
    """Keep every fraud and at most ``max_normal`` normal rows (seeded), in the original order."""
    labels = frame["Class"].to_numpy()
    normal = np.flatnonzero(labels == 0)
    if max_normal is None or len(normal) <= max_normal:
        return frame, False
    keep_normal = seeded_subset(len(labels), max_normal, seed, candidates=normal)
    keep = np.sort(np.concatenate([keep_normal, np.flatnonzero(labels == 1)]))
    return frame.iloc[keep].reset_index(drop=True), True


def load_creditcard(source: str | None = None, path=None, profile: Profile | str | None = None,
                    verbose: bool = True, seed: int = 0) -> TabularData:
    """Load the credit-card fraud data: full download, embedded real sample or your CSV.

    Parameters
    ----------
    source : {"auto", "online", "offline"}, optional
        Default: the ``COURSE_DATA`` setting (``auto``).

        - ``online``: the full data (284,807 transactions over two days, 492 frauds) from
          ``CREDITCARD_URL`` (about 150 MB, once; cached under ``~/.keras/datasets``, see
          :func:`creditcard_cache_path`).  Fails with a :class:`DataError` if it cannot.
        - ``offline``: the real sample shipped in ``data/creditcard_sample.csv.gz``: 3,102
          normal and 236 fraudulent transactions of the same data, rows unchanged.  Frauds are
          *enriched* there: about 7% of the rows instead of 0.172%.
        - ``auto``: try the download (a dead network fails within a few seconds) and fall back
          to the embedded sample with one message.
    path : str or Path, optional
        Your own CSV (or ``.csv.gz``) with the columns Time, V1..V28, Amount, Class (an extra
        leading index column is tolerated).  Overrides ``source``.
    profile : Profile or str, optional
        Caps the number of *normal* rows (``profile.tabular_max_normal``: 5,000 fast, 20,000
        workshop, all in full); frauds are all kept.  The embedded sample is always whole.
    verbose : bool
        Print one line ``Data source: <online|embedded|file> | ...``.
    seed : int
        Seed of the subsampling of normal rows.

    Returns
    -------
    TabularData
        ``.frame`` (pandas DataFrame, validated by :func:`check_creditcard_frame`),
        ``.source`` and ``.detail``.

    Notes
    -----
    What is verified: the embedded sample by its sha256 on every load.  The download (and the
    cached copy, on every load) by its *content*: exactly the 31 expected columns, every row as
    wide as the header, all values numeric and finite, ``Class`` 0/1, exactly 284,807 rows and
    492 frauds; and by its sha256 only if ``CREDITCARD_SHA256`` is set.  Not verified: the
    feature *values* themselves, so a copy with the same shape and counts but altered numbers
    would pass.

    Taught in notebook 04.
    """
    prof = get_profile(profile)
    note = ""
    if path is not None:
        frame = read_creditcard_csv(path)
        src, detail = "file", f"your file {path}"
    else:
        frame, src, note = online_or_embedded(
            data_mode(source), "the credit-card data", "sample", fetch_creditcard,
            _load_embedded, where=f" from {CREDITCARD_URL}")
        detail = (f"full ULB credit-card data, 2 days of September 2013 (ODbL), cached at "
                  f"{creditcard_cache_path()}" if src == "online" else
                  f"real ULB sample shipped in data/{CREDITCARD_SAMPLE} (ODbL; frauds enriched)")
    frame, capped = _cap_normal_rows(frame, prof.tabular_max_normal, seed)
    if capped:
        detail += (f" | profile '{prof.name}': {int((frame['Class'] == 0).sum()):,} normal rows "
                   f"(seeded sample) and all frauds")
    data = TabularData(frame, src, detail)
    if verbose:
        print(note + str(data))
    return data


# --------------------------------------------------------------------------- cache status
def creditcard_cache_items() -> list:
    """The embedded sample (sha256) and the cached full CSV (header and row widths of its first
    lines; every load checks all of it) as :class:`CacheItem`.  No network."""
    embedded = embedded_item("Credit card sample (embedded)", CREDITCARD_SAMPLE,
                             CREDITCARD_SAMPLE_SHA256)
    path = creditcard_cache_path()
    name = "Credit card full (cache)"
    if path.is_dir():
        return [embedded, CacheItem(name, "download", "corrupted", path,
                                    detail="a folder, not the CSV file",
                                    hint=f"Remove the folder {path} and run python -m "
                                         f"course_lib.data prefetch --creditcard.")]
    if not path.is_file():
        return [embedded, CacheItem(name, "download", "missing", path,
                                    hint="python -m course_lib.data prefetch --creditcard "
                                         "(about 150 MB; offline, the embedded sample is used "
                                         "instead).")]
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    try:
        header = [h.strip() for h in _header_fields(head, str(path))]
    except DataError:
        header = []
    if header != list(CREDITCARD_COLUMNS):
        return [embedded, CacheItem(name, "download", "corrupted", path, path_size(path),
                                    detail="unexpected header",
                                    hint=f"Delete {path} and run python -m course_lib.data "
                                         f"prefetch --creditcard.")]
    return [embedded, CacheItem(name, "download", "OK", path, path_size(path),
                                detail="header checked (rows and frauds are checked on every "
                                       "load)")]
