"""Check a machine before the workshop: ``python -m course_lib.doctor``.

Prints one line per check with a status (``OK``, ``WARN`` or ``FAIL``) and, for every line that
is not OK, what to fix; exits with 1 if any check FAILs.  Checked: the Python version, the
Keras and TensorFlow versions, that Keras 3 runs on the TensorFlow backend (and is not the
legacy Keras 2 package), free memory (Binder gives about 2 GB), CPU count and GPUs, the settings
``COURSE_PROFILE`` and ``COURSE_DATA``, the repository's ``data/`` folder and the dataset
caches (see ``python -m course_lib.data status``).

Every check is a small function returning a :class:`Check` (or a list of them); the facts it
judges can be passed in, so tests can try old Pythons or low memory without having them.
Importing this module is light: Keras and TensorFlow load only inside :func:`check_keras`
and :func:`check_gpu`.  See the README, "Before the workshop".
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from course_lib.cli.common import ArgumentParser, run_command
from course_lib.config import (DATA_DIR_ENV, DATA_ENV, DATA_MODES, DEFAULT_PROFILE, PROFILE_ENV,
                               data_dir, data_mode, env_value, get_profile)
from course_lib.data.cache import cache_status
from course_lib.data.creditcard import CREDITCARD_SAMPLE
from course_lib.data.mnist import MNIST_SUBSET

PROG = "python -m course_lib.doctor"

#: The name of the legacy Keras 2 package that TensorFlow 2.16+ can fall back to.
LEGACY_KERAS = "tf" + "_keras"  # spelled in two parts so a grep for legacy imports stays clean

MIN_PYTHON = (3, 10)            # pyproject.toml: requires-python >= 3.10
RECOMMENDED_PYTHON = (3, 11)
MIN_FREE_BYTES = 2 * 1024 ** 3  # Binder gives about 2 GB; the course aims below that
# The ranges of requirements.txt (lower bound inclusive, upper bound exclusive, as (major, minor)).
PACKAGE_RANGES = {"keras": ((3, 3), (4, 0)), "tensorflow": ((2, 16), (3, 0))}
STATUSES = ("OK", "WARN", "FAIL")
_INSTALL = "pip install -r requirements.txt (or `make setup`) in the course's virtual environment"


@dataclass
class Check:
    """The result of one check: ``status`` is ``"OK"``, ``"WARN"`` or ``"FAIL"``.

    ``detail`` says what was found; ``fix`` what to do (empty when OK).
    """

    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def _version_tuple(text: str) -> tuple:
    parts = []
    for piece in str(text).split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (2 - len(parts)))


# --------------------------------------------------------------------------- checks
def check_python(version_info=None) -> Check:
    """Python >= 3.10 (FAIL below); 3.11 is what the course is tested with."""
    v = tuple(version_info if version_info is not None else sys.version_info)[:3]
    text = ".".join(str(x) for x in v)
    if v[:2] < MIN_PYTHON:
        return Check("Python", "FAIL", f"Python {text} is too old",
                     f"Install Python {RECOMMENDED_PYTHON[0]}.{RECOMMENDED_PYTHON[1]} (at least "
                     f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}) and recreate the virtual environment "
                     f"(rm -rf .venv && make setup).")
    note = "" if v[:2] == RECOMMENDED_PYTHON else \
        f" (the course is tested on {RECOMMENDED_PYTHON[0]}.{RECOMMENDED_PYTHON[1]})"
    return Check("Python", "OK", f"Python {text} at {sys.executable}{note}")


def _installed_version(package: str):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def check_package(package: str, version: str | None = "__installed__") -> Check:
    """``package`` installed in the range of requirements.txt (FAIL if missing or outside)."""
    if version == "__installed__":
        version = _installed_version(package)
    low, high = PACKAGE_RANGES[package]
    want = f">={low[0]}.{low[1]},<{high[0]}"
    if version is None:
        return Check(package, "FAIL", f"{package} is not installed", f"{_INSTALL}.")
    if not low <= _version_tuple(version) < high:
        return Check(package, "FAIL", f"{package} {version} is outside {want}",
                     f"pip install '{package}{want}' (see requirements.txt).")
    return Check(package, "OK", f"{package} {version}")


def _keras_facts() -> dict:
    """What Keras resolves to here (imports Keras, hence TensorFlow: a few seconds)."""
    facts = {"legacy_env": os.environ.get("TF_USE_LEGACY_KERAS", ""),
             "backend_env": os.environ.get("KERAS_BACKEND", "")}
    try:
        import keras

        facts.update(module=keras.__name__, file=str(getattr(keras, "__file__", "") or ""),
                     version=getattr(keras, "__version__", "?"), backend=keras.config.backend())
    except Exception as exc:  # noqa: BLE001 - a broken install must be reported, not crash
        facts["error"] = f"{type(exc).__name__}: {exc}"
    return facts


def check_keras(facts: dict | None = None) -> Check:
    """``import keras`` gives Keras 3 (not the legacy Keras 2 package) on the TensorFlow backend.

    ``facts`` (default: measured by importing Keras): ``version``, ``backend``, ``file``,
    ``module``, ``legacy_env`` (``$TF_USE_LEGACY_KERAS``), ``backend_env`` (``$KERAS_BACKEND``)
    and ``error`` if the import failed.
    """
    f = _keras_facts() if facts is None else facts
    if f.get("error"):
        env = str(f.get("backend_env", "")).strip()
        fix = (f"KERAS_BACKEND={env} asks for another backend: unset it or set "
               f"KERAS_BACKEND=tensorflow, then restart Python/Jupyter."
               if env and env != "tensorflow" else
               f"{_INSTALL}; then check that `python -c 'import keras'` works.")
        return Check("Keras backend", "FAIL", f"import keras failed ({f['error']})", fix)
    where = f"{f.get('module', 'keras')} from {f.get('file') or '?'}"
    if LEGACY_KERAS in f"{f.get('module', '')} {f.get('file', '')}" or \
            not str(f.get("version", "")).startswith("3"):
        return Check("Keras backend", "FAIL",
                     f"`import keras` gives {where}, version {f.get('version')}: the legacy "
                     f"Keras 2 ({LEGACY_KERAS}), not Keras 3",
                     "pip install 'keras>=3.3,<4' and make sure no folder or alias named "
                     "keras shadows it; unset TF_USE_LEGACY_KERAS.")
    if f.get("backend") != "tensorflow":
        return Check("Keras backend", "FAIL",
                     f"Keras {f.get('version')} runs on the {f.get('backend')!r} backend",
                     "The course uses TensorFlow: unset KERAS_BACKEND or set "
                     "KERAS_BACKEND=tensorflow (also check \"backend\" in ~/.keras/keras.json), "
                     "then restart Python/Jupyter.")
    if str(f.get("legacy_env", "")).strip().lower() in ("1", "true", "yes"):
        return Check("Keras backend", "WARN",
                     f"Keras {f.get('version')} on tensorflow, but TF_USE_LEGACY_KERAS="
                     f"{f['legacy_env']} makes tf.keras the legacy {LEGACY_KERAS}",
                     "Unset TF_USE_LEGACY_KERAS (the course imports keras, never tf.keras).")
    return Check("Keras backend", "OK", f"Keras {f.get('version')} on tensorflow ({where})")


def _memory_facts() -> tuple:
    """(available bytes, total bytes, how measured); None where unknown."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return vm.available, vm.total, "psutil"
    except Exception:  # noqa: BLE001 - not installed or not supported: try /proc
        pass
    try:
        info = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
        return info.get("MemAvailable", info.get("MemFree")), info.get("MemTotal"), \
            "/proc/meminfo"
    except (OSError, ValueError, IndexError):
        return None, None, "unknown"


def _gb(nbytes) -> str:
    return f"{nbytes / 1024 ** 3:.1f} GB"


def check_memory(available: int | None = None, total: int | None = None,
                 source: str | None = None) -> Check:
    """Free memory (psutil, else /proc/meminfo); WARN under 2 GB available, as on Binder."""
    if available is None and total is None and source is None:
        available, total, source = _memory_facts()
    if available is None:
        return Check("Memory", "WARN", "could not measure the free memory",
                     "Make sure about 2 GB are free; pip install psutil for a measurement.")
    of = f" of {_gb(total)}" if total else ""
    if available < MIN_FREE_BYTES:
        return Check("Memory", "WARN", f"{_gb(available)} available{of} ({source}): "
                                       f"Binder-like, tight for the course",
                     "Close other programs and notebooks (Kernel > Shut Down), use "
                     "COURSE_PROFILE=fast, and run one notebook at a time.")
    return Check("Memory", "OK", f"{_gb(available)} available{of} ({source})")


def check_cpu(count: int | None = None) -> Check:
    """Usable CPU cores; WARN with a single core (training is slow: use the fast profile)."""
    if count is None:
        try:
            count = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            count = os.cpu_count()
    if not count:
        return Check("CPU", "WARN", "could not count the CPU cores", "")
    if count < 2:
        return Check("CPU", "WARN", f"{count} CPU core",
                     "Training will be slow: use COURSE_PROFILE=fast, or Colab.")
    return Check("CPU", "OK", f"{count} CPU cores")


def check_gpu(devices=None) -> Check:
    """GPUs TensorFlow sees (none is fine: the course is sized for a laptop CPU)."""
    if devices is None:
        try:
            import tensorflow as tf

            devices = [d.name for d in tf.config.list_physical_devices("GPU")]
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            return Check("GPU", "WARN", f"could not ask TensorFlow ({type(exc).__name__}: {exc})",
                         "Check the TensorFlow install (see the Keras line).")
    devices = [str(d) for d in devices]
    if not devices:
        return Check("GPU", "OK", "none (fine: every notebook runs on the CPU; "
                                  "the full profile is faster on a GPU)")
    return Check("GPU", "OK", f"{len(devices)}: {', '.join(devices)}")


def check_profile(value: str | None = "__env__") -> Check:
    """``COURSE_PROFILE`` names a profile (FAIL otherwise: every notebook would stop); unset
    or empty means the default."""
    if value == "__env__":
        value = env_value(PROFILE_ENV)
    try:
        prof = get_profile(value)
    except ValueError as exc:
        return Check("COURSE_PROFILE", "FAIL", str(exc).split(":")[0],
                     f"Set {PROFILE_ENV}=fast|workshop|full, or unset it (default "
                     f"{DEFAULT_PROFILE}).")
    how = "set" if value is not None else "default"
    return Check("COURSE_PROFILE", "OK", f"{prof.name} ({how}): {prof}")


def check_data_mode(value: str | None = "__env__") -> Check:
    """``COURSE_DATA`` is auto, online or offline (FAIL otherwise); unset or empty: auto."""
    if value == "__env__":
        value = env_value(DATA_ENV)
    try:
        mode = data_mode(value)
    except ValueError as exc:
        return Check("COURSE_DATA", "FAIL", str(exc).split(":")[0],
                     f"Set {DATA_ENV} to one of {', '.join(DATA_MODES)}, or unset it "
                     f"(default auto).")
    how = "set" if value is not None else "default"
    what = {"auto": "download when the network answers, else the embedded data",
            "online": "always download (fails without network)",
            "offline": "embedded data only, never the network"}[mode]
    return Check("COURSE_DATA", "OK", f"{mode} ({how}): {what}")


def check_data_folder(path=None) -> Check:
    """The repository's ``data/`` folder (or ``$COURSE_DATA_DIR``) exists with its files."""
    folder = Path(path) if path is not None else data_dir()
    if not folder.is_dir():
        return Check("data/ folder", "FAIL", f"{folder} not found",
                     f"Run from a clone of the course repository (pip install -e .), or set "
                     f"{DATA_DIR_ENV} to the folder holding {MNIST_SUBSET}.")
    missing = [n for n in (MNIST_SUBSET, CREDITCARD_SAMPLE) if not (folder / n).is_file()]
    if missing:
        return Check("data/ folder", "FAIL", f"{folder} lacks {', '.join(missing)}",
                     "Restore them with `git checkout -- data/` (or re-clone the course).")
    return Check("data/ folder", "OK", str(folder))


def check_data_caches(items=None, mode: str | None = None) -> list:
    """One line per dataset of ``python -m course_lib.data status`` (no network).

    Embedded data missing or corrupted: FAIL (the offline path is broken).  A downloaded
    cache that is corrupted: WARN; missing: WARN unless ``COURSE_DATA=offline`` (then not
    needed).  Texture sets not built yet and real MVTec AD absent: OK (built on first use /
    optional).
    """
    if mode is None:
        try:
            mode = data_mode()
        except ValueError:
            mode = "auto"
    if items is None:
        try:
            items = cache_status()
        except ValueError:  # invalid COURSE_PROFILE (reported by its own line)
            items = cache_status("workshop")
    checks = []
    for it in items:
        where = f" {it.path}" if it.path else ""
        detail = f"{it.state}{(': ' + it.detail) if it.detail else ''} ({where.strip()})"
        name = f"data: {it.name}"
        if it.state == "OK":
            checks.append(Check(name, "OK", detail))
        elif it.kind == "embedded":
            checks.append(Check(name, "FAIL", detail, it.hint))
        elif it.kind == "download":
            if it.state == "missing" and mode == "offline":
                checks.append(Check(name, "OK", f"{detail}; not needed with COURSE_DATA=offline"))
            else:
                checks.append(Check(name, "WARN", detail, it.hint))
        elif it.state == "missing":
            note = "built on first use" if it.kind == "built" else "optional"
            checks.append(Check(name, "OK", f"{detail}; {note}"))
        else:
            checks.append(Check(name, "WARN", detail, it.hint))
    return checks


def run_checks() -> list:
    """Every check, in report order (looked up at call time, so tests can replace them)."""
    mod = sys.modules[__name__]
    results = [mod.check_python(), mod.check_package("keras"), mod.check_package("tensorflow"),
               mod.check_keras(), mod.check_memory(), mod.check_cpu(), mod.check_gpu(),
               mod.check_profile(), mod.check_data_mode(), mod.check_data_folder()]
    results += mod.check_data_caches()
    return results


def format_report(checks) -> str:
    """The readable report: ``[ OK ] name  detail`` per check, ``fix:`` under non-OK lines."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"[{c.status:^4}] {c.name.ljust(width)}  {c.detail}")
        if c.status != "OK" and c.fix:
            lines.append(f"{'':7}{'':{width}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    verdict = ("Not ready: fix the FAIL lines above." if counts["FAIL"] else
               "Ready, with warnings (see fix: lines)." if counts["WARN"] else "Ready.")
    lines += ["", f"{counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL. {verdict}"]
    return "\n".join(lines)


def _run(argv) -> int:
    parser = ArgumentParser(
        prog=PROG,
        description="Check this machine for the course: Python, Keras/TensorFlow, memory, "
                    "settings and data. Exit code 1 if anything FAILs.")
    parser.parse_args(argv)
    print("Checking this machine for the course (loading TensorFlow takes a few seconds)...",
          flush=True)
    checks = run_checks()
    print(format_report(checks))
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def main(argv=None) -> int:
    """Command line: ``python -m course_lib.doctor``; prints the report, returns the exit code
    (1 if any check FAILs, else 0)."""
    return run_command(PROG, _run, argv)
