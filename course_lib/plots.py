"""Figures used in the notebooks (matplotlib, imported inside the functions).

- images: :func:`plot_image_rows`, :func:`plot_reconstructions`;
- training: :func:`plot_history`; codes: :func:`plot_latent_2d`, :func:`plot_digit_grid`;
- anomaly scores: :func:`plot_score_histograms`, :func:`plot_roc_pr`, :func:`plot_confusion`,
  :func:`threshold_explorer` (a slider in Jupyter, a static figure elsewhere);
- :func:`anomaly_overlay`: an anomaly map over its image as an RGB picture (``course-score``).
"""

from __future__ import annotations

import numpy as np

from course_lib.checks import (DataError, check_binary_labels, check_image_list, check_scores,
                               check_scores_and_labels)
from course_lib.metrics import evaluate, threshold_best_f1, threshold_percentile


def _as_images(x):
    """Images as (N, H, W) float32, or a list of 2-D arrays when their sizes differ."""
    if isinstance(x, (list, tuple)) and len({np.shape(i) for i in x}) > 1:
        return check_image_list(x, "images")
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[1] == 784:
        arr = arr.reshape(-1, 28, 28)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise DataError(f"expected images (N, H, W), (N, H, W, 1) or flat (N, 784), got "
                         f"shape {np.shape(x)}.")
    return arr


def plot_image_rows(rows: dict, n: int = 10, titles=None, figsize_per_image: float = 1.1,
                    vmin=None, vmax=None):
    """Show several aligned rows of images, one row per entry of ``rows`` ({label: images}).

    Flat 784-vectors are reshaped to 28x28.  ``titles`` (optional, length ``n``) labels the
    columns.  The grey scale runs from ``vmin`` to ``vmax``; by default from 0 to 1 (or to 255
    for a row whose values exceed 1).  Returns the matplotlib Figure.  Taught in notebook 01; used for noisy / clean /
    denoised rows in notebook 02.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise DataError("rows must hold at least one {label: images} entry.")
    imgs = {k: _as_images(v) for k, v in rows.items()}
    n = min([n] + [len(v) for v in imgs.values()])
    fig, axes = plt.subplots(len(imgs), n, squeeze=False,
                             figsize=(figsize_per_image * n, figsize_per_image * len(imgs) + 0.3))
    for r, (label, batch) in enumerate(imgs.items()):
        lo = 0.0 if vmin is None else vmin
        hi = (255 if max(float(np.max(b)) for b in batch) > 1.0 else 1.0) if vmax is None \
            else vmax
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(batch[c], cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
            if r == 0 and titles is not None:
                ax.set_title(str(titles[c]), fontsize=8)
    fig.tight_layout()
    return fig


def plot_reconstructions(originals, reconstructions, n: int = 10, titles=None):
    """Originals (top row) above their reconstructions (bottom row).

    Taught in notebook 01.
    """
    if np.shape(originals)[0] != np.shape(reconstructions)[0]:
        raise DataError("originals and reconstructions must hold the same number of images.")
    return plot_image_rows({"original": originals, "reconstructed": reconstructions}, n=n,
                           titles=titles)


def plot_history(history, ax=None, title: str = "Training curves", log: bool = False):
    """Training (and validation) loss per epoch from ``model.fit``'s History or its dict.

    Taught in notebook 01.
    """
    import matplotlib.pyplot as plt

    hist = getattr(history, "history", history)
    if not isinstance(hist, dict) or "loss" not in hist:
        raise DataError("expected a keras History (or its .history dict) with a 'loss' entry.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    epochs = np.arange(1, len(hist["loss"]) + 1)
    for key, style in (("loss", "-o"), ("val_loss", "--s")):
        if key in hist:
            label = "training" if key == "loss" else "validation"
            ax.plot(epochs, hist[key], style, label=label, markersize=3)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_latent_2d(codes, labels, ax=None, title: str = "Latent space", max_points: int = 3000,
                   seed: int = 0):
    """Scatter of 2-D codes coloured by digit label (first two columns if the code is wider).

    Taught in notebook 01.
    """
    import matplotlib.pyplot as plt

    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels)
    if codes.ndim != 2 or codes.shape[1] < 2 or len(codes) != len(labels):
        raise DataError(f"expected codes (N, >=2) and N labels, got {codes.shape} and "
                         f"{labels.shape}.")
    if len(codes) > max_points:
        idx = np.random.default_rng(seed).choice(len(codes), max_points, replace=False)
        codes, labels = codes[idx], labels[idx]
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    sc = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=6, alpha=0.7,
                    vmin=-0.5, vmax=9.5)
    plt.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("code dimension 1")
    ax.set_ylabel("code dimension 2")
    ax.set_title(title)
    return ax


def plot_digit_grid(images, n_cols: int, ax=None, title: str | None = None):
    """Tile digits (flat 784-vectors or 28 x 28 images, row by row) into one grey picture of
    ``n_cols`` columns, with no gaps: a decoded latent grid reads as one map.  Returns the Axes.
    Taught in notebook 06.
    """
    import matplotlib.pyplot as plt

    imgs = _as_images(images)
    n_cols = int(n_cols)
    if n_cols < 1 or len(imgs) % n_cols:
        raise DataError(f"{len(imgs)} images do not fill rows of n_cols={n_cols}.")
    h, w = imgs.shape[1:]
    tiled = imgs.reshape(-1, n_cols, h, w).transpose(0, 2, 1, 3).reshape(-1, n_cols * w)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * n_cols, 0.45 * len(imgs) / n_cols))
    ax.imshow(tiled, cmap="gray", vmin=0.0, vmax=1.0 if tiled.max() <= 1 else 255)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_anomaly_maps(images, masks, maps: dict, indices, titles=None, size: float = 1.6,
                      reconstructions: dict | None = None):
    """For the test images ``indices``: the image, each model's reconstruction (optional), the
    ground truth and each model's anomaly map (``maps``: {name: list of maps}), one column per
    image.  Reconstructions (``{name: list of images}``, None where not computed) are drawn
    like the image, grey on 0-1, so they can be compared with it.  Each model's map row shares
    one colour scale, from the lowest to the highest value of its maps shown (bright = more
    anomalous than the rest of the row; log-likelihood maps may be negative).  Images may
    differ in size.  Returns the Figure.
    Used in notebooks 05, 06 and 08.
    """
    import matplotlib.pyplot as plt

    rows = [("image", images, "gray")]
    rows += [(name, r, "gray") for name, r in (reconstructions or {}).items()]
    rows += [("ground truth", masks, "gray")]
    rows += [(name, m, "inferno") for name, m in maps.items()]
    n_grey = len(rows) - len(maps)
    indices = list(indices)
    if not indices:
        raise DataError("indices must name at least one test image.")
    aspect = np.shape(images[indices[0]])[0] / np.shape(images[indices[0]])[1]
    fig, axes = plt.subplots(len(rows), len(indices), squeeze=False,
                             figsize=(size * len(indices), size * aspect * len(rows) * 0.9 + 0.4))
    limits = {}                              # one colour scale per map row
    for label, arr, cmap in rows[n_grey:]:
        shown = [np.asarray(arr[i], dtype=np.float32) for i in indices if arr[i] is not None]
        if not shown:
            raise DataError(f"no map of {label!r} for the images shown.")
        low, high = min(float(m.min()) for m in shown), max(float(m.max()) for m in shown)
        limits[label] = (low, max(high, low + 1e-12))
    for c, i in enumerate(indices):
        for r, (label, arr, cmap) in enumerate(rows):
            ax = axes[r, c]
            if arr[i] is not None:                   # a reconstruction not computed: blank
                vmin, vmax = limits[label] if r >= n_grey else (0.0, 1.0)
                ax.imshow(np.asarray(arr[i], dtype=np.float32), cmap=cmap, vmin=vmin,
                          vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and titles is not None:
                ax.set_title(str(titles[c]), fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return fig


def anomaly_overlay(image, amap, low: float, high: float, cmap: str = "inferno",
                    opacity: float = 0.75) -> np.ndarray:
    """An anomaly map over its image, as an RGB picture (uint8 (H, W, 3)) to save as a PNG:
    the image in grey, the map in colour where it is high: transparent at ``low`` and below,
    ``opacity`` and the colour map's brightest colour at ``high`` and above.  Image and map
    have the same height and width; the image is in [0, 1], grey (H, W) or colour (H, W, 3)."""
    import matplotlib

    img = np.asarray(image, dtype=np.float64)
    grey = img.mean(axis=-1) if img.ndim == 3 else img
    m = np.asarray(amap, dtype=np.float64)
    if grey.ndim != 2 or m.shape != grey.shape:
        raise DataError(f"the map {m.shape} and the image {img.shape} must have the same "
                        f"height and width.")
    if not high > low:
        raise DataError(f"high must be above low, got low={low}, high={high}.")
    v = np.clip((m - low) / (high - low), 0.0, 1.0)
    colour = matplotlib.colormaps[cmap](v)[..., :3]
    a = opacity * v[..., None]
    rgb = (1 - a) * np.clip(grey, 0.0, 1.0)[..., None] + a * colour
    return np.round(rgb * 255).astype(np.uint8)


# --------------------------------------------------------------------------- anomaly detection
# Conventions as in course_lib.metrics: label 1 = anomaly; flagged iff score > threshold.


def plot_score_histograms(scores_by_group: dict, threshold=None, log_y: bool = True,
                          bins=50, ax=None):
    """Overlaid histograms of anomaly scores, one per group, on shared bins.

    Parameters
    ----------
    scores_by_group : dict
        ``{label: scores}``, e.g. ``{"normal": s_normal, "anomaly": s_anomaly}``.
    threshold : float, optional
        Draw it as a vertical dashed line (flagged: scores to its right).
    log_y : bool
        Log-scale counts (default): rare groups and long tails stay visible next to a large
        normal group.
    bins : int or sequence
        Passed to ``numpy.histogram_bin_edges`` on all scores together, so every group uses
        the same bins.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes

    Taught in notebook 03; used in notebooks 04, 07 and 09.
    """
    import matplotlib.pyplot as plt

    if not scores_by_group:
        raise DataError("scores_by_group must hold at least one {label: scores} entry.")
    groups = {str(k): check_scores(v, f"scores of group {k!r}")
              for k, v in scores_by_group.items()}
    everything = np.concatenate(list(groups.values()))
    if threshold is not None:
        threshold = float(threshold)
        if not np.isfinite(threshold):
            raise DataError(f"threshold must be a finite number, got {threshold!r}.")
    edges = np.histogram_bin_edges(everything, bins=bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.5))
    for i, (label, s) in enumerate(groups.items()):
        color = f"C{i % 10}"
        ax.hist(s, bins=edges, histtype="stepfilled", alpha=0.35, color=color,
                label=f"{label} (n={len(s)})")
        ax.hist(s, bins=edges, histtype="step", linewidth=1.0, color=color)
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1.2,
                   label=f"threshold {threshold:.4g}")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("count" + (" (log scale)" if log_y else ""))
    ax.legend(fontsize=8)
    return ax


def plot_roc_pr(y_true, scores_by_model: dict, axes=None):
    """ROC curve (left) and precision-recall curve (right) of one or more scorers.

    The legend gives each model's AUROC (ROC panel) and average precision, AP (PR panel).
    Chance level is drawn in grey: the diagonal for ROC, the base rate (share of anomalies)
    for precision-recall.

    Parameters
    ----------
    y_true : array-like of shape (N,)
        1 = anomaly, 0 = normal; both classes needed.
    scores_by_model : dict
        ``{model name: scores}``, each of shape (N,).
    axes : sequence of two matplotlib Axes, optional

    Returns
    -------
    matplotlib Figure

    Taught in notebook 03; used in notebooks 04, 07 and 09.
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import (average_precision_score, precision_recall_curve,
                                 roc_auc_score, roc_curve)

    if not scores_by_model:
        raise DataError("scores_by_model must hold at least one {model name: scores} entry.")
    models = {str(k): check_scores(v, f"scores of {k!r}") for k, v in scores_by_model.items()}
    y = check_binary_labels(y_true, len(next(iter(models.values()))))
    for name, s in models.items():
        check_binary_labels(y, len(s), f"y_true (for {name!r})")
    if y.min() == y.max():
        raise DataError("y_true must hold both normal (0) and anomalous (1) samples to draw "
                         "ROC and precision-recall curves.")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        if len(axes) != 2:
            raise DataError(f"axes must be two matplotlib Axes, got {len(axes)}.")
        fig = axes[0].figure
    ax_roc, ax_pr = axes[0], axes[1]
    for name, s in models.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, s):.3f})")
        precision, recall, _ = precision_recall_curve(y, s)
        ax_pr.plot(recall, precision, drawstyle="steps-post",
                   label=f"{name} (AP {average_precision_score(y, s):.3f})")
    base_rate = float(y.mean())
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance (AUROC 0.5)")
    ax_pr.axhline(base_rate, color="grey", linestyle=":",
                  label=f"chance (base rate {base_rate:.3g})")
    ax_roc.set(xlabel="false positive rate (normals flagged)",
               ylabel="true positive rate (recall)", title="ROC curve", xlim=(-0.01, 1.01),
               ylim=(-0.01, 1.01))
    ax_pr.set(xlabel="recall (anomalies caught)", ylabel="precision (alerts that are anomalies)",
              title="Precision-recall curve", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "lower left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_confusion(y_true, scores, threshold, ax=None, labels=("normal", "anomaly"),
                   title=None):
    """Confusion matrix (counts) of the decision ``score > threshold``.

    Rows: true class; columns: predicted class, in the order of ``labels``
    (normal = 0 first, anomaly = 1 second).  Each cell shows its count.

    Parameters
    ----------
    y_true : array-like of shape (N,)
        1 = anomaly, 0 = normal.
    scores : array-like of shape (N,)
    threshold : float
    ax : matplotlib Axes, optional
    labels : pair of str
        Names of class 0 and class 1.
    title : str, optional
        Default: the threshold.

    Returns
    -------
    matplotlib Axes

    Taught in notebook 03; used in notebook 04.
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    y, s = check_scores_and_labels(y_true, scores)
    t = float(threshold)
    if not np.isfinite(t):
        raise DataError(f"threshold must be a finite number, got {threshold!r}.")
    if len(labels) != 2:
        raise DataError(f"labels must name the two classes (normal, anomaly), got {labels!r}.")
    cm = confusion_matrix(y, (s > t).astype(np.int64), labels=[0, 1])
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    for i in range(2):
        for j in range(2):
            dark = cm[i, j] > 0.5 * cm.max()
            ax.text(j, i, f"{cm[i, j]:d}", ha="center", va="center", fontsize=12,
                    color="white" if dark else "black")
    ax.set_xticks([0, 1], [f"{labels[0]}", f"{labels[1]}"])
    ax.set_yticks([0, 1], [f"{labels[0]}", f"{labels[1]}"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title if title is not None else f"threshold {t:.4g}", fontsize=10)
    return ax


class ThresholdExplorer:
    """What :func:`threshold_explorer` returns: the figure, the threshold and the slider.

    ``update(threshold)`` redraws the figure (the slider calls it); ``slider`` is ``None``
    when no widget could be offered (no ipywidgets, or no running Jupyter kernel).
    """

    def __init__(self, y_true, scores, threshold, scores_label):
        self.y_true, self.scores = check_scores_and_labels(y_true, scores)
        self.scores_label = scores_label
        self.threshold = float(threshold)
        self.figure = None
        self.slider = None
        self._handle = None

    def draw(self, threshold=None):
        """Draw (or redraw) the histogram and the confusion matrix at ``threshold``."""
        import matplotlib.pyplot as plt

        if threshold is not None:
            self.threshold = float(threshold)
        if self.figure is None:
            self.figure = plt.figure(figsize=(10, 3.6))
        fig = self.figure
        fig.clf()
        ax_hist = fig.add_axes((0.07, 0.15, 0.55, 0.68))
        ax_cm = fig.add_axes((0.72, 0.15, 0.25, 0.68))
        y, s, t = self.y_true, self.scores, self.threshold
        groups = {name: s[y == label] for label, name in ((0, "normal"), (1, "anomaly"))
                  if np.any(y == label)}
        plot_score_histograms(groups, threshold=t, ax=ax_hist)
        ax_hist.set_xlabel(self.scores_label)
        plot_confusion(y, s, t, ax=ax_cm, title="confusion matrix")
        m = evaluate(y, s, t)
        fig.suptitle(f"threshold {t:.4g}: precision {m['precision']:.3f}, recall "
                     f"{m['recall']:.3f}, F1 {m['f1']:.3f}, alert rate {m['alert_rate']:.3f}",
                     fontsize=10)
        return fig

    def update(self, threshold):
        """Redraw at a new threshold and refresh the displayed figure (if one is shown)."""
        self.draw(threshold)
        if self._handle is not None:
            self._handle.update(self.figure)
        return self.figure

    def __repr__(self) -> str:
        mode = "interactive" if self.slider is not None else "static"
        return f"ThresholdExplorer(threshold={self.threshold:.4g}, {mode})"


def _running_kernel() -> bool:
    """True inside a Jupyter (IPython) kernel, where widgets can be displayed."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def threshold_explorer(y_true, scores, threshold=None, scores_label: str = "anomaly score"):
    """Histogram and confusion matrix at a threshold, with a slider to move it (ipywidgets).

    Always draws a static figure first, at ``threshold`` (default: the F1-best threshold of
    :func:`course_lib.metrics.threshold_best_f1`, or the 99th percentile when ``y_true`` holds
    no anomaly), so the figure survives where widgets do not (nbval, HTML export, GitHub).
    Inside a running Jupyter kernel with ipywidgets installed, a slider below it then moves
    the threshold and redraws the figure in place.  Without ipywidgets, or outside a kernel, it
    never raises: you get the static figure only.

    Parameters
    ----------
    y_true : array-like of shape (N,)
        1 = anomaly, 0 = normal.
    scores : array-like of shape (N,)
    threshold : float, optional
        Starting threshold (flagged iff ``score > threshold``).
    scores_label : str
        Label of the histogram's x axis.

    Returns
    -------
    ThresholdExplorer
        ``.figure``, ``.threshold``, ``.slider`` (``None`` when static) and ``.update(t)``.
        Assign it (``explorer = threshold_explorer(...)``) so that it is not printed.

    Taught in notebook 03; used in notebook 04.
    """
    import matplotlib.pyplot as plt

    y, s = check_scores_and_labels(y_true, scores)
    if threshold is None:
        threshold = threshold_best_f1(y, s) if y.any() else threshold_percentile(s, 99.0)
    if not np.isfinite(float(threshold)):
        raise DataError(f"threshold must be a finite number, got {threshold!r}.")
    explorer = ThresholdExplorer(y, s, threshold, scores_label)
    explorer.draw()
    if not _running_kernel():
        return explorer  # a script or a test: the figure is there for plt.show() / savefig
    from IPython.display import display

    explorer._handle = display(explorer.figure, display_id=True)
    plt.close(explorer.figure)  # shown once, through the handle; not again at the cell's end
    try:
        import ipywidgets as widgets
    except ImportError:
        return explorer
    # Steps at quantiles of the scores: each step moves about the same number of samples.
    steps = np.unique(np.concatenate([np.quantile(s, np.linspace(0.0, 1.0, 201)),
                                      [explorer.threshold]]))
    by_label = {f"{v:.5g}": float(v) for v in steps}   # labels must be unique
    by_label[f"{explorer.threshold:.5g}"] = explorer.threshold
    options = sorted(by_label.items(), key=lambda item: item[1])
    slider = widgets.SelectionSlider(options=options, value=explorer.threshold,
                                     description="threshold", continuous_update=False,
                                     layout=widgets.Layout(width="70%"))
    slider.observe(lambda change: explorer.update(change["new"]), names="value")
    explorer.slider = slider
    display(slider)
    return explorer
