"""Tests of course_lib.vae (notebook 06): sampling layer, KL term, losses, the VAE's training
step, the anomaly scores, and the one-digit and bottle trainings of course_lib.experiments."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from scipy.stats import norm

from course_lib import vae as V
from course_lib.checks import DataError
from course_lib.config import data_dir, get_profile
from course_lib.experiments.one_class import train_one_class_vae
from course_lib.images import flatten


@pytest.fixture(scope="module")
def ones():
    """60 real ones and 60 other digits from the embedded MNIST subset, flat in [0, 1]."""
    with np.load(data_dir() / "mnist_subset.npz") as f:
        x, y = f["x_train"], f["y_train"]
    return x[y == 1][:60], x[y != 1][:60]


@pytest.fixture(scope="module")
def trained(ones):
    """A one-class VAE trained for 4 epochs on the 60 ones (shared by the slow tests)."""
    prof = dataclasses.replace(get_profile("fast"), one_class_epochs=4, batch_size=16)
    return train_one_class_vae(ones[0], prof, seed=0)


# --------------------------------------------------------------------------- the pieces
def test_sampling_draws_from_the_given_normal_and_passes_gradients():
    layer = V.Sampling(seed=0)
    mean = ops.full((20000, 2), 2.0)
    log_var = ops.full((20000, 2), float(np.log(0.25)))
    z = ops.convert_to_numpy(layer([mean, log_var]))
    assert abs(z.mean() - 2.0) < 0.02 and abs(z.std() - 0.5) < 0.02
    assert not np.allclose(z, ops.convert_to_numpy(layer([mean, log_var])))   # new noise
    first = ops.convert_to_numpy(V.Sampling(seed=3)([mean[:5], log_var[:5]]))
    again = ops.convert_to_numpy(V.Sampling(seed=3)([mean[:5], log_var[:5]]))
    assert np.array_equal(first, again)                                       # seeded
    m, lv = tf.Variable(np.zeros((3, 2), "float32")), tf.Variable(np.zeros((3, 2), "float32"))
    with tf.GradientTape() as tape:
        total = ops.sum(layer([m, lv]))
    g_mean, g_log_var = tape.gradient(total, [m, lv])
    assert np.allclose(g_mean, 1.0) and np.abs(g_log_var).sum() > 0
    assert V.Sampling.from_config(V.Sampling(seed=5).get_config()).seed == 5


def test_kl_divergence_matches_monte_carlo_and_vanishes_at_the_prior():
    rng = np.random.default_rng(0)
    mu, lv = rng.normal(0, 1, (4, 3)), rng.normal(0, 0.5, (4, 3))
    ours = ops.convert_to_numpy(V.kl_divergence(mu.astype("float32"), lv.astype("float32")))
    sd = np.exp(lv / 2)
    draws = mu + sd * rng.standard_normal((200_000, 4, 3))
    reference = (norm.logpdf(draws, mu, sd) - norm.logpdf(draws)).sum(-1).mean(0)
    assert ours.shape == (4,) and np.allclose(ours, reference, atol=0.02)
    assert np.allclose(ops.convert_to_numpy(V.kl_divergence(np.zeros((2, 3)), np.zeros((2, 3)))),
                       0.0)


def test_reconstruction_losses_are_per_image_sums():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (3, 4, 5, 1)).astype("float32")
    p = rng.uniform(0.05, 0.95, x.shape).astype("float32")
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    assert np.allclose(ops.convert_to_numpy(V.reconstruction_loss(x, p)),
                       bce.sum(axis=(1, 2, 3)), rtol=1e-4)
    # a perfect reconstruction of grey pixels still costs their entropy: the floor
    floor = ops.convert_to_numpy(V.reconstruction_loss(x, x))
    entropy = -(x * np.log(x) + (1 - x) * np.log(1 - x)).sum(axis=(1, 2, 3))
    assert np.allclose(floor, entropy, rtol=1e-3) and np.all(floor > 0)
    sq = ((x - p) ** 2).sum(axis=(1, 2, 3)) / (2 * 0.1 ** 2)
    assert np.allclose(ops.convert_to_numpy(V.gaussian_reconstruction_loss(x, p, 0.1)), sq,
                       rtol=1e-4)


def test_build_vae_shapes_and_a_deterministic_call():
    vae = V.build_vae(latent_dim=3, hidden=(16,), seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (5, 784)).astype("float32")
    z_mean, z_log_var, z = vae.encoder(x)
    assert z_mean.shape == z_log_var.shape == z.shape == (5, 3)
    assert np.allclose(ops.convert_to_numpy(vae(x)), ops.convert_to_numpy(vae(x)))
    assert np.allclose(ops.convert_to_numpy(vae(x)),
                       ops.convert_to_numpy(vae.decoder(z_mean)))   # inference: the mean
    loss, rec, kl = (float(v) for v in vae.negative_elbo(x))
    assert np.isclose(loss, rec + kl, rtol=1e-5) and rec > 0 and kl >= 0


def test_object_vae_has_the_autoencoders_layers_and_a_gaussian_decoder():
    vae = V.build_object_vae(side=64, latent_dim=10, seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 1)).astype("float32")
    outputs = vae.encoder(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 10)] * 3
    assert tuple(vae(x).shape) == (2, 64, 64, 1)
    assert vae.reconstruction is V.gaussian_reconstruction_loss


# --------------------------------------------------------------------------- training, scores
@pytest.mark.slow
def test_training_lowers_the_loss_and_reports_both_terms(trained):
    history = trained.history.history
    for key in ("loss", "reconstruction", "kl", "val_loss", "val_reconstruction", "val_kl"):
        assert len(history[key]) == 4, key
    assert history["reconstruction"][-1] < history["reconstruction"][0]
    assert np.allclose(np.array(history["loss"]),
                       np.array(history["reconstruction"]) + np.array(history["kl"]), rtol=1e-4)


@pytest.mark.slow
def test_scores_are_consistent_and_the_trained_vae_separates_ones(trained, ones):
    from sklearn.metrics import roc_auc_score

    x = flatten(np.concatenate(ones))
    y = np.r_[np.zeros(len(ones[0])), np.ones(len(ones[1]))]
    s = V.vae_scores(trained, x, n_samples=5, seed=0, batch_size=50)   # two batches
    assert set(s) == set(V.VAE_SCORES) and all(v.shape == (len(x),) for v in s.values())
    assert np.allclose(s["negative_elbo"], s["reconstruction_probability"] + s["kl"])
    floor = ops.convert_to_numpy(V.reconstruction_loss(x, x))
    assert np.allclose(s["reconstruction_probability_excess"],
                       s["reconstruction_probability"] - floor, rtol=1e-5)
    z_mean = trained.encoder(x)[0]
    mse = np.mean((ops.convert_to_numpy(trained.decoder(z_mean)) - x) ** 2, axis=1)
    assert np.allclose(s["mse_at_mean"], mse, rtol=1e-5)
    # many draws: two seeds estimate the same expectation
    a = V.reconstruction_probability(trained, x[:10], n_samples=200, seed=1)
    b = V.reconstruction_probability(trained, x[:10], n_samples=200, seed=2)
    assert np.allclose(a, b, rtol=0.06) and abs(a.mean() / b.mean() - 1) < 0.015
    assert roc_auc_score(y, s["mse_at_mean"]) > 0.9          # it learned what a one looks like
    untrained = V.build_vae(latent_dim=16, seed=0)
    assert roc_auc_score(y, V.vae_scores(untrained, x)["mse_at_mean"]) < \
        roc_auc_score(y, s["mse_at_mean"])


@pytest.mark.parametrize("bad, word", [
    (np.full((3, 784), np.nan, "float32"), "finite"),
    (np.full((3, 784), 2.0, "float32"), "[0, 1]"),
    (np.zeros((3, 28, 28), "float32"), "flat images"),
])
def test_vae_scores_refuse_bad_images(bad, word):
    vae = V.build_vae(latent_dim=2, hidden=(8,), seed=0)
    with pytest.raises(DataError, match=word.replace("[", r"\[").replace("]", r"\]")):
        V.vae_scores(vae, bad)


def test_sampling_is_registered_for_saving():
    assert keras.saving.get_registered_object("course_lib>Sampling") is V.Sampling
