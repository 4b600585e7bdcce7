"""``course-score``: a saved detector scores a folder of images, a CSV or an ECG file.

In-process (``main([...])``), with tiny untrained detectors saved once per module: the files
it writes, the scores against the detector's own, labels from folders and columns, and the
clear errors (wrong kind of input, sizes it cannot handle, missing columns, damaged files).
"""
from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

keras = pytest.importorskip("keras")

from course_lib.cli.score import folder_labels, main  # noqa: E402
from course_lib.data.creditcard import CREDITCARD_COLUMNS  # noqa: E402
from course_lib.data.ecg import write_ecg_file  # noqa: E402
from course_lib.detector import (beat_detector, image_detector, load_detector,  # noqa: E402
                                 save_detector, transaction_detector)
from course_lib.experiments.creditcard import split_creditcard  # noqa: E402
from course_lib.experiments.ecg import split_ecg  # noqa: E402
from course_lib.models import (build_conv1d_autoencoder, build_object_autoencoder,  # noqa: E402
                               build_tabular_autoencoder)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Three calibrated detectors, saved: images (64 px whole), transactions, beats."""
    from skimage.io import imsave

    root = tmp_path_factory.mktemp("score")
    rng = np.random.default_rng(0)
    good = [np.clip(0.5 + 0.05 * rng.normal(size=(64, 64)), 0, 1) for _ in range(6)]
    ae, _, _ = build_object_autoencoder(64, 1, "l2", code_size=8)
    images = image_detector(ae, "l2", [g.astype(np.float32) for g in good], sigma=1.0,
                            name="plates", notebook="05")
    images.calibrate([g.astype(np.float32) for g in good], alpha=0.2)
    test = root / "test"
    for folder, offset in (("good", 0.0), ("scratch", 0.4)):
        (test / folder).mkdir(parents=True)
        for i in range(3):
            img = np.clip(0.5 + 0.05 * rng.normal(size=(128, 128)), 0, 1)
            img[40:60, 40:60] += offset                      # a bright square on defects
            imsave(test / folder / f"{i:03d}.png", (np.clip(img, 0, 1) * 255).astype(np.uint8),
                   check_contrast=False)

    frame = pd.DataFrame(rng.normal(size=(200, 31)), columns=list(CREDITCARD_COLUMNS))
    frame["Class"] = (np.arange(200) < 5).astype(int)
    split = split_creditcard(frame, seed=0)
    tab, _, _ = build_tabular_autoencoder(30)
    cards = transaction_detector(tab, split).calibrate(frame.iloc[split.val_rows], alpha=0.1)
    frame.to_csv(root / "cards.csv", index=False)

    x = np.sin(np.linspace(0, 6, 32))[None] + 0.1 * rng.normal(size=(60, 32))
    y = np.r_[np.ones(50, int), np.full(10, 3)]
    ecg_split = split_ecg(x.astype(np.float32), y, seed=0)
    conv, _, _ = build_conv1d_autoencoder(32, filters=(4, 4), code_size=4)
    beats = beat_detector(conv, ecg_split).calibrate(x[:19].astype(np.float32), alpha=0.05)
    write_ecg_file(root / "beats.txt", x.astype(np.float32), y)
    np.savetxt(root / "unlabelled.txt", x[:7])
    np.savetxt(root / "short.txt", x[:7, :30])
    paths = {name: save_detector(det, root / f"{name}.keras")
             for name, det in (("images", images), ("cards", cards), ("beats", beats))}
    return {"root": root, "test": test, "frame": frame, "x": x, **paths}


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out


def test_scores_an_mvtec_style_folder_with_maps_and_labels(saved, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out = run([saved["images"], saved["test"], "--out", out_dir], capsys)
    assert code == 0, out.err
    rows = read_rows(out_dir / "scores.csv")
    assert [r["name"] for r in rows] == [f"{f}/{i:03d}.png" for f in ("good", "scratch")
                                         for i in range(3)]
    assert [r["label"] for r in rows] == ["0"] * 3 + ["1"] * 3
    detector = load_detector(saved["images"])
    files = sorted(saved["test"].rglob("*.png"))
    expected = detector.score([detector.read_image(p) for p in files])
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-6)
    assert [int(r["flagged"]) for r in rows] == list((expected > detector.threshold).astype(int))
    maps = sorted(p.relative_to(out_dir / "maps").as_posix()
                  for p in (out_dir / "maps").rglob("*.png"))
    assert maps == [r["name"] for r in rows]
    from skimage.io import imread

    picture = imread(out_dir / "maps" / "scratch" / "000.png")
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8
    summary = (out_dir / "summary.txt").read_text()
    assert summary.strip() == out.out.strip()
    assert "Scored 6 images" in summary and "Labelled normal" in summary
    assert "Labelled anomalous" in summary and "at most 20%" in summary


def test_masks_and_hidden_files_are_not_scored(saved, tmp_path):
    from course_lib.cli.score import list_images

    for name in ("test/good/a.png", "ground_truth/crack/a_mask.png", ".cache/b.png",
                 "test/crack/c.PNG", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "test/crack/c.PNG", "test/good/a.png"]


def test_scores_transactions_with_and_without_labels(saved, tmp_path, capsys):
    code, out = run([saved["cards"], saved["root"] / "cards.csv", "--out", tmp_path / "a"],
                    capsys)
    assert code == 0, out.err
    rows = read_rows(tmp_path / "a" / "scores.csv")
    detector = load_detector(saved["cards"])
    np.testing.assert_array_equal([float(r["score"]) for r in rows],
                                  detector.score(saved["frame"]))
    assert "false-alarm rate" in out.out and "recall" in out.out
    saved["frame"].drop(columns=["Class"]).to_csv(tmp_path / "new.csv", index=False)
    code, out = run([saved["cards"], tmp_path / "new.csv", "--out", tmp_path / "b"], capsys)
    assert code == 0, out.err
    assert list(read_rows(tmp_path / "b" / "scores.csv")[0]) == ["name", "score", "flagged"]
    saved["frame"].drop(columns=["Amount"]).to_csv(tmp_path / "bad.csv", index=False)
    code, out = run([saved["cards"], tmp_path / "bad.csv", "--out", tmp_path / "c"], capsys)
    assert code == 1 and "missing column(s) ['Amount']" in out.err
    assert not (tmp_path / "c").exists()


def test_scores_beats_with_and_without_labels(saved, tmp_path, capsys):
    code, out = run([saved["beats"], saved["root"] / "beats.txt", "--out", tmp_path / "a"],
                    capsys)
    assert code == 0, out.err
    assert len(read_rows(tmp_path / "a" / "scores.csv")) == 60 and "recall" in out.out
    code, out = run([saved["beats"], saved["root"] / "unlabelled.txt", "--out", tmp_path / "b"],
                    capsys)
    assert code == 0, out.err
    rows = read_rows(tmp_path / "b" / "scores.csv")
    np.testing.assert_allclose([float(r["score"]) for r in rows],
                               load_detector(saved["beats"]).score(saved["x"][:7]), rtol=1e-6)
    code, out = run([saved["beats"], saved["root"] / "short.txt", "--out", tmp_path / "c"],
                    capsys)
    assert code == 1 and "beats of 32 samples" in out.err


def test_wrong_kind_of_input_is_named(saved, tmp_path, capsys):
    code, out = run([saved["cards"], saved["test"], "--out", tmp_path / "a"], capsys)
    assert code == 1 and "is a folder: give the file" in out.err
    code, out = run([saved["images"], saved["root"] / "cards.csv", "--out", tmp_path / "b"],
                    capsys)
    assert code == 1 and "not an image file" in out.err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = run([saved["images"], empty, "--out", tmp_path / "c"], capsys)
    assert code == 1 and "holds no images" in out.err


def test_an_image_it_cannot_handle_stops_before_writing(saved, tmp_path, capsys):
    from skimage.io import imsave

    folder = tmp_path / "in"
    folder.mkdir()
    imsave(folder / "a.png", np.zeros((64, 64), np.uint8), check_contrast=False)
    imsave(folder / "b.png", np.zeros((64, 200), np.uint8), check_contrast=False)
    code, out = run([saved["images"], folder, "--out", tmp_path / "out"], capsys)
    assert code == 1 and "b.png" in out.err and "squash" in out.err
    assert not (tmp_path / "out").exists()


def test_damaged_detector_is_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    code, out = run([bad, tmp_path, "--out", tmp_path / "o"], capsys)
    assert code == 1 and "not a zip archive" in out.err


def test_detector_by_name_and_list(saved, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    code, out = run(["--list"], capsys)
    assert code == 0 and "No saved detectors" in out.out
    target = tmp_path / "cache" / "detectors" / "fast" / "05_plates.keras"
    target.parent.mkdir(parents=True)
    target.write_bytes(saved["images"].read_bytes())
    code, out = run(["--list", "--profile", "fast"], capsys)
    assert code == 0 and "05_plates.keras" in out.out
    one = saved["test"] / "good" / "000.png"                 # one image, no maps
    code, out = run(["05_plates", one, "--profile", "fast", "--out", tmp_path / "o",
                     "--no-maps"], capsys)
    assert code == 0, out.err
    assert len(read_rows(tmp_path / "o" / "scores.csv")) == 1
    assert not (tmp_path / "o" / "maps").exists()
    code, out = run(["05_nope", saved["test"], "--profile", "fast"], capsys)
    assert code == 2 and "05_plates" in out.err


def test_folder_labels_need_good_and_another_folder():
    assert folder_labels(["good/a.png", "crack/b.png"]).tolist() == [0, 1]
    assert folder_labels(["good/a.png", "good/b.png"]) is None
    assert folder_labels(["a.png", "crack/b.png"]) is None


def test_every_detector_kind_has_its_words():
    from course_lib.cli.score import INPUTS
    from course_lib.detector import DETECTOR_KINDS

    assert set(INPUTS) == set(DETECTOR_KINDS)


def test_wrong_files_are_found_before_tensorflow_loads(saved, tmp_path):
    """A foreign .keras file, a wrong kind of input and a bad CSV: exit 1 with the message,
    and TensorFlow never imported (a fresh interpreter)."""
    import subprocess
    import sys

    keras_file = tmp_path / "plain.keras"
    with __import__("zipfile").ZipFile(keras_file, "w") as z:
        z.writestr("config.json", '{"class_name": "Sequential", "config": {}}')
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("Time,V1\n0,1\n")
    code = f"""
import sys
from course_lib.cli.score import main
codes = [main([{str(keras_file)!r}, {str(tmp_path)!r}]),
         main([{str(saved["cards"])!r}, {str(saved["test"])!r}]),
         main([{str(saved["cards"])!r}, {str(bad_csv)!r}])]
print(codes, "tensorflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "[1, 1, 1] False", out.stdout + out.stderr
    assert "not a course detector" in out.stderr and "is a folder" in out.stderr
    assert "missing column(s)" in out.stderr
