import pytest

from course_lib.config import PROFILES, data_mode, get_profile


def test_default_profile_is_workshop(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert get_profile().name == "workshop"


@pytest.mark.parametrize("name", ["fast", "workshop", "full", " FAST "])
def test_profile_from_environment(monkeypatch, name):
    monkeypatch.setenv("COURSE_PROFILE", name)
    assert get_profile().name == name.strip().lower()


def test_profiles_scale_up():
    fast, workshop, full = PROFILES["fast"], PROFILES["workshop"], PROFILES["full"]
    assert fast.n_train < workshop.n_train and full.n_train is None
    assert fast.epochs < workshop.epochs < full.epochs
    assert fast.one_class_epochs < workshop.one_class_epochs < full.one_class_epochs


def test_unknown_profile_says_what_is_allowed(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    with pytest.raises(ValueError, match="fast.*full.*workshop|COURSE_PROFILE"):
        get_profile()


def test_data_mode(monkeypatch):
    monkeypatch.delenv("COURSE_DATA", raising=False)
    assert data_mode() == "auto"
    assert data_mode("OFFLINE") == "offline"
    with pytest.raises(ValueError, match="COURSE_DATA"):
        data_mode("sometimes")


@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_course_variables_mean_unset(monkeypatch, tmp_path, empty):
    """Defect: COURSE_PROFILE= (set but empty) was an error while COURSE_CACHE_DIR= meant the
    default; every COURSE_* variable now treats empty as unset."""
    from course_lib.config import REPO_DIR, cache_dir, data_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name in ("COURSE_PROFILE", "COURSE_DATA", "COURSE_DATA_DIR", "COURSE_CACHE_DIR"):
        monkeypatch.setenv(name, empty)
    assert get_profile().name == "workshop"
    assert data_mode() == "auto"
    assert data_dir() == REPO_DIR / "data"
    assert cache_dir() == tmp_path / "course_lib"
