"""Training mechanics shared by the course's experiments: one ``fit`` for every autoencoder.

:func:`fit_autoencoder` trains a compiled autoencoder to rebuild its input (``fit(x, x)``),
optionally with early stopping on validation data, silently or with one compact progress bar
(:func:`epoch_progress`: one bar for the whole run, a tick per epoch, the losses beside it).
"""

from __future__ import annotations

import numpy as np

from course_lib.checks import DataError, check_positive_int


def epoch_progress(epochs: int, desc: str = "training"):
    """A Keras callback that shows ONE compact progress bar for a whole ``fit``: one tick per
    epoch, the latest losses beside it (tqdm's Keras callback; no per-batch output)."""
    from tqdm.keras import TqdmCallback

    return TqdmCallback(epochs=check_positive_int("epochs", epochs), verbose=0, desc=desc,
                        leave=True)


def fit_autoencoder(autoencoder, x, epochs: int, batch_size: int, x_val=None,
                    patience: int | None = None, validation_split: float | None = None,
                    progress: bool = False, desc: str = "training", target=None):
    """Train ``autoencoder`` to reconstruct ``x`` (or ``target``, e.g. clean images for a
    denoiser) and return its History.

    Parameters
    ----------
    autoencoder : keras.Model
        Compiled (loss and optimiser set by its builder).
    x : array-like
        Training inputs.
    epochs, batch_size : int
        At most ``epochs`` epochs (early stopping may end sooner).
    x_val : array-like, optional
        Validation inputs (reconstructed as their own targets).
    patience : int, optional
        Early stopping on the validation loss with this patience, best weights restored
        (needs ``x_val`` or ``validation_split``).
    validation_split : float, optional
        Keras' ``validation_split`` (the *last* share of ``x``) instead of ``x_val``.
    progress : bool
        One compact progress bar (:func:`epoch_progress`) instead of silence.
    desc : str
        The bar's label.
    target : array-like, optional
        What to reconstruct (default ``x``).
    """
    import keras

    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    x = np.asarray(x, dtype=np.float32)
    y = x if target is None else np.asarray(target, dtype=np.float32)
    callbacks = []
    validation = None
    if x_val is not None:
        xv = np.asarray(x_val, dtype=np.float32)
        validation = (xv, xv)
    if patience is not None:
        if validation is None and validation_split is None:
            raise DataError("early stopping (patience) needs x_val or validation_split.")
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=check_positive_int("patience", patience),
            restore_best_weights=True))
    if progress:
        callbacks.append(epoch_progress(epochs, desc))
    kwargs = {"validation_data": validation} if validation is not None else (
        {"validation_split": validation_split} if validation_split is not None else {})
    return autoencoder.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True,
                           callbacks=callbacks, verbose=0, **kwargs)
