"""Results one notebook hands to a later one: small JSON records in the cache folder.

Notebook 05 trains the bottle's autoencoders; notebook 08 puts every method on the same bottle
test images into one table without training them again.  :func:`save_result` writes a result
dict (metrics and the run's settings) to ``<cache>/results/<profile>/<name>.json``, atomically;
:func:`load_results` reads back those that exist, each with the notebook and the time it came
from, and says which are missing.  A record is only ever what a notebook computed in this
profile on this machine: nothing here is typed in by hand.  :func:`save_maps` and
:func:`load_maps` do the same for a few anomaly maps (notebook 06 draws its VAE's maps beside
notebook 05's).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np

from course_lib.checks import DataError, quote
from course_lib.config import cache_dir, get_profile

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,80}$")


def results_dir(profile=None) -> Path:
    """``<cache>/results/<profile name>``, the cache being :func:`course_lib.config.cache_dir`."""
    return cache_dir() / "results" / get_profile(profile).name


def _path(name: str, profile) -> Path:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(f"result name must be letters, digits, spaces or ._+- (at most 81), "
                        f"got {quote(name)}.")
    return results_dir(profile) / f"{name.replace(' ', '_')}.json"


def _plain(value):
    """JSON-safe copy: NumPy numbers to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise DataError(f"result values must be numbers, strings, lists or dicts, got "
                    f"{type(value).__name__}.")


def data_identity(data) -> dict:
    """What makes two runs comparable: the data's ``source`` (embedded, online, file), the
    number of test images and a fingerprint of their file names (``test_paths``)."""
    names = sorted("/".join(Path(p).parts[-2:]) for p in getattr(data, "test_paths", []))
    return {"source": str(getattr(data, "source", "")), "n_test": len(data.x_test),
            "test_id": hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]}


def save_result(name: str, result: dict, notebook: str, profile=None, data=None) -> Path:
    """Keep ``result`` (a dict of metrics and settings) under ``name`` for later notebooks;
    with ``data`` (the test set it was measured on) its :func:`data_identity` too.

    Written to a temporary file first and renamed, so a reader never sees half a record.
    Returns the path."""
    if not isinstance(result, dict):
        raise DataError(f"result must be a dict, got {type(result).__name__}.")
    path = _path(name, profile)
    record = {"name": name, "notebook": str(notebook), "profile": get_profile(profile).name,
              "saved": time.strftime("%Y-%m-%d %H:%M"), "result": _plain(result),
              "data": None if data is None else data_identity(data)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_results(names, profile=None, data=None) -> tuple[dict, list]:
    """``({name: record}, [missing names])`` for the ``names`` saved in this profile.

    A record is ``{"name", "notebook", "profile", "saved", "result", "data"}``; an unreadable
    file counts as missing (and is named in the note printed for it), and so does, with
    ``data``, a record measured on other test images (another source, size or file list)."""
    found, missing = {}, []
    for name in names:
        path = _path(name, profile)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            held = record.get("name") if isinstance(record, dict) else None
            if held != name:     # "AE SSIM" and "AE_SSIM" share a file name
                raise ValueError(f"it holds the result {quote(held)}, not {quote(name)}")
            if data is not None and record.get("data") != data_identity(data):
                print(f"Leaving out {quote(name)}: it was measured on other test images "
                      f"({record.get('data')}, not {data_identity(data)}); rerun the notebook "
                      f"{record.get('notebook')} on these data.")
                missing.append(name)
                continue
            found[name] = record
        except FileNotFoundError:
            missing.append(name)
        except (OSError, ValueError) as exc:
            print(f"Ignoring the damaged result file {path} ({exc}); rerun the notebook that "
                  f"writes it.")
            missing.append(name)
    return found, missing


def _maps_path(name: str, profile) -> Path:
    return _path(name, profile).with_suffix(".npz")


def save_maps(name: str, maps: dict, notebook: str, profile=None, data=None) -> Path:
    """Keep a few anomaly maps (``{label: 2-D array}``, e.g. test image indices as labels) under
    ``name`` for later notebooks to draw beside their own: ``<name>.npz`` next to the results,
    float16, written atomically, with the notebook and the :func:`data_identity` of ``data``."""
    if not isinstance(maps, dict) or not maps:
        raise DataError("maps must be a non-empty dict {label: 2-D array}.")
    arrays = {}
    for label, amap in maps.items():
        amap = np.asarray(amap)
        if amap.ndim != 2 or not np.isfinite(amap).all():
            raise DataError(f"map {quote(label)} must be a finite 2-D array, got shape "
                            f"{amap.shape}.")
        arrays[f"map_{label}"] = amap.astype(np.float16)
    meta = {"name": name, "notebook": str(notebook), "profile": get_profile(profile).name,
            "data": None if data is None else data_identity(data)}
    path = _maps_path(name, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)
    return path


def load_maps(name: str, profile=None, data=None) -> dict | None:
    """The maps :func:`save_maps` kept under ``name`` in this profile (``{label: float32
    array}``), or None when there are none, they are damaged, or (with ``data``) they were
    computed on other test images; a line says why."""
    path = _maps_path(name, profile)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as held:
            meta = json.loads(str(held["meta"]))
            maps = {k.removeprefix("map_"): held[k].astype(np.float32)
                    for k in held.files if k.startswith("map_")}
    except (OSError, ValueError, KeyError) as exc:
        print(f"Ignoring the damaged maps file {path} ({exc}); rerun the notebook that "
              f"writes it.")
        return None
    if meta.get("name") != name:
        print(f"Ignoring {path}: it holds the maps {quote(meta.get('name'))}, not {quote(name)}.")
        return None
    if data is not None and meta.get("data") != data_identity(data):
        print(f"Leaving out the maps {quote(name)}: they were computed on other test images; "
              f"rerun notebook {meta.get('notebook')} on these data.")
        return None
    return maps
