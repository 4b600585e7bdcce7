"""A small DCGAN for 28x28 digits, AnoGAN's latent search and an f-AnoGAN encoder.

Taught in notebook 06 (``06_anogan.ipynb``).

- :func:`build_generator`, :func:`build_discriminator`, :func:`feature_extractor`: the two
  networks (images in [0, 1], shape (28, 28, 1)); the discriminator has an intermediate layer
  named ``"features"`` used by AnoGAN's feature-matching loss.
- :class:`DCGAN`: a ``keras.Model`` whose ``train_step`` trains both networks, as in the Keras
  example "DCGAN overriding train_step" (keras-io, ``examples/generative/dcgan_overriding_train_step.py``).
- :func:`train_dcgan`: train it on normal images only, collecting generated samples as it goes.
- :func:`gan_health`: a rough check that training did not collapse (diversity, discriminator
  accuracy), to *report*, never to assert on.
- :func:`anogan_parts`, :func:`anogan_scores`: AnoGAN (Schlegl et al., IPMI 2017):
  A(x) = (1 - lam) R(x) + lam D(x), minimised over z by gradient descent.
- :func:`train_encoder`, :func:`encoder_scores`: f-AnoGAN's idea (Schlegl et al., Medical Image
  Analysis 2019): an encoder E with G(E(x)) ~ x replaces the search by one forward pass.

Keras and TensorFlow are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from course_lib.checks import DataError, check_number, check_positive_int
from course_lib.config import Profile, get_profile, set_seed
from course_lib.images import add_channel

#: Size of the latent vector z (the MVTec AD paper's AnoGAN used 64; digits need fewer).
LATENT_DIM = 32
#: Name of the discriminator layer whose output AnoGAN's feature-matching loss compares.
FEATURE_LAYER = "features"


def _check_images(x, name: str = "x") -> np.ndarray:
    """Images as float32 (N, 28, 28, 1) in [0, 1]; uint8 (0-255) is rescaled (shape, dtype,
    range and NaN checked by :func:`course_lib.images.add_channel`)."""
    return add_channel(x, name=name)


# --------------------------------------------------------------------------- the networks
def build_generator(latent_dim: int = LATENT_DIM):
    """The DCGAN generator G: z (latent_dim,) -> image (28, 28, 1) in [0, 1].

    Dense to 7x7x64, then two stride-2 transposed convolutions (7 -> 14 -> 28) with batch
    normalisation and LeakyReLU; a sigmoid output keeps pixels in [0, 1] like the data.

    Parameters
    ----------
    latent_dim : int
        Length of z.

    Returns
    -------
    keras.Model

    Taught in notebook 06.
    """
    import keras
    from keras import layers

    latent_dim = check_positive_int("latent_dim", latent_dim)
    z = keras.Input(shape=(latent_dim,), name="z")
    h = layers.Dense(7 * 7 * 64)(z)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Reshape((7, 7, 64))(h)
    h = layers.Conv2DTranspose(64, 4, strides=2, padding="same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2DTranspose(32, 4, strides=2, padding="same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.LeakyReLU(0.2)(h)
    out = layers.Conv2D(1, 5, padding="same", activation="sigmoid", name="image")(h)
    return keras.Model(z, out, name="generator")


def build_discriminator():
    """The DCGAN discriminator D: image (28, 28, 1) -> one logit (real > 0 > fake).

    Two stride-2 convolutions with LeakyReLU; their flattened output is the layer named
    ``"features"`` (:data:`FEATURE_LAYER`, 7x7x64 = 3136 values) that AnoGAN compares between
    an image and its reconstruction; dropout and a dense logit follow.

    Returns
    -------
    keras.Model

    Taught in notebook 06.
    """
    import keras
    from keras import layers

    x = keras.Input(shape=(28, 28, 1), name="image")
    h = layers.Conv2D(32, 4, strides=2, padding="same")(x)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2D(64, 4, strides=2, padding="same")(h)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Flatten(name=FEATURE_LAYER)(h)
    h = layers.Dropout(0.3)(h)
    out = layers.Dense(1, name="logit")(h)
    return keras.Model(x, out, name="discriminator")


def feature_extractor(discriminator):
    """A model image -> the discriminator's ``"features"`` layer (shares its weights).

    Taught in notebook 06 (AnoGAN's feature-matching loss).
    """
    import keras

    try:
        layer = discriminator.get_layer(FEATURE_LAYER)
    except ValueError as exc:
        raise DataError(f"the discriminator has no layer named {FEATURE_LAYER!r}; build it with "
                         f"build_discriminator().") from exc
    return keras.Model(discriminator.input, layer.output, name="discriminator_features")


def _dcgan_class():
    """Define :class:`DCGAN` on first use (it subclasses ``keras.Model``)."""
    import keras
    import tensorflow as tf

    class DCGAN(keras.Model):
        """Generator and discriminator trained together by an overridden ``train_step``.

        As in the Keras example "DCGAN overriding train_step": each batch of real images
        first updates D (real images labelled 1, generated ones 0, with a little label noise),
        then G (through D, with the labels flipped: G wants D to say "real").  ``fit`` reports
        ``d_loss``, ``g_loss`` and ``d_acc`` (D's accuracy on the batch, real and fake).

        Taught in notebook 06.
        """

        def __init__(self, generator, discriminator, latent_dim: int = LATENT_DIM,
                     seed: int = 0, **kwargs):
            super().__init__(**kwargs)
            self.generator = generator
            self.discriminator = discriminator
            self.latent_dim = check_positive_int("latent_dim", latent_dim)
            self.seed_generator = keras.random.SeedGenerator(int(seed))

        def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
            super().compile(**kwargs)
            # Adam with beta_1 = 0.5, the DCGAN paper's setting (Radford et al., 2016).
            self.d_optimizer = d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
            self.g_optimizer = g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
            self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
            self.d_loss_metric = keras.metrics.Mean(name="d_loss")
            self.g_loss_metric = keras.metrics.Mean(name="g_loss")
            self.d_acc_metric = keras.metrics.Mean(name="d_acc")

        @property
        def metrics(self):
            return [self.d_loss_metric, self.g_loss_metric, self.d_acc_metric]

        def call(self, z, training=False):
            return self.generator(z, training=training)

        def train_step(self, data):
            real = data[0] if isinstance(data, (tuple, list)) else data
            n = tf.shape(real)[0]
            z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
            fake = self.generator(z, training=True)
            images = tf.concat([real, fake], axis=0)
            labels = tf.concat([tf.ones((n, 1)), tf.zeros((n, 1))], axis=0)
            noisy = labels + 0.05 * keras.random.uniform(tf.shape(labels),
                                                         seed=self.seed_generator)
            with tf.GradientTape() as tape:
                logits = self.discriminator(images, training=True)
                d_loss = self.loss_fn(noisy, logits)
            grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
            d_acc = tf.reduce_mean(tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), labels),
                                           tf.float32))

            z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
            with tf.GradientTape() as tape:
                logits = self.discriminator(self.generator(z, training=True), training=True)
                g_loss = self.loss_fn(tf.ones((n, 1)), logits)   # "fool D"
            grads = tape.gradient(g_loss, self.generator.trainable_weights)
            self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

            self.d_loss_metric.update_state(d_loss)
            self.g_loss_metric.update_state(g_loss)
            self.d_acc_metric.update_state(d_acc)
            return {m.name: m.result() for m in self.metrics}

    return DCGAN


def __getattr__(name):
    # ``from course_lib.gan import DCGAN`` works without importing Keras at module import time.
    if name == "DCGAN":
        cls = _dcgan_class()
        globals()["DCGAN"] = cls
        return cls
    raise AttributeError(f"module 'course_lib.gan' has no attribute {name!r}")


# --------------------------------------------------------------------------- training
@dataclass
class GANRun:
    """What :func:`train_dcgan` returns (notebook 06).

    Attributes
    ----------
    gan : DCGAN
        The trained model; ``gan.generator`` and ``gan.discriminator`` are the two networks.
    history : dict
        Per-epoch ``d_loss``, ``g_loss`` and ``d_acc``.
    samples : dict
        ``{epoch: images (n, 28, 28, 1)}`` generated from the same fixed z every few epochs.
    seconds : float
        Training wall time.
    """

    gan: object
    history: dict
    samples: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def generator(self):
        return self.gan.generator

    @property
    def discriminator(self):
        return self.gan.discriminator


def train_dcgan(x_normal, profile: Profile | str | None = None, seed: int = 0,
                latent_dim: int = LATENT_DIM, sample_every: int | None = None,
                n_samples: int = 10) -> GANRun:
    """Train the DCGAN on normal images only, for ``profile.gan_epochs`` epochs.

    Parameters
    ----------
    x_normal : array-like
        Normal images, uint8 (N, 28, 28) or floats in [0, 1], (N, 28, 28[, 1]).
    profile : Profile or str, optional
        Decides ``gan_epochs`` and ``batch_size`` (default: the active profile).
    seed : int
        Seeds weights, batches and the latent noise.
    latent_dim : int
        Length of z.
    sample_every : int, optional
        Generate ``n_samples`` images from one fixed z every this many epochs (and after the
        last one), to watch training; default: about five snapshots.
    n_samples : int
        Images per snapshot.

    Returns
    -------
    GANRun

    Taught in notebook 06.
    """
    import keras

    prof = get_profile(profile)
    x = _check_images(x_normal, "x_normal")
    if len(x) < 2:
        raise DataError(f"need at least 2 normal images to train on, got {len(x)}.")
    epochs = check_positive_int("profile.gan_epochs", prof.gan_epochs)
    n_samples = check_positive_int("n_samples", n_samples)
    every = (max(1, epochs // 5) if sample_every is None
             else check_positive_int("sample_every", sample_every))
    set_seed(seed)
    gan = _dcgan_class()(build_generator(latent_dim), build_discriminator(),
                         latent_dim=latent_dim, seed=seed)
    gan.compile()
    z_fixed = np.random.default_rng(seed).standard_normal((n_samples, latent_dim)).astype(
        np.float32)
    samples = {}

    class _Snapshots(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % every == 0 or epoch + 1 == epochs:
                samples[epoch + 1] = np.asarray(gan.generator(z_fixed, training=False))

    start = time.perf_counter()
    hist = gan.fit(x, epochs=epochs, batch_size=prof.batch_size, shuffle=True,
                   callbacks=[_Snapshots()], verbose=0)
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return GANRun(gan=gan, history=history, samples=samples, seconds=seconds)


def generate(generator, n: int, seed: int = 0, latent_dim: int | None = None) -> np.ndarray:
    """``n`` images G(z) for z drawn from a seeded standard normal. Taught in notebook 06."""
    n = check_positive_int("n", n)
    dim = latent_dim or int(generator.input_shape[-1])
    z = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return np.asarray(generator.predict(z, batch_size=256, verbose=0))


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
        correctly (both near 1: D wins and G gets no useful gradient; both near 0.5: balance);
        ``mean_pixel``: generated vs real mean intensity; ``warnings``: a list of plain-language
        findings (empty when nothing looks wrong); ``ok``: no warnings.

    Taught in notebook 06.
    """
    real = _check_images(x_real, "x_real")
    n = min(check_positive_int("n", n), len(real))
    if n < 2:
        raise DataError("need at least 2 real images to measure diversity.")
    real = real[np.random.default_rng(seed).permutation(len(real))[:n]]
    fake = generate(generator, n, seed=seed + 1)
    diversity = _mean_pairwise_distance(fake) / max(_mean_pairwise_distance(real), 1e-12)
    acc_real = float(np.mean(np.asarray(discriminator.predict(real, verbose=0)) > 0))
    acc_fake = float(np.mean(np.asarray(discriminator.predict(fake, verbose=0)) <= 0))
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
def _check_lam(lam) -> float:
    return check_number("lam (the paper: 0.1)", lam, 0.0, 1.0)


def anogan_parts(generator, discriminator, x, z, lam: float = 0.1) -> dict:
    """AnoGAN's two losses for images ``x`` and latent vectors ``z`` (no search).

    R(x) = mean |x - G(z)| over pixels (residual loss); D(x) = mean |f(x) - f(G(z))| over the
    discriminator's ``"features"`` layer f (feature-matching discrimination loss, as in the
    paper's improved version); score = (1 - lam) R + lam D.

    Parameters
    ----------
    generator, discriminator : keras.Model
    x : array-like, (N, 28, 28[, 1]) images (uint8 or floats in [0, 1])
    z : array-like, (N, latent_dim)
    lam : float in [0, 1]

    Returns
    -------
    dict of ndarrays (N,): ``score``, ``residual``, ``discrimination``; and
    ``reconstructions`` (N, 28, 28, 1).

    Taught in notebook 06.
    """
    x = _check_images(x)
    lam = _check_lam(lam)
    z = np.asarray(z, dtype=np.float32)
    dim = int(generator.input_shape[-1])
    if z.shape != (len(x), dim):
        raise DataError(f"z must have shape (len(x), latent_dim) = {(len(x), dim)}, got "
                         f"{z.shape}.")
    feats = feature_extractor(discriminator)
    g = np.asarray(generator(z, training=False))
    residual = np.abs(x - g).reshape(len(x), -1).mean(axis=1)
    fx = np.asarray(feats(x, training=False))
    fg = np.asarray(feats(g, training=False))
    discrimination = np.abs(fx - fg).reshape(len(x), -1).mean(axis=1)
    return {"score": (1 - lam) * residual + lam * discrimination, "residual": residual,
            "discrimination": discrimination, "reconstructions": g}


def anogan_scores(generator, discriminator, x, steps: int, lam: float = 0.1,
                  learning_rate: float = 0.05, seed: int = 0) -> dict:
    """AnoGAN's anomaly scores: search z* so that G(z*) matches x, score what is left.

    All images are searched at once, as one batch: z (N, latent_dim) starts from a seeded
    standard normal and takes ``steps`` Adam steps on the sum over images of
    (1 - lam) R + lam D (see :func:`anogan_parts`); each image's z only affects its own loss,
    so this is N independent searches run in parallel.  G and D stay frozen.

    Parameters
    ----------
    generator, discriminator : keras.Model
        Trained networks (:func:`train_dcgan`).
    x : array-like
        Images to score, uint8 (N, 28, 28) or floats in [0, 1].
    steps : int
        Gradient steps (the paper: hundreds; ``profile.anogan_steps``).
    lam : float in [0, 1]
        Weight of the discrimination loss (the paper: 0.1).
    learning_rate : float
        Adam's step size on z.
    seed : int
        Seed of the starting z.

    Returns
    -------
    dict
        ``score``, ``residual``, ``discrimination`` (ndarrays (N,), at the final z);
        ``reconstructions`` G(z*) (N, 28, 28, 1); ``z`` (N, latent_dim); ``objective`` the
        mean objective over images before the first step and after each step (steps + 1
        values); ``seconds`` the wall time of the search.

    Taught in notebook 06.
    """
    import keras
    import tensorflow as tf

    x = _check_images(x)
    lam = _check_lam(lam)
    steps = check_positive_int("steps", steps)
    learning_rate = check_number("learning_rate", learning_rate, low=0.0, low_open=True)
    dim = int(generator.input_shape[-1])
    feats = feature_extractor(discriminator)
    z0 = np.random.default_rng(seed).standard_normal((len(x), dim)).astype(np.float32)
    z = tf.Variable(z0)
    x_t = tf.constant(x)
    fx = feats(x_t, training=False)
    opt = keras.optimizers.Adam(learning_rate)

    def per_image(zv):
        g = generator(zv, training=False)
        r = tf.reduce_mean(tf.abs(x_t - g), axis=[1, 2, 3])
        d = tf.reduce_mean(tf.abs(fx - feats(g, training=False)), axis=1)
        return (1 - lam) * r + lam * d

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = per_image(z)
            total = tf.reduce_sum(loss)
        opt.apply_gradients([(tape.gradient(total, z), z)])
        return tf.reduce_mean(loss)   # the objective *before* this step's update

    start = time.perf_counter()
    objective = [float(step()) for _ in range(steps)]
    objective.append(float(tf.reduce_mean(per_image(z))))
    seconds = time.perf_counter() - start
    z_final = z.numpy()
    out = anogan_parts(generator, discriminator, x, z_final, lam=lam)
    out.update(z=z_final, objective=np.asarray(objective), seconds=seconds)
    return out


# --------------------------------------------------------------------------- f-AnoGAN
def build_encoder(latent_dim: int = LATENT_DIM):
    """Encoder E: image (28, 28, 1) -> z (latent_dim,), for f-AnoGAN. Taught in notebook 06."""
    import keras
    from keras import layers

    latent_dim = check_positive_int("latent_dim", latent_dim)
    x = keras.Input(shape=(28, 28, 1), name="image")
    h = layers.Conv2D(32, 4, strides=2, padding="same")(x)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2D(64, 4, strides=2, padding="same")(h)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Flatten()(h)
    z = layers.Dense(latent_dim, name="z")(h)
    return keras.Model(x, z, name="encoder")


def train_encoder(generator, x_normal, profile: Profile | str | None = None, seed: int = 0,
                  epochs: int | None = None):
    """f-AnoGAN's "izi" training: fit E so that G(E(x)) ~ x, with G frozen.

    Only E learns; the loss is the mean squared error between x and G(E(x)) on normal
    images.  (The paper's izi_f variant adds the discriminator-feature loss.)

    Parameters
    ----------
    generator : keras.Model
        The trained generator (not changed).
    x_normal : array-like
        Normal training images.
    profile : Profile or str, optional
        ``batch_size`` and, unless ``epochs`` is given, ``gan_epochs`` epochs.
    seed : int
    epochs : int, optional

    Returns
    -------
    keras.Model
        The encoder E.

    Taught in notebook 06.
    """
    import keras

    prof = get_profile(profile)
    x = _check_images(x_normal, "x_normal")
    epochs = check_positive_int("epochs", prof.gan_epochs if epochs is None else epochs)
    set_seed(seed)
    encoder = build_encoder(int(generator.input_shape[-1]))
    was_trainable = generator.trainable
    generator.trainable = False
    try:
        inp = keras.Input(shape=(28, 28, 1))
        izi = keras.Model(inp, generator(encoder(inp), training=False), name="izi")
        izi.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        izi.fit(x, x, epochs=epochs, batch_size=prof.batch_size, shuffle=True, verbose=0)
    finally:
        generator.trainable = was_trainable
    return encoder


def encoder_scores(generator, discriminator, encoder, x, lam: float = 0.1) -> dict:
    """AnoGAN's score with z = E(x) from one forward pass instead of a search.

    Returns :func:`anogan_parts` at z = E(x), plus ``z`` and ``seconds``.  Taught in notebook 06.
    """
    x = _check_images(x)
    start = time.perf_counter()
    z = np.asarray(encoder(x, training=False))
    out = anogan_parts(generator, discriminator, x, z, lam=lam)
    out.update(z=z, seconds=time.perf_counter() - start)
    return out
