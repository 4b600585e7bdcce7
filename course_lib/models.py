"""The course's autoencoders, built with the Keras 3 functional API.

Each builder returns ``(autoencoder, encoder, decoder)``: three ``keras.Model`` objects that
share layers, so after training the autoencoder you can encode and decode separately.

- :func:`build_dense_autoencoder` (notebook 01); :func:`build_conv_autoencoder` and
  :func:`build_transpose_autoencoder` (notebook 02);
- :func:`build_one_class_autoencoder` (notebook 03), :func:`build_tabular_autoencoder`
  (notebook 04), :func:`build_mvtec_autoencoder` (notebook 05);
- :func:`build_conv1d_autoencoder` with :func:`conv1d_encoder` and :func:`conv1d_decoder`
  (notebook 09: sequences such as heartbeats).

Each builder is defined in the notebook that teaches it (the cell that starts with
``# Saved in course_lib.models as ...``); a test keeps the two copies equal.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

from course_lib.checks import DataError, check_positive_int, check_positive_ints
from course_lib.map_metrics import check_residual
from course_lib.ssim import ssim_loss

#: The one-class autoencoder's hidden layers and code: 784-256-64-32-64-256-784.  Chosen on a
#: held-apart split of the MNIST *training* set (never on a test set): it beat convolutional
#: variants there and trains faster on a CPU (docs/mnist_one_class.md).
ONE_CLASS_HIDDEN = (256, 64)
ONE_CLASS_CODE_SIZE = 32

#: The convolutional autoencoder of notebook 05, in the style of Bergmann et al. (CVPR 2019):
#: three Conv2D + MaxPooling2D stages (64 -> 8 pixels) and a dense code of 100 numbers (the
#: paper's latent size), mirrored by the decoder.
MVTEC_FILTERS = (16, 32, 32)
MVTEC_CODE_SIZE = 100
MVTEC_LEARNING_RATE = 1e-3


def build_dense_autoencoder(input_dim=784, code_size=32, hidden=(), code_activation="relu",
                            loss="binary_crossentropy", learning_rate=3e-3):
    """Dense autoencoder ``input_dim -> [hidden...] -> code_size -> [hidden...] -> input_dim``.

    ReLU hidden layers, a ``code_activation`` code, a sigmoid output (pixels in [0, 1]),
    compiled with ``loss`` and Adam at 3e-3 (at Keras' default 1e-3 this shallow model needs
    many epochs to leave the "average digit" stage).  Returns ``(autoencoder, encoder,
    decoder)``: the model and its two halves, which share their layers.  Taught in notebook 01.
    """
    check_positive_ints("input_dim, code_size and hidden", (input_dim, code_size, *hidden))
    # Encoder: image -> hidden layers (none by default) -> code
    inputs = keras.Input(shape=(input_dim,), name="image")
    h = inputs
    for i, units in enumerate(hidden):
        h = layers.Dense(units, activation="relu", name=f"enc_{i}")(h)
    code = layers.Dense(code_size, activation=code_activation, name="code")(h)
    encoder = keras.Model(inputs, code, name="encoder")
    # Decoder: code -> the hidden sizes in reverse -> one sigmoid unit per pixel
    code_in = keras.Input(shape=(code_size,), name="code_in")
    h = code_in
    for i, units in enumerate(reversed(hidden)):
        h = layers.Dense(units, activation="relu", name=f"dec_{i}")(h)
    outputs = layers.Dense(input_dim, activation="sigmoid", name="reconstruction")(h)
    decoder = keras.Model(code_in, outputs, name="decoder")
    # The autoencoder chains the two halves: x -> code -> reconstruction of x
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="dense_autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    return autoencoder, encoder, decoder


# Filters of notebook 02's CAE: two stages (28 -> 14 -> 7 pixels), mirrored in the decoder.
# (32, 64) has twice the channels in and out of every convolution: four times the computation.
CAE_FILTERS = (16, 32)


def build_conv_autoencoder(input_shape=(28, 28, 1), filters=CAE_FILTERS, code_size=None,
                           loss="binary_crossentropy", learning_rate=3e-3):
    """Convolutional autoencoder (CAE): Conv2D + MaxPooling2D down, UpSampling2D + Conv2D up.

    One encoder stage per entry of ``filters``, mirrored in the decoder; ``code_size`` adds a
    dense code (else the last feature map is the code).  Adam at 3e-3 by default, like the dense
    model.  Returns ``(autoencoder, encoder, decoder)``.  Taught in notebook 02.
    """
    height, width, channels = input_shape
    factor = 2 ** len(filters)                 # each stage halves height and width
    if height % factor or width % factor:
        raise DataError(f"input_shape {input_shape}: height and width must be divisible by "
                        f"2**len(filters) = {factor} so that upsampling undoes the pooling.")
    # Encoder: per stage a 3x3 convolution, then keep the largest value of each 2x2 block
    inputs = keras.Input(shape=input_shape, name="image")
    h = inputs
    for i, f in enumerate(filters):
        h = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"enc_conv_{i}")(h)
        h = layers.MaxPooling2D(2, name=f"enc_pool_{i}")(h)
    map_shape = h.shape[1:]                    # e.g. (7, 7, filters[-1])
    if code_size is not None:                  # optional: a dense code of code_size numbers
        h = layers.Dense(code_size, name="code")(layers.Flatten(name="flatten")(h))
    encoder = keras.Model(inputs, h, name="encoder")
    # Decoder: the mirror image; UpSampling2D repeats each value into a 2x2 block
    code_in = keras.Input(shape=h.shape[1:], name="code_in")
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


def build_transpose_autoencoder(input_shape=(28, 28, 1), filters=CAE_FILTERS, kernel_size=3,
                                learning_rate=3e-3):
    """The CAE's encoder with a decoder of strided ``Conv2DTranspose`` layers.

    Each ``Conv2DTranspose(strides=2)`` doubles height and width and convolves in one learned
    step (TensorFlow's autoencoder tutorial and the keras-io example grow images back this
    way).  Returns ``(autoencoder, encoder, decoder)``.  Taught in notebook 02 (exercise 1).
    """
    _, encoder, _ = build_conv_autoencoder(input_shape, filters)   # the same encoder as the CAE
    code_in = keras.Input(shape=encoder.output.shape[1:], name="code_in")
    h = code_in
    for i, f in enumerate(reversed(filters)):
        h = layers.Conv2DTranspose(f, kernel_size, strides=2, padding="same",
                                   activation="relu", name=f"dec_convT_{i}")(h)
    outputs = layers.Conv2D(input_shape[-1], 3, padding="same", activation="sigmoid",
                            name="reconstruction")(h)
    decoder = keras.Model(code_in, outputs, name="decoder")
    inputs = encoder.input
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="transpose_autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate),
                        loss="binary_crossentropy")
    return autoencoder, encoder, decoder


def build_tabular_autoencoder(input_dim=30, encoding_dim=14, code_size=7, l1=1e-7,
                              output_activation="linear", learning_rate=1e-3):
    """The workshop deck's credit-card autoencoder, with a linear output layer.

    ``input_dim -> Dense(encoding_dim, tanh, L1 activity penalty l1) -> Dense(code_size,
    relu)`` [the code] ``-> Dense(code_size, tanh) -> Dense(input_dim, output_activation)``,
    mean squared error, Adam.  The deck's output layer was ``relu``, which cannot produce the
    negative values of standardised features; ``output_activation="relu"`` rebuilds it.
    Returns ``(autoencoder, encoder, decoder)``.  Taught in notebook 04.
    """
    input_dim = check_positive_int("input_dim", input_dim)   # Keras checks the other sizes
    inputs = keras.Input(shape=(input_dim,), name="features")
    # the deck's L1 activity penalty sits on this 14-unit layer, not on the 7-unit code
    h = layers.Dense(encoding_dim, activation="tanh", name="enc_0",
                     activity_regularizer=regularizers.L1(l1))(inputs)
    code = layers.Dense(code_size, activation="relu", name="code")(h)
    encoder = keras.Model(inputs, code, name="encoder")

    code_in = keras.Input(shape=(code_size,), name="code_in")
    h = layers.Dense(code_size, activation="tanh", name="dec_0")(code_in)
    # "linear" can output any value; the deck's "relu" only values >= 0
    outputs = layers.Dense(input_dim, activation=output_activation, name="reconstruction")(h)
    decoder = keras.Model(code_in, outputs, name="decoder")

    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="tabular_autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return autoencoder, encoder, decoder


def build_one_class_autoencoder():
    """The one-class autoencoder: dense 784-256-64-32-64-256-784, mean squared error, Adam 1e-3.

    ``build_dense_autoencoder`` with two hidden layers on each side (``ONE_CLASS_HIDDEN``)
    and a 32-unit code (``ONE_CLASS_CODE_SIZE``).  Returns ``(autoencoder, encoder,
    decoder)``.  Taught in notebook 03.
    """
    return build_dense_autoencoder(code_size=ONE_CLASS_CODE_SIZE, hidden=ONE_CLASS_HIDDEN,
                                   loss="mse", learning_rate=1e-3)


def build_mvtec_autoencoder(patch_size=64, loss="l2"):
    """The patch autoencoder of notebook 05: ``build_conv_autoencoder`` for square grayscale
    patches of patch_size pixels (a multiple of 8): three Conv2D + MaxPooling2D stages
    (MVTEC_FILTERS), a dense code of MVTEC_CODE_SIZE numbers, trained with squared error
    ("l2") or 1 - SSIM ("ssim")."""
    return build_conv_autoencoder((patch_size, patch_size, 1), filters=MVTEC_FILTERS,
                                  code_size=MVTEC_CODE_SIZE,
                                  loss={"l2": "mse", "ssim": ssim_loss}[check_residual(loss)],
                                  learning_rate=MVTEC_LEARNING_RATE)


#: Whole-image autoencoder for objects (notebook 05), the layers of Bergmann, Löwe, Fauser,
#: Sattlegger and Steger (VISAPP 2019, Table 1): (filters, kernel, stride) of the encoder's
#: convolutions for 128-pixel images; each doubling of the side adds one (32, 4, 2) stage.
OBJECT_ENCODER = ((32, 4, 2), (32, 4, 2), (32, 3, 1), (64, 4, 2), (64, 3, 1), (128, 4, 2),
                  (64, 3, 1), (32, 3, 1))
OBJECT_CODE_SIZE = 100
OBJECT_LEARNING_RATE = 1e-3


def build_object_autoencoder(side=128, channels=1, loss="ssim", code_size=OBJECT_CODE_SIZE,
                             learning_rate=OBJECT_LEARNING_RATE):
    """Bergmann et al.'s autoencoder (VISAPP 2019) for side x side images (64, 128, ...): strided
    convolutions (LeakyReLU 0.2) to 8 x 8 cells, an 8 x 8 convolution to a code of code_size,
    the mirror image up to a sigmoid; He's initialiser (with Glorot's, training sits at the
    average image); 1 - SSIM or squared error, Adam.  Returns (autoencoder, encoder, decoder)."""
    doublings = check_positive_int("side", side, minimum=64).bit_length() - 8  # 64 -1, 128 0
    if side != 2 ** (doublings + 7):
        raise DataError(f"side must be 64, 128, 256 or a larger power of 2, got {side}.")
    stages = [(32, 4, 2)] * doublings + list(OBJECT_ENCODER)[max(-doublings, 0):]

    def act(h):
        return layers.LeakyReLU(0.2)(h)

    def conv(*args, **kwargs):   # He's initialiser: the signal keeps its size through layers
        return layers.Conv2D(*args, kernel_initializer="he_normal", **kwargs)

    def up(*args, **kwargs):
        return layers.Conv2DTranspose(*args, kernel_initializer="he_normal", **kwargs)

    inputs = keras.Input(shape=(side, side, channels), name="image")
    h = inputs
    for filters, kernel, stride in stages:                 # 128 -> 8 x 8 cells
        h = act(conv(filters, kernel, strides=stride, padding="same")(h))
    code = conv(code_size, 8, padding="valid", name="code")(h)   # 1 x 1 x code_size
    encoder = keras.Model(inputs, code, name="encoder")

    code_in = keras.Input(shape=(1, 1, code_size), name="code_in")
    h = act(up(stages[-1][0], 8, padding="valid")(code_in))   # 8 x 8
    ups = [(f, k, s) for (_, k, s), (f, _, _) in zip(stages[:0:-1], stages[-2::-1])]
    for filters, kernel, stride in ups:                    # mirror: 8 x 8 -> side / 2
        h = act(up(filters, kernel, strides=stride, padding="same")(h))
    outputs = up(channels, stages[0][1], strides=stages[0][2], padding="same",
                 activation="sigmoid", name="reconstruction")(h)
    decoder = keras.Model(code_in, outputs, name="decoder")
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="object_autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate),
                        loss={"l2": "mse", "ssim": ssim_loss}[check_residual(loss)])
    return autoencoder, encoder, decoder


#: Notebook 09's Conv1D autoencoder for heartbeats of 140 samples: two strided Conv1D stages
#: (140 -> 70 -> 35 time steps), kernels of 7 samples, and a dense code of 16 numbers.
ECG_FILTERS = (32, 16)
ECG_KERNEL_SIZE = 7
ECG_CODE_SIZE = 16


def conv1d_encoder(length: int = 140, filters: tuple = ECG_FILTERS,
                   kernel_size: int = ECG_KERNEL_SIZE, code_size: int = ECG_CODE_SIZE):
    """Encoder of notebook 09's Conv1D autoencoder: a sequence of ``length`` samples -> a code.

    Each entry of ``filters`` adds a ``Conv1D`` with ``strides=2``: ``filters[i]`` kernels of
    ``kernel_size`` samples slide along the time axis, and every second position is kept, so
    the sequence gets twice shorter (140 -> 70 -> 35).  A ``Dense`` layer turns the last
    feature map into a code of ``code_size`` numbers.  Taught in notebook 09.
    """
    inputs = keras.Input(shape=(length,), name="sequence")
    h = layers.Reshape((length, 1), name="add_channel")(inputs)  # Conv1D wants (steps, channels)
    for i, f in enumerate(filters):
        h = layers.Conv1D(f, kernel_size, strides=2, padding="same", activation="relu",
                          name=f"enc_conv_{i}")(h)
    h = layers.Flatten(name="flatten")(h)
    code = layers.Dense(code_size, name="code")(h)
    return keras.Model(inputs, code, name="encoder")


def conv1d_decoder(length: int = 140, filters: tuple = ECG_FILTERS,
                   kernel_size: int = ECG_KERNEL_SIZE, code_size: int = ECG_CODE_SIZE):
    """Decoder of notebook 09's Conv1D autoencoder: a code -> a sequence of ``length`` samples.

    The encoder in reverse: a ``Dense`` layer and a ``Reshape`` turn the code into a short
    feature map (35 steps of ``filters[-1]`` channels), each ``Conv1DTranspose`` with
    ``strides=2`` doubles its length (35 -> 70 -> 140), and a last ``Conv1D`` with one filter
    and no activation gives one value per time step (z-normalised beats can be negative).
    Taught in notebook 09.
    """
    steps = length // 2 ** len(filters)                  # time steps left after the encoder
    code_in = keras.Input(shape=(code_size,), name="code_in")
    h = layers.Dense(steps * filters[-1], activation="relu", name="dec_dense")(code_in)
    h = layers.Reshape((steps, filters[-1]), name="unflatten")(h)
    for i, f in enumerate(reversed(filters)):
        h = layers.Conv1DTranspose(f, kernel_size, strides=2, padding="same",
                                   activation="relu", name=f"dec_conv_{i}")(h)
    h = layers.Conv1D(1, kernel_size, padding="same", name="one_channel")(h)  # linear output
    outputs = layers.Reshape((length,), name="reconstruction")(h)
    return keras.Model(code_in, outputs, name="decoder")


def build_conv1d_autoencoder(length: int = 140, filters: tuple = ECG_FILTERS,
                             kernel_size: int = ECG_KERNEL_SIZE, code_size: int = ECG_CODE_SIZE,
                             learning_rate: float = 1e-3):
    """Conv1D autoencoder for sequences: strided ``Conv1D`` down, ``Conv1DTranspose`` up.

    :func:`conv1d_encoder` and :func:`conv1d_decoder`, trained with mean squared error and
    Adam.  With the defaults: 140 samples -> 70 x 32 -> 35 x 16 -> a code of 16 numbers ->
    35 x 16 -> 70 x 16 -> 140 x 32 -> 140 samples.  ``length`` must be a multiple of
    ``2 ** len(filters)`` (4 by default).

    Returns
    -------
    (autoencoder, encoder, decoder) : compiled ``keras.Model`` and its two halves.

    Taught in notebook 09.
    """
    length = check_positive_int("length", length)
    filters = check_positive_ints("filters", filters)
    kernel_size = check_positive_int("kernel_size", kernel_size)
    code_size = check_positive_int("code_size", code_size)
    if length % 2 ** len(filters):
        raise DataError(f"length {length}: must be a multiple of 2**len(filters) = "
                        f"{2 ** len(filters)}, so that halving and doubling give it back.")
    encoder = conv1d_encoder(length, filters, kernel_size, code_size)
    decoder = conv1d_decoder(length, filters, kernel_size, code_size)
    inputs = keras.Input(shape=(length,), name="sequence")
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="conv1d_autoencoder")
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return autoencoder, encoder, decoder
