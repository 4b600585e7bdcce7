"""Figures used in the notebooks (matplotlib; imported lazily)."""

from __future__ import annotations

import numpy as np


def _as_images(x) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[1] == 784:
        arr = arr.reshape(-1, 28, 28)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"expected images (N, H, W), (N, H, W, 1) or flat (N, 784), got "
                         f"shape {np.shape(x)}.")
    return arr


def plot_image_rows(rows: dict, n: int = 10, titles=None, figsize_per_image: float = 1.1):
    """Show several aligned rows of images, one row per entry of ``rows`` ({label: images}).

    Flat 784-vectors are reshaped to 28x28.  ``titles`` (optional, length ``n``) labels the
    columns.  Returns the matplotlib Figure.  Taught in notebook 01; used for noisy / clean /
    denoised rows in notebook 02.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("rows must hold at least one {label: images} entry.")
    imgs = {k: _as_images(v) for k, v in rows.items()}
    n = min([n] + [len(v) for v in imgs.values()])
    fig, axes = plt.subplots(len(imgs), n, squeeze=False,
                             figsize=(figsize_per_image * n, figsize_per_image * len(imgs) + 0.3))
    for r, (label, batch) in enumerate(imgs.items()):
        vmax = 255 if batch.max() > 1.0 else 1.0
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(batch[c], cmap="gray", vmin=0, vmax=vmax)
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
        raise ValueError("originals and reconstructions must hold the same number of images.")
    return plot_image_rows({"original": originals, "reconstructed": reconstructions}, n=n,
                           titles=titles)


def plot_history(history, ax=None, title: str = "Training curves", log: bool = False):
    """Training (and validation) loss per epoch from ``model.fit``'s History or its dict.

    Taught in notebook 01.
    """
    import matplotlib.pyplot as plt

    hist = getattr(history, "history", history)
    if not isinstance(hist, dict) or "loss" not in hist:
        raise ValueError("expected a keras History (or its .history dict) with a 'loss' entry.")
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
        raise ValueError(f"expected codes (N, >=2) and N labels, got {codes.shape} and "
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
