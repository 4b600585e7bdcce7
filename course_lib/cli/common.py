"""What every command-line tool of the course shares: one behaviour for errors and exits.

- a usage error (an unknown option, a value out of range, a file that is not there) prints
  ONE line ``<prog>: error: <what is wrong> (see <prog> --help)`` and exits with 2;
- a failure while working (bad data, no network) prints ``<prog>: error: <message>`` (which
  says what to do) and exits with 1;
- nothing a user can cause ends in a Python traceback; Ctrl-C exits with 130.

Each tool defines ``main(argv=None) -> int`` as ``run_command(PROG, _run, argv)``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

from course_lib.checks import DataError, quote
from course_lib.config import DATA_MODES, PROFILES, REPO_DIR, data_mode, get_profile

NOTEBOOK_DIR = REPO_DIR / "notebooks"


class UsageError(Exception):
    """The command line is wrong: exit code 2, one line."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises :class:`UsageError` (one line, exit 2) instead of
    printing the whole usage and exiting."""

    def error(self, message):  # noqa: D401 - argparse's hook
        raise UsageError(message)


def run_command(prog: str, run, argv=None) -> int:
    """Call ``run(argv)`` and turn what can go wrong into an exit code and a clear message."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up log short
    try:
        return int(run(argv) or 0)
    except SystemExit as exc:  # --help, --version, sys.exit(...)
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(f"{prog}: error: {exc.code}", file=sys.stderr)  # sys.exit("message") means 1
        return 1
    except UsageError as exc:
        text = " ".join(str(exc).split())  # one line, even for a path holding a newline
        print(f"{prog}: error: {text} (see {prog} --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted.", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: out of memory. Close other programs and notebooks, or use the "
              f"fast profile (--profile fast or COURSE_PROFILE=fast).", file=sys.stderr)
        return 1
    except (DataError, OSError, ValueError, ImportError, RuntimeError) as exc:
        text = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, DataError):
            text = f"{type(exc).__name__}: {text}"
        print(f"{prog}: error: {text}", file=sys.stderr)
        return 1


#: TensorFlow's start-up lines that say nothing to a user of the tools (C++ logging that its
#: TF_CPP_MIN_LOG_LEVEL no longer silences): no GPU here, oneDNN on.
TF_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations",
            "Could not find cuda drivers", "failed call to cuInit", "cudart_stub",
            "Unable to register cu", "TF-TRT Warning", "computation placer already registered",
            "This TensorFlow binary is optimized")


@contextlib.contextmanager
def quiet_tensorflow():
    """Import and start TensorFlow inside this block without its C++ start-up lines on stderr:
    stderr (file descriptor 2) goes to a temporary file meanwhile, and every line that is not
    one of :data:`TF_NOISE` is written back afterwards, so no real message is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines(True)
                    if not any(noise in line for noise in TF_NOISE)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


# --------------------------------------------------------------------------- argument types
def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {quote(text)}")
    return value


def int_at_least(minimum: int):
    """argparse type: a whole number >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got "
                                             f"{quote(text)}")
        return value
    parse.__name__ = f"int>={minimum}"
    return parse


#: The largest seed NumPy and Keras accept (seeds are 32-bit: 0 to 2**32 - 1).
MAX_SEED = 2 ** 32 - 1


def seed_value(text: str) -> int:
    """argparse type: a random seed, a whole number from 0 to :data:`MAX_SEED`."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_SEED} (NumPy "
                                         f"and Keras seeds are 32-bit), got {quote(text)}")
    return value


def fraction(allow_one: bool = True):
    """argparse type: a number in (0, 1] (or (0, 1) with ``allow_one=False``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (0.0 < value < 1.0 or (allow_one and value == 1.0)):
            raise argparse.ArgumentTypeError(
                f"expected a number in (0, {'1]' if allow_one else '1)'}, got {quote(text)}")
        return value
    parse.__name__ = "fraction"
    return parse


def scale_factor(text: str) -> float:
    """argparse type: an image scale factor in (0, 4] (1 = the files' own resolution)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 4.0:
        raise argparse.ArgumentTypeError(f"expected a scale factor in (0, 4], e.g. 0.5 or 1, "
                                         f"got {quote(text)}")
    return value


def profile_name(text: str) -> str:
    """argparse type: a profile name (``fast``, ``workshop``, ``full``)."""
    try:
        return get_profile(text).name
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown profile {quote(text)}: choose one of "
                                         f"{', '.join(sorted(PROFILES))}") from None


def data_mode_name(text: str) -> str:
    """argparse type: a data mode (``auto``, ``online``, ``offline``)."""
    try:
        return data_mode(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown data mode {quote(text)}: choose one of "
                                         f"{', '.join(DATA_MODES)}") from None


def env_profile() -> str:
    """The profile ``$COURSE_PROFILE`` names; a usage error if it names none."""
    try:
        return get_profile().name
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def env_data_mode() -> str:
    """The data mode ``$COURSE_DATA`` names; a usage error if it names none."""
    try:
        return data_mode()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def quote_path(text: str, limit: int = 200) -> str:
    """``repr`` of a path for a message; a long one keeps its end (the file's name)."""
    text = str(text)
    return repr(text) if len(text) <= limit else "..." + repr(text[-limit:])


def existing_file(text: str) -> Path:
    """argparse type: a path that exists and is a file (a folder is named as such)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{quote_path(text)} is a folder, not a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file {quote_path(text)} not found")
    return path


def output_file(text: str) -> Path:
    """argparse type: a file to write (it may not exist yet, but it must not be a folder)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{quote_path(text)} is a folder; give a file name")
    if any(parent.exists() and not parent.is_dir() for parent in path.parents):
        raise argparse.ArgumentTypeError(f"cannot write {quote_path(text)}: a part of that path "
                                         f"is a file, not a folder")
    return path


def existing_folder(text: str) -> Path:
    """argparse type: a path that exists and is a folder."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{quote_path(text)} is a file, not a folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"folder {quote_path(text)} not found")
    return path


def check_writable_folder(folder, option: str) -> None:
    """Raise :class:`UsageError` unless files can be written in ``folder`` (or, if it does not
    exist yet, in the nearest folder above it that does): checked before hours of work whose
    results would then be lost."""
    folder = Path(folder)
    existing = next(p for p in [folder, *folder.parents] if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise UsageError(f"{option} {quote_path(folder)}: {quote_path(existing)} is a file, "
                         f"not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".course-write-test-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"cannot write in {quote_path(existing)} ({option} "
                         f"{quote_path(folder)}: {exc.strerror or type(exc).__name__}); give a "
                         f"folder you can write to") from None


def refuse_overwriting(outputs, inputs, option: str) -> None:
    """Raise :class:`UsageError` if a file the command would write (``outputs``) is one of the
    files it reads (``inputs``), e.g. ``--out .`` run from the repository would replace the
    notebooks with their executed copies."""
    sources = [Path(p) for p in inputs]
    for target in map(Path, outputs):
        same = next((p for p in sources if target.exists() and p.exists()
                     and os.path.samefile(target, p)), None)
        if same is not None:
            raise UsageError(f"{option} would overwrite the input {quote_path(same)} with what "
                             f"this command writes; give another {option}")


def list_notebooks(folder=None) -> list:
    """The course notebooks ``NN_*.ipynb`` of ``folder`` (default ``notebooks/``), in order."""
    return sorted(Path(folder or NOTEBOOK_DIR).glob("[0-9][0-9]_*.ipynb"))


def notebook_paths(names) -> list:
    """The notebooks named on a command line (default: all of ``notebooks/``), each checked."""
    paths = [Path(p) for p in names] or list_notebooks()
    if not paths:
        raise UsageError("no notebooks found in notebooks/")
    for p in paths:
        if p.is_dir():
            raise UsageError(f"{p} is a folder, not a notebook")
        if not p.is_file():
            raise UsageError(f"notebook {p} not found")
    return paths


# --------------------------------------------------------------------------- the repository
#: The branch that Colab and Binder links open (and Binder builds).
BRANCH = "main"
_GITHUB_RE = re.compile(r"https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?")
_REPOSITORY_LINE = re.compile(r'^\s*Repository\s*=\s*"([^"]*)"', re.M)


def parse_repository(text: str) -> str:
    """The ``[project.urls] Repository`` value of a pyproject.toml text."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: read that one line
        m = _REPOSITORY_LINE.search(text)
        url = m.group(1) if m else None
    else:
        url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    if not url:
        raise ValueError('pyproject.toml has no [project.urls] Repository = "https://github.com/..."')
    return url


def repository_url(root: Path | str = REPO_DIR) -> str:
    """The course's ONE repository URL: ``[project.urls] Repository`` in ``root/pyproject.toml``
    (the Colab setup cells, the README's badges and the website's launch buttons use it)."""
    return parse_repository((Path(root) / "pyproject.toml").read_text(encoding="utf-8"))


def github_repo(url: str) -> tuple[str, str]:
    """``(owner, repo)`` of a ``https://github.com/<owner>/<repo>`` URL; ValueError otherwise."""
    m = _GITHUB_RE.fullmatch(url.strip())
    if not m:
        raise ValueError(f"expected a GitHub repository URL of the form "
                         f"https://github.com/<owner>/<repo>, got {url!r} "
                         f"(Colab and Binder open notebooks straight from GitHub)")
    return m.group(1), m.group(2)
