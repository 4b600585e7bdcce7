"""The course's autoencoders, built with the Keras 3 functional API.

Each builder returns ``(autoencoder, encoder, decoder)``: three ``keras.Model`` objects that
share layers, so after training the autoencoder you can encode and decode separately.

- :func:`build_dense_autoencoder` (notebook 01), :func:`build_conv_autoencoder` (notebook 02);
- :func:`build_one_class_autoencoder` (notebook 03), :func:`build_tabular_autoencoder`
  (notebook 04), :func:`build_mvtec_autoencoder` (notebook 05).

Keras is imported inside the builders, so importing this module is cheap.
"""

from __future__ import annotations

from course_lib.checks import DataError, check_number, check_positive_int, check_positive_ints

#: The one-class autoencoder: notebook 01's dense autoencoder made deeper (784-256-64-32-64-256-784),
#: trained with mean squared error.  Chosen on a held-apart split of the MNIST *training* set
#: (never on a test set): it beat the convolutional variants there and trains faster on a CPU.
ONE_CLASS_HIDDEN = (256, 64)
ONE_CLASS_CODE_SIZE = 32
#: The convolutional autoencoder of notebook 05, in the style of Bergmann et al. (CVPR 2019):
#: three Conv2D + MaxPooling2D stages (64 -> 8 pixels) and a dense code of 100 numbers (the
#: paper's latent size), mirrored by the decoder.
MVTEC_FILTERS = (16, 32, 32)
MVTEC_CODE_SIZE = 100
MVTEC_LEARNING_RATE = 2e-3


def build_dense_autoencoder(input_dim: int = 784, code_size: int = 32, hidden: tuple = (),
                            code_activation: str = "relu", loss: str = "binary_crossentropy",
                            learning_rate: float = 3e-3):
    """Dense autoencoder ``input_dim -> [hidden...] -> code_size -> [hidden...] -> input_dim``.

    The seed workshop's model is the default: 784 -> 32 -> 784, ReLU code, sigmoid output
    (pixels in [0, 1]), trained with binary cross-entropy and Adam.  The learning rate is
    three times Adam's usual 1e-3: this shallow model otherwise needs many epochs to leave the
    "average digit" stage, which a workshop cannot wait for.

    Parameters
    ----------
    input_dim : int
        Length of the flattened input (784 for 28x28 images).
    code_size : int
        Units in the bottleneck (the code).
    hidden : tuple of int
        Optional hidden layer sizes between input and code (mirrored in the decoder).
    code_activation : str
        Activation of the code layer; ``"linear"`` gives a PCA-like code (notebook 01 latent plot).

    Returns
    -------
    (autoencoder, encoder, decoder) : compiled ``keras.Model`` and its two halves.

    Taught in notebook 01.
    """
    import keras
    from keras import layers

    input_dim = check_positive_int("input_dim", input_dim)
    code_size = check_positive_int("code_size", code_size)
    hidden = check_positive_ints("hidden", hidden) if hidden else ()

    inputs = keras.Input(shape=(input_dim,), name="image")
    h = inputs
    for i, units in enumerate(hidden):
        h = layers.Dense(units, activation="relu", name=f"enc_{i}")(h)
    code = layers.Dense(code_size, activation=code_activation, name="code")(h)
    encoder = keras.Model(inputs, code, name="encoder")

    code_in = keras.Input(shape=(code_size,), name="code_in")
    h = code_in
    for i, units in enumerate(reversed(hidden)):
        h = layers.Dense(units, activation="relu", name=f"dec_{i}")(h)
    outputs = layers.Dense(input_dim, activation="sigmoid", name="reconstruction")(h)
    decoder = keras.Model(code_in, outputs, name="decoder")

    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="dense_autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    return autoencoder, encoder, decoder


def build_conv_autoencoder(input_shape: tuple = (28, 28, 1), filters: tuple = (32, 64),
                           code_size: int | None = None, loss: str = "binary_crossentropy",
                           learning_rate: float = 2e-3):
    """Convolutional autoencoder (CAE): Conv2D + MaxPooling2D down, UpSampling2D + Conv2D up.

    Each entry of ``filters`` adds one ``Conv2D(3x3) -> MaxPooling2D(2)`` stage to the encoder
    (28 -> 14 -> 7 for two stages) and a mirrored ``UpSampling2D(2) -> Conv2D(3x3)`` stage to
    the decoder, which ends with a 1-channel sigmoid convolution.  With ``code_size`` the feature
    map is flattened into a dense code of that size (a tighter bottleneck, used for anomaly
    detection); without it the code is the last feature map.

    Parameters
    ----------
    input_shape : tuple of int
        (height, width, channels); height and width divisible by ``2 ** len(filters)``.
    filters : tuple of int
        Filters of each encoder stage (mirrored in the decoder).  Cost on a CPU grows quickly:
        ``(32, 64)`` takes about four times as long per epoch as ``(16, 32)``.
    code_size : int, optional
        Units of a dense bottleneck; ``None`` keeps the last feature map as the code.
    loss : str or callable
        Training loss (``"binary_crossentropy"``, ``"mse"``, or e.g. an SSIM loss).
    learning_rate : float
        Adam's learning rate.

    Returns
    -------
    (autoencoder, encoder, decoder) : compiled ``keras.Model`` and its two halves.

    Taught in notebook 02 (and used for anomaly detection from notebook 03 on).
    """
    import keras
    from keras import layers

    filters = check_positive_ints("filters", filters)
    h_in, w_in, channels = check_positive_ints("input_shape", input_shape)
    factor = 2 ** len(filters)
    if h_in % factor or w_in % factor:
        raise DataError(f"input_shape {input_shape}: height and width must be divisible by "
                         f"2**len(filters) = {factor} so that pooling and upsampling match.")
    if code_size is not None:
        code_size = check_positive_int("code_size", code_size)

    inputs = keras.Input(shape=(h_in, w_in, channels), name="image")
    h = inputs
    for i, f in enumerate(filters):
        h = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"enc_conv_{i}")(h)
        h = layers.MaxPooling2D(2, name=f"enc_pool_{i}")(h)
    map_shape = (h_in // factor, w_in // factor, filters[-1])
    if code_size is not None:
        h = layers.Flatten(name="flatten")(h)
        h = layers.Dense(code_size, name="code")(h)
    encoder = keras.Model(inputs, h, name="encoder")

    code_shape = (code_size,) if code_size is not None else map_shape
    code_in = keras.Input(shape=code_shape, name="code_in")
    h = code_in
    if code_size is not None:
        h = layers.Dense(map_shape[0] * map_shape[1] * map_shape[2], activation="relu",
                         name="dec_dense")(h)
        h = layers.Reshape(map_shape, name="unflatten")(h)
    for i, f in enumerate(reversed(filters)):
        h = layers.UpSampling2D(2, name=f"dec_up_{i}")(h)
        h = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"dec_conv_{i}")(h)
    outputs = layers.Conv2D(channels, 3, padding="same", activation="sigmoid",
                            name="reconstruction")(h)
    decoder = keras.Model(code_in, outputs, name="decoder")

    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="conv_autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    return autoencoder, encoder, decoder


def build_tabular_autoencoder(input_dim: int = 30, encoding_dim: int = 14, code_size: int = 7,
                              l1: float = 1e-7, output_activation: str = "linear",
                              learning_rate: float = 1e-3):
    """Dense autoencoder for tabular data: the seed workshop's credit-card fraud model.

    ``input_dim -> Dense(encoding_dim, tanh, L1 activity regulariser l1) -> Dense(code_size,
    relu) [the code] -> Dense(code_size, tanh) -> Dense(input_dim, output_activation)``,
    trained with mean squared error and Adam.  The defaults are the deck's model:
    30 -> 14 -> 7 -> 7 -> 30 with an L1 penalty of 1e-7 on the first layer's activations.

    One change from the deck: its last layer used ``relu``, which can only output values
    >= 0.  The inputs here are *standardised* (zero mean, unit variance per feature), so about
    half of them are negative, and a ReLU output can never reconstruct those: it adds an error
    that does not depend on the input being normal or not.  A ``linear`` output (the default)
    can reach any value; pass ``output_activation="relu"`` to reproduce the deck exactly.

    Parameters
    ----------
    input_dim : int
        Number of input features (30 for Time, V1..V28, Amount).
    encoding_dim : int
        Units of the first (tanh) layer.
    code_size : int
        Units of the code (relu) and of the decoder's hidden (tanh) layer.
    l1 : float
        Strength of the L1 activity regulariser on the first layer (0 switches it off).
    output_activation : str
        Activation of the reconstruction layer (``"linear"``; the deck used ``"relu"``).
    learning_rate : float
        Adam's learning rate.

    Returns
    -------
    (autoencoder, encoder, decoder) : compiled ``keras.Model`` and its two halves.

    Taught in notebook 04.
    """
    import keras
    from keras import layers, regularizers

    input_dim = check_positive_int("input_dim", input_dim)
    encoding_dim = check_positive_int("encoding_dim", encoding_dim)
    code_size = check_positive_int("code_size", code_size)
    l1 = check_number("l1", l1, low=0.0)

    inputs = keras.Input(shape=(input_dim,), name="features")
    h = layers.Dense(encoding_dim, activation="tanh", name="enc_0",
                     activity_regularizer=regularizers.L1(l1) if l1 else None)(inputs)
    code = layers.Dense(code_size, activation="relu", name="code")(h)
    encoder = keras.Model(inputs, code, name="encoder")

    code_in = keras.Input(shape=(code_size,), name="code_in")
    h = layers.Dense(code_size, activation="tanh", name="dec_0")(code_in)
    outputs = layers.Dense(input_dim, activation=output_activation, name="reconstruction")(h)
    decoder = keras.Model(code_in, outputs, name="decoder")

    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="tabular_autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return autoencoder, encoder, decoder


def build_one_class_autoencoder():
    """The autoencoder of one-class MNIST: dense 784-256-64-32-64-256-784, MSE, Adam 1e-3.

    See ``ONE_CLASS_HIDDEN`` and ``ONE_CLASS_CODE_SIZE``.  Returns ``(autoencoder, encoder,
    decoder)``.  Taught in notebook 03.
    """
    return build_dense_autoencoder(code_size=ONE_CLASS_CODE_SIZE, hidden=ONE_CLASS_HIDDEN,
                                   loss="mse", learning_rate=1e-3)


def build_mvtec_autoencoder(image_shape=(64, 64), loss: str = "l2"):
    """Notebook 05's convolutional autoencoder for grayscale images, compiled with ``loss``.

    ``build_conv_autoencoder`` with ``MVTEC_FILTERS`` and a dense code of ``MVTEC_CODE_SIZE``;
    ``loss="l2"``: mean squared error, ``"ssim"``: :func:`course_lib.ssim.ssim_loss`
    (1 - SSIM, 11 x 11 Gaussian window).  Height and width must be multiples of 8.
    Returns ``(autoencoder, encoder, decoder)``.  Taught in notebook 05.
    """
    from course_lib.ssim import ssim_loss

    if loss not in ("l2", "ssim"):
        raise DataError(f"loss must be 'l2' or 'ssim', got {loss!r}.")
    h, w = check_positive_ints("image_shape", image_shape)
    return build_conv_autoencoder((h, w, 1), filters=MVTEC_FILTERS, code_size=MVTEC_CODE_SIZE,
                                  loss="mse" if loss == "l2" else ssim_loss,
                                  learning_rate=MVTEC_LEARNING_RATE)
