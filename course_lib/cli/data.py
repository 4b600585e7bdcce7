"""Get the course's datasets before the workshop, or see what is cached.

    python -m course_lib.data prefetch [--all | --mnist --creditcard --ecg --textures
                                        --mvtec CATEGORY ...] [--profile P] [--no-progress]
        Download and verify into the caches the notebooks use, then print a table of every
        item (state, size, path) and what to do for each failure.  Exit 1 if anything failed.

    python -m course_lib.data status [--profile P]
        What is present offline, without touching the network.  Exit 1 if something present
        is corrupted or embedded data (the offline path, data/) is missing.

See the README, "Before the workshop".  The work is done by :mod:`course_lib.data.cache`.
"""

from __future__ import annotations

from course_lib.cli.common import (ArgumentParser, UsageError, env_profile, profile_name,
                                   run_command)
from course_lib.data.cache import PREFETCH_ITEMS, cache_status, format_cache_table, prefetch
from course_lib.data.mvtec import MVTEC_AD_CATEGORIES
from course_lib.data.mvtec_ad import MVTEC_AD_DOWNLOADS

PROG = "python -m course_lib.data"


def status_failed(item) -> bool:
    """An item that makes ``status`` exit 1: anything corrupted, and embedded data (what the
    notebooks fall back to offline) that is missing; the doctor calls both FAIL or WARN."""
    return item.state == "corrupted" or (item.kind == "embedded" and item.state != "OK")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Get the course's datasets before the "
                                                   "workshop, or see what is cached.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    pre = sub.add_parser("prefetch", help="download and verify datasets now",
                         description="Download and verify datasets into the caches the "
                                     "notebooks use. Without options: --all.")
    pre.add_argument("--all", action="store_true",
                     help="MNIST, credit card, ECG and textures (not MVTec AD: 4.9 GB, "
                          "non-commercial licence; ask for it with --mvtec)")
    pre.add_argument("--mnist", action="store_true", help="full MNIST into Keras' cache")
    pre.add_argument("--creditcard", action="store_true",
                     help="full credit-card CSV (about 150 MB)")
    pre.add_argument("--ecg", action="store_true",
                     help="TensorFlow's 4,998-beat ECG CSV (a few MB)")
    pre.add_argument("--textures", action="store_true",
                     help="build the offline texture sets (no network)")
    pre.add_argument("--mvtec", nargs="+", metavar="CATEGORY", default=[],
                     help=f"real MVTec AD categories: 'all' or {', '.join(MVTEC_AD_CATEGORIES)}")
    pre.add_argument("--profile", type=profile_name, default=None,
                     help="whose texture sizes to build (default: $COURSE_PROFILE or workshop)")
    pre.add_argument("--no-progress", action="store_true", help="hide progress bars")
    st = sub.add_parser("status", help="what is present offline (no network)")
    st.add_argument("--profile", type=profile_name, default=None,
                    help="whose texture sets to look for (default: $COURSE_PROFILE or workshop)")
    return parser


def _run(argv) -> int:
    args = build_parser().parse_args(argv)
    profile = args.profile or env_profile()
    if args.command == "status":
        items = cache_status(profile)
        print(f"Datasets present offline (profile '{profile}'; nothing was downloaded):\n")
        print(format_cache_table(items))
        return 1 if any(status_failed(it) for it in items) else 0

    bad = [c for c in args.mvtec if c not in MVTEC_AD_DOWNLOADS]
    if bad:
        raise UsageError(f"unknown MVTec AD category {', '.join(map(repr, bad))[:80]}: choose "
                         f"'all' or one of {', '.join(MVTEC_AD_CATEGORIES)}")
    items = [k for k in PREFETCH_ITEMS if getattr(args, k)]
    if args.all or (not items and not args.mvtec):
        items = list(PREFETCH_ITEMS)
    results = prefetch(items, args.mvtec, profile, progress=not args.no_progress)
    failed = [r for r in results if r.state != "OK"]
    print(f"\nPrefetch summary (profile '{profile}'):\n")
    print(format_cache_table(results))
    if failed:
        print(f"\n{len(failed)} of {len(results)} item(s) failed; see 'What to do' above. "
              f"The notebooks still run offline on the embedded data (COURSE_DATA=offline).")
        return 1
    print(f"\nAll {len(results)} item(s) OK: the notebooks will find them without the network.")
    return 0


def main(argv=None) -> int:
    """Command line: see the module docstring; returns the exit code."""
    return run_command(PROG, _run, argv)
