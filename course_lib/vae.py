"""Variational autoencoders (Kingma and Welling, ICLR 2014) and their anomaly scores.

Taught in notebook 06 (``06_variational_autoencoder.ipynb``): every public definition here but
:func:`vae_scores` is a cell of that notebook (the cells that
start with ``# Saved in course_lib.vae as ...``); a test keeps the two copies equal.

- :class:`Sampling`: the reparameterisation trick as a layer, z = mean + sigma * epsilon;
- :func:`kl_divergence`: KL(q(z|x) || N(0, I)) of a diagonal Gaussian, per example;
- :func:`build_vae_encoder`, :func:`build_vae_decoder`, :func:`reconstruction_loss` and
  :class:`VAE`, a ``keras.Model`` subclass whose ``train_step`` minimises the negative ELBO
  (reconstruction + beta * KL) and reports both terms; :func:`build_vae` puts them together;
- :func:`build_object_vae`: the same for notebook 05's whole bottle images;
- :func:`reconstruction_probability`: An and Cho's (2015) Monte Carlo score; :func:`vae_scores`
  adds the KL term, the negative ELBO and the squared error at the mean code, in batches.

The trainings on one digit and on the bottle are in ``course_lib.experiments``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from course_lib.checks import DataError, check_positive_int
from course_lib.models import build_object_autoencoder


@keras.saving.register_keras_serializable(package="course_lib")
class Sampling(layers.Layer):
    """z = mean + exp(log_var / 2) * epsilon, epsilon ~ N(0, I): a draw from q(z|x) that
    gradients can pass through (to the mean and the log-variance). Taught in notebook 06."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)   # seeded, new noise each call

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def kl_divergence(z_mean, z_log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) of each example, summed over the latent dimensions:
    -1/2 * sum(1 + log_var - mean^2 - exp(log_var)). Shape (N,). Taught in notebook 06."""
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


#: Hidden layers of the digit VAE's encoder (the decoder mirrors them): those of notebook 03's
#: one-class autoencoder, so that the two models differ only in what makes a VAE a VAE.
VAE_HIDDEN = (256, 64)


def build_vae_encoder(input_dim=784, latent_dim=2, hidden=VAE_HIDDEN, seed=None):
    """x -> ReLU layers -> two heads, the mean and the log-variance of q(z|x), and a draw z.
    Returns a keras.Model x -> [z_mean, z_log_var, z]. Taught in notebook 06."""
    x = keras.Input(shape=(input_dim,), name="image")
    h = x
    for i, units in enumerate(hidden):
        h = layers.Dense(units, activation="relu", name=f"enc_{i}")(h)
    z_mean = layers.Dense(latent_dim, name="z_mean")(h)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(h)   # log sigma^2: any real number
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    return keras.Model(x, [z_mean, z_log_var, z], name="encoder")


def build_vae_decoder(input_dim=784, latent_dim=2, hidden=VAE_HIDDEN):
    """z -> the hidden layers in reverse -> one sigmoid per pixel: the probabilities of a
    Bernoulli p(x|z) (the usual model of MNIST's near-binary pixels). Taught in notebook 06."""
    z = keras.Input(shape=(latent_dim,), name="z")
    h = z
    for i, units in enumerate(reversed(hidden)):
        h = layers.Dense(units, activation="relu", name=f"dec_{i}")(h)
    x_hat = layers.Dense(input_dim, activation="sigmoid", name="reconstruction")(h)
    return keras.Model(z, x_hat, name="decoder")


def reconstruction_loss(x, x_hat):
    """-log p(x|z) under the Bernoulli decoder: the binary cross-entropy summed over all
    pixels of each image (not averaged: the ELBO adds log-probabilities). Shape (N,).
    Taught in notebook 06."""
    bce = ops.binary_crossentropy(x, x_hat)            # one number per pixel
    return ops.sum(bce, axis=tuple(range(1, len(bce.shape))))


class VAE(keras.Model):
    """Encoder + decoder trained on the negative ELBO, reconstruction + beta * KL, with both
    terms reported every epoch. fit(x) takes images only. Taught in notebook 06."""

    def __init__(self, encoder, decoder, beta=1.0, reconstruction=reconstruction_loss, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.beta = encoder, decoder, float(beta)
        self.reconstruction = reconstruction          # -log p(x|z) per image
        self.trackers = [keras.metrics.Mean(name=n) for n in ("loss", "reconstruction", "kl")]

    @property
    def metrics(self):          # listed here, so that fit resets them every epoch
        return self.trackers

    def call(self, x, training=False):   # a reconstruction: through a drawn z when training,
        z_mean, _, z = self.encoder(x, training=training)           # else through the mean
        return self.decoder(z if training else z_mean, training=training)

    def negative_elbo(self, x, training=False):   # (loss, reconstruction, kl), batch means
        z_mean, z_log_var, z = self.encoder(x, training=training)
        reconstruction = ops.mean(self.reconstruction(x, self.decoder(z, training=training)))
        kl = ops.mean(kl_divergence(z_mean, z_log_var))
        return reconstruction + self.beta * kl, reconstruction, kl

    def train_step(self, x):    # a batch of images: the loss's gradients, one Adam step
        with tf.GradientTape() as tape:
            loss, reconstruction, kl = self.negative_elbo(x, training=True)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self.track(loss, reconstruction, kl)

    def test_step(self, x):     # validation images: the same three numbers, no update
        return self.track(*self.negative_elbo(x))

    def track(self, *values):
        for tracker, value in zip(self.trackers, values):
            tracker.update_state(value)
        return {m.name: m.result() for m in self.trackers}


def build_vae(input_dim=784, latent_dim=2, hidden=VAE_HIDDEN, beta=1.0, learning_rate=1e-3,
              seed=None):
    """A VAE with the dense encoder and decoder above, compiled with Adam (the loss is the
    VAE's own). Taught in notebook 06."""
    encoder = build_vae_encoder(input_dim, latent_dim, hidden, seed=seed)
    decoder = build_vae_decoder(input_dim, latent_dim, hidden)
    vae = VAE(encoder, decoder, beta=beta, name="vae")
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return vae


#: The bottle VAE's decoder is a Gaussian p(x|z) = N(x_hat, sigma^2) per pixel, with this sigma.
OBJECT_VAE_SIGMA = 0.05


def gaussian_reconstruction_loss(x, x_hat, sigma=OBJECT_VAE_SIGMA):
    """-log p(x|z) of a Gaussian decoder N(x_hat, sigma^2), up to a constant: the squared error
    summed over the pixels of each image, divided by 2 sigma^2. Shape (N,).
    Taught in notebook 06."""
    squared = ops.square(x - x_hat)
    return ops.sum(squared, axis=tuple(range(1, len(squared.shape)))) / (2.0 * sigma ** 2)


def build_object_vae(side=128, channels=1, latent_dim=100, beta=1.0, learning_rate=1e-3,
                     seed=None):
    """A VAE with build_object_autoencoder's layers (Bergmann et al., VISAPP 2019): the
    encoder's 8 x 8 cells feed two Dense heads (mean and log-variance, latent_dim numbers
    each); the decoder is the autoencoder's, fed z. Compiled (Adam). Taught in notebook 06."""
    _, encoder, decoder = build_object_autoencoder(side, channels, "l2", code_size=latent_dim)
    cells = layers.Flatten(name="cells")(encoder.get_layer("code").input)   # the 8 x 8 grid
    z_mean = layers.Dense(latent_dim, name="z_mean")(cells)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(cells)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    vae_encoder = keras.Model(encoder.input, [z_mean, z_log_var, z], name="encoder")
    z_in = keras.Input(shape=(latent_dim,), name="z")
    x_hat = decoder(layers.Reshape((1, 1, latent_dim))(z_in))   # the decoder takes 1 x 1 codes
    vae = VAE(vae_encoder, keras.Model(z_in, x_hat, name="decoder"), beta=beta,
              reconstruction=gaussian_reconstruction_loss, name="object_vae")
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return vae


def reconstruction_probability(vae, x, n_samples=10, seed=0):
    """An and Cho's (2015) reconstruction probability as an anomaly score: minus the mean
    log-likelihood of x under the decoder, -1/L sum_l log p(x|z_l), over L = n_samples draws
    z_l ~ q(z|x). Returns (N,) NumPy, higher = more anomalous. Taught in notebook 06."""
    z_mean, z_log_var, _ = vae.encoder(x, training=False)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(n_samples):
        epsilon = rng.standard_normal(tuple(z_mean.shape)).astype("float32")
        z = z_mean + ops.exp(0.5 * z_log_var) * epsilon
        total = total + vae.reconstruction(x, vae.decoder(z, training=False))
    return ops.convert_to_numpy(total) / n_samples


#: The scores of :func:`vae_scores`, in the order of notebook 06's table.
VAE_SCORES = ("negative_elbo", "reconstruction_probability", "kl",
              "reconstruction_probability_excess", "mse_at_mean")


def vae_scores(vae, x, n_samples=10, seed=0, batch_size=1000) -> dict:
    """Every anomaly score the VAE lesson compares, for images ``x`` (N, 784) in [0, 1], higher
    = more anomalous: ``reconstruction_probability`` (:func:`reconstruction_probability`),
    ``kl`` (:func:`kl_divergence` at q(z|x)), ``negative_elbo`` (their sum, a Monte Carlo
    estimate), ``reconstruction_probability_excess`` (the reconstruction probability minus
    its floor, ``vae.reconstruction(x, x)``: what a perfect reconstruction would still cost) and
    ``mse_at_mean`` (per-pixel squared error of decoder(mean), the VAE as an autoencoder).
    """
    x = np.asarray(x, dtype="float32")
    if x.ndim != 2 or not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DataError(f"x must be finite flat images (N, pixels) in [0, 1], got shape "
                        f"{x.shape}; use course_lib.images.flatten.")
    n_samples = check_positive_int("n_samples", n_samples)
    parts = {k: [] for k in VAE_SCORES}
    for b, start in enumerate(range(0, len(x), batch_size)):
        xb = x[start:start + batch_size]
        z_mean, z_log_var, _ = vae.encoder(xb, training=False)
        rp = reconstruction_probability(vae, xb, n_samples, seed=seed + b)
        kl = ops.convert_to_numpy(kl_divergence(z_mean, z_log_var))
        x_mean = ops.convert_to_numpy(vae.decoder(z_mean, training=False))
        parts["reconstruction_probability"].append(rp)
        parts["kl"].append(kl)
        parts["negative_elbo"].append(rp + kl)
        floor = ops.convert_to_numpy(vae.reconstruction(xb, xb))
        parts["reconstruction_probability_excess"].append(rp - floor)
        parts["mse_at_mean"].append(np.mean((x_mean - xb) ** 2, axis=1))
    return {k: np.concatenate(v) for k, v in parts.items()}
