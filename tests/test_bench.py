import json
import subprocess
import sys

import numpy as np
import pytest

from course_lib import bench
from course_lib.data import DataError, data_dir


@pytest.fixture(scope="module")
def split_files(tmp_path_factory):
    """Train/test .npz files cut from the embedded (real) MNIST subset."""
    tmp = tmp_path_factory.mktemp("oc")
    with np.load(data_dir() / "mnist_subset.npz") as f:
        np.savez_compressed(tmp / "train.npz", x=f["x_train"], y=f["y_train"])
        np.savez_compressed(tmp / "test.npz", x=f["x_test"][:600], y=f["y_test"][:600])
    return tmp / "train.npz", tmp / "test.npz"


def test_mnist_one_class_cli_prints_json_last(split_files):
    train, test = split_files
    out = subprocess.run([sys.executable, "-m", "course_lib.bench", "mnist-one-class",
                          "--train", str(train), "--test", str(test), "--digit", "1",
                          "--profile", "fast"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("auroc", "baseline_pca_auroc", "seconds", "profile", "n_train", "n_test"):
        assert key in result
    assert result["profile"] == "fast" and result["n_test"] == 600
    assert result["n_train"] == 800  # the embedded subset holds 800 images per digit
    # ones are easy to tell from other digits: a model that learned must rank them well
    assert result["auroc"] > 0.9, result
    assert 0.5 < result["baseline_pca_auroc"] <= 1.0


def test_untrained_model_does_worse_than_trained(split_files, monkeypatch):
    """The AUROC comes from training: with zero epochs the same pipeline scores lower."""
    from course_lib.config import PROFILES
    from course_lib.data import load_npz_images

    x, y = load_npz_images(split_files[0])
    xt, yt = load_npz_images(split_files[1])
    trained = bench.mnist_one_class(x, y, xt, yt, digit=7, profile="fast")
    monkeypatch.setattr(bench, "train_one_class", lambda xn, prof, seed=0:
                        bench.build_one_class_autoencoder()[0])
    untrained = bench.mnist_one_class(x, y, xt, yt, digit=7, profile=PROFILES["fast"])
    assert trained["auroc"] > untrained["auroc"] + 0.05, (trained, untrained)


def test_bad_inputs_are_reported(split_files, tmp_path):
    x = np.zeros((30, 28, 28), np.uint8)
    with pytest.raises(DataError, match="only 0 training images of digit 3"):
        bench.mnist_one_class(x, np.zeros(30, int), x, np.arange(30) % 2, digit=3)
    with pytest.raises(DataError, match="both digit 0 and other digits"):
        bench.mnist_one_class(x, np.zeros(30, int), x, np.zeros(30, int), digit=0)
    code = bench.main(["mnist-one-class", "--train", str(tmp_path / "missing.npz"),
                       "--test", str(split_files[1]), "--digit", "1"])
    assert code == 2
