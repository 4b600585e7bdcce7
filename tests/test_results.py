"""Results one notebook keeps for a later one (:mod:`course_lib.results`): JSON records in the
cache folder, one folder per profile, written atomically."""

import json
import re

import numpy as np
import pytest

from course_lib.checks import DataError
from course_lib.results import load_results, results_dir, save_result


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh cache folder for every test (``$XDG_CACHE_HOME/course_lib``)."""
    monkeypatch.delenv("COURSE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    return tmp_path / "course_lib"


def files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_save_and_load_round_trip_with_numpy_numbers_and_nan(cache):
    result = {"pixel_auroc": np.float32(0.875), "n_test": np.int64(42), "ok": np.bool_(True),
              "aupro": float("nan"), "scores": [np.float64(0.5), np.nan, float("inf"), 3],
              "setting": {"side": np.int32(128), "loss": "ssim", "flips": (1, 2)},
              "note": None}
    path = save_result("AE-SSIM bottle", result, notebook="05_mvtec_l2_vs_ssim.ipynb")
    assert path == cache / "results" / "fast" / "AE-SSIM_bottle.json"
    assert files(cache) == ["results/fast/AE-SSIM_bottle.json"]     # no .part left behind
    assert results_dir() == path.parent and results_dir("workshop").name == "workshop"
    json.loads(path.read_text(encoding="utf-8"))                      # plain JSON, no NaN
    assert "NaN" not in path.read_text(encoding="utf-8")
    found, missing = load_results(["AE-SSIM bottle", "AE-L2 bottle"])
    assert missing == ["AE-L2 bottle"] and list(found) == ["AE-SSIM bottle"]
    record = found["AE-SSIM bottle"]
    assert record["name"] == "AE-SSIM bottle" and record["profile"] == "fast"
    assert record["notebook"] == "05_mvtec_l2_vs_ssim.ipynb"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", record["saved"])
    assert record["result"] == {"pixel_auroc": 0.875, "n_test": 42, "ok": True, "aupro": None,
                                "scores": [0.5, None, None, 3],
                                "setting": {"side": 128, "loss": "ssim", "flips": [1, 2]},
                                "note": None}
    assert type(record["result"]["n_test"]) is int and type(record["result"]["ok"]) is bool


def test_a_newer_save_replaces_the_older(cache):
    save_result("knn", {"image_auroc": 0.5}, notebook="07")
    save_result("knn", {"image_auroc": 0.9}, notebook="07b")
    found, _ = load_results(["knn"])
    assert found["knn"]["result"] == {"image_auroc": 0.9} and found["knn"]["notebook"] == "07b"
    assert files(cache) == ["results/fast/knn.json"]


def test_each_profile_has_its_own_records(cache, monkeypatch):
    save_result("dictionary", {"x": 1}, notebook="07", profile="workshop")
    assert load_results(["dictionary"]) == ({}, ["dictionary"])              # fast: none
    found, missing = load_results(["dictionary"], profile="workshop")
    assert missing == [] and found["dictionary"]["profile"] == "workshop"
    monkeypatch.setenv("COURSE_PROFILE", "workshop")                          # the active one
    assert list(load_results(["dictionary"])[0]) == ["dictionary"]
    save_result("dictionary", {"x": 2}, notebook="07")
    assert files(cache) == ["results/workshop/dictionary.json"]
    assert load_results(["dictionary"], profile="full") == ({}, ["dictionary"])


@pytest.mark.parametrize("damage", ["{not json", "", "\x00\xff"])
def test_a_damaged_record_counts_as_missing_with_a_note(cache, capsys, damage):
    save_result("good one", {"x": 1}, notebook="05")
    path = results_dir() / "broken.json"
    path.write_bytes(damage.encode("latin-1"))
    found, missing = load_results(["broken", "good one", "absent"])
    assert list(found) == ["good one"] and missing == ["broken", "absent"]
    out = capsys.readouterr().out
    assert "damaged" in out and str(path) in out and "rerun the notebook" in out
    assert "absent" not in out                      # a record never saved is no damage


@pytest.mark.parametrize("name", ["", " leading space", ".hidden", "../escape", "a/b", "a\\b",
                                  "x" * 82, "tab\there", 5, None, b"bytes",
                                  "newline\n"])
def test_bad_names_are_refused_before_anything_is_written(cache, name):
    with pytest.raises(DataError, match="result name must be"):
        save_result(name, {"x": 1}, notebook="05")
    with pytest.raises(DataError, match="result name must be"):
        load_results([name])
    assert not cache.exists() or files(cache) == []


def test_longest_and_odd_but_valid_names(cache):
    for name in ("x" * 81, "AE+SSIM_v1.2 b", "0"):
        save_result(name, {"x": 1}, notebook="05")
        assert list(load_results([name])[0]) == [name]


@pytest.mark.parametrize("result", [[("auroc", 0.9)], None, "0.9", 0.9])
def test_results_must_be_dicts(cache, result):
    with pytest.raises(DataError, match="result must be a dict"):
        save_result("ae", result, notebook="05")
    assert not cache.exists() or files(cache) == []


@pytest.mark.parametrize("value", [{1, 2}, object(), np.zeros(3), b"raw"])
def test_values_that_are_not_json_are_refused_and_nothing_is_left(cache, value):
    save_result("ae", {"x": 1}, notebook="05")
    with pytest.raises(DataError, match="result values must be numbers, strings, lists or dicts"):
        save_result("ae", {"maps": value}, notebook="05b")
    assert files(cache) == ["results/fast/ae.json"]                  # the old record is intact
    assert load_results(["ae"])[0]["ae"]["notebook"] == "05"


def _data(source, names):
    from types import SimpleNamespace

    return SimpleNamespace(source=source, x_test=[None] * len(names),
                           test_paths=[f"/x/bottle/test/{n}" for n in names])


def test_records_from_other_test_images_are_left_out_with_a_reason(cache, capsys):
    shipped = _data("embedded", ["good/000.png", "broken_large/001.png"])
    save_result("bottle AE-SSIM", {"pixel_auroc": 0.93}, notebook="05", data=shipped)
    found, missing = load_results(["bottle AE-SSIM"], data=shipped)
    assert list(found) == ["bottle AE-SSIM"] and missing == []
    assert found["bottle AE-SSIM"]["data"]["n_test"] == 2
    for other in (_data("online", ["good/000.png", "broken_large/001.png"]),      # source
                  _data("embedded", ["good/000.png"]),                            # size
                  _data("embedded", ["good/000.png", "broken_small/001.png"])):   # files
        found, missing = load_results(["bottle AE-SSIM"], data=other)
        assert found == {} and missing == ["bottle AE-SSIM"]
        assert "other test images" in capsys.readouterr().out
    found, _ = load_results(["bottle AE-SSIM"])            # no data given: not checked
    assert list(found) == ["bottle AE-SSIM"]


def test_a_record_under_a_colliding_file_name_is_not_taken_for_another(cache, capsys):
    save_result("AE SSIM", {"x": 1}, notebook="05")
    found, missing = load_results(["AE_SSIM"])            # same file name, other result
    assert found == {} and missing == ["AE_SSIM"]
    assert "not 'AE_SSIM'" in capsys.readouterr().out


# --------------------------------------------------------------------------- maps
def test_maps_round_trip_as_float16_and_atomically(cache):
    from course_lib.results import load_maps, save_maps

    rng = np.random.default_rng(0)
    maps = {"3": rng.uniform(0, 1, (8, 6)), "17": rng.uniform(0, 1, (8, 6))}
    shipped = _data("embedded", ["good/000.png", "broken_large/001.png"])
    path = save_maps("bottle AE-L2", maps, notebook="05", data=shipped)
    assert path.name == "bottle_AE-L2.npz" and files(cache) == ["results/fast/bottle_AE-L2.npz"]
    held = load_maps("bottle AE-L2", data=shipped)
    assert sorted(held) == ["17", "3"] and held["3"].dtype == np.float32
    assert np.allclose(held["3"], maps["3"], atol=1e-3)          # float16 keeps 3 digits
    assert load_maps("bottle AE-SSIM") is None                    # never saved
    assert load_maps("bottle AE-L2", profile="workshop") is None  # another profile


def test_maps_from_other_images_damaged_or_misnamed_are_refused_with_a_reason(cache, capsys):
    from course_lib.results import load_maps, save_maps

    shipped = _data("embedded", ["good/000.png"])
    path = save_maps("AE L2", {"0": np.zeros((4, 4))}, notebook="05", data=shipped)
    assert load_maps("AE L2", data=_data("online", ["good/000.png"])) is None
    assert "other test images" in capsys.readouterr().out
    assert load_maps("AE_L2") is None                              # same file, other name
    assert "not 'AE_L2'" in capsys.readouterr().out
    path.write_bytes(b"not an npz file")
    assert load_maps("AE L2") is None
    assert "damaged" in capsys.readouterr().out


@pytest.mark.parametrize("maps, word", [({}, "non-empty"), ({"0": np.zeros((2, 2, 2))}, "2-D"),
                                        ({"0": np.full((2, 2), np.nan)}, "finite")])
def test_bad_maps_are_refused_before_anything_is_written(cache, maps, word):
    from course_lib.results import save_maps

    with pytest.raises(DataError, match=word):
        save_maps("x", maps, notebook="05")
    assert not cache.exists() or files(cache) == []
