"""The deck's figures and numbers, computed by ``course_lib`` when the deck is built.

Nothing here is a stored picture: every figure is drawn from a model trained a moment before,
with the same helpers and settings as the notebook named in its docstring, sized by the active
profile (``COURSE_PROFILE``).  Each figure function takes a :class:`Run` (which loads data and
trains shared models once) and returns ``(figure, facts)``: a matplotlib Figure and a dict of
numbers that the deck's text can quote as ``{{name.key}}``.

Used by ``python -m slides.build``; the figures repeat what notebooks 01-09 show, at deck size.
"""

from __future__ import annotations

import time
from functools import cached_property

import numpy as np

NORMAL_DIGIT = 7          # notebooks 03, 06 and 07 use digit 7 as the normal class
FIGURES = {}              # name -> function(run) -> (figure, facts)


def figure(fn):
    """Register a figure function under its name (``figure:<name>`` in deck.md)."""
    FIGURES[fn.__name__] = fn
    return fn


class Run:
    """Data and trained models shared by several figures, each made once per build."""

    def __init__(self, profile=None, seed: int = 0):
        from course_lib.config import get_profile, set_seed

        self.profile = get_profile(profile)
        self.seed = seed
        self.sources = {}          # dataset -> "online" / "embedded" / "file"
        set_seed(seed)

    @cached_property
    def mnist(self):
        from course_lib.data.mnist import load_mnist

        data = load_mnist(profile=self.profile)
        self.sources["MNIST"] = data.source
        return data

    @cached_property
    def dense(self):
        """Notebook 01's dense 784-32-784 autoencoder, trained on the profile's images."""
        from course_lib.config import set_seed
        from course_lib.images import flatten
        from course_lib.models import build_dense_autoencoder

        set_seed(self.seed)
        ae, _, _ = build_dense_autoencoder(784, 32)
        x = flatten(self.mnist.x_train)
        ae.fit(x, x, epochs=self.profile.epochs, batch_size=self.profile.batch_size, verbose=0)
        return ae

    @cached_property
    def one_class(self):
        """Notebook 03's one-class autoencoder, trained on digit 7 only."""
        from course_lib.experiments.one_class import train_one_class

        x_normal = self.mnist.x_train[self.mnist.y_train == NORMAL_DIGIT]
        return train_one_class(x_normal, self.profile, seed=self.seed)

    @cached_property
    def bottle(self):
        """Real MVTec AD: the bottle subset shipped in data/ (notebooks 05 and 08)."""
        from course_lib.data.bottle import load_bottle

        data = load_bottle(self.profile, verbose=False)
        self.sources["MVTec AD bottle"] = data.source
        return data

    @cached_property
    def kolektor(self):
        """Real cracks: the KolektorSDD subset shipped in data/ (notebooks 05 and 08)."""
        from course_lib.data.kolektor import load_kolektor

        data = load_kolektor(self.profile)
        self.sources["KolektorSDD"] = data.source
        return data


def _mse(x, x_hat) -> np.ndarray:
    from course_lib.metrics import reconstruction_error

    return reconstruction_error(x, x_hat)


@figure
def mnist_reconstructions(run: Run):
    """Test digits and their reconstructions by the dense 784-32-784 autoencoder (notebook 01)."""
    from course_lib.images import flatten
    from course_lib.plots import plot_reconstructions

    x = flatten(run.mnist.x_test)
    x_hat = run.dense.predict(x, verbose=0)
    fig = plot_reconstructions(x[:10], x_hat[:10])
    return fig, {"test_mse": f"{np.mean(_mse(x, x_hat)):.4f}",
                 "n_train": f"{len(run.mnist.x_train):,}", "n_test": f"{len(x):,}",
                 "epochs": run.profile.epochs, "ratio": f"{784 / 32:.1f}"}


@figure
def conv_vs_dense(run: Run):
    """The same test digits through the dense and the convolutional autoencoder (notebook 02)."""
    from course_lib.config import set_seed
    from course_lib.images import add_channel, flatten
    from course_lib.models import CAE_FILTERS, build_conv_autoencoder
    from course_lib.plots import plot_image_rows

    set_seed(run.seed)
    # notebook 02's CAE (its filters); both builders default to Adam at 3e-3, the learning rate
    # notebook 02 passes to every model it compares
    cae, _, _ = build_conv_autoencoder((28, 28, 1), filters=CAE_FILTERS)
    x_train, x_test = add_channel(run.mnist.x_train), add_channel(run.mnist.x_test)
    cae.fit(x_train, x_train, epochs=run.profile.epochs, batch_size=run.profile.batch_size,
            verbose=0)
    conv = cae.predict(x_test, verbose=0)
    dense = run.dense.predict(flatten(run.mnist.x_test), verbose=0)
    fig = plot_image_rows({"original": x_test[:10], "dense": dense[:10],
                           "convolutional": conv[:10]})
    return fig, {"conv_mse": f"{np.mean(_mse(flatten(x_test), flatten(conv))):.4f}",
                 "dense_mse": f"{np.mean(_mse(flatten(x_test), dense)):.4f}",
                 "conv_params": f"{cae.count_params():,}",
                 "dense_params": f"{run.dense.count_params():,}"}


@figure
def odd_inputs(run: Run):
    """Inputs unlike the training digits reconstruct badly (notebooks 02-03)."""
    from course_lib.images import flatten
    from course_lib.plots import plot_image_rows

    digits = run.mnist.x_test[:8]
    rng = np.random.default_rng(1)
    groups = {"digits": digits,
              "noise": rng.integers(0, 256, size=digits.shape, dtype=np.uint8),
              "rotated": np.rot90(digits, k=1, axes=(1, 2))}
    rows, facts = {}, {}
    for name, x in groups.items():
        x = flatten(x)
        x_hat = run.dense.predict(x, verbose=0)
        rows[name] = x
        rows[f"{name}: AE"] = x_hat
        facts[f"{name}_mse"] = f"{np.mean(_mse(x, x_hat)):.4f}"
    return plot_image_rows(rows, n=8, figsize_per_image=0.9), facts


@figure
def one_class_scores(run: Run):
    """Score histograms and ROC of the one-class autoencoder on digit 7 (notebook 03)."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score

    from course_lib.baselines import PCAReconstruction
    from course_lib.experiments.one_class import PCA_COMPONENTS
    from course_lib.images import flatten
    from course_lib.metrics import anomaly_scores
    from course_lib.plots import plot_roc_pr, plot_score_histograms

    data = run.mnist
    y = (data.y_test != NORMAL_DIGIT).astype(int)
    scores = anomaly_scores(run.one_class, flatten(data.x_test))
    x_normal = flatten(data.x_train[data.y_train == NORMAL_DIGIT])
    pca = PCAReconstruction(n_components=min(PCA_COMPONENTS, len(x_normal) - 1)).fit(x_normal)
    pca_scores = pca.score_samples(flatten(data.x_test))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    plot_score_histograms({f"digit {NORMAL_DIGIT} (normal)": scores[y == 0],
                           "other digits": scores[y == 1]}, bins=40, ax=axes[0])
    axes[0].set_xlabel("reconstruction error (MSE)")
    plot_roc_pr(y, {"autoencoder": scores, "PCA": pca_scores}, axes=axes[1:])
    fig.tight_layout()
    return fig, {"auroc": f"{roc_auc_score(y, scores):.3f}",
                 "pca_auroc": f"{roc_auc_score(y, pca_scores):.3f}",
                 "n_normal": f"{int(np.sum(data.y_train == NORMAL_DIGIT)):,}",
                 "base_rate": f"{y.mean():.2f}", "digit": NORMAL_DIGIT}


@figure
def creditcard(run: Run):
    """Error histogram per class (log y) and ROC/PR against two baselines (notebook 04)."""
    import matplotlib.pyplot as plt

    from course_lib.data.creditcard import load_creditcard
    from course_lib.experiments.creditcard import creditcard_experiment
    from course_lib.plots import plot_roc_pr, plot_score_histograms

    data = load_creditcard(profile=run.profile)
    run.sources["credit card"] = data.source
    r, details = creditcard_experiment(data.frame, run.profile, seed=run.seed,
                                      return_details=True)
    scores, y = details["scores"], details["split"].y_test
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ae_scores = scores["autoencoder"]
    plot_score_histograms({"normal": ae_scores[y == 0], "fraud": ae_scores[y == 1]},
                          bins=40, ax=axes[0])
    axes[0].set_xlabel("reconstruction error (MSE)")
    plot_roc_pr(y, scores, axes=axes[1:])
    fig.tight_layout()
    return fig, {"n_train": f"{r['n_train']:,}", "n_test": f"{r['n_test']:,}",
                 "n_fraud": f"{r['n_fraud']:,}",
                 "fraud_share": f"{100 * r['fraud_share_test']:.1f}%",
                 "ae_auroc": f"{r['auroc']:.3f}", "ae_ap": f"{r['auprc']:.3f}",
                 "iforest_auroc": f"{r['baseline_iforest_auroc']:.3f}",
                 "iforest_ap": f"{r['baseline_iforest_auprc']:.3f}",
                 "pca_auroc": f"{r['baseline_pca_auroc']:.3f}",
                 "pca_ap": f"{r['baseline_pca_auprc']:.3f}"}


def _map_figure(data, maps: dict, n: int = 6):
    """Defective test images, their masks and each method's anomaly maps (notebooks 05, 08)."""
    from course_lib.plots import plot_anomaly_maps

    show = np.flatnonzero(data.y_test == 1)[:n]
    return plot_anomaly_maps(data.x_test, data.masks_test, maps, show, size=1.2)


@figure
def mvtec_l2_vs_ssim(run: Run):
    """MVTec AD bottle: defective test images, the L2 and the SSIM whole-image autoencoder's
    reconstructions (grey, as the image) and residual maps, next to the ground truth
    (notebook 05)."""
    from course_lib.experiments.mvtec import mvtec_autoencoder_experiment
    from course_lib.map_metrics import whole_image_reconstructions
    from course_lib.plots import plot_anomaly_maps

    data = run.bottle
    types = np.asarray(data.defect_test)
    show = [int(np.flatnonzero(types == t)[0]) for t in data.defect_types]
    show += [int(i) for i in np.flatnonzero(data.y_test == 1) if i not in show][:5 - len(show)]
    results, maps, recons = {}, {}, {}
    for loss in ("l2", "ssim"):
        results[loss], details = mvtec_autoencoder_experiment(data, loss=loss,
                                                              profile=run.profile,
                                                              seed=run.seed,
                                                              return_details=True)
        rebuilt = [None] * len(data.x_test)
        for i, r in zip(show, whole_image_reconstructions(details["autoencoder"],
                                                          [data.x_test[i] for i in show])):
            rebuilt[i] = r
        recons[f"{loss.upper()} reconstruction"] = rebuilt
        maps[f"{loss.upper()} residual"] = details["test_maps"]
    fig = plot_anomaly_maps(data.x_test, data.masks_test, maps, show, size=1.2,
                            titles=[types[i] for i in show], reconstructions=recons)
    r0 = results["l2"]
    facts = {"category": data.category, "side": r0["side"], "size": data.x_test[0].shape[0],
             "epochs": r0["epochs"], "n_train": r0["n_train"], "n_test": len(data.x_test),
             "n_defective": int(data.y_test.sum()), "source": data.source}
    for loss, r in results.items():
        for key in ("image_auroc", "pixel_auroc", "aupro", "good_correct", "defect_correct"):
            facts[f"{loss}_{key}"] = f"{r[key]:.2f}"
    return fig, facts


def _grid_codes(x_range, y_range, n: int = 15) -> np.ndarray:
    """An n x n grid of 2-D codes, rows from the top (largest y) down, as notebook 06 plots."""
    xs, ys = np.linspace(*x_range, n), np.linspace(*y_range, n)[::-1]
    return np.array([[x, y] for y in ys for x in xs], dtype="float32")


@figure
def vae_latent(run: Run):
    """The decoded 15 x 15 latent grids of a 2-D autoencoder and a 2-D VAE trained on the same
    digits: the autoencoder's over the box of its test codes, the VAE's at quantiles of N(0, 1)
    (notebook 06, sections 1 and 3)."""
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from course_lib.config import set_seed
    from course_lib.images import flatten
    from course_lib.models import build_dense_autoencoder
    from course_lib.plots import plot_digit_grid
    from course_lib.vae import VAE_HIDDEN, build_vae

    p = run.profile
    x_train, x_test = flatten(run.mnist.x_train), flatten(run.mnist.x_test)
    set_seed(run.seed)
    ae, encoder, decoder = build_dense_autoencoder(code_size=2, hidden=VAE_HIDDEN,
                                                   code_activation="linear")
    ae.fit(x_train, x_train, epochs=p.epochs, batch_size=p.batch_size, verbose=0)
    set_seed(run.seed)
    vae = build_vae(latent_dim=2, learning_rate=3e-3, seed=run.seed)   # as notebook 06
    vae.fit(x_train, epochs=p.epochs, batch_size=p.batch_size, verbose=0)
    codes = encoder.predict(x_test, verbose=0)
    box = [(codes[:, i].min(), codes[:, i].max()) for i in (0, 1)]
    q = norm.ppf(np.linspace(0.05, 0.95, 15)).astype("float32")   # equal shares of N(0, 1)
    prior_grid = np.array([[x, y] for y in q[::-1] for x in q], dtype="float32")
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
    plot_digit_grid(decoder.predict(_grid_codes(*box), verbose=0), 15, ax=axes[0],
                    title="autoencoder: the box of its test codes")
    plot_digit_grid(vae.decoder.predict(prior_grid, verbose=0), 15,
                    ax=axes[1], title="VAE: N(0, 1) quantiles 5%-95%")
    fig.tight_layout()
    vae_mse = np.mean(_mse(x_test, vae.predict(x_test, verbose=0)))   # through the mean code
    return fig, {"ae_mse": f"{np.mean(_mse(x_test, ae.predict(x_test, verbose=0))):.4f}",
                 "vae_mse": f"{vae_mse:.4f}", "epochs": p.epochs,
                 "n_train": f"{len(x_train):,}"}


#: The scores of ``course_lib.vae.VAE_SCORES`` whose AUROCs the deck shows (all but KL alone).
DECK_VAE_SCORES = ("negative_elbo", "reconstruction_probability",
                   "reconstruction_probability_excess", "mse_at_mean")


@figure
def vae_scores_table(run: Run):
    """One-class MNIST (normal = digit 7, as ``one_class_scores``): AUROCs of a one-class VAE's
    scores beside the one-class autoencoder's, and the reconstruction probability against its
    floor, the cost of a perfect reconstruction (notebook 06, section 4)."""
    import matplotlib.pyplot as plt
    from keras import ops
    from sklearn.metrics import roc_auc_score

    from course_lib.experiments.one_class import ONE_CLASS_LATENT, train_one_class_vae
    from course_lib.images import flatten
    from course_lib.metrics import anomaly_scores
    from course_lib.vae import reconstruction_loss, vae_scores

    data = run.mnist
    x_test, y = flatten(data.x_test), (data.y_test != NORMAL_DIGIT).astype(int)
    vae = train_one_class_vae(data.x_train[data.y_train == NORMAL_DIGIT], run.profile,
                              seed=run.seed)
    scores = vae_scores(vae, x_test, seed=run.seed)
    floor = ops.convert_to_numpy(reconstruction_loss(x_test, x_test))   # a perfect rebuild's cost
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    for label, name in ((1, "other digits"), (0, f"digit {NORMAL_DIGIT} (normal)")):
        ax.scatter(floor[y == label], scores["reconstruction_probability"][y == label], s=5,
                   alpha=0.5, label=name)
    lim = [floor.min(), floor.max()]
    ax.plot(lim, lim, "k:", lw=1, label="score = floor")
    ax.set(xlabel="floor: -log p(x | perfect reconstruction), nats",
           ylabel="reconstruction probability, nats")
    ax.legend(fontsize=8)
    fig.tight_layout()
    facts = {key: f"{roc_auc_score(y, scores[key]):.3f}" for key in DECK_VAE_SCORES}
    facts["ae"] = f"{roc_auc_score(y, anomaly_scores(run.one_class, x_test)):.3f}"
    return fig, {**facts, "epochs": len(vae.history.history["loss"]),
                 "latent": ONE_CLASS_LATENT, "digit": NORMAL_DIGIT}


@figure
def anogan(run: Run):
    """DCGAN samples, AnoGAN's latent-search reconstructions and its AUROC (notebook 07)."""
    from sklearn.metrics import roc_auc_score

    from course_lib.gan import anogan_search, train_dcgan
    from course_lib.images import add_channel, flatten
    from course_lib.metrics import anomaly_scores
    from course_lib.plots import plot_image_rows

    data, p = run.mnist, run.profile
    gan, _, samples = train_dcgan(data.x_train[data.y_train == NORMAL_DIGIT], p, seed=run.seed)
    rng = np.random.default_rng(0)
    idx_normal = np.flatnonzero(data.y_test == NORMAL_DIGIT)
    idx_other = np.flatnonzero(data.y_test != NORMAL_DIGIT)
    half = min(p.anogan_n_test // 2, len(idx_normal))
    chosen = np.r_[rng.choice(idx_normal, half, replace=False),
                   rng.choice(idx_other, half, replace=False)]
    x, y = data.x_test[chosen], (data.y_test[chosen] != NORMAL_DIGIT).astype(int)
    ano = anogan_search(gan.generator, gan.discriminator, x, steps=p.anogan_steps, seed=run.seed)
    x_flat = flatten(x)
    ae_scores = anomaly_scores(run.one_class, x_flat)
    # timed as in notebook 07: the search's steps after the first (which also traces the
    # graph), scaled to all steps; one batched forward pass of the autoencoder after a warm-up
    step_seconds = ano["step_seconds"][1:] if p.anogan_steps > 1 else ano["step_seconds"]
    search_seconds = step_seconds.mean() * p.anogan_steps
    run.one_class(x_flat, training=False)
    start = time.perf_counter()
    np.asarray(run.one_class(x_flat, training=False))
    ae_seconds = time.perf_counter() - start
    show = np.r_[np.flatnonzero(y == 0)[:4], np.flatnonzero(y == 1)[:4]]
    fig = plot_image_rows({"G(z), random z": samples[max(samples)][:8],
                           "test image x": add_channel(x)[show],
                           "G(z*) after search": ano["reconstructions"][show]},
                          n=8, figsize_per_image=0.95)
    return fig, {"auroc": f"{roc_auc_score(y, ano['score']):.3f}",
                 "ae_auroc": f"{roc_auc_score(y, ae_scores):.3f}",
                 "n_test": len(y), "steps": p.anogan_steps, "epochs": p.gan_epochs,
                 "ms_per_image": f"{1000 * search_seconds / len(y):.0f}",
                 "ae_ms_per_image": f"{1000 * ae_seconds / len(y):.2f}"}


@figure
def feature_maps(run: Run):
    """Feature-dictionary and memory-bank anomaly maps on the same cracks (notebook 08)."""
    from course_lib.experiments.mvtec import (
        feature_backbone,
        mvtec_feature_experiment,
        split_good_images,
    )

    data = run.kolektor
    x_fit, _ = split_good_images(data.x_train, seed=run.seed)
    backbone = feature_backbone("auto", x_fit, run.profile, seed=run.seed)
    results, maps = {}, {}
    for method, label in (("dictionary", "dictionary"), ("knn", "memory bank")):
        results[method], details = mvtec_feature_experiment(data, method, profile=run.profile,
                                                            seed=run.seed, backbone=backbone,
                                                            return_details=True)
        maps[label] = details["test_maps"]
    fig = _map_figure(data, maps)
    facts = {"backbone": backbone.name,
             "pretrained": {"resnet50-imagenet": "ImageNet-pretrained",
                            "hed-vgg16": "HED's edge detector, trained from ImageNet weights; "
                                         "offline"}.get(backbone.name,
                                                        "no pretrained weights")}
    for method, r in results.items():
        for key in ("image_auroc", "pixel_auroc", "aupro"):
            facts[f"{method}_{key}"] = f"{r[key]:.2f}"
    return fig, facts


@figure
def ecg_heartbeats(run: Run):
    """A normal and an abnormal test beat with their Conv1D reconstructions, and the scores of
    the test beats against the validation threshold (notebook 09)."""
    import matplotlib.pyplot as plt

    from course_lib.data.ecg import load_ecg
    from course_lib.experiments.ecg import ecg_experiment, split_ecg
    from course_lib.plots import plot_score_histograms

    data = load_ecg()
    run.sources["ECG"] = data.source
    split = split_ecg(data.x, data.y, seed=run.seed)
    r, details = ecg_experiment(split, run.profile, seed=run.seed, return_details=True)
    scores, y, threshold = details["scores"]["autoencoder"], split.is_abnormal, details["threshold"]
    x_hat = details["autoencoder"].predict(split.x_test, verbose=0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, label, color in ((axes[0], 0, "C0"), (axes[1], 1, "C3")):
        rows = np.flatnonzero(y == label)
        i = rows[np.argsort(scores[rows])[len(rows) // 2]]      # the median beat of its group
        ax.plot(split.x_test[i], color="k", linewidth=1, label="beat")
        ax.plot(x_hat[i], color=color, linewidth=1.3, label="reconstruction")
        ax.fill_between(np.arange(len(x_hat[i])), split.x_test[i], x_hat[i], color=color,
                        alpha=0.3)
        kind = "normal" if label == 0 else f"abnormal (class {split.y_test[i]})"
        ax.set(title=f"median {kind} beat: score {scores[i]:.3f}", xlabel="sample")
        ax.legend(fontsize=8, loc="lower right")
    plot_score_histograms({"normal": scores[y == 0], "abnormal": scores[y == 1]},
                          threshold=threshold, bins=30, ax=axes[2])
    axes[2].set_xlabel("reconstruction error (MSE)")
    fig.tight_layout()
    return fig, {"n_train": r["n_train"], "n_val": r["n_val"], "n_test": r["n_test"],
                 "n_abnormal": r["n_abnormal"], "auroc": f"{r['auroc']:.3f}",
                 "auprc": f"{r['auprc']:.3f}", "pca_auroc": f"{r['baseline_pca_auroc']:.3f}",
                 "iforest_auroc": f"{r['baseline_iforest_auroc']:.3f}",
                 "nn_auroc": f"{r['baseline_nn_auroc']:.3f}",
                 "recall": f"{r['recall']:.2f}",
                 "false_alarms": f"{100 * r['false_alarm_rate']:.0f}%",
                 "epochs": r["epochs"], "source": data.source}
