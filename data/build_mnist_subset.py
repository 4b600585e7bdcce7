"""Rebuild data/mnist_subset.npz from the official MNIST training file.

Usage (from the repo root):
    python data/build_mnist_subset.py PATH/TO/mnist_train_60k.npz

The source holds the 60,000 official MNIST training images (uint8 ``x`` of shape
(60000, 28, 28) and labels ``y``).  We draw a stratified, seeded sample of
800 training and 200 test images per digit from *disjoint* indices, so the
embedded test portion is held apart from the embedded training portion.
"""
import hashlib
import sys
from pathlib import Path

import numpy as np

N_TRAIN_PER_DIGIT = 800
N_TEST_PER_DIGIT = 200
SEED = 2019  # the year of the workshop deck the course grew from


def main(src: str) -> None:
    with np.load(src) as f:
        x, y = f["x"], f["y"]
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8, (x.shape, x.dtype)
    rng = np.random.default_rng(SEED)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(y == digit))
        train_idx.append(idx[:N_TRAIN_PER_DIGIT])
        test_idx.append(idx[N_TRAIN_PER_DIGIT:N_TRAIN_PER_DIGIT + N_TEST_PER_DIGIT])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    assert not set(train_idx) & set(test_idx)
    out = Path(__file__).with_name("mnist_subset.npz")
    np.savez_compressed(
        out,
        x_train=x[train_idx], y_train=y[train_idx].astype(np.uint8),
        x_test=x[test_idx], y_test=y[test_idx].astype(np.uint8),
        source_index_train=train_idx.astype(np.int32),
        source_index_test=test_idx.astype(np.int32),
    )
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), sha256 {digest}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/mnist/mnist_train_60k.npz")
