"""What a healthy run gives: the ranges the notebooks state, and a line that checks a result.

A learner studying alone cannot tell a healthy run from a broken one by looking at one AUROC.
Where a notebook asks to compare results, it states the range a healthy ``workshop`` run gives
(in a markdown cell) and its code calls :func:`report` on the number it just computed::

    report("03.autoencoder_auroc", auroc)
    # AUROC of the one-class autoencoder (digit 7 normal): 0.961. A healthy workshop run
    # gives 0.94-0.99: within it.

:data:`EXPECTED` holds every range, one entry per key, for the ``workshop`` and the ``fast``
profile.  The values they were set from are in ``docs/healthy_runs.md`` (with the rule that
widened them), which ``make bench`` writes from the numbers these very calls report
(``COURSE_HEALTHY_LOG`` names the file they are appended to).  ``tests/test_healthy.py`` checks that every stated range contains its
documented number, that every key a notebook reports has a range here, and that the
notebook's text states the same range.  Nothing here is a target a run is tuned to: a value
outside the range is a reason to look (the entry's ``outside`` text says where), not an error.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from course_lib.config import get_profile

#: The environment variable naming a JSON-lines file that :func:`report` appends to.
LOG_ENV = "COURSE_HEALTHY_LOG"
#: Where the measured values and the ranges are written down.
DOC = "docs/healthy_runs.md"


@dataclass(frozen=True)
class Expected:
    """One number a notebook reports, and the range a healthy run gives.

    Attributes
    ----------
    what : str
        What the number is, as the line printed by :func:`report` names it.
    workshop, fast : tuple of two floats
        The range a healthy run gives in that profile (inclusive).
    outside : str
        What a value outside the workshop range usually means, and where to look.
    digits : int
        Decimals printed.
    """

    what: str
    workshop: tuple
    fast: tuple
    outside: str
    digits: int = 3

    def range_text(self, profile: str = "workshop") -> str:
        """``"0.94-0.99"``: the range as the notebooks write it (no trailing zeros)."""
        low, high = self.fast if profile == "fast" else self.workshop
        return f"{_trim(low, self.digits)}-{_trim(high, self.digits)}"


def _trim(value: float, digits: int) -> str:
    """A range end as written: ``0.94`` rather than ``0.940``, ``12`` rather than ``12.000``."""
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


EXPECTED: dict[str, Expected] = {
    "01.ae_2d_mse": Expected(
        'Mean test error (MSE) of the 2-D autoencoder',
        workshop=(0.0367, 0.0551), fast=(0.0427, 0.0641),
        outside=("Near or above PCA's, it trained too little: check that it ran all its epochs, "
                 'and look at its latent plot.'),
        digits=4),
    "01.autoencoder_mse": Expected(
        'Mean test error (MSE) of the dense autoencoder 784-32-784',
        workshop=(0.0097, 0.0147), fast=(0.0226, 0.034),
        outside=('Much higher means it trained too little or is still at the "average digit" '
                 'stage: look at the loss curves (section 4) and the reconstructions (section '
                 '5).'),
        digits=4),
    "01.error_ratio": Expected(
        "The dense autoencoder's test error as a share of the mean image's",
        workshop=(0.14, 0.22), fast=(0.34, 0.52),
        outside=('Near or above 1, the model never left the "average digit" stage: check the '
                 'learning rate (3e-3) and the loss curves of section 4.'),
        digits=2),
    "01.pca_2d_mse": Expected(
        'Mean test error (MSE) of PCA with 2 components',
        workshop=(0.0448, 0.0672), fast=(0.0451, 0.0677),
        outside=('PCA does no training: another value means other data (check the `Data source` '
                 'line).'),
        digits=4),
    "02.cae32_mse": Expected(
        'Mean test error (MSE) of the CAE with a 32-number code',
        workshop=(0.0049, 0.0075), fast=(0.0123, 0.0185),
        outside=('Much higher means the CAE-32 trained too little: compare its validation loss '
                 "with the dense model's (section 7)."),
        digits=4),
    "02.denoise_factor": Expected(
        ("How many times closer to the clean images the denoiser's output is than the "
         'noisy input'),
        workshop=(4.5, 6.9), fast=(2.1, 3.3),
        outside=('Near 1, the denoiser learned to copy: check `target=x_train_clean` and look at '
                 'the denoised images.'),
        digits=1),
    "02.dense_cae32_ratio": Expected(
        "Dense model's test error / the CAE-32's (the same 32-number code)",
        workshop=(1.54, 2.32), fast=(1.54, 2.32),
        outside=('Far below the range, the CAE-32 trained badly; far above, the dense model did: '
                 'look at both validation losses.'),
        digits=2),
    "02.plain_cae_noisy_mse": Expected(
        'Error (MSE to the clean images) of the plain CAE on noisy inputs',
        workshop=(0.0295, 0.0443), fast=(0.0384, 0.0576),
        outside=('Far off means the plain CAE of section 4 trained badly, or the noise level '
                 '(`NOISE_STD`) was changed.'),
        digits=4),
    "03.autoencoder_auroc": Expected(
        'AUROC of the one-class autoencoder (digit 7 normal)',
        workshop=(0.94, 0.99), fast=(0.92, 0.97),
        outside=('Much lower means it learned too little of the 7s: look at its loss curves '
                 '(section 3) and the score histogram (section 4).')),
    "03.bench_auroc": Expected(
        'AUROC of `mnist_one_class_experiment` (digit 7, all its training images)',
        workshop=(0.95, 1.0), fast=(0.93, 0.98),
        outside=("Much lower means the benchmark's model trained too little or on other images: "
                 'check `n_train` in the printed result.')),
    "03.conformal_false_alarm_rate": Expected(
        ('Mean false-alarm rate of the conformal threshold on new normals (alpha = 0.05, '
         '100 splits)'),
        workshop=(0.031, 0.061), fast=(0.024, 0.054),
        outside=('Clearly above 0.05 means the rank k is off, or the calibration and the new '
                 'normals are not drawn alike.')),
    "03.pca_auroc": Expected(
        'AUROC of the PCA baseline (32 components, digit 7 normal)',
        workshop=(0.97, 0.99), fast=(0.97, 0.99),
        outside=('PCA does no training: another value means other data or another split (check '
                 'the `Data source` line and the number of training 7s).')),
    "04.autoencoder_auroc": Expected(
        'Test AUROC of the credit-card autoencoder',
        workshop=(0.92, 0.97), fast=(0.92, 0.97),
        outside=('Much lower means the autoencoder did not learn normal transactions: look at '
                 'its training curves (section 5) and its error histogram (section 6); if all '
                 'four models are off, check the `Data source` line and the split (section 3).')),
    "04.distance_auroc": Expected(
        'Test AUROC of the distance from the mean',
        workshop=(0.92, 0.96), fast=(0.92, 0.96),
        outside=('A baseline off its range points at the data or the scaling (sections 1 and 3).')),
    "04.isolation_forest_auroc": Expected(
        'Test AUROC of Isolation Forest',
        workshop=(0.91, 0.96), fast=(0.91, 0.96),
        outside=('A baseline off its range points at the data or the split (the `Data source` '
                 'line, section 3).')),
    "04.pca_auroc": Expected(
        'Test AUROC of PCA reconstruction (7 components)',
        workshop=(0.92, 0.97), fast=(0.92, 0.97),
        outside=('A baseline off its range points at the data or the split (the `Data source` '
                 'line, section 3), not at the autoencoder.')),
    "04.real_rate_average_precision": Expected(
        "Autoencoder's average precision at the real fraud rate (0.172%)",
        workshop=(0.208, 0.388), fast=(0.191, 0.357),
        outside=('Far below goes with a low AUROC in section 7: the autoencoder ranks frauds '
                 'poorly; look at its training curves (section 5).')),
    "05.bottle_l2_pixel_auroc": Expected(
        'Pixel AUROC of AE-L2 on the MVTec AD bottle',
        workshop=(0.87, 0.95), fast=(0.81, 0.9),
        outside=('Far below means the L2 model did not learn: see "Did they learn?" (its squared '
                 'error against the average bottle).')),
    "05.bottle_ssim_pixel_auroc": Expected(
        'Pixel AUROC of AE-SSIM on the MVTec AD bottle',
        workshop=(0.89, 0.98), fast=(0.87, 0.96),
        outside=('Far below, towards 0.5, means the SSIM model did not learn: see "Did they '
                 'learn?" and its reconstructions (section 3).')),
    "05.cracks_l2_image_auroc": Expected(
        'Image AUROC of the L2 patch autoencoder on the real cracks (KolektorSDD)',
        workshop=(0.86, 0.95), fast=(0.87, 0.96),
        outside=('Near 0.5 usually means the model has not learned the surface: read the check '
                 'after patch training (section 4).')),
    "05.cracks_ssim_image_auroc": Expected(
        'Image AUROC of the SSIM patch autoencoder on the real cracks',
        workshop=(0.84, 0.93), fast=(0.84, 0.93),
        outside=('Near 0.5 usually means the model has not learned the surface (read the check '
                 "after patch training, section 4), or SSIM's k2 is back at 0.03.")),
    "05.cracks_texture_image_auroc": Expected(
        'Image AUROC of the texture-inspection baseline on the real cracks',
        workshop=(0.85, 0.94), fast=(0.85, 0.94),
        outside=('A baseline off its range points at the data or the patch settings (section 1 '
                 'and `patch_geometry`).')),
    "06.autoencoder_auroc": Expected(
        'AUROC of the one-class autoencoder (digit 7 normal)',
        workshop=(0.94, 0.99), fast=(0.92, 0.97),
        outside=('Far below means it stopped too early: look at its epoch count.')),
    "06.bottle_vae_pixel_auroc": Expected(
        'Pixel AUROC of the bottle VAE',
        workshop=(0.87, 0.96), fast=(0.84, 0.93),
        outside=('Far below means the VAE did not learn: the "Did it learn?" check prints NOT '
                 'LEARNED.')),
    "06.pca_auroc": Expected(
        'AUROC of PCA reconstruction (digit 7 normal)',
        workshop=(0.97, 0.99), fast=(0.97, 0.99),
        outside=('PCA does no training: another value points at the data (the `Data source` '
                 'line, the digit split).')),
    "06.vae_elbo_auroc": Expected(
        "AUROC of the VAE's negative ELBO (digit 7 normal)",
        workshop=(0.93, 0.98), fast=(0.92, 0.97),
        outside=('Far below means the VAE stopped early or did not learn: compare the epoch '
                 'counts printed after training with `profile.one_class_epochs`.')),
    "06.vae_error_auroc": Expected(
        "AUROC of the VAE's squared error at the mean code (digit 7 normal)",
        workshop=(0.94, 0.99), fast=(0.93, 0.98),
        outside=('Far below means the VAE stopped early or did not learn: compare the epoch '
                 'counts printed after training with `profile.one_class_epochs`.')),
    "07.anogan_auroc": Expected(
        "AUROC of AnoGAN's score A(x) (digit 7 normal)",
        workshop=(0.84, 0.93), fast=(0.91, 1.0),
        outside=('Much lower usually means the generator did not learn the normal digit '
                 '(collapse or non-convergence): look at the samples and the `gan_health` line '
                 'in section 2.')),
    "07.autoencoder_auroc": Expected(
        'AUROC of the one-class autoencoder on the same test images',
        workshop=(0.93, 1.0), fast=(0.94, 1.0),
        outside=("Much lower means the autoencoder's training went wrong, as in notebook 03: "
                 'look at its loss and reconstructions.')),
    "07.fanogan_auroc": Expected(
        "AUROC of f-AnoGAN's izi encoder (score A_R + kappa A_D)",
        workshop=(0.87, 0.96), fast=(0.93, 1.0),
        outside=('Far below means the encoder did not learn to invert G (too few '
                 "`encoder_epochs`, or a collapsed generator): compare G(E(x)) with the search's "
                 'reconstructions.')),
    "08.bank_image_auroc": Expected(
        'Image AUROC of the memory bank (HED, greedy 10%) on the bottle',
        workshop=(0.96, 1.0), fast=(0.95, 1.0),
        outside=("Well below means the features are not HED's trained ones or the bank was "
                 "fitted on the wrong patches: check section 2's backbone line and the bank's "
                 'maps in section 5.')),
    "08.bank_pixel_auroc": Expected(
        'Pixel AUROC of the memory bank (HED) on the bottle',
        workshop=(0.92, 1.0), fast=(0.91, 1.0),
        outside=("Well below means the features are not HED's trained ones or the bank was "
                 "fitted on the wrong patches: check section 2's backbone line and the bank's "
                 'maps in section 5.')),
    "08.cracks_bank_image_auroc": Expected(
        'Image AUROC of the memory bank (HED) on the KolektorSDD cracks',
        workshop=(0.84, 0.93), fast=(0.86, 0.95),
        outside=("Near 0.5 or below, the bank does not see the cracks: check `load_kolektor`'s "
                 '`Data source` line and the crack maps.')),
    "08.dictionary_image_auroc": Expected(
        'Image AUROC of the feature dictionary (HED, 10 centres) on the bottle',
        workshop=(0.35, 0.65), fast=(0.0, 0.31),
        outside=('Well above the range means the maps no longer peak on the rims: look at its '
                 'maps in section 5.')),
    "09.autoencoder_auroc": Expected(
        'AUROC of the Conv1D autoencoder (abnormal beats vs normal)',
        workshop=(0.96, 1.0), fast=(0.95, 1.0),
        outside=("Well below PCA's means it did not learn the normal shape: compare its "
                 "validation loss with the mean beat's (section 5)."),
        digits=4),
    "09.best_val_loss": Expected(
        'Best validation loss (MSE) of the Conv1D autoencoder',
        workshop=(0.038, 0.0572), fast=(0.0793, 0.1191),
        outside=("Near or above the mean beat's error, the model learned no more than the "
                 'average beat: look at the loss curves (stopped after a few epochs, or never '
                 'fell).'),
        digits=4),
    "09.iforest_auroc": Expected(
        'AUROC of Isolation Forest on the raw beats',
        workshop=(0.93, 1.0), fast=(0.93, 1.0),
        outside=('Well below means another split or other data: check the `Data source` line and '
                 'the split in section 3.'),
        digits=4),
    "09.mean_beat_mse": Expected(
        'Error (MSE) of predicting the mean training beat (validation normals)',
        workshop=(0.285, 0.316), fast=(0.285, 0.316),
        outside=('It depends only on the seeded split: another value means other data or another '
                 'split (check the `Data source` line and section 3).'),
        digits=4),
    "09.pca_auroc": Expected(
        'AUROC of PCA reconstruction (16 components)',
        workshop=(0.99, 1.0), fast=(0.99, 1.0),
        outside=('Well below means another split or other data: check the `Data source` line and '
                 'the split in section 3.'),
        digits=4),
}


def _log(key: str, value: float, profile: str) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:  # one short line per call: appends are whole
        f.write(json.dumps({"key": key, "value": value, "profile": profile}) + "\n")


def report(key: str, value, profile=None) -> None:
    """Print one line: the number, the range a healthy run gives, and whether
    the number lies in it.  ``profile``: the run's (default :func:`get_profile`).

    In the ``full`` profile the workshop range is shown for comparison, unchecked.  A key
    without an entry in :data:`EXPECTED` prints its value only (``tests/test_healthy`` fails
    on such a key, so none ships)."""
    profile = get_profile(profile).name
    value = float(value)
    _log(key, value, profile)
    entry = EXPECTED.get(key)
    if entry is None:
        line = f"{key}: {value:.4g} (no healthy range recorded for this number)"
    elif not math.isfinite(value):
        line = f"{entry.what}: {value} - not a number: the run failed. {entry.outside}"
    else:
        line = f"{entry.what}: {value:.{entry.digits}f}."
        if profile == "full":
            line += (f" A healthy workshop run gives {entry.range_text()}; this full-profile "
                     "run trained longer on more data, so it may differ.")
        else:
            low, high = entry.fast if profile == "fast" else entry.workshop
            line += f" A healthy {profile} run gives {entry.range_text(profile)}"
            line += ": within it." if low <= value <= high else f": outside it. {entry.outside}"
            if profile == "fast":
                line += f" (Workshop profile: {entry.range_text()}.)"
    print(line)  # nothing returned: a call that ends a cell shows the line once
