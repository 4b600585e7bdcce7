"""Reconstruction errors, anomaly scores, thresholds and evaluation.

An autoencoder trained on normal data reconstructs normal inputs well and unusual inputs
badly; the per-sample reconstruction error is the anomaly score.  Turning scores into
decisions needs a threshold; the metrics of both steps come from scikit-learn.

Conventions (notebooks 03 and 04): label 1 = anomaly, 0 = normal; a sample is flagged as an
anomaly iff ``score > threshold``.

- scores: :func:`reconstruction_error`, :func:`anomaly_scores`
- thresholds: :func:`threshold_percentile` and :func:`threshold_conformal` (normal validation
  data only; the second with a guaranteed false-alarm rate),
  :func:`threshold_best_f1` and :func:`threshold_min_cost` (labelled data),
  :func:`threshold_alert_budget` (unlabelled data and a review capacity)
- evaluation: :func:`evaluate` (AUROC, AUPRC and, for a threshold, precision, recall, F1,
  confusion-matrix counts and alert rate); :func:`precision_recall_at_rate` (the
  precision-recall curve and average precision translated to another share of anomalies)
"""

from __future__ import annotations

import numpy as np

from course_lib.checks import (DataError, check_number, check_scores, check_scores_and_labels,
                               quote)


def reconstruction_error(x, x_hat, kind: str = "mse") -> np.ndarray:
    """Per-sample reconstruction error between inputs ``x`` and reconstructions ``x_hat``.

    Parameters
    ----------
    x, x_hat : array-like of the same shape (N, ...)
    kind : {"mse", "mae"}
        Mean squared or mean absolute error over all features of a sample.

    Returns
    -------
    ndarray of shape (N,)

    Taught in notebook 01 (and used as the anomaly score from notebook 03 on).
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_hat, dtype=np.float64)
    if a.shape != b.shape:
        raise DataError(f"x and x_hat must have the same shape, got {a.shape} and {b.shape}.")
    if a.ndim < 1 or len(a) == 0:
        raise DataError(f"expected a non-empty batch of samples, got shape {a.shape}.")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise DataError("x or x_hat contains NaN or infinite values.")
    diff = (a - b).reshape(len(a), -1)
    if kind == "mse":
        return np.mean(diff ** 2, axis=1)
    if kind == "mae":
        return np.mean(np.abs(diff), axis=1)
    raise DataError(f"kind must be 'mse' or 'mae', got {quote(kind)}.")


def anomaly_scores(model, x, batch_size: int = 256, kind: str = "mse") -> np.ndarray:
    """Score samples by how badly ``model`` (an autoencoder) reconstructs them.

    Taught in notebook 03; used by ``python -m course_lib.bench``.
    """
    x = np.asarray(x, dtype=np.float32)
    x_hat = model.predict(x, batch_size=batch_size, verbose=0)
    return reconstruction_error(x, x_hat.reshape(x.shape), kind=kind)


# --------------------------------------------------------------------------- thresholds
# Convention used by every helper below (and by notebooks 03 and 04):
#   label 1 = anomaly, label 0 = normal; a sample is *flagged* iff ``score > threshold``.


def _just_below(value: float) -> float:
    """The largest float64 below ``value``: ``score > _just_below(v)`` iff ``score >= v``."""
    return float(np.nextafter(np.float64(value), -np.inf))


def threshold_percentile(normal_scores, percentile: float = 99.0) -> float:
    """Threshold at a percentile of the scores of *normal* validation data.

    The simplest rule, and the only one that needs no labelled anomaly: hold out some normal
    data (never trained on), score it, and put the threshold at its ``percentile``-th
    percentile.  About ``(100 - percentile)`` % of normal samples then score above it and are
    flagged (false alarms); how many anomalies are caught depends on the model.

    Parameters
    ----------
    normal_scores : array-like of shape (N,)
        Anomaly scores of normal validation samples.
    percentile : float
        Between 0 and 100 (default 99: about 1 % false alarms on normal data).

    Returns
    -------
    float
        The threshold; a sample is flagged iff ``score > threshold``.

    Raises
    ------
    ValueError
        Empty or non-finite scores, or a percentile outside [0, 100].

    Taught in notebook 03; used in notebook 04.
    """
    s = check_scores(normal_scores, "normal_scores")
    p = check_number("percentile", percentile, 0.0, 100.0)
    return float(np.percentile(s, p))


def threshold_conformal(normal_scores, alpha=0.05):
    """Split-conformal threshold from the scores of n normal calibration samples: the
    ceil((n + 1)(1 - alpha))-th smallest. A new normal sample drawn like them (exchangeable)
    scores above it with probability at most alpha, whatever the scores' distribution; flag
    iff score > threshold. Needs n >= 1/alpha - 1 scores. Taught in notebook 03."""
    s = np.sort(check_scores(normal_scores, "normal_scores"))
    alpha = check_number("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    k = int(np.ceil((len(s) + 1) * (1 - alpha)))       # rank of the threshold, 1-based
    if k > len(s):
        raise DataError(f"{len(s)} calibration scores cannot guarantee alpha = {alpha:g}: the "
                        f"rule needs at least {int(np.ceil(1 / alpha)) - 1}. Keep more normal "
                        f"data apart for calibration, or accept a larger alpha.")
    return float(s[k - 1])


def threshold_best_f1(y_true, scores) -> float:
    """Threshold that maximises the F1 score on labelled data.

    F1 is the harmonic mean of precision and recall.  Computed with scikit-learn's
    ``precision_recall_curve``, whose thresholds flag ``score >= t``; the returned value is
    the largest float just below that ``t``, so that ``score > threshold`` flags exactly the
    same samples.  Among thresholds with equal F1 the highest (fewest alerts) is returned.
    F1 depends on the share of anomalies in ``y_true``: choose it on data whose base rate
    resembles the data the detector will see.

    Parameters
    ----------
    y_true : array-like of shape (N,)
        1 = anomaly, 0 = normal.  Must hold at least one anomaly.
    scores : array-like of shape (N,)
        Anomaly scores (higher = more anomalous).

    Returns
    -------
    float
        The threshold; a sample is flagged iff ``score > threshold``.

    Raises
    ------
    ValueError
        No anomaly in ``y_true`` (F1 is then undefined), labels other than 0/1, lengths that
        differ, empty input or NaN/inf scores.

    Taught in notebook 03; used in notebook 04.
    """
    from sklearn.metrics import precision_recall_curve

    y, s = check_scores_and_labels(y_true, scores)
    if y.sum() == 0:
        raise DataError("threshold_best_f1 needs at least one labelled anomaly (label 1) in "
                         "y_true; with normal data only, use threshold_percentile.")
    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:len(thresholds)], recall[:len(thresholds)]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]  # thresholds increase: last = fewest alerts
    return _just_below(thresholds[best])


def threshold_min_cost(y_true, scores, cost_fp: float = 1.0, cost_fn: float = 10.0) -> float:
    """Threshold that minimises the total cost ``cost_fp * FP + cost_fn * FN`` on labelled data.

    A false positive (a normal sample flagged) costs an analyst's time; a false negative (a
    missed anomaly) usually costs much more.  Candidates: every distinct score (flag the
    samples strictly above it) and a value just below the smallest score (flag everything).
    Among equal costs the highest threshold (fewest alerts) is returned.  Works without
    anomalies too (then flagging nothing is cheapest).

    Parameters
    ----------
    y_true : array-like of shape (N,)
        1 = anomaly, 0 = normal.
    scores : array-like of shape (N,)
        Anomaly scores (higher = more anomalous).
    cost_fp, cost_fn : float
        Cost of one false positive and of one false negative (finite, >= 0).

    Returns
    -------
    float
        The threshold; a sample is flagged iff ``score > threshold``.

    Taught in notebook 03; used in notebook 04.
    """
    y, s = check_scores_and_labels(y_true, scores)
    cost_fp = check_number("cost_fp", cost_fp, low=0.0)
    cost_fn = check_number("cost_fn", cost_fn, low=0.0)
    candidates = np.unique(s)  # increasing
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    fn = np.searchsorted(pos, candidates, side="right")            # anomalies not above t
    fp = len(neg) - np.searchsorted(neg, candidates, side="right")  # normals above t
    cost = cost_fp * fp + cost_fn * fn
    flag_all_cost = cost_fp * len(neg)
    best = np.flatnonzero(cost <= cost.min() + 1e-12)[-1]
    if flag_all_cost < cost[best] - 1e-12:
        return _just_below(candidates[0])
    return float(candidates[best])


def threshold_alert_budget(scores, alert_rate: float) -> float:
    """Threshold that flags at most a fraction ``alert_rate`` of the given (unlabelled) scores.

    The rule of an operations team: "we can review 50 alerts a day" is an alert rate of
    50 / (samples per day).  Needs no label at all.  With ``k = floor(alert_rate * N)``, the
    ``k`` highest scores are flagged; ties at the boundary are all left unflagged, so ties can
    only lower the number of alerts, never raise it above the budget.

    Parameters
    ----------
    scores : array-like of shape (N,)
        Anomaly scores of a typical batch (e.g. one day of data).
    alert_rate : float
        Fraction in [0, 1] of samples the team can review.

    Returns
    -------
    float
        The threshold; a sample is flagged iff ``score > threshold``.

    Taught in notebook 03; used in notebook 04.
    """
    s = check_scores(scores)
    rate = check_number("alert_rate", alert_rate, 0.0, 1.0)
    k = int(np.floor(rate * len(s) + 1e-9))  # 1e-9: 0.29 * 100 must give 29, not 28
    ordered = np.sort(s)[::-1]
    if k >= len(s):
        return _just_below(ordered[-1])
    return float(ordered[k])  # flags the scores above the (k+1)-th highest: at most k


def evaluate(y_true, scores, threshold: float | None = None) -> dict:
    """Ranking metrics of anomaly scores and, with a threshold, the metrics of that decision.

    Parameters
    ----------
    y_true : array-like of shape (N,)
        1 = anomaly, 0 = normal.
    scores : array-like of shape (N,)
        Anomaly scores (higher = more anomalous).
    threshold : float, optional
        Decision threshold; a sample is flagged iff ``score > threshold``.

    Returns
    -------
    dict
        ``auroc`` (``roc_auc_score``) and ``auprc`` (``average_precision_score``): both
        ``None`` when ``y_true`` holds only one class (they are undefined then).  With a
        ``threshold`` also ``threshold``, ``precision``, ``recall``, ``f1`` (scikit-learn's
        ``precision_recall_fscore_support``; 0.0 where undefined, e.g. recall without any
        anomaly), the confusion-matrix counts ``tn``, ``fp``, ``fn``, ``tp`` (ints) and
        ``alert_rate``, the fraction of samples flagged.

    Raises
    ------
    ValueError
        Labels other than 0/1, lengths that differ, empty input, NaN/inf scores or threshold.

    Taught in notebook 03; used in notebook 04.
    """
    from sklearn.metrics import (average_precision_score, confusion_matrix,
                                 precision_recall_fscore_support, roc_auc_score)

    y, s = check_scores_and_labels(y_true, scores)
    both = 0 < y.sum() < len(y)
    result = {"auroc": float(roc_auc_score(y, s)) if both else None,
              "auprc": float(average_precision_score(y, s)) if both else None}
    if threshold is None:
        return result
    t = check_number("threshold", threshold)
    flagged = (s > t).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, flagged, labels=[0, 1]).ravel())
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, flagged, pos_label=1, average="binary", zero_division=0.0)
    result.update(threshold=t, precision=float(precision), recall=float(recall), f1=float(f1),
                  tn=tn, fp=fp, fn=fn, tp=tp, alert_rate=float(flagged.mean()))
    return result


def precision_recall_at_rate(y_true, scores, rate: float) -> dict:
    """The precision-recall curve of ``scores``, translated to a share ``rate`` of anomalies.

    Recall ``r`` and false positive rate ``f`` of a threshold do not depend on how many
    anomalies the test set holds; precision does.  At a share ``b`` of anomalies (the real
    fraud rate, say, where the test set was enriched) a threshold flags ``b r`` anomalies and
    ``(1 - b) f`` normal samples per sample seen, so its precision is
    ``b r / (b r + (1 - b) f)``.  Every distinct score is a threshold: the curve comes from
    ``roc_curve(..., drop_intermediate=False)``.  (Its default, ``True``, drops the points
    inside straight runs of the ROC curve, such as several anomalies in a row; they then all
    get the precision of the last of them, the highest of the run, and the average precision
    comes out too high.)

    Parameters
    ----------
    y_true : array-like of shape (N,)
        1 = anomaly, 0 = normal; both must occur.
    scores : array-like of shape (N,)
        Anomaly scores (higher = more anomalous).
    rate : float
        Share of anomalies to translate to, in (0, 1).

    Returns
    -------
    dict
        ``recall``, ``fpr``, ``precision`` and ``thresholds``: arrays, one entry per
        threshold, from the highest threshold (nothing flagged; precision 1 by convention, as
        in scikit-learn's ``precision_recall_curve``) down; and ``average_precision``, the sum
        over thresholds of the rise in recall times the precision there (the definition of
        ``average_precision_score``, which it equals when ``rate`` is the share of anomalies
        in ``y_true``).

    Used in notebook 04.
    """
    from sklearn.metrics import roc_curve

    y, s = check_scores_and_labels(y_true, scores)
    if not 0 < y.sum() < len(y):
        raise DataError("y_true must hold both anomalies (1) and normal samples (0).")
    b = check_number("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
    fpr, recall, thresholds = roc_curve(y, s, drop_intermediate=False)   # every distinct score
    caught, false_alarms = b * recall, (1 - b) * fpr
    flagged = caught + false_alarms
    precision = np.divide(caught, flagged, out=np.ones_like(caught), where=flagged > 0)
    average_precision = float(np.sum(np.diff(recall) * precision[1:]))
    return {"recall": recall, "fpr": fpr, "precision": precision, "thresholds": thresholds,
            "average_precision": average_precision}
