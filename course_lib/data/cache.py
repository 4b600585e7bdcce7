"""What is cached where, and fetching every dataset before a workshop.

Venue networks are slow or closed, so ``python -m course_lib.data prefetch`` downloads and
verifies everything beforehand with the loaders' own downloaders (the files land exactly where
the notebooks look), and ``python -m course_lib.data status`` shows what is present offline,
without touching the network.  The doctor (``python -m course_lib.doctor``) reports the same
items.
"""

from __future__ import annotations

from course_lib.checks import DataError, quote
from course_lib.config import Profile, get_profile
from course_lib.data.bottle import bottle_cache_items
from course_lib.data.common import CacheItem, failure_hint, human_size, path_size
from course_lib.data.creditcard import (creditcard_cache_items, creditcard_cache_path,
                                        fetch_creditcard)
from course_lib.data.ecg import ecg_cache_items, ecg_cache_path, fetch_ecg
from course_lib.data.kolektor import kolektor_cache_items
from course_lib.data.mnist import fetch_mnist, mnist_cache_items, mnist_cache_path
from course_lib.data.mvtec import MVTEC_AD_CATEGORIES
from course_lib.data.mvtec_ad import (MVTEC_AD_DOWNLOADS, download_mvtec, mvtec_cache_items,
                                      mvtec_hint)
from course_lib.data.textures import (TEXTURES, build_texture_dataset, texture_cache_items,
                                      texture_settings)
from course_lib.download import DiskFullError

PREFETCH_ITEMS = ("mnist", "creditcard", "ecg", "textures")


def cache_status(profile: Profile | str | None = None) -> list:
    """What is present offline, without touching the network.

    Returns a list of :class:`CacheItem`: the embedded MNIST subset, credit-card sample,
    ECG beats, KolektorSDD subset and MVTec AD bottle subset (sha256 checked), Keras' MNIST
    cache (sha256 checked), the cached full credit-card CSV (header checked), the cached ECG
    CSV (first line checked), the texture sets of ``profile`` (default: the active one) and
    the real MVTec AD categories present.  Used by ``python -m course_lib.data status`` and
    ``python -m course_lib.doctor``.
    """
    prof = get_profile(profile)
    mnist_embedded, mnist_cache = mnist_cache_items()
    card_embedded, card_cache = creditcard_cache_items()
    ecg_embedded, ecg_cache = ecg_cache_items()
    return [mnist_embedded, card_embedded, ecg_embedded, *kolektor_cache_items(),
            *bottle_cache_items(), mnist_cache, card_cache, ecg_cache,
            *texture_cache_items(prof), *mvtec_cache_items()]


def format_cache_table(items) -> str:
    """A plain-text table of :class:`CacheItem` (name, state, size, where), then the hints."""
    rows = [("item", "state", "size", "where")]
    rows += [(it.name, it.state, human_size(it.size), str(it.path or "-")) for it in items]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 5)
    details = [f"  {it.name}: {it.detail}" for it in items if it.detail and it.state != "OK"]
    by_hint = {}  # one line per distinct hint (e.g. the three textures share one)
    for it in items:
        if it.state != "OK" and it.hint:
            by_hint.setdefault(it.hint, []).append(f"{it.name} ({it.state})")
    hints = [f"  {', '.join(names)}: {hint}" for hint, names in by_hint.items()]
    if details:
        lines += ["", "Details:", *details]
    if hints:
        lines += ["", "What to do:", *hints]
    return "\n".join(lines)


def _advice(item: str, exc: BaseException | None = None) -> str:
    if isinstance(exc, DiskFullError):
        return ("Free disk space and run prefetch again: what was downloaded and verified is "
                "kept and is not downloaded again.")
    if item == "mnist":
        cached = mnist_cache_path()
        fix = (f"The cached file is not Keras' MNIST: delete {cached} and run prefetch --mnist "
               f"again" if cached.exists() else "Check the network (storage.googleapis.com "
               "must answer) and run prefetch --mnist again")
        return f"{fix}; without it the notebooks use the embedded subset."
    if item == "creditcard":
        cached = creditcard_cache_path()
        fix = (f"The cached copy is bad: delete {cached} and run prefetch --creditcard again"
               if cached.exists() else "Check the network and disk space (about 150 MB) and "
               "run prefetch --creditcard again")
        return f"{fix}. Without it notebook 04 uses the embedded sample."
    if item == "ecg":
        cached = ecg_cache_path()
        fix = (f"The cached copy is bad: delete {cached} and run prefetch --ecg again"
               if cached.exists() else "Check the network (storage.googleapis.com must "
               "answer) and run prefetch --ecg again")
        return f"{fix}. Without it notebook 09 uses the embedded beats."
    if item == "textures":
        return ("Needs scikit-image (pip install -r requirements.txt) and a writable cache "
                "folder (set COURSE_CACHE_DIR).")
    return mvtec_hint(item.split(":", 1)[-1])


def _merge_mvtec(items: list) -> CacheItem:
    if len(items) == 1:
        return items[0]
    ok = all(it.state == "OK" for it in items)
    root = items[0].path.parent
    return CacheItem("MVTec AD 'all'", "optional", "OK" if ok else "missing", root,
                     path_size(root) if ok else None)


def prefetch(items=PREFETCH_ITEMS, mvtec_categories=(), profile: Profile | str | None = None,
             progress: bool = True) -> list:
    """Download and verify datasets now, so the workshop runs without the network.

    Parameters
    ----------
    items : iterable of str
        Any of :data:`PREFETCH_ITEMS`: ``"mnist"`` (Keras' full MNIST, sha256-checked),
        ``"creditcard"`` (the full CSV, content-verified), ``"ecg"`` (TensorFlow's 4,998-beat
        ECG CSV, content-verified), ``"textures"`` (the offline texture
        sets of ``profile``).
    mvtec_categories : iterable of str
        Real MVTec AD categories (or ``"all"``) to download; ``"bottle"`` is the full
        category behind the bottle subset, which ships in ``data/`` and is always there.
    profile : Profile or str, optional
        Whose texture sizes to build (default: the active profile).
    progress : bool
        Show the downloaders' progress bars.

    Returns
    -------
    list of CacheItem
        One per requested dataset (textures: one per texture), ``state`` ``"OK"`` or
        ``"failed"`` with a ``hint``.  Every downloader verifies before it renames, so a
        failure leaves no partial file under a final name (MVTec AD keeps a resumable
        ``.part`` in its ``.downloads`` folder).
    """
    prof = get_profile(profile)
    items = list(items)
    unknown = [i for i in items if i not in PREFETCH_ITEMS]
    if unknown:
        raise DataError(f"Unknown prefetch item(s) {quote(unknown)}: expected "
                        f"{list(PREFETCH_ITEMS)}.")
    bad = [c for c in mvtec_categories if c not in MVTEC_AD_DOWNLOADS]
    if bad:
        raise DataError(f"Unknown MVTec AD category {quote(bad)}: expected 'all' or one of "
                        f"{list(MVTEC_AD_CATEGORIES)}.")
    results = []

    def attempt(key, name, run, check):
        print(f"--> {name}", flush=True)
        try:
            run()
        except KeyboardInterrupt:
            print("    interrupted: nothing half-written is left in the cache.", flush=True)
            raise
        except Exception as exc:  # noqa: BLE001 - report every failure, go on with the rest
            item = check()
            item.name, item.state = name, "failed"
            item.hint = failure_hint(exc, _advice(key, exc))
            results.append(item)
            print(f"    failed: {type(exc).__name__}", flush=True)
            return
        item = check()
        item.name = name
        results.append(item)

    if "mnist" in items:
        attempt("mnist", "MNIST full (Keras cache)", lambda: fetch_mnist(progress),
                lambda: mnist_cache_items()[1])
    if "creditcard" in items:
        attempt("creditcard", "Credit card full (cache)", lambda: fetch_creditcard(progress),
                lambda: creditcard_cache_items()[1])
    if "ecg" in items:
        attempt("ecg", "ECG 4,998 beats (cache)", lambda: fetch_ecg(progress),
                lambda: ecg_cache_items()[1])
    if "textures" in items:
        settings = texture_settings(prof)
        for i, texture in enumerate(TEXTURES):
            attempt("textures", f"Texture '{texture}' ({prof.name}, {settings['size']}px)",
                    lambda t=texture: build_texture_dataset(textures=(t,), **settings),
                    lambda i=i: texture_cache_items(prof)[i])
    for category in dict.fromkeys(mvtec_categories):
        targets = MVTEC_AD_CATEGORIES if category == "all" else (category,)
        attempt(f"mvtec:{category}", f"MVTec AD '{category}'",
                lambda c=category: download_mvtec(c, progress=progress),
                lambda t=targets: _merge_mvtec(mvtec_cache_items(t)))
    return results
