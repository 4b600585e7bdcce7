"""ECG heartbeats (notebook 09): the 4,998-beat CSV online, real beats embedded, or your file.

ECG5000 (UCR Time Series Classification Archive; Dau, Keogh et al. 2018) holds 5,000
heartbeats of one long ECG recording (record chf07 of PhysioNet's BIDMC Congestive Heart
Failure Database; Baim et al. 1986, Goldberger et al. 2000), each cut around one beat,
resampled to 140 samples and z-normalised.  Class 1 is a normal beat; classes 2-5 are four
kinds of abnormal beat (:data:`ECG5000_CLASSES`).

- ``online``: the 4,998-beat CSV of TensorFlow's autoencoder tutorial (``ECG_URL``), cached
  under ``~/.keras/datasets`` and checked by its content on every load;
- ``embedded``: 251 real beats of the archive's training split, shipped in
  ``data/ecg5000_part.txt`` (sha256 checked on every load);
- ``file``: your own fixed-length windows with labels, as UCR text or CSV
  (:func:`read_ecg_file`); :func:`sliding_windows` cuts a long series into such windows and
  :func:`write_ecg_file` saves them.

Two label conventions, one rule: **label 1 = normal**, every other label is abnormal.  The
UCR text has the label *first* (1-5, so the kind of abnormal beat is known); TensorFlow's CSV
has it *last* (1.0 = normal, 0.0 = abnormal, kind not given).  Loaded labels keep their
values: 0 stands for "abnormal, kind not given".
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_lib.checks import (MAX_CLASS_LABEL, DataError, check_class_labels, check_matrix,
                               check_positive_int, quote)
from course_lib.config import data_mode, keras_dir
from course_lib.data.common import (CacheItem, check_file, embedded_file, embedded_item,
                                    online_or_embedded, path_size, refuse_zip)
from course_lib.download import atomic_write_text, check_hash, fetch_file

#: Samples per ECG5000 beat.
ECG_LENGTH = 140
#: The public CSV that TensorFlow's autoencoder tutorial downloads (label last, 1 = normal).
ECG_URL = "https://storage.googleapis.com/download.tensorflow.org/data/ecg.csv"
#: sha256 of the file at ``ECG_URL``.  ``None``: no published checksum could be reached from
#: the machine this was written on (it has no network), so a download is verified by its
#: *content* instead (4,998 rows of 140 finite values and a 0/1 label, both labels present).
#: Put the digest here once it is known and it will be checked as well.
ECG_SHA256: str | None = None
ECG_CACHE_NAME = "ecg.csv"
ECG_ROWS = 4998
ECG_EMBEDDED = "ecg5000_part.txt"
ECG_EMBEDDED_SHA256 = "757f64e196a88aead68cf8c45cfd1d814b74b4541bafdcd538d3cd600603696d"
#: The label of a normal beat in both conventions.
NORMAL_LABEL = 1
#: ECG5000's classes, in the order of the UCR archive's description of the set (Normal,
#: R-on-T PVC, PVC, SP or EB, UB); 0 is TensorFlow's CSV's "abnormal" (kind not given there).
ECG5000_CLASSES = {
    0: "abnormal (kind not given)",
    1: "normal",
    2: "R-on-T premature ventricular contraction",
    3: "premature ventricular contraction",
    4: "supraventricular premature or ectopic beat",
    5: "unclassified beat",
}
LAYOUTS = ("auto", "label-first", "label-last")
_FORMAT = ("expected one beat (window) per line: its label and its samples, all numbers, "
           "separated by spaces (UCR text, label first) or commas (CSV, label last), every "
           "line the same length")


def class_name(label: int) -> str:
    """``2`` -> ``"R-on-T premature ventricular contraction"``; unknown labels -> ``"class 7"``."""
    return ECG5000_CLASSES.get(int(label), f"class {int(label)}")


@dataclass
class ECGData:
    """Heartbeats (or any fixed-length windows) with labels, and where they came from.

    ``x``: float32 (N, length); ``y``: int64 labels, 1 = normal (see the module docstring);
    ``source``: ``"online"``, ``"embedded"`` or ``"file"``; ``detail`` says more.
    """

    x: np.ndarray
    y: np.ndarray
    source: str
    detail: str

    @property
    def is_abnormal(self) -> np.ndarray:
        """1 for every abnormal beat (label other than 1), 0 for normal ones."""
        return (self.y != NORMAL_LABEL).astype(np.int64)

    def class_counts(self) -> dict:
        """``{label: count}`` in increasing label order."""
        labels, counts = np.unique(self.y, return_counts=True)
        return {int(k): int(v) for k, v in zip(labels, counts)}

    def __str__(self) -> str:
        counts = self.class_counts()
        n_normal = counts.get(NORMAL_LABEL, 0)
        kinds = {k: v for k, v in counts.items() if k != NORMAL_LABEL}
        by_kind = ", ".join(f"class {k}: {v}" for k, v in kinds.items())
        return (f"Data source: {self.source} | {self.detail} | {len(self.x):,} beats of "
                f"{self.x.shape[1]} samples: {n_normal:,} normal, {len(self.x) - n_normal:,} "
                f"abnormal" + (f" ({by_kind})" if by_kind else ""))


# --------------------------------------------------------------------------- reading files
def _read_text(path: Path, name: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file's name
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name} could not be read ({type(exc).__name__}: "
                        f"{quote(str(exc), 120)}); {_FORMAT}.") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} is not a text file (byte {exc.start:,} is not UTF-8); "
                        f"{_FORMAT}.") from exc
    if "\x00" in text:
        raise DataError(f"{name} is not a text file (it holds NUL bytes); {_FORMAT}.")
    return text


def _parse_rows(text: str, name: str) -> tuple[np.ndarray, list]:
    """All numbers of the file as a 2-D float64 array, and each row's line number.

    A first line of names, or of the column numbers 0, 1, 2, ... that pandas' ``to_csv``
    writes (a CSV header), is skipped; that header repeated further down (files joined, or
    appended with ``mode="a"``) and pandas' header with a row index are refused; a line of
    another length, or a field that is not a
    number, is named by its line number.  Rows of fewer than 3 values are refused at the first
    row (a long series of one value per line is not read to its end).
    """
    rows, line_numbers, header = [], [], False
    # a file object splits lazily (LF, CRLF or old-Mac CR line ends): no list of every line
    for number, line in enumerate(io.StringIO(text, newline=None), start=1):
        line = line.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")] if "," in line else line.split()
        if not rows and fields[0] == "" and _is_column_numbers(fields[1:]):
            raise DataError(f"{name}: line {number:,} is the header of a CSV written with "
                            f"pandas' row index (to_csv's default index=True), so every row "
                            f"starts with its row number, which is not part of a beat. Write "
                            f"the file with to_csv(path, index=False), or drop the first "
                            f"column.")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            if not rows and not header and not any(_is_number(f) for f in fields):
                header = True
                continue  # a header line of column names
            bad = next(f for f in fields if not _is_number(f))
            raise DataError(f"{name}: line {number:,}: {quote(bad, 30)} is not a number; "
                            f"{_FORMAT}.") from None
        if _is_column_numbers(fields):
            if rows or header:  # a beat is never 0, 1, 2, ...: a second header, not data
                raise DataError(f"{name}: line {number:,} repeats a header line of column "
                                f"numbers 0, 1, 2, ...: the file looks like several CSV files "
                                f"joined, or written with to_csv(mode='a'), which writes the "
                                f"header each time. Delete the repeated header lines (or "
                                f"write the later parts with header=False).")
            header = "numbers"
            continue  # a header line of column numbers (pandas' to_csv of an unnamed frame)
        if not rows:
            _check_row_length(values, number, name)
        elif len(values) != len(rows[0]):
            raise DataError(f"{name}: line {number:,} has {len(values):,} values but line "
                            f"{line_numbers[0]:,} has {len(rows[0]):,}: every row must be one "
                            f"beat of the same length plus its label (a cut or joined line?).")
        rows.append(values)
        line_numbers.append(number)
    if not rows:
        what = ("only a header line of column numbers" if header == "numbers" else
                "only one line, and not of numbers" if header else "it is empty")
        raise DataError(f"{name} holds no beats ({what}); {_FORMAT}.")
    return np.asarray(rows, dtype=np.float64), line_numbers


def _is_column_numbers(fields: list) -> bool:
    """``True`` for the fields ``0, 1, 2, ...``: pandas' header of column numbers, not a beat
    (whose samples are not written as consecutive whole numbers from 0)."""
    return fields == [str(i) for i in range(len(fields))]


def _check_row_length(values: list, number: int, name: str) -> None:
    """The first row must hold a label and at least 2 samples; one or two values per line is
    a long series (a value, or a time and a value, per line), which is refused at once."""
    if len(values) >= 3:
        return
    per_line = "one sample" if len(values) == 1 else "a time and a sample"
    raise DataError(f"{name}: line {number:,} holds {len(values)} value(s), so the rows are not "
                    f"beats: this looks like one long series, {per_line} per line. Cut it into "
                    f"windows with course_lib.data.ecg.sliding_windows(series, length), label "
                    f"them and save them with write_ecg_file(path, windows, labels).")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _is_whole(column: np.ndarray) -> bool:
    return bool(np.all(column == np.round(column)))


def _looks_like_labels(column: np.ndarray) -> bool:
    return _is_whole(column) and column.min() >= 0 and column.max() <= MAX_CLASS_LABEL


def _label_position(table: np.ndarray, layout: str, name: str) -> str:
    """Where the label is: ``layout``, or for ``auto`` the end whose column holds class
    numbers; failing that, the one end that holds whole numbers at all (negative or huge
    labels are then refused by :func:`_check_labels`, naming the line)."""
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {LAYOUTS}, got {quote(layout)}.")
    if layout != "auto":
        return layout
    first, last = _looks_like_labels(table[:, 0]), _looks_like_labels(table[:, -1])
    if not (first or last):
        first, last = _is_whole(table[:, 0]), _is_whole(table[:, -1])
    if first != last:
        return "label-first" if first else "label-last"
    which = "both the first and the last" if first else "neither the first nor the last"
    raise DataError(f"{name}: {which} column holds whole-number labels, so where the label is "
                    f"cannot be told: pass layout='label-first' (UCR text) or 'label-last' "
                    f"(TensorFlow's CSV); bench: --layout.")


def read_ecg_file(path, layout: str = "auto", length: int | None = None,
                  name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a file of fixed-length beats (or windows) with labels.

    Parameters
    ----------
    path : str or Path
        A text file (optionally gzip-compressed), one beat per line: UCR text (values
        separated by spaces, label first) or CSV (commas, label last; a header line of
        names, or of the column numbers 0, 1, 2, ... that pandas' ``to_csv`` writes, is
        skipped).  Lines may end in LF, CRLF or CR.
    layout : {"auto", "label-first", "label-last"}
        Where the label is; ``auto`` takes the end whose column holds whole numbers >= 0.
    length : int, optional
        Required samples per beat (140 for ECG5000); default: whatever the first row has.
    name : str, optional
        How the file is called in messages (default: its path).

    Returns
    -------
    (x, y)
        ``x`` float32 (N, length), ``y`` int64 labels (1 = normal).

    Raises
    ------
    DataError
        Not a file (a folder, missing, a ZIP archive), not text, a field that is not a
        number, rows of another length, rows of 1 or 2 values (a long series: use
        :func:`sliding_windows`; refused at the first line), NaN or infinite values, labels
        that are not class numbers (whole, 0 to ``MAX_CLASS_LABEL``): the message names the
        line and says what was expected.

    Used by :func:`load_ecg` and ``python -m course_lib.bench ecg``.
    """
    path = check_file(path, "ECG file", _FORMAT[0].upper() + _FORMAT[1:] + ".")
    refuse_zip(path, "ECG file")
    name = name or str(path)
    table, line_numbers = _parse_rows(_read_text(path, name), name)
    finite = np.isfinite(table)
    if not finite.all():
        row, col = (int(v[0]) for v in np.nonzero(~finite))
        raise DataError(f"{name}: line {line_numbers[row]:,} holds NaN or infinite value(s) "
                        f"(first in field {col + 1}); fill or drop that beat.")
    position = _label_position(table, layout, name)
    labels, x = ((table[:, 0], table[:, 1:]) if position == "label-first" else
                 (table[:, -1], table[:, :-1]))
    if length is not None and x.shape[1] != length:
        raise DataError(f"{name}: beats of {x.shape[1]} samples (plus a label), expected "
                        f"{length} ({position.replace('-', ' ')}).")
    return x.astype(np.float32), _check_labels(labels, line_numbers, name, position)


def read_beats_to_score(path, length: int, layout: str = "auto",
                        name: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read beats to score: lines of ``length`` samples, with a label (as
    :func:`read_ecg_file` reads them) or without one.  Returns ``(x, y)``, ``y`` ``None``
    when the file holds no labels.  Used by ``course-score``."""
    path = check_file(path, "ECG file", _FORMAT[0].upper() + _FORMAT[1:] + ".")
    refuse_zip(path, "ECG file")
    name = name or str(path)
    table, line_numbers = _parse_rows(_read_text(path, name), name)
    if table.shape[1] == length:
        finite = np.isfinite(table)
        if not finite.all():
            row = int(np.nonzero(~finite)[0][0])
            raise DataError(f"{name}: line {line_numbers[row]:,} holds NaN or infinite "
                            f"value(s); fill or drop that beat.")
        return table.astype(np.float32), None
    if table.shape[1] != length + 1:
        raise DataError(f"{name}: lines of {table.shape[1]} values; this detector scores beats "
                        f"of {length} samples (a line of {length} values, or {length + 1} with "
                        f"a label). Cut or resample the beats to {length} samples.")
    return read_ecg_file(path, layout=layout, length=length, name=name)


def _check_labels(labels: np.ndarray, line_numbers: list, name: str,
                  position: str) -> np.ndarray:
    """Labels as int64 class numbers from 0 to ``MAX_CLASS_LABEL``; else a DataError that names
    the first bad line and says what to do (recode -1, or the label is at the other end)."""
    whole = labels == np.round(labels)
    bad = ~whole | (labels < 0) | (labels > MAX_CLASS_LABEL)
    if not bad.any():
        return labels.astype(np.int64)
    i = int(np.argmax(bad))
    where = (f"{name}: line {line_numbers[i]:,}: label {labels[i]:g} "
             f"({position.replace('-', ' ')})")
    other = "label-last" if position == "label-first" else "label-first"
    if not whole[i]:
        raise DataError(f"{where} is not a whole number: labels are class numbers (1 = normal, "
                        f"any other label abnormal). If the label is at the other end of the "
                        f"line, pass layout={other!r} (bench: --layout {other}).")
    if labels[i] < 0:
        raise DataError(f"{where}: labels must be >= 0 (1 = normal, any other label abnormal). "
                        f"If negative labels mark abnormal beats (1/-1, as scikit-learn's "
                        f"outlier detectors write them), recode them, e.g. y[y < 0] = 0 "
                        f"(0 = abnormal, kind not given).")
    raise DataError(f"{where} is too large to be a class number (0 to {MAX_CLASS_LABEL:,}; "
                    f"1 = normal): is that column samples rather than labels? If the label is "
                    f"at the other end of the line, pass layout={other!r} (bench: --layout "
                    f"{other}).")


def write_ecg_file(path, x, y) -> Path:
    """Save beats ``x`` (N, length) and labels ``y`` as UCR text (label first, values
    separated by spaces, 8 significant digits, as the archive's files); written atomically.

    The counterpart of :func:`read_ecg_file`, e.g. for windows cut by :func:`sliding_windows`
    or for the train and test files of ``python -m course_lib.bench ecg``.
    """
    x = check_matrix(x, "x", dtype=np.float64)
    y = check_class_labels(y, len(x), name="y")
    lines = ["  ".join(f"{v:.7e}" for v in (float(label), *beat)) for label, beat in zip(y, x)]
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- long series
def check_series(series, length: int, stride: int) -> np.ndarray:
    """A finite 1-D series (float32) of at least ``length`` samples, with ``length`` and
    ``stride`` whole numbers >= 1; else a DataError saying which."""
    length, stride = check_positive_int("length", length), check_positive_int("stride", stride)
    try:
        arr = np.asarray(series, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"series: expected a 1-D array of numbers ({quote(str(exc))}).") from exc
    if arr.ndim != 1 or len(arr) < length:
        raise DataError(f"series: expected a 1-D series of at least length={length} samples, "
                        f"got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise DataError("series: contains NaN or infinite values; fill or cut them out first.")
    return arr


def sliding_windows(series, length: int, stride: int = 1):
    """Cut a long 1-D series into windows of ``length`` samples, one every ``stride`` samples.

    Returns ``(windows, starts)``: ``windows[i]`` is ``series[starts[i]:starts[i] + length]``,
    shape (n_windows, length); samples at the end that do not fill a whole window are left out.
    Taught in notebook 09.
    """
    series = check_series(series, length, stride)
    starts = np.arange(0, len(series) - length + 1, stride)     # where each window begins
    windows = series[starts[:, None] + np.arange(length)]       # one row of indices per window
    return windows, starts


# --------------------------------------------------------------------------- the datasets
def _load_embedded():
    path = embedded_file(ECG_EMBEDDED, ECG_EMBEDDED_SHA256, "Embedded ECG beats")
    return read_ecg_file(path, layout="label-first", length=ECG_LENGTH,
                         name=f"embedded beats {path.name}")


def ecg_cache_path() -> Path:
    """Where the downloaded CSV is cached: ``$KERAS_HOME/datasets/ecg.csv`` (default
    ``~/.keras/datasets``, next to Keras' MNIST)."""
    return keras_dir() / "datasets" / ECG_CACHE_NAME


def _verify_full(path: Path, what: str):
    """Check that ``path`` is TensorFlow's 4,998-beat CSV; return ``(x, y)``."""
    if ECG_SHA256 is not None:
        check_hash(path, ECG_SHA256, what)
    x, y = read_ecg_file(path, layout="label-last", length=ECG_LENGTH, name=what)
    odd = sorted(set(np.unique(y).tolist()) - {0, 1})
    if len(x) != ECG_ROWS or odd or not (0 < int(y.sum()) < len(y)):
        raise DataError(f"{what}: {len(x):,} beats with labels {sorted(set(y.tolist()))[:6]}, "
                        f"expected {ECG_ROWS:,} beats labelled 0 (abnormal) and 1 (normal) "
                        f"(a truncated or different file).")
    return x, y


def fetch_ecg(progress: bool = True):
    """TensorFlow's 4,998-beat CSV from the cache, or downloaded into it first: ``(x, y)``.

    The download goes to a temporary file next to the cache entry, is verified by its content
    (and sha256, when ``ECG_SHA256`` is set), and only then renamed into place; a dead
    network fails within a few seconds.  Used by :func:`load_ecg` and ``python -m
    course_lib.data prefetch --ecg``.
    """
    target = ecg_cache_path()
    if target.exists():
        try:
            return _verify_full(check_file(target, "Cached ECG file"), f"cached copy {target}")
        except DataError as exc:
            raise DataError(f"Delete {target} and run again to download a fresh copy: it is "
                            f"not TensorFlow's ECG file. {exc}") from exc
    arrays = []

    def verify(tmp):
        arrays.append(_verify_full(Path(tmp), f"download of {ECG_URL}"))

    fetch_file(ECG_URL, target, verify=verify, progress=progress)
    return arrays[0]


def load_ecg(source: str | None = None, path=None, layout: str = "auto",
             verbose: bool = True) -> ECGData:
    """Load ECG heartbeats: the 4,998-beat CSV, the embedded real beats or your own file.

    Parameters
    ----------
    source : {"auto", "online", "offline"}, optional
        Default: the ``COURSE_DATA`` setting (``auto``).

        - ``online``: TensorFlow's CSV of 4,998 ECG5000 beats from ``ECG_URL`` (a few MB,
          once; cached, see :func:`ecg_cache_path`).  Labels there: 1 normal, 0 abnormal.
        - ``offline``: the 251 real beats in ``data/ecg5000_part.txt`` (146 normal; classes
          2-5: 89, 5, 10 and 1 beats).
        - ``auto``: try the download (a dead network fails within a few seconds) and fall
          back to the embedded beats with one message.
    path : str or Path, optional
        Your own file of fixed-length beats or windows (see :func:`read_ecg_file`).
        Overrides ``source``.
    layout : {"auto", "label-first", "label-last"}
        Where the label is in ``path``'s rows.
    verbose : bool
        Print one line ``Data source: <online|embedded|file> | ...``.

    Returns
    -------
    ECGData

    Taught in notebook 09.
    """
    note = ""
    if path is not None:
        x, y = read_ecg_file(path, layout=layout)
        src, detail = "file", f"your file {path}"
    else:
        (x, y), src, note = online_or_embedded(
            data_mode(source), "the ECG beats", "beats", fetch_ecg, _load_embedded,
            where=f" from {ECG_URL}")
        detail = (f"ECG5000 (UCR archive; PhysioNet chf07), TensorFlow's CSV cached at "
                  f"{ecg_cache_path()}" if src == "online" else
                  f"real ECG5000 beats (UCR archive; PhysioNet chf07) shipped in "
                  f"data/{ECG_EMBEDDED}")
    data = ECGData(x, y, src, detail)
    if verbose:
        print(note + str(data))
    return data


# --------------------------------------------------------------------------- cache status
def ecg_cache_items() -> list:
    """The embedded beats (sha256) and the cached CSV (its first line checked; every load
    checks all of it) as :class:`CacheItem`.  No network."""
    embedded = embedded_item("ECG beats (embedded)", ECG_EMBEDDED, ECG_EMBEDDED_SHA256)
    path = ecg_cache_path()
    name = "ECG 4,998 beats (cache)"
    fix = f"Delete {path} and run python -m course_lib.data prefetch --ecg."
    if path.is_dir():
        return [embedded, CacheItem(name, "download", "corrupted", path,
                                    detail="a folder, not the CSV file",
                                    hint=f"Remove the folder {path} and run python -m "
                                         f"course_lib.data prefetch --ecg.")]
    if not path.is_file():
        return [embedded, CacheItem(name, "download", "missing", path,
                                    hint="python -m course_lib.data prefetch --ecg (a few MB; "
                                         "offline, the embedded beats are used instead).")]
    with open(path, "rb") as f:
        head = f.readline(1 << 16)
    try:
        ok = len([float(v) for v in head.decode("utf-8").split(",")]) == ECG_LENGTH + 1
    except (UnicodeDecodeError, ValueError):
        ok = False
    if not ok:
        return [embedded, CacheItem(name, "download", "corrupted", path, path_size(path),
                                    detail="its first line is not a beat of 140 values and a "
                                           "label", hint=fix)]
    return [embedded, CacheItem(name, "download", "OK", path, path_size(path),
                                detail="first line checked (every load checks all beats)")]
