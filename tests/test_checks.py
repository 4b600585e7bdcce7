"""The shared validators (``course_lib.checks``) and seeded subsets (``course_lib.sampling``).

Each validator returns the value in the form callers need, or raises :class:`DataError` with a
message that says what was expected and what was found, and never quotes a whole huge value.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

from course_lib.checks import (DataError, check_binary_labels, check_class_labels,
                               check_features, check_fraction, check_image_batch,
                               check_image_list, check_mask_list, check_masks, check_matrix,
                               check_number, check_positive_int, check_positive_ints,
                               check_scores, check_scores_and_labels, quote)
from course_lib.sampling import seeded_partition, seeded_split, seeded_subset


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- quote
def test_quote_keeps_short_values_and_caps_long_ones():
    assert quote("abc") == "'abc'" and quote(3) == "3"
    huge = "a" * 50_000_000
    start = time.perf_counter()
    text = quote(huge)
    assert time.perf_counter() - start < 0.5, "cut before repr, never a copy of 50 MB"
    assert text.startswith("'aaaa") and text.endswith("... (50,000,000 characters)")
    assert len(text) < 120
    assert quote(b"\x00" * 1000, 10).endswith("... (1,000 bytes)")
    assert len(quote(list(range(100_000)))) <= 63
    assert quote("x" * 100, limit=200) == repr("x" * 100)


@pytest.mark.parametrize("call", [
    lambda v: check_positive_int("n", v),
    lambda v: check_number("std", v, low=0),
    lambda v: check_fraction("share", v),
    lambda v: check_positive_ints("sizes", [1, v]),
])
def test_messages_stay_short_for_huge_values(call):
    with pytest.raises(DataError) as exc:
        call("9" * 5_000_000 + "x")
    assert len(str(exc.value)) < 1000 and "5,000,001 characters" in str(exc.value)


# --------------------------------------------------------------------------- numbers
def test_check_positive_int():
    assert check_positive_int("n", np.int64(3)) == 3 and type(check_positive_int("n", 3)) is int
    assert check_positive_int("seed", 0, minimum=0) == 0
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(DataError, match=r"n must be a whole number >= 1, got"):
            check_positive_int("n", bad)
    assert check_positive_ints("sizes", [1, np.int32(2)]) == (1, 2)
    with pytest.raises(DataError, match="at least one"):
        check_positive_ints("sizes", [])
    with pytest.raises(DataError, match="sequence of whole numbers"):
        check_positive_ints("sizes", 3)


def test_check_number_and_fraction():
    assert check_number("x", 2) == 2.0 and check_number("x", np.float32(0.5), 0, 1) == 0.5
    with pytest.raises(DataError, match=r"x must be a finite number in \(0, 1\), got 0"):
        check_number("x", 0, 0, 1, low_open=True, high_open=True)
    with pytest.raises(DataError, match=r"in \[0, inf\)"):
        check_number("x", -1e-9, low=0)
    for bad in (float("nan"), float("inf"), True, None, "abc"):
        with pytest.raises(DataError):
            check_number("x", bad)
    assert check_fraction("f", 1.0) == 1.0
    with pytest.raises(DataError, match=r"\(0, 1\]"):
        check_fraction("f", 0.0)
    assert check_fraction("f", 0.0, allow_zero=True) == 0.0
    with pytest.raises(DataError, match=r"\(0, 1\)"):
        check_fraction("f", 1.0, allow_one=False)


# --------------------------------------------------------------------------- image batches
def test_check_image_batch_accepts_any_size_and_drops_the_channel():
    x = np.random.default_rng(0).random((3, 20, 24, 1))
    out = check_image_batch(x, dtype=np.float32)
    assert out.shape == (3, 20, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out, x[..., 0], rtol=1e-6)
    digits = np.full((2, 28, 28), 200, np.uint8)
    assert check_image_batch(digits, shape=(28, 28), unit_range=True, keep_uint8=True) is digits
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 1, 1] = True
    assert check_image_batch(masks, keep_uint8=True, unit_range=True).max() == 1.0


@pytest.mark.parametrize("x, kwargs, message", [
    (np.zeros((4, 4)), {}, r"shape \(N, H, W\) or \(N, H, W, 1\), got shape \(4, 4\)"),
    (np.zeros((2, 5, 5, 3)), {}, r"got shape \(2, 5, 5, 3\)"),
    (np.zeros((1, 4, 4)), {"min_images": 2}, "at least 2 image"),
    (np.zeros((0, 4, 4)), {}, "at least 1 image"),
    (np.zeros((2, 8, 20)), {"min_side": 16}, "at least 16x16 pixels"),
    (np.zeros((2, 8, 8)), {"shape": (28, 28)}, "expected 28x28 images, got 8x8"),
    (np.full((1, 4, 4), np.nan), {}, "contains 16 NaN"),
    (np.full((1, 4, 4), 2.0), {"unit_range": True}, r"\[0, 1\]"),
    (np.full((1, 4, 4), 255, np.uint8), {"unit_range": True}, "divide uint8 images by 255"),
    (np.zeros((1, 4, 4), np.int16), {"unit_range": True, "keep_uint8": True}, "dtype int16"),
    (np.zeros((1, 4, 4), complex), {}, "dtype complex128"),
    ([["a"]], {}, "numbers"),
])
def test_check_image_batch_rejects_bad_input(x, kwargs, message):
    with pytest.raises(DataError, match=message) as exc:
        check_image_batch(x, name="maps", **kwargs)
    assert str(exc.value).startswith("maps")


def test_check_masks():
    assert check_masks(np.array([[[0, 1]]], np.float32), (1, 1, 2)).dtype == bool
    assert check_masks(np.zeros((1, 2, 2, 1)), (1, 2, 2)).shape == (1, 2, 2)
    with pytest.raises(DataError, match="same shape"):
        check_masks(np.zeros((1, 2, 3)), (1, 2, 2))
    with pytest.raises(DataError, match=r"found \[255\].*masks > 0"):
        check_masks(np.array([[[0, 255]]]), (1, 1, 2))


# --------------------------------------------------------------------------- image lists
def test_check_image_list_keeps_each_image_at_its_size():
    """Photos of one line rarely share a size: a list of 2-D arrays, each kept as it is."""
    rng = np.random.default_rng(0)
    images = [rng.random((40, 90)), rng.random((44, 90, 1)), rng.random((12, 7))]
    out = check_image_list(images, dtype=np.float32)
    assert isinstance(out, list) and [a.shape for a in out] == [(40, 90), (44, 90), (12, 7)]
    assert all(a.dtype == np.float32 for a in out)
    np.testing.assert_allclose(out[1], images[1][..., 0], rtol=1e-6)
    assert len(check_image_list(tuple(images))) == 3
    batch = check_image_list(rng.random((2, 8, 6, 1)), dtype=np.float64)  # an array works too
    assert isinstance(batch, list) and [a.shape for a in batch] == [(8, 6)] * 2
    assert check_image_list([np.ones((3, 3), bool)])[0].max() == 1.0


@pytest.mark.parametrize("x, kwargs, message", [
    (np.zeros((4, 4)), {}, r"list of 2-D images .*shape \(4, 4\)"),
    ("image.png", {}, "list of 2-D images"),
    ([], {}, "at least 1 image"),
    ([np.zeros((4, 4))], {"min_images": 2}, "at least 2 image"),
    ([np.zeros((4, 4)), np.zeros((4, 4, 3))], {}, r"maps\[1\]: expected a 2-D"),
    ([np.zeros((20, 20)), np.zeros((8, 30))], {"min_side": 16}, r"maps\[1\].*16x16"),
    ([np.zeros((4, 4)), np.full((5, 5), np.nan)], {}, r"maps\[1\].*NaN"),
    ([np.full((4, 4), 2.0)], {"unit_range": True}, r"maps\[0\].*\[0, 1\]"),
    ([[["a"]]], {}, "numbers"),
])
def test_check_image_list_names_the_bad_image(x, kwargs, message):
    with pytest.raises(DataError, match=message) as exc:
        check_image_list(x, name="maps", **kwargs)
    assert str(exc.value).startswith("maps")


def test_check_mask_list_matches_each_image():
    shapes = [(4, 6), (5, 6)]
    masks = [np.zeros((4, 6), np.uint8), np.ones((5, 6, 1), np.float32)]
    out = check_mask_list(masks, shapes)
    assert [m.shape for m in out] == shapes and all(m.dtype == bool for m in out)
    assert out[1].all() and not out[0].any()
    assert [m.shape for m in check_mask_list(np.zeros((2, 4, 6)), [(4, 6)] * 2)] == [(4, 6)] * 2
    with pytest.raises(DataError, match="expected 2 masks, one per image, got 1"):
        check_mask_list(masks[:1], shapes)
    with pytest.raises(DataError, match=r"masks\[1\] has shape \(4, 6\), not the same shape as its image and map \(5, 6\)"):
        check_mask_list([masks[0], np.zeros((4, 6))], shapes)
    with pytest.raises(DataError, match=r"masks\[0\].*found \[255\]"):
        check_mask_list([np.full((4, 6), 255), masks[1]], shapes)
    with pytest.raises(DataError, match="expected 2 masks"):
        check_mask_list(np.zeros((4, 6)), shapes)


# --------------------------------------------------------------------------- scores, labels, tables
def test_scores_and_labels():
    y, s = check_scores_and_labels([0, 1, True], [0.1, 2, 3])
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 1] and s.dtype == np.float64
    with pytest.raises(DataError, match="1-D"):
        check_scores(np.zeros((2, 2)))
    with pytest.raises(DataError, match="empty"):
        check_scores([])
    with pytest.raises(DataError, match="2 NaN or infinite"):
        check_scores([1.0, np.nan, np.inf])
    with pytest.raises(DataError, match="same length, got 2 labels and 3 scores"):
        check_binary_labels([0, 1], 3)
    with pytest.raises(DataError, match=r"found \[2\]"):
        check_binary_labels([0, 2], 2)


def test_check_class_labels():
    assert check_class_labels(np.array([0.0, 3.0]), 2).tolist() == [0, 3]
    for bad, message in [([0.5, 1], "whole numbers"), ([np.nan, 1], "whole numbers"),
                         ([0, -1], ">= 0"), ([0, 1, 2], "expected 2 labels"),
                         (["a", "b"], "integers")]:
        with pytest.raises(DataError, match=message):
            check_class_labels(bad, 2)


def test_check_matrix_and_features():
    assert check_matrix(np.ones((3, 2)), n_cols=2).dtype == np.float32
    with pytest.raises(DataError, match="at least 5 row"):
        check_matrix(np.ones((3, 2)), min_rows=5)
    with pytest.raises(DataError, match="expected 3 columns, got 2"):
        check_matrix(np.ones((3, 2)), n_cols=3)
    with pytest.raises(DataError, match="1 NaN"):
        check_matrix([[1.0, np.nan]])
    assert check_features(np.ones((2, 3, 4, 5))).shape == (24, 5)
    with pytest.raises(DataError, match="patch features"):
        check_features(np.ones(5))
    with pytest.raises(DataError, match="NaN"):
        check_features([[np.inf]])


# --------------------------------------------------------------------------- sampling
def test_seeded_subset():
    a = seeded_subset(100, 10, seed=0)
    assert len(a) == 10 and np.all(np.diff(a) > 0), "sorted, no repeats"
    np.testing.assert_array_equal(a, seeded_subset(100, 10, seed=0))
    assert not np.array_equal(a, seeded_subset(100, 10, seed=1))
    np.testing.assert_array_equal(seeded_subset(5, None), np.arange(5))
    np.testing.assert_array_equal(seeded_subset(5, 50), np.arange(5))
    picked = seeded_subset(100, 3, candidates=[90, 10, 50, 70])
    assert len(picked) == 3 and set(picked) <= {10, 50, 70, 90}
    with pytest.raises(DataError, match=">= 0"):
        seeded_subset(5, -1)


def test_seeded_partition_and_split():
    parts = seeded_partition(20, [5, 3], seed=2)
    assert [len(p) for p in parts] == [5, 3, 12]
    assert sorted(np.concatenate(parts).tolist()) == list(range(20)), "disjoint, all rows"
    kept, held = seeded_split(20, 4, seed=2)
    assert set(held) <= set(parts[0]), "one seeded permutation answers 'which rows?'"
    assert len(kept) == 16 and not set(kept) & set(held)
    with pytest.raises(DataError, match="cannot take parts"):
        seeded_partition(5, [3, 3])
    with pytest.raises(DataError, match="cannot take parts"):
        seeded_partition(5, [-1])


def test_check_class_labels_refuses_labels_too_large_for_a_class_number():
    """1e300 used to overflow int64 and be reported as "got -9223372036854775808"."""
    from course_lib.checks import MAX_CLASS_LABEL

    for bad, shown in [([1.0, 1e300], "1e+300"), (np.array([1, 2**40]), "1.09951e+12")]:
        with pytest.raises(DataError, match=r"class numbers from 0 to 2,147,483,647, got "
                                            + re.escape(shown)):
            check_class_labels(bad, 2)
    assert check_class_labels([0.0, float(MAX_CLASS_LABEL)], 2).tolist() == [0, MAX_CLASS_LABEL]
