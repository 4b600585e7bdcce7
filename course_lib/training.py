"""Training mechanics: one compact progress bar for a whole ``fit``.

The training loops themselves are written out in the notebooks that teach them (and saved in
``course_lib.experiments``); what they share is how they report progress in a workshop: not
silence, not a line per batch, but :func:`epoch_progress`, one bar with a tick per epoch and
the latest losses beside it.
"""

from __future__ import annotations

from course_lib.checks import check_positive_int


def epoch_progress(epochs: int, desc: str = "training"):
    """A Keras callback that shows ONE compact progress bar for a whole ``fit``: one tick per
    epoch, the latest losses beside it (tqdm's Keras callback; no per-batch output).
    Pass it to ``fit(..., verbose=0, callbacks=[epoch_progress(epochs, "what")])``.
    Used wherever a notebook trains a model.
    """
    from tqdm.keras import TqdmCallback

    return TqdmCallback(epochs=check_positive_int("epochs", epochs), verbose=0, desc=desc,
                        leave=True)
