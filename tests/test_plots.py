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


# --------------------------------------------------------------------------- anomaly detection
import sys  # noqa: E402

from sklearn.metrics import (average_precision_score, confusion_matrix,  # noqa: E402
                             roc_auc_score)

from course_lib import plots  # noqa: E402
from course_lib.metrics import evaluate, threshold_best_f1  # noqa: E402
from course_lib.plots import (plot_confusion, plot_roc_pr,  # noqa: E402
                              plot_score_histograms, threshold_explorer)


def _scores(seed=0, n=200):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 10 == 0).astype(int)  # 10% anomalies
    return y, rng.normal(size=n) + 2.0 * y


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_score_histograms_share_bins_and_draw_the_threshold():
    groups = {"normal": np.arange(10.0), "noise": np.arange(5.0) + 20}
    ax = plot_score_histograms(groups, threshold=3.0, bins=6)
    edges = np.histogram_bin_edges(np.concatenate(list(groups.values())), bins=6)
    assert len(ax.patches) == 4  # filled + outline per group
    for patch in ax.patches:  # every group is drawn on the same bin edges
        np.testing.assert_allclose(np.unique(patch.get_xy()[:, 0]), edges)
    assert ax.get_yscale() == "log"
    assert _legend(ax) == ["normal (n=10)", "noise (n=5)", "threshold 3"]
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[3.0, 3.0]]
    ax2 = plot_score_histograms({"a": [1.0, 1.0, 1.0]}, log_y=False)  # equal scores: fine
    assert ax2.get_yscale() == "linear" and not ax2.get_lines()


def test_score_histograms_reject_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        plot_score_histograms({})
    with pytest.raises(ValueError, match="group 'b'.*NaN"):
        plot_score_histograms({"a": [1.0, 2.0], "b": [1.0, np.nan]})
    with pytest.raises(ValueError, match="empty"):
        plot_score_histograms({"a": []})


def test_roc_pr_legends_and_chance_lines():
    y, s = _scores()
    fig = plot_roc_pr(y, {"model": s, "random": np.random.default_rng(1).random(len(y))})
    ax_roc, ax_pr = fig.axes
    assert _legend(ax_roc)[0] == f"model (AUROC {roc_auc_score(y, s):.3f})"
    assert _legend(ax_pr)[0] == f"model (AP {average_precision_score(y, s):.3f})"
    assert _legend(ax_pr)[-1] == "chance (base rate 0.1)"
    assert len(ax_roc.get_lines()) == 3 and len(ax_pr.get_lines()) == 3  # 2 models + chance
    np.testing.assert_allclose(ax_pr.get_lines()[-1].get_ydata(), [0.1, 0.1])
    np.testing.assert_allclose(ax_roc.get_lines()[-1].get_xydata(), [[0, 0], [1, 1]])
    _, axes = plt.subplots(1, 2)
    assert plot_roc_pr(y, {"m": s}, axes=axes) is axes[0].figure


def test_roc_pr_rejects_one_class_and_mismatched_lengths():
    y, s = _scores()
    with pytest.raises(ValueError, match="both normal"):
        plot_roc_pr(np.zeros(len(s), int), {"m": s})
    with pytest.raises(ValueError, match="same length"):
        plot_roc_pr(y, {"m": s, "short": s[:10]})


def test_confusion_counts_follow_the_strict_convention():
    y, s = [0, 0, 1, 1, 1], [0.1, 0.4, 0.2, 0.6, 0.7]
    ax = plot_confusion(y, s, 0.4)  # 0.4 itself is not flagged
    tn, fp, fn, tp = confusion_matrix(y, np.asarray(s) > 0.4).ravel()
    assert [t.get_text() for t in ax.texts] == [str(v) for v in (tn, fp, fn, tp)]
    assert (tn, fp, fn, tp) == (2, 0, 1, 2)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["normal", "anomaly"]
    assert ax.get_title() == "threshold 0.4"
    ax = plot_confusion(y, s, 0.0, labels=("genuine", "fraud"), title="all flagged")
    assert [t.get_text() for t in ax.texts] == ["0", "2", "0", "3"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["genuine", "fraud"]
    assert ax.get_title() == "all flagged"
    with pytest.raises(ValueError, match="NaN"):
        plot_confusion(y, [0.1, np.nan, 0.2, 0.3, 0.4], 0.2)


def test_threshold_explorer_static_without_a_kernel():
    y, s = _scores()
    ex = threshold_explorer(y, s)
    assert ex.slider is None and "static" in repr(ex)
    assert ex.threshold == threshold_best_f1(y, s)  # default: the F1-best threshold
    assert len(ex.figure.axes) == 2
    m = evaluate(y, s, ex.threshold)
    assert f"F1 {m['f1']:.3f}" in ex.figure._suptitle.get_text()
    ex.update(1.0)
    m = evaluate(y, s, 1.0)
    assert ex.threshold == 1.0 and len(ex.figure.axes) == 2  # redrawn, not stacked
    assert f"recall {m['recall']:.3f}" in ex.figure._suptitle.get_text()
    texts = [t.get_text() for t in ex.figure.axes[1].texts]
    assert texts == [str(m[k]) for k in ("tn", "fp", "fn", "tp")]


def test_threshold_explorer_without_anomalies_uses_a_percentile():
    s = np.linspace(0, 1, 101)
    ex = threshold_explorer(np.zeros(101, int), s, scores_label="MSE")
    assert ex.threshold == pytest.approx(np.percentile(s, 99))
    assert ex.figure.axes[0].get_xlabel() == "MSE"


def test_threshold_explorer_never_raises_without_ipywidgets(monkeypatch):
    monkeypatch.setattr(plots, "_running_kernel", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # "import ipywidgets" fails
    y, s = _scores()
    ex = threshold_explorer(y, s, threshold=0.5)
    assert ex.slider is None and ex.threshold == 0.5 and ex.figure is not None


def test_threshold_explorer_slider_moves_the_threshold(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(plots, "_running_kernel", lambda: True)
    y, s = _scores()
    ex = threshold_explorer(y, s, threshold=0.5)
    values = [v for _, v in ex.slider.options]
    assert ex.slider.value == 0.5 and values == sorted(values)
    assert min(values) == s.min() and max(values) == s.max()
    ex.slider.value = values[len(values) // 4]
    assert ex.threshold == values[len(values) // 4]
    m = evaluate(y, s, ex.threshold)
    assert f"alert rate {m['alert_rate']:.3f}" in ex.figure._suptitle.get_text()


def test_running_kernel_is_false_in_plain_python():
    assert plots._running_kernel() is False


def test_image_rows_colour_range_can_be_set():
    maps = np.random.default_rng(0).random((3, 7, 7)) * 4  # e.g. feature maps, not pixels
    fig = plot_image_rows({"maps": maps}, vmin=0, vmax=4)
    assert fig.axes[0].images[0].get_clim() == (0, 4)
    fig = plot_image_rows({"pixels": maps / 4})
    assert fig.axes[0].images[0].get_clim() == (0.0, 1.0)


# --------------------------------------------------------------------------- anomaly maps
from course_lib.plots import plot_anomaly_maps  # noqa: E402


def test_image_rows_accept_lists_of_different_sizes():
    rng = np.random.default_rng(0)
    photos = [rng.random((40, 90)), rng.random((44, 90)), rng.random((42, 90))]
    maps = [p * 3 for p in photos]  # values above 1: not pixels
    fig = plot_image_rows({"photos": photos, "maps": maps}, n=3, vmin=0, vmax=3)
    assert len(fig.axes) == 6
    assert [ax.images[0].get_array().shape for ax in fig.axes[:3]] == [(40, 90), (44, 90),
                                                                      (42, 90)]
    assert fig.axes[3].images[0].get_clim() == (0, 3)
    fig = plot_image_rows({"photos": photos})
    assert len(fig.axes) == 3 and fig.axes[0].images[0].get_clim() == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        plot_image_rows({"bad": [np.zeros((4, 5)), np.zeros((4, 6, 3))]})


def test_anomaly_maps_figure_has_one_column_per_image_and_row_per_map():
    rng = np.random.default_rng(0)
    images = [rng.random((40, 90)), rng.random((44, 90)), rng.random((42, 90))]
    masks = [np.zeros(i.shape, bool) for i in images]
    masks[2][10:12, 5:50] = True
    maps = {"L2": [i * 0.01 for i in images], "SSIM": [i * 5 for i in images]}
    fig = plot_anomaly_maps(images, masks, maps, np.array([2, 1]), titles=["crack", "good"])
    axes = np.array(fig.axes).reshape(4, 2)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["image", "ground truth", "L2", "SSIM"]
    assert [ax.get_title() for ax in axes[0]] == ["crack", "good"]
    assert [ax.images[0].get_array().shape for ax in axes[:, 0]] == [(42, 90)] * 4
    assert [ax.images[0].get_array().shape for ax in axes[:, 1]] == [(44, 90)] * 4
    np.testing.assert_array_equal(axes[1, 0].images[0].get_array(), masks[2])
    assert axes[0, 0].images[0].get_clim() == (0, 1)
    # one colour scale per row, over the maps shown (images 2 and 1, not 0)
    shown = (min(images[2].min(), images[1].min()), max(images[2].max(), images[1].max()))
    for c in range(2):
        assert axes[2, c].images[0].get_clim() == pytest.approx((shown[0] * 0.01, shown[1] * 0.01))
        assert axes[3, c].images[0].get_clim() == pytest.approx((shown[0] * 5, shown[1] * 5))
    loglik = plot_anomaly_maps(images, masks, {"log-lik": [i - 100 for i in images]}, [0])
    low, high = loglik.axes[2].images[0].get_clim()
    assert low == pytest.approx(images[0].min() - 100) and high == pytest.approx(images[0].max() - 100)
    assert axes[2, 0].images[0].get_cmap().name == "inferno"
    tall = plot_anomaly_maps([i.T for i in images], [m.T for m in masks],
                             {k: [a.T for a in v] for k, v in maps.items()}, [2, 1])
    assert tall.get_size_inches()[1] > 3 * fig.get_size_inches()[1]  # sized by the aspect
    zero = plot_anomaly_maps(images, masks, {"flat": [np.zeros(i.shape) for i in images]}, [0])
    assert zero.axes[2].images[0].get_clim()[1] > 0  # an all-zero map still draws
    with pytest.raises(ValueError, match="at least one"):
        plot_anomaly_maps(images, masks, maps, [])


def test_anomaly_maps_draw_reconstructions_grey_on_0_1_after_the_image():
    rng = np.random.default_rng(1)
    images = [rng.random((30, 40)) for _ in range(3)]
    masks = [np.zeros(i.shape, bool) for i in images]
    maps = {"L2 map": [i * 3 + 1 for i in images]}
    recon = {"L2 reconstruction": [i * 0.5 for i in images],
             "SSIM reconstruction": [None, images[1] * 0.1 + 0.8, None]}
    fig = plot_anomaly_maps(images, masks, maps, [1, 0], reconstructions=recon)
    axes = np.array(fig.axes).reshape(5, 2)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["image", "L2 reconstruction",
                                                      "SSIM reconstruction", "ground truth",
                                                      "L2 map"]
    for ax in axes[1]:                       # grey on 0-1, like the image, not the map's scale
        assert ax.images[0].get_cmap().name == "gray"
        assert ax.images[0].get_clim() == (0, 1)
    np.testing.assert_allclose(axes[1, 0].images[0].get_array(), images[1] * 0.5)
    assert axes[2, 0].images[0].get_clim() == (0, 1)
    assert len(axes[2, 1].images) == 0        # None: not computed, a blank axis
    assert axes[2, 1].get_xticks().size == 0 and axes[2, 1].get_ylabel() == ""
    low = min(images[1].min(), images[0].min()) * 3 + 1
    high = max(images[1].max(), images[0].max()) * 3 + 1
    for ax in axes[4]:                       # the map row keeps its own scale
        assert ax.images[0].get_cmap().name == "inferno"
        assert ax.images[0].get_clim() == pytest.approx((low, high))
    np.testing.assert_array_equal(axes[3, 0].images[0].get_array(), masks[1])
    only = plot_anomaly_maps(images, masks, {}, [2], reconstructions=recon)   # no maps at all
    assert [ax.get_ylabel() for ax in only.axes] == ["image", "L2 reconstruction",
                                                     "SSIM reconstruction", "ground truth"]
    assert len(only.axes[2].images) == 0
    plain = plot_anomaly_maps(images, masks, maps, [0], reconstructions={})
    assert [ax.get_ylabel() for ax in plain.axes] == ["image", "ground truth", "L2 map"]


def test_digit_grid_tiles_row_by_row_and_checks_the_count():
    from course_lib.checks import DataError
    from course_lib.plots import plot_digit_grid

    images = np.zeros((6, 28, 28), np.float32)
    for i in range(6):
        images[i] = i / 5                          # each tile one grey level
    ax = plot_digit_grid(images.reshape(6, 784), 3, title="grid")
    tiled = ax.get_images()[0].get_array()
    assert tiled.shape == (56, 84)                 # 2 rows x 3 columns of 28 x 28
    assert np.isclose(tiled[0, 30], 0.2) and np.isclose(tiled[30, 0], 0.6)   # (0,1) and (1,0)
    plt.close("all")
    with pytest.raises(DataError, match="do not fill rows"):
        plot_digit_grid(images[:5], 3)


def test_anomaly_maps_leave_missing_maps_blank():
    from course_lib.checks import DataError
    from course_lib.plots import plot_anomaly_maps

    images = [np.zeros((8, 8))] * 3
    maps = {"kept elsewhere": [None, np.ones((8, 8)), None], "here": [np.ones((8, 8))] * 3}
    fig = plot_anomaly_maps(images, images, maps, [1])
    assert len(fig.axes) == 4
    plt.close("all")
    with pytest.raises(DataError, match="no map of 'kept elsewhere'"):
        plot_anomaly_maps(images, images, maps, [0, 2])
