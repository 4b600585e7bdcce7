import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from course_lib.plots import (plot_history, plot_image_rows, plot_latent_2d,  # noqa: E402
                              plot_reconstructions)


def teardown_function():
    plt.close("all")


def test_reconstruction_grid_layout():
    x = np.random.default_rng(0).random((12, 784))
    fig = plot_reconstructions(x, x * 0.5, n=5)
    assert len(fig.axes) == 10
    assert fig.axes[0].images[0].get_array().shape == (28, 28)
    with pytest.raises(ValueError, match="same number"):
        plot_reconstructions(x, x[:3])


def test_image_rows_accept_uint8_and_channels():
    u8 = np.zeros((4, 28, 28), np.uint8)
    ch = np.zeros((4, 28, 28, 1), np.float32)
    fig = plot_image_rows({"a": u8, "b": ch, "c": ch}, n=10)
    assert len(fig.axes) == 12  # n is capped by the shortest row
    with pytest.raises(ValueError, match="expected images"):
        plot_image_rows({"bad": np.zeros((4, 5))})


def test_history_plot_has_both_curves():
    ax = plot_history({"loss": [3, 2, 1], "val_loss": [3.5, 2.5, 2]})
    assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [1, 2, 3])
    with pytest.raises(ValueError, match="loss"):
        plot_history({"accuracy": [1]})


def test_latent_plot_subsamples_and_validates():
    codes = np.random.default_rng(0).normal(size=(5000, 2))
    ax = plot_latent_2d(codes, np.arange(5000) % 10, max_points=1000)
    assert ax.collections[0].get_offsets().shape == (1000, 2)
    with pytest.raises(ValueError):
        plot_latent_2d(codes[:, :1], np.arange(5000))
