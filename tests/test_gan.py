"""Tests of course_lib.gan (notebook 06): DCGAN, AnoGAN latent search, f-AnoGAN encoder."""

import dataclasses

import numpy as np
import pytest

from course_lib import gan
from course_lib.config import get_profile


@pytest.fixture(scope="module")
def nets():
    import keras

    keras.utils.set_random_seed(0)
    return gan.build_generator(latent_dim=8), gan.build_discriminator()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = np.zeros((6, 28, 28), dtype=np.uint8)
    for i in range(len(x)):
        r, c = rng.integers(4, 20, size=2)
        x[i, r:r + 8, c:c + 3] = 255   # a short vertical stroke somewhere
    return x


def test_shapes_and_generator_range(nets):
    generator, discriminator = nets
    z = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32) * 10
    g = np.asarray(generator(z))
    assert g.shape == (5, 28, 28, 1)
    assert g.min() >= 0.0 and g.max() <= 1.0
    assert np.asarray(discriminator(g)).shape == (5, 1)
    feats = np.asarray(gan.feature_extractor(discriminator)(g))
    assert feats.shape == (5, 7 * 7 * 64)


def test_train_step_returns_losses_and_updates_both_networks(nets, images):
    generator, discriminator = nets
    model = gan.DCGAN(gan.build_generator(8), gan.build_discriminator(), latent_dim=8, seed=0)
    model.compile()
    x = gan._check_images(images)
    g_before = [w.copy() for w in model.generator.get_weights()]
    d_before = [w.copy() for w in model.discriminator.get_weights()]
    logs = model.train_on_batch(x, return_dict=True)
    assert {"d_loss", "g_loss", "d_acc"} <= set(logs)
    assert all(np.isfinite(float(logs[k])) for k in ("d_loss", "g_loss"))
    assert any(not np.allclose(a, b) for a, b in zip(g_before, model.generator.get_weights()))
    assert any(not np.allclose(a, b)
               for a, b in zip(d_before, model.discriminator.get_weights()))


def test_train_dcgan_collects_samples(images):
    profile = dataclasses.replace(get_profile("fast"), gan_epochs=2, batch_size=3)
    run = gan.train_dcgan(images, profile, seed=0, latent_dim=8, sample_every=1, n_samples=4)
    assert sorted(run.samples) == [1, 2]
    assert run.samples[2].shape == (4, 28, 28, 1)
    assert len(run.history["d_loss"]) == 2 and len(run.history["g_loss"]) == 2
    health = gan.gan_health(run.generator, run.discriminator, images, n=6)
    assert {"diversity", "d_acc_real", "d_acc_fake", "warnings", "ok"} <= set(health)


def test_latent_search_lowers_the_objective(nets, images):
    generator, discriminator = nets
    out = gan.anogan_scores(generator, discriminator, images, steps=20, lam=0.1,
                            learning_rate=0.05, seed=0)
    assert len(out["objective"]) == 21
    assert out["objective"][-1] < out["objective"][0]
    assert out["reconstructions"].shape == (6, 28, 28, 1)
    assert out["z"].shape == (6, 8)
    # the objective is the mean of the final scores
    assert np.isclose(out["objective"][-1], out["score"].mean(), rtol=1e-4)


def test_combined_score_is_weighted_sum(nets, images):
    generator, discriminator = nets
    z = np.random.default_rng(2).standard_normal((len(images), 8)).astype(np.float32)
    for lam in (0.0, 0.1, 0.5, 1.0):
        p = gan.anogan_parts(generator, discriminator, images, z, lam=lam)
        np.testing.assert_allclose(p["score"],
                                   (1 - lam) * p["residual"] + lam * p["discrimination"],
                                   rtol=1e-6)
    assert np.all(p["residual"] > 0) and np.all(p["discrimination"] >= 0)
    # the residual is the mean absolute pixel difference
    x = images.astype(np.float32)[..., None] / 255
    np.testing.assert_allclose(p["residual"], np.abs(x - p["reconstructions"]).mean(axis=(1, 2, 3)),
                               rtol=1e-5)


def test_encoder_scores(nets, images):
    generator, discriminator = nets
    profile = dataclasses.replace(get_profile("fast"), batch_size=3)
    encoder = gan.train_encoder(generator, images, profile, epochs=1)
    w_before = [w.copy() for w in generator.get_weights()]
    out = gan.encoder_scores(generator, discriminator, encoder, images)
    assert out["score"].shape == (6,) and out["z"].shape == (6, 8)
    assert all(np.array_equal(a, b) for a, b in zip(w_before, generator.get_weights()))
    assert generator.trainable


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 28, 27)), "28x28"),
    (np.zeros((0, 28, 28)), "28x28"),
    (np.full((2, 28, 28), 2.0), r"\[0, 1\]"),
    (np.full((2, 28, 28), np.nan), "NaN"),
])
def test_bad_images_rejected(nets, bad, match):
    generator, discriminator = nets
    with pytest.raises(ValueError, match=match):
        gan.anogan_scores(generator, discriminator, bad, steps=1)


def test_bad_arguments_rejected(nets, images):
    generator, discriminator = nets
    with pytest.raises(ValueError, match="steps"):
        gan.anogan_scores(generator, discriminator, images, steps=0)
    with pytest.raises(ValueError, match="lam"):
        gan.anogan_scores(generator, discriminator, images, steps=1, lam=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        gan.anogan_scores(generator, discriminator, images, steps=1, learning_rate=0)
    with pytest.raises(ValueError, match="z must have shape"):
        gan.anogan_parts(generator, discriminator, images, np.zeros((2, 8)))
    with pytest.raises(ValueError, match="latent_dim"):
        gan.build_generator(latent_dim=0)
    with pytest.raises(ValueError, match="features"):
        gan.feature_extractor(generator)
    with pytest.raises(ValueError, match="gan_epochs"):
        gan.train_dcgan(images, dataclasses.replace(get_profile("fast"), gan_epochs=0))


def test_module_import_is_light():
    import subprocess
    import sys

    code = ("import sys, course_lib.gan; "
            "print('keras' in sys.modules or 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False", out.stderr
