import numpy as np
import pytest

from course_lib.config import set_seed
from course_lib.data.mnist import load_mnist
from course_lib.images import add_channel, flatten
from course_lib.metrics import reconstruction_error
from course_lib.models import (CAE_FILTERS, build_conv_autoencoder, build_dense_autoencoder,
                               build_transpose_autoencoder)


@pytest.fixture(scope="module")
def digits():
    d = load_mnist(source="offline", profile="fast", n_train=1000, n_test=300, verbose=False)
    return d


def test_dense_autoencoder_shapes_and_parameters():
    ae, enc, dec = build_dense_autoencoder(code_size=32)
    assert ae.input_shape == (None, 784) and ae.output_shape == (None, 784)
    assert enc.output_shape == (None, 32) and dec.output_shape == (None, 784)
    assert ae.count_params() == (784 * 32 + 32) + (32 * 784 + 784)  # the seed's 784-32-784
    ae2, enc2, _ = build_dense_autoencoder(code_size=2, hidden=(64,), code_activation="linear")
    assert enc2.output_shape == (None, 2)
    assert [layer.name for layer in enc2.layers][1:] == ["enc_0", "code"]


def test_conv_autoencoder_shapes():
    ae, enc, dec = build_conv_autoencoder(filters=(8, 16))
    assert enc.output_shape == (None, 7, 7, 16)
    assert ae.output_shape == (None, 28, 28, 1)
    names = [type(layer).__name__ for layer in enc.layers]
    assert names.count("MaxPooling2D") == 2 and "UpSampling2D" in [type(l).__name__ for l in dec.layers]
    _, enc2, _ = build_conv_autoencoder(filters=(8,), code_size=10)
    assert enc2.output_shape == (None, 10)


def test_conv_autoencoder_defaults_are_notebook_02s_model():
    ae, enc, _ = build_conv_autoencoder()
    assert CAE_FILTERS == (16, 32)
    assert [layer.filters for layer in enc.layers if hasattr(layer, "filters")] == [16, 32]
    # the same learning rate as the dense autoencoder, so that notebook 02 compares like with like
    dense, _, _ = build_dense_autoencoder()
    assert float(ae.optimizer.learning_rate) == pytest.approx(float(dense.optimizer.learning_rate))


def test_transpose_autoencoder_grows_the_image_back_with_strided_conv2d_transpose():
    ae, enc, dec = build_transpose_autoencoder()
    assert ae.input_shape == (None, 28, 28, 1) and ae.output_shape == (None, 28, 28, 1)
    assert enc.output_shape == (None, 7, 7, CAE_FILTERS[-1])  # the CAE's encoder
    kinds = [type(layer).__name__ for layer in dec.layers]
    assert kinds.count("Conv2DTranspose") == len(CAE_FILTERS) and "UpSampling2D" not in kinds
    assert all(tuple(layer.strides) == (2, 2) for layer in dec.layers
               if type(layer).__name__ == "Conv2DTranspose")
    assert dec.layers[-1].activation.__name__ == "sigmoid"
    # a transposed convolution has as many weights as a convolution of the same size
    cae, _, _ = build_conv_autoencoder()
    assert ae.count_params() == cae.count_params()
    ae4, _, dec4 = build_transpose_autoencoder(kernel_size=4, filters=(8,), input_shape=(8, 8, 3))
    assert ae4.output_shape == (None, 8, 8, 3)
    assert dec4.get_layer("dec_convT_0").kernel_size == (4, 4)


@pytest.mark.parametrize("kwargs", [dict(code_size=0), dict(hidden=(16, -1)), dict(input_dim=2.5)])
def test_dense_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError, match="whole number"):
        build_dense_autoencoder(**kwargs)


def test_conv_rejects_shapes_that_pooling_cannot_undo():
    with pytest.raises(ValueError, match="divisible"):
        build_conv_autoencoder(filters=(8, 8, 8))  # 28 is not divisible by 8


def test_outputs_are_valid_pixels(digits):
    ae, _, _ = build_dense_autoencoder()
    out = ae.predict(flatten(digits.x_test[:16]), verbose=0)
    assert out.shape == (16, 784) and out.min() >= 0.0 and out.max() <= 1.0


# The dense network learns slowest: 1000 images x 4 epochs; the convolutional ones, slower per
# step, beat both bars by far after 512 x 3 (seeds 0-2: at most 0.21 of the untrained error
# and 0.71 of the mean image's).
@pytest.mark.parametrize("kind, n_train, epochs", [("dense", 1000, 4), ("conv", 512, 3),
                                                   ("transpose", 512, 3)])
def test_a_trained_autoencoder_beats_an_untrained_one(digits, kind, n_train, epochs):
    set_seed(0)
    if kind == "dense":
        ae, _, _ = build_dense_autoencoder(code_size=32)
        x, xt = flatten(digits.x_train), flatten(digits.x_test)
    elif kind == "conv":
        ae, _, _ = build_conv_autoencoder(filters=(8, 16))
        x, xt = add_channel(digits.x_train), add_channel(digits.x_test)
    else:
        ae, _, _ = build_transpose_autoencoder(filters=(8, 16))
        x, xt = add_channel(digits.x_train), add_channel(digits.x_test)
    x = x[:n_train]
    # called directly, not with predict: no prediction step to trace
    before = reconstruction_error(xt, np.asarray(ae(xt, training=False))).mean()
    ae.fit(x, x, epochs=epochs, batch_size=32, verbose=0)
    after = reconstruction_error(xt, np.asarray(ae(xt, training=False))).mean()
    # also beat the best constant guess (the mean training image)
    mean_image = reconstruction_error(xt, np.broadcast_to(x.mean(0), xt.shape)).mean()
    assert after < 0.7 * before, (before, after)
    assert after < mean_image, (after, mean_image)
