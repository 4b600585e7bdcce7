"""``python -m course_lib.doctor`` (:mod:`course_lib.cli.doctor`): each check with faked
facts, the report and the exit code, in-process."""
import sys
from pathlib import Path

import pytest

from course_lib.cli import doctor
from course_lib.cli.doctor import (Check, check_cpu, check_data_caches, check_data_folder,
                                   check_data_mode, check_gpu, check_keras, check_memory,
                                   check_package, check_profile, check_python, format_report)
from course_lib.data.common import CacheItem

GOOD_KERAS = {"module": "keras", "file": "/env/site-packages/keras/__init__.py",
              "version": "3.15.1", "backend": "tensorflow", "legacy_env": "", "backend_env": ""}
GB = 1024 ** 3


@pytest.mark.parametrize("version", [(3, 9, 18), (3, 8, 0), (2, 7, 18)])
def test_too_old_python_fails_with_a_fix(version):
    c = check_python(version)
    assert c.status == "FAIL" and "too old" in c.detail and "3.11" in c.fix


@pytest.mark.parametrize("version", [(3, 10, 0), (3, 11, 7), (3, 12, 1)])
def test_supported_python_is_ok(version):
    assert check_python(version).status == "OK"


def test_wrong_backend_fails():
    c = check_keras({**GOOD_KERAS, "backend": "jax"})
    assert c.status == "FAIL" and "'jax'" in c.detail and "KERAS_BACKEND=tensorflow" in c.fix


def test_legacy_tf_keras_fails():
    c = check_keras({**GOOD_KERAS, "module": "tf_keras", "version": "2.15.1",
                     "file": "/env/site-packages/tf_keras/__init__.py"})
    assert c.status == "FAIL" and "tf_keras" in c.detail
    assert check_keras({**GOOD_KERAS, "version": "2.15.0"}).status == "FAIL"
    assert check_keras({**GOOD_KERAS, "legacy_env": "1"}).status == "WARN"


def test_keras_import_error_is_reported_not_raised():
    c = check_keras({"error": "ModuleNotFoundError: No module named 'jax'", "backend_env": "jax"})
    assert c.status == "FAIL" and "KERAS_BACKEND" in c.fix
    assert check_keras(dict(GOOD_KERAS)).status == "OK"


def test_package_versions_outside_requirements_fail():
    assert check_package("keras", "2.15.0").status == "FAIL"
    assert check_package("keras", None).status == "FAIL"
    assert check_package("tensorflow", "2.12.1").status == "FAIL"
    assert check_package("tensorflow", "2.21.0").status == "OK"


def test_low_memory_warns_binder_like():
    c = check_memory(int(1.5 * GB), 2 * GB, "psutil")
    assert c.status == "WARN" and "Binder-like" in c.detail and "COURSE_PROFILE=fast" in c.fix
    assert check_memory(8 * GB, 16 * GB, "psutil").status == "OK"
    assert check_memory(None, None, "unknown").status == "WARN"


def test_memory_without_psutil_reads_proc_meminfo(monkeypatch):
    if not Path("/proc/meminfo").is_file():
        pytest.skip("no /proc/meminfo on this system")
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil now fails
    available, total, source = doctor._memory_facts()
    assert source == "/proc/meminfo" and 0 < available <= total


def test_settings_that_are_invalid_are_reported_not_raised(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    monkeypatch.setenv("COURSE_DATA", "sometimes")
    p, d = check_profile(), check_data_mode()
    assert p.status == "FAIL" and "turbo" in p.detail and "fast|workshop|full" in p.fix
    assert d.status == "FAIL" and "sometimes" in d.detail and "offline" in d.fix
    caches = check_data_caches()  # an invalid profile must not crash the data lines either
    assert caches and all(isinstance(c, Check) for c in caches)
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    monkeypatch.setenv("COURSE_DATA", "offline")
    assert check_profile().status == "OK" and check_data_mode().status == "OK"


def test_cpu_and_gpu():
    assert check_cpu(1).status == "WARN"
    assert check_cpu(2).status == "OK"
    assert check_gpu([]).status == "OK" and "CPU" in check_gpu([]).detail
    assert "GPU:0" in check_gpu(["/physical_device:GPU:0"]).detail


def test_data_cache_lines(tmp_path):
    items = [CacheItem("MNIST subset (embedded)", "embedded", "corrupted", tmp_path / "a",
                       hint="git checkout"),
             CacheItem("MNIST full (Keras cache)", "download", "missing", tmp_path / "b",
                       hint="prefetch --mnist"),
             CacheItem("Texture 'brick'", "built", "missing", tmp_path / "c")]
    auto = check_data_caches(items, mode="auto")
    assert [c.status for c in auto] == ["FAIL", "WARN", "OK"]
    assert auto[0].fix == "git checkout" and "prefetch --mnist" in auto[1].fix
    assert [c.status for c in check_data_caches(items, mode="offline")] == ["FAIL", "OK", "OK"]


def test_missing_data_folder_fails(tmp_path):
    assert check_data_folder(tmp_path / "nowhere").status == "FAIL"
    assert check_data_folder(tmp_path).status == "FAIL"  # exists, but without the files
    assert check_data_folder().status == "OK"


@pytest.mark.slow
def test_basics_are_ok_on_this_machine():
    for c in (check_python(), check_package("keras"), check_package("tensorflow"),
              check_keras(), check_cpu(), check_gpu(), check_data_folder()):
        assert c.status == "OK", f"{c.name}: {c.detail}"
    assert check_memory().status in ("OK", "WARN")


def _fast_checks(monkeypatch):
    monkeypatch.setattr(doctor, "check_keras", lambda: check_keras(dict(GOOD_KERAS)))
    monkeypatch.setattr(doctor, "check_gpu", lambda: check_gpu([]))
    monkeypatch.setattr(doctor, "check_memory", lambda: check_memory(8 * GB, 16 * GB, "test"))


def test_cli_exit_code_follows_fail_lines(monkeypatch, capsys):
    _fast_checks(monkeypatch)
    assert doctor.main([]) == 0
    out = capsys.readouterr().out
    assert "[ OK ] Python" in out and "0 FAIL" in out
    monkeypatch.setattr(doctor, "check_python", lambda: check_python((3, 8, 10)))
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] Python" in out and "fix: Install Python" in out and "Not ready" in out


def test_warn_alone_does_not_fail(monkeypatch, capsys):
    _fast_checks(monkeypatch)
    monkeypatch.setattr(doctor, "check_memory",
                        lambda: check_memory(int(1.2 * GB), 2 * GB, "test"))
    assert doctor.main([]) == 0
    assert "[WARN] Memory" in capsys.readouterr().out


def test_report_has_a_fix_under_every_non_ok_line():
    text = format_report([Check("a", "OK", "fine"), Check("b", "WARN", "hm", "do x"),
                          Check("c", "FAIL", "bad", "do y")])
    lines = text.splitlines()
    assert lines[0].startswith("[ OK ] a") and "fix:" not in lines[0]
    assert lines[1].startswith("[WARN] b") and lines[2].strip() == "fix: do x"
    assert lines[3].startswith("[FAIL] c") and lines[4].strip() == "fix: do y"
    assert "1 OK, 1 WARN, 1 FAIL" in text
    with pytest.raises(ValueError):
        Check("d", "MAYBE", "?")


def test_usage_error_is_one_line(capsys):
    assert doctor.main(["--nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("python -m course_lib.doctor: error: unrecognized arguments: --nosuch "
                           "(see python -m course_lib.doctor --help)")


@pytest.mark.slow
def test_command_line_on_this_machine(tmp_path, monkeypatch, capsys):
    """The real checks (Keras and TensorFlow load): ready here; a bad profile FAILs."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "k"))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("COURSE_DATA", "offline")
    assert doctor.main([]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "[ OK ] Keras backend" in out and "0 FAIL" in out
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    assert doctor.main([]) == 1
    captured = capsys.readouterr()
    assert "[FAIL] COURSE_PROFILE" in captured.out and "Traceback" not in captured.err


def test_empty_settings_mean_the_defaults(monkeypatch):
    """Defect: COURSE_PROFILE= (empty) was a FAIL line, though it means "not set"."""
    monkeypatch.setenv("COURSE_PROFILE", "")
    monkeypatch.setenv("COURSE_DATA", " ")
    p, d = check_profile(), check_data_mode()
    assert p.status == "OK" and p.detail.startswith("workshop (default)"), p
    assert d.status == "OK" and d.detail.startswith("auto (default)"), d


def test_a_damaged_bottle_subset_fails_the_doctor(tmp_path, monkeypatch, capsys):
    """The shipped MVTec AD bottle subset is checked like every embedded dataset: intact, an
    OK line; one damaged image, a FAIL line saying how to restore it (exit 1)."""
    import shutil

    from course_lib.config import REPO_DIR

    _fast_checks(monkeypatch)
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_DATA", "offline")
    shutil.copytree(REPO_DIR / "data", tmp_path / "data")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    assert doctor.main([]) == 0
    assert "[ OK ] data: MVTec AD bottle subset (embedded)" in capsys.readouterr().out
    image = tmp_path / "data" / "mvtec_bottle" / "bottle" / "train" / "good" / "100.png"
    image.write_bytes(image.read_bytes()[::-1])
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] data: MVTec AD bottle subset (embedded)" in out
    assert "git checkout -- data/mvtec_bottle" in out
