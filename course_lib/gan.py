"""A small DCGAN for 28x28 digits, AnoGAN's latent search and an f-AnoGAN encoder.

Taught in notebook 07 (``07_anogan.ipynb``): every public definition here but
:func:`gan_health` is defined there, in a cell that starts with
``# Saved in course_lib.gan as ...``; a test keeps the two copies equal.

- :data:`LATENT_DIM`, :func:`build_generator`; :data:`FEATURE_LAYER`,
  :func:`build_discriminator`: the two networks (images in [0, 1], shape (28, 28, 1)); the
  discriminator has an intermediate layer named ``"features"`` used by AnoGAN's loss.
- :data:`REAL_TARGET`, :class:`DCGAN`: a ``keras.Model`` whose ``train_step`` trains both
  networks, as in the Keras example "DCGAN overriding train_step" (keras-io,
  ``examples/generative/dcgan_overriding_train_step.py``), with one-sided label smoothing (D's
  target for real images is 0.9; Salimans et al., 2016); :class:`GANMonitor`,
  :func:`train_dcgan`: train it on normal images only, keeping generated samples as it goes.
- :func:`gan_health`: a rough check that training did not collapse (diversity, discriminator
  accuracy), to *report*, never to assert on (a helper the notebook calls, not a lesson).
- :func:`feature_extractor`, :func:`anogan_loss`, :func:`anogan_search`: AnoGAN (Schlegl et
  al., IPMI 2017): A(x) = (1 - lam) R(x) + lam D(x), minimised over z by gradient descent with
  G and D frozen.
- :func:`build_encoder`, :func:`train_encoder`, :data:`FANOGAN_KAPPA`, :func:`encoder_scores`:
  f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): an encoder E with G(E(x)) ~ x
  replaces the search by one forward pass, and the paper's score
  A(x) = mean (x - G(E(x)))^2 + kappa * mean (f(x) - f(G(E(x))))^2, kappa = 1.

Like the notebook cells they are saved from, this module imports Keras and TensorFlow at the
top (the ``train_step`` and the latent search use ``tf.GradientTape``).
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from tqdm.auto import tqdm

from course_lib.checks import DataError, check_number, check_positive_int
from course_lib.config import get_profile, set_seed
from course_lib.images import add_channel
from course_lib.training import epoch_progress

# Length of the latent vector z (the MVTec AD paper's AnoGAN used 64; digits need fewer)
LATENT_DIM = 32


def build_generator(latent_dim=LATENT_DIM):
    """The generator G: z (latent_dim,) -> image (28, 28, 1) in [0, 1]. Taught in notebook 07."""
    z = keras.Input(shape=(latent_dim,), name="z")
    h = layers.Dense(7 * 7 * 64)(z)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Reshape((7, 7, 64))(h)
    # two stride-2 transposed convolutions grow the image: 7 -> 14 -> 28 pixels
    h = layers.Conv2DTranspose(64, 4, strides=2, padding="same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2DTranspose(32, 4, strides=2, padding="same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.LeakyReLU(0.2)(h)
    # a sigmoid keeps the pixels in [0, 1], like the data
    image = layers.Conv2D(1, 5, padding="same", activation="sigmoid", name="image")(h)
    return keras.Model(z, image, name="generator")


# Name of the discriminator layer whose output AnoGAN's feature-matching loss compares
FEATURE_LAYER = "features"


def build_discriminator():
    """The discriminator D: image (28, 28, 1) -> one logit (real > 0 > generated).
    Taught in notebook 07."""
    image = keras.Input(shape=(28, 28, 1), name="image")
    h = layers.Conv2D(32, 4, strides=2, padding="same")(image)   # 28 -> 14
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2D(64, 4, strides=2, padding="same")(h)       # 14 -> 7
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Flatten(name=FEATURE_LAYER)(h)     # 7 x 7 x 64 = 3136 features, used by AnoGAN
    h = layers.Dropout(0.3)(h)
    logit = layers.Dense(1, name="logit")(h)
    return keras.Model(image, logit, name="discriminator")


# D's target for real images: one-sided label smoothing (Salimans et al., 2016), 0.9 instead
# of 1; generated images keep the target 0, and G's loss keeps the target 1
REAL_TARGET = 0.9


class DCGAN(keras.Model):
    """Trains G and D with ``fit``: each batch updates D, then G. Taught in notebook 07."""
    def __init__(self, generator, discriminator, latent_dim=LATENT_DIM, seed=0):
        super().__init__(name="dcgan")
        self.generator, self.discriminator, self.latent_dim = generator, discriminator, latent_dim
        self.seed_generator = keras.random.SeedGenerator(seed)   # seeded z

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn
        self.trackers = [keras.metrics.Mean(name=name) for name in ("d_loss", "g_loss", "d_acc")]

    @property
    def metrics(self):   # listed here, so that fit resets them at the start of each epoch
        return self.trackers

    def train_step(self, real):   # fit(x) passes a batch of real images, no labels
        n = ops.shape(real)[0]
        # 1. D learns to say "real" for real images and 0 for generated ones
        z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
        images = ops.concatenate([real, self.generator(z, training=True)], axis=0)
        labels = ops.concatenate([ops.ones((n, 1)), ops.zeros((n, 1))], axis=0)   # 1 = real
        targets = labels * REAL_TARGET      # one-sided smoothing: real 0.9, generated still 0
        with tf.GradientTape() as tape:
            logits = self.discriminator(images, training=True)
            d_loss = self.loss_fn(targets, logits)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        d_acc = ops.mean(ops.cast(ops.equal(logits > 0, labels > 0.5), "float32"))
        # 2. G learns to make D say "real" (flipped labels); only G's weights are updated
        z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            logits = self.discriminator(self.generator(z, training=True), training=True)
            g_loss = self.loss_fn(ops.ones((n, 1)), logits)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        for tracker, value in zip(self.trackers, (d_loss, g_loss, d_acc)):
            tracker.update_state(value)
        return {m.name: m.result() for m in self.metrics}


class GANMonitor(keras.callbacks.Callback):
    """Keeps G(z) for the same fixed z every ``every`` epochs and after the last one.
    Taught in notebook 07."""

    def __init__(self, z_fixed, every):
        super().__init__()
        self.z_fixed, self.every, self.samples = z_fixed, every, {}   # samples: {epoch: images}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.params["epochs"]:
            images = self.model.generator(self.z_fixed, training=False)
            self.samples[epoch + 1] = ops.convert_to_numpy(images)


def train_dcgan(x_normal, profile=None, seed=0, latent_dim=LATENT_DIM, n_samples=10,
                progress=False):
    """Train a fresh, seeded DCGAN on normal images only, for ``profile.gan_epochs`` epochs.
    Returns ``(gan, history, samples)``. Taught in notebook 07."""
    prof = get_profile(profile)
    x = add_channel(x_normal, "x_normal")           # floats in [0, 1], shape (N, 28, 28, 1)
    epochs = check_positive_int("profile.gan_epochs", prof.gan_epochs)
    set_seed(seed)                                  # the same weights and batches every run
    gan = DCGAN(build_generator(latent_dim), build_discriminator(), latent_dim, seed=seed)
    gan.compile(   # Adam with beta_1 = 0.5: the DCGAN paper's setting (Radford et al., 2016)
        d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
        g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
        loss_fn=keras.losses.BinaryCrossentropy(from_logits=True))
    z_fixed = np.random.default_rng(seed).standard_normal((n_samples, latent_dim))
    monitor = GANMonitor(z_fixed.astype("float32"), every=max(1, epochs // 5))
    callbacks = [monitor] + ([epoch_progress(epochs, "DCGAN")] if progress else [])
    history = gan.fit(x, epochs=epochs, batch_size=prof.batch_size, shuffle=True,
                      callbacks=callbacks, verbose=0)
    return gan, history.history, monitor.samples


# --------------------------------------------------------------------------- GAN health


def _generate(generator, n: int, seed: int = 0) -> np.ndarray:
    """``n`` images G(z) for z drawn from a seeded standard normal."""
    z = np.random.default_rng(seed).standard_normal((n, generator.input_shape[-1]))
    return np.asarray(generator.predict(z.astype(np.float32), batch_size=256, verbose=0))


def _mean_pairwise_distance(x: np.ndarray) -> float:
    flat = x.reshape(len(x), -1).astype(np.float64)
    sq = np.sum(flat ** 2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0.0)
    n = len(flat)
    return float(np.sqrt(d2)[np.triu_indices(n, 1)].mean())


def gan_health(generator, discriminator, x_real, n: int = 200, seed: int = 0) -> dict:
    """Rough signs that GAN training went wrong: to report, never to assert on.

    Parameters
    ----------
    generator, discriminator : keras.Model
    x_real : array-like
        Real normal images to compare with (uint8 or floats in [0, 1]).
    n : int
        How many real and generated images to use.
    seed : int

    Returns
    -------
    dict
        ``diversity``: mean pairwise pixel distance of generated images divided by that of
        real ones (near 1: as varied as the data; near 0: mode collapse);
        ``d_acc_real`` / ``d_acc_fake``: share of real / generated images D classifies
        correctly (both near 1: D wins and G gets no useful gradient; both near 0.5: balance),
        "real" meaning a probability above ``REAL_TARGET / 2``, halfway between D's two
        targets (a D that cannot tell the images apart outputs about that for all of them);
        ``mean_pixel_fake`` / ``mean_pixel_real``: generated / real mean intensity;
        ``warnings``: a list of plain-language findings (empty when nothing looks wrong);
        ``ok``: no warnings.

    Used in notebook 07.
    """
    real = add_channel(x_real, "x_real")
    n = min(check_positive_int("n", n), len(real))
    if n < 2:
        raise DataError("need at least 2 real images to measure diversity.")
    real = real[np.random.default_rng(seed).permutation(len(real))[:n]]
    fake = _generate(generator, n, seed=seed + 1)
    diversity = _mean_pairwise_distance(fake) / max(_mean_pairwise_distance(real), 1e-12)
    midpoint = np.log(REAL_TARGET / 2 / (1 - REAL_TARGET / 2))   # logit halfway between targets
    acc_real = float(np.mean(np.asarray(discriminator.predict(real, verbose=0)) > midpoint))
    acc_fake = float(np.mean(np.asarray(discriminator.predict(fake, verbose=0)) <= midpoint))
    warnings = []
    if not np.all(np.isfinite(fake)):
        warnings.append("generated images contain NaN: training diverged.")
    if diversity < 0.5:
        warnings.append(f"generated images are much less varied than real ones (diversity "
                        f"{diversity:.2f}): possible mode collapse.")
    if acc_real > 0.98 and acc_fake > 0.98:
        warnings.append("the discriminator tells every real and generated image apart: "
                        "the generator may have stopped learning.")
    if abs(float(fake.mean()) - float(real.mean())) > 0.1:
        warnings.append(f"generated mean intensity {fake.mean():.2f} is far from the real "
                        f"{real.mean():.2f}: blank or saturated samples.")
    return {"diversity": round(float(diversity), 3), "d_acc_real": round(acc_real, 3),
            "d_acc_fake": round(acc_fake, 3), "mean_pixel_fake": round(float(fake.mean()), 3),
            "mean_pixel_real": round(float(real.mean()), 3), "warnings": warnings,
            "ok": not warnings}


# --------------------------------------------------------------------------- AnoGAN


def feature_extractor(discriminator):
    """A model image -> D's ``"features"`` layer (it shares D's weights). Taught in notebook 07."""
    features = discriminator.get_layer(FEATURE_LAYER).output
    return keras.Model(discriminator.input, features, name="discriminator_features")


def anogan_loss(generator, features, x, z, lam=0.1):
    """AnoGAN's loss per image, (1 - lam) R + lam D, and its two parts R and D.
    Taught in notebook 07."""
    g = generator(z, training=False)                                    # G(z), (N, 28, 28, 1)
    # residual loss R: mean |x - G(z)| over the pixels
    residual = ops.mean(ops.abs(x - g), axis=(1, 2, 3))
    # discrimination loss D (feature matching): mean |f(x) - f(G(z))| over D's features f
    fx, fg = features(x, training=False), features(g, training=False)
    discrimination = ops.mean(ops.abs(fx - fg), axis=1)
    return (1 - lam) * residual + lam * discrimination, residual, discrimination


def anogan_search(generator, discriminator, x, steps, lam=0.1, learning_rate=0.05, seed=0,
                  progress=False):
    """AnoGAN's latent search: Adam steps on z only (G and D frozen), then the loss at the
    final z is the anomaly score. Taught in notebook 07."""
    x = add_channel(x)                                # floats in [0, 1], shape (N, 28, 28, 1)
    steps, lam = check_positive_int("steps", steps), check_number("lam", lam, 0.0, 1.0)
    features = feature_extractor(discriminator)
    z0 = np.random.default_rng(seed).standard_normal((len(x), generator.input_shape[-1]))
    z = tf.Variable(z0.astype("float32"))            # one z per image, all searched side by side
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function                                      # run as a graph: faster than step by step
    def step():
        with tf.GradientTape() as tape:
            loss = anogan_loss(generator, features, x, z, lam)[0]
            total = ops.sum(loss)                     # each z changes only its own image's loss
        optimizer.apply_gradients([(tape.gradient(total, z), z)])   # z moves; G and D do not
        return ops.mean(loss)

    objective, step_seconds = [], []
    for _ in tqdm(range(steps), desc="latent search", disable=not progress):
        start = time.perf_counter()
        objective.append(float(step()))               # the mean loss before this step
        step_seconds.append(time.perf_counter() - start)   # step 1 also traces the graph
    score, residual, discrimination = (
        ops.convert_to_numpy(v) for v in anogan_loss(generator, features, x, z, lam))
    objective.append(float(score.mean()))             # ... and after the last step
    return {"score": score, "residual": residual, "discrimination": discrimination,
            "reconstructions": ops.convert_to_numpy(generator(z, training=False)),
            "z": z.numpy(), "objective": np.array(objective),
            "step_seconds": np.array(step_seconds)}


# --------------------------------------------------------------------------- f-AnoGAN


def build_encoder(latent_dim=LATENT_DIM):
    """The encoder E: image (28, 28, 1) -> z (latent_dim,), shaped like D. Taught in notebook 07."""
    image = keras.Input(shape=(28, 28, 1), name="image")
    h = layers.Conv2D(32, 4, strides=2, padding="same")(image)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2D(64, 4, strides=2, padding="same")(h)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Flatten()(h)
    z = layers.Dense(latent_dim, name="z")(h)
    return keras.Model(image, z, name="encoder")


def train_encoder(generator, x_normal, profile=None, seed=0, epochs=None, progress=False):
    """f-AnoGAN's "izi" training: fit E so that G(E(x)) ~ x on normal images, with G frozen.
    Returns E. Taught in notebook 07."""
    prof = get_profile(profile)
    x = add_channel(x_normal, "x_normal")
    epochs = check_positive_int("epochs", prof.gan_epochs if epochs is None else epochs)
    set_seed(seed)
    encoder = build_encoder(generator.input_shape[-1])
    generator.trainable = False                       # only E learns
    image = keras.Input(shape=(28, 28, 1))
    izi = keras.Model(image, generator(encoder(image), training=False), name="izi")  # x -> z -> x
    izi.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    callbacks = [epoch_progress(epochs, "encoder")] if progress else []
    izi.fit(x, x, epochs=epochs, batch_size=prof.batch_size, shuffle=True, callbacks=callbacks,
            verbose=0)
    generator.trainable = True                        # unfreeze G again
    return encoder


# Weight of the feature residual in f-AnoGAN's score and izi_f loss (the paper's kappa = 1)
FANOGAN_KAPPA = 1.0


def encoder_scores(generator, discriminator, encoder, x, kappa=FANOGAN_KAPPA):
    """f-AnoGAN's score at z = E(x), one forward pass instead of a search (Schlegl et al.,
    2019): A(x) = A_R(x) + kappa * A_D(x), with A_R the mean squared pixel residual
    (x - G(E(x)))^2 and A_D the mean squared residual of D's features, (f(x) - f(G(E(x))))^2.
    Taught in notebook 07."""
    x = add_channel(x)
    kappa = check_number("kappa", kappa, 0.0)
    z = encoder(x, training=False)
    g = generator(z, training=False)                                     # G(E(x))
    features = feature_extractor(discriminator)
    residual = ops.mean((x - g) ** 2, axis=(1, 2, 3))                   # A_R, over 784 pixels
    fx, fg = features(x, training=False), features(g, training=False)
    discrimination = ops.mean((fx - fg) ** 2, axis=1)                  # A_D, over 3,136 features
    out = {"score": residual + kappa * discrimination, "residual": residual,
           "discrimination": discrimination, "reconstructions": g, "z": z}
    return {k: ops.convert_to_numpy(v) for k, v in out.items()}
