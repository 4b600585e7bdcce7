"""Seeded subsets and splits: the same seed always picks the same rows.

Every loader that caps a dataset, every split into training / validation / test and every
model that subsamples its training patches uses these two functions, so "which rows?" has one
answer everywhere.  Imports only NumPy.
"""

from __future__ import annotations

import numpy as np

from course_lib.checks import DataError


def seeded_subset(n_total: int, n: int | None, seed: int = 0, candidates=None) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``n`` of ``n_total`` rows.

    Parameters
    ----------
    n_total : int
        How many rows there are.
    n : int or None
        How many to keep; ``None`` or ``n >= n_total`` keeps all (``arange(n_total)``).
    seed : int
        Seed of the choice.
    candidates : array-like of int, optional
        Choose among these row numbers instead of ``range(n_total)``.

    Returns
    -------
    ndarray of int64, increasing (rows keep their original order).
    """
    pool = np.arange(n_total) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if n is None or n >= len(pool):
        return np.sort(pool)
    if n < 0:
        raise DataError(f"n must be >= 0, got {n}.")
    return np.sort(np.random.default_rng(seed).permutation(pool)[:int(n)])


def seeded_partition(n_total: int, sizes, seed: int = 0, candidates=None) -> list:
    """Cut one seeded permutation of the rows into parts of ``sizes`` and the rest.

    Returns ``len(sizes) + 1`` sorted, disjoint index arrays: the first ``sizes[0]`` rows of the
    permutation, the next ``sizes[1]``, ..., and last everything left.
    """
    pool = np.arange(n_total) if candidates is None else np.asarray(candidates, dtype=np.int64)
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) > len(pool):
        raise DataError(f"cannot take parts of {sizes} from {len(pool)} rows.")
    order = np.random.default_rng(seed).permutation(pool)
    cuts = np.cumsum([0] + sizes)
    return [np.sort(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:])] + [np.sort(order[cuts[-1]:])]


def seeded_split(n_total: int, n_holdout: int, seed: int = 0,
                 candidates=None) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into ``(kept, held_out)``: a seeded ``n_holdout`` of them are held out.

    Both index arrays are sorted and disjoint, and together they hold every row (of
    ``candidates``, if given).
    """
    held_out, kept = seeded_partition(n_total, [n_holdout], seed, candidates)
    return kept, held_out
