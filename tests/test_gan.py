"""Tests of course_lib.gan (notebook 07): DCGAN, AnoGAN latent search, f-AnoGAN encoder."""

import dataclasses

import keras
import numpy as np
import pytest

from course_lib import gan
from course_lib.config import get_profile


@pytest.fixture(scope="module")
def nets():
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


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def test_shapes_and_generator_range(nets):
    generator, discriminator = nets
    z = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32) * 10
    g = np.asarray(generator(z))
    assert g.shape == (5, 28, 28, 1)
    assert g.min() >= 0.0 and g.max() <= 1.0
    assert np.asarray(discriminator(g)).shape == (5, 1)
    feats = np.asarray(gan.feature_extractor(discriminator)(g))
    assert feats.shape == (5, 7 * 7 * 64)
    assert gan.build_generator().input_shape == (None, gan.LATENT_DIM)


def _compiled_dcgan():
    model = gan.DCGAN(gan.build_generator(8), gan.build_discriminator(), latent_dim=8, seed=0)
    model.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                  loss_fn=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def test_train_step_returns_losses_and_updates_both_networks(images):
    """One train_step, run eagerly (tracing it for fit takes seconds; fit's own history is
    checked by test_train_dcgan_collects_samples)."""
    model = _compiled_dcgan()
    x = images.astype(np.float32)[..., None] / 255
    g_before, d_before = _weights(model.generator), _weights(model.discriminator)
    logs = {k: float(v) for k, v in model.train_step(keras.ops.convert_to_tensor(x)).items()}
    assert set(logs) == {"d_loss", "g_loss", "d_acc"}
    assert all(np.isfinite(logs[k]) for k in ("d_loss", "g_loss"))
    assert 0.0 <= logs["d_acc"] <= 1.0
    assert not _same(g_before, model.generator.get_weights())
    assert not _same(d_before, model.discriminator.get_weights())


def test_discriminator_targets_stay_in_0_1_with_real_ones_smoothed_down(images):
    """Binary cross-entropy from logits with a target above 1 rewards ever larger logits: D's
    targets must lie in [0, 1], the real images' at most 0.9 (one-sided label smoothing)."""
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    seen = []

    def spy(targets, logits):                 # the loss, recording the targets it is given
        seen.append(np.asarray(targets))
        return bce(targets, logits)

    model = gan.DCGAN(gan.build_generator(8), gan.build_discriminator(), latent_dim=8, seed=0)
    model.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5), loss_fn=spy)
    x = images.astype(np.float32)[..., None] / 255
    model.train_step(keras.ops.convert_to_tensor(x))      # eagerly: the targets are visible
    d_targets, g_targets = seen                           # D's half first, then G's
    n = len(x)
    assert d_targets.shape == (2 * n, 1) and g_targets.shape == (n, 1)
    real, generated = d_targets[:n], d_targets[n:]
    assert d_targets.min() >= 0.0 and d_targets.max() <= 1.0, "D's targets left [0, 1]"
    assert np.all(real <= 0.9 + 1e-6) and np.all(real >= 0.7), "real targets: about 0.9"
    np.testing.assert_allclose(real, gan.REAL_TARGET)
    assert np.all(generated == 0.0), "one-sided: generated images keep the target 0"
    assert np.all(g_targets == 1.0), "G's loss keeps the flipped label 1"


def test_gan_health_splits_real_and_generated_halfway_between_the_targets(nets, images):
    """D's targets are 0.9 (real) and 0 (generated): a D that cannot tell them apart outputs
    about 0.45 for every image, so "real" must mean above 0.45, not above 0.5."""
    generator, _ = nets
    undecided = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Flatten(),
        keras.layers.Dense(1, kernel_initializer="zeros",
                           bias_initializer=keras.initializers.Constant(-0.1))])  # p = 0.475
    health = gan.gan_health(generator, undecided, images, n=6)
    assert health["d_acc_real"] == 1.0 and health["d_acc_fake"] == 0.0


def test_train_dcgan_collects_samples(images):
    profile = dataclasses.replace(get_profile("fast"), gan_epochs=2, batch_size=3)
    model, history, samples = gan.train_dcgan(images, profile, seed=0, latent_dim=8, n_samples=4)
    assert isinstance(model, gan.DCGAN)
    assert sorted(samples) == [1, 2]          # every max(1, epochs // 5) epochs and the last
    assert samples[2].shape == (4, 28, 28, 1)
    assert {k: len(v) for k, v in history.items()} == {"d_loss": 2, "g_loss": 2, "d_acc": 2}
    health = gan.gan_health(model.generator, model.discriminator, images, n=6)
    assert {"diversity", "d_acc_real", "d_acc_fake", "warnings", "ok"} <= set(health)


@pytest.fixture(scope="module")
def search(nets, images):
    """One latent search (20 steps, seed 0) and the networks' weights before it: shared by the
    two tests below (each search traces its own step)."""
    generator, discriminator = nets
    before = _weights(generator), _weights(discriminator)
    out = gan.anogan_search(generator, discriminator, images, steps=20, lam=0.1,
                            learning_rate=0.05, seed=0)
    return out, before


def test_latent_search_lowers_the_objective_and_leaves_the_networks_alone(nets, search):
    generator, discriminator = nets
    out, (g_before, d_before) = search
    assert len(out["objective"]) == 21 and len(out["step_seconds"]) == 20
    assert out["objective"][-1] < out["objective"][0]
    assert out["reconstructions"].shape == (6, 28, 28, 1)
    assert out["z"].shape == (6, 8)
    # the objective after the last step is the mean of the final scores
    assert np.isclose(out["objective"][-1], out["score"].mean(), rtol=1e-4)
    assert _same(g_before, generator.get_weights()) and _same(d_before, discriminator.get_weights())


def test_latent_search_is_repeatable_with_a_seed(nets, images, search):
    generator, discriminator = nets
    a = search[0]                                                   # seed 0
    b = gan.anogan_search(generator, discriminator, images, steps=20, seed=0)
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5)
    c = gan.anogan_search(generator, discriminator, images, steps=20, seed=4)
    assert not np.allclose(a["z"], c["z"])


def test_anogan_loss_is_the_weighted_sum_of_its_parts(nets, images):
    generator, discriminator = nets
    features = gan.feature_extractor(discriminator)
    x = images.astype(np.float32)[..., None] / 255
    z = np.random.default_rng(2).standard_normal((len(images), 8)).astype(np.float32)
    for lam in (0.0, 0.1, 0.5, 1.0):
        score, residual, discrimination = (np.asarray(v) for v in
                                           gan.anogan_loss(generator, features, x, z, lam))
        np.testing.assert_allclose(score, (1 - lam) * residual + lam * discrimination, rtol=1e-6)
    assert np.all(residual > 0) and np.all(discrimination >= 0)
    # R is the mean absolute pixel difference, D the mean absolute feature difference
    g = np.asarray(generator(z, training=False))
    np.testing.assert_allclose(residual, np.abs(x - g).mean(axis=(1, 2, 3)), rtol=1e-5)
    fd = np.abs(np.asarray(features(x)) - np.asarray(features(g))).mean(axis=1)
    np.testing.assert_allclose(discrimination, fd, rtol=1e-5)


def test_encoder_scores(nets, images):
    generator, discriminator = nets
    profile = dataclasses.replace(get_profile("fast"), batch_size=3)
    w_before = _weights(generator)
    encoder = gan.train_encoder(generator, images, profile, epochs=1)
    assert _same(w_before, generator.get_weights()), "izi training must not change G"
    assert generator.trainable
    out = gan.encoder_scores(generator, discriminator, encoder, images)
    assert out["score"].shape == (6,) and out["z"].shape == (6, 8)
    # f-AnoGAN's score (Schlegl et al., 2019): squared residuals, kappa = 1, at z = E(x)
    assert gan.FANOGAN_KAPPA == 1.0
    x = images.astype(np.float32)[..., None] / 255
    g = np.asarray(generator(np.asarray(encoder(x)), training=False))
    features = gan.feature_extractor(discriminator)
    a_r = ((x - g) ** 2).mean(axis=(1, 2, 3))
    a_d = ((np.asarray(features(x)) - np.asarray(features(g))) ** 2).mean(axis=1)
    np.testing.assert_allclose(out["residual"], a_r, rtol=1e-4)
    np.testing.assert_allclose(out["discrimination"], a_d, rtol=1e-4)
    np.testing.assert_allclose(out["score"], a_r + a_d, rtol=1e-4)
    np.testing.assert_allclose(out["reconstructions"], g, atol=1e-6)
    half = gan.encoder_scores(generator, discriminator, encoder, images, kappa=0.5)
    np.testing.assert_allclose(half["score"], a_r + 0.5 * a_d, rtol=1e-4)
    with pytest.raises(ValueError, match="kappa"):
        gan.encoder_scores(generator, discriminator, encoder, images, kappa=-1)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 28, 27)), "28x28"),
    (np.zeros((0, 28, 28)), "28x28"),
    (np.full((2, 28, 28), 2.0), r"\[0, 1\]"),
    (np.full((2, 28, 28), np.nan), "NaN"),
])
def test_bad_images_rejected(nets, bad, match):
    generator, discriminator = nets
    with pytest.raises(ValueError, match=match):
        gan.anogan_search(generator, discriminator, bad, steps=1)


def test_bad_arguments_rejected(nets, images):
    generator, discriminator = nets
    with pytest.raises(ValueError, match="steps"):
        gan.anogan_search(generator, discriminator, images, steps=0)
    with pytest.raises(ValueError, match="lam"):
        gan.anogan_search(generator, discriminator, images, steps=1, lam=1.5)
    with pytest.raises(ValueError, match="features"):
        gan.feature_extractor(generator)
    with pytest.raises(ValueError, match="gan_epochs"):
        gan.train_dcgan(images, dataclasses.replace(get_profile("fast"), gan_epochs=0))
    with pytest.raises(ValueError, match="x_normal"):
        gan.train_encoder(generator, np.zeros((2, 5, 5)), epochs=1)
