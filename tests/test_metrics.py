import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import mean_absolute_error, mean_squared_error

from course_lib.baselines import PCAReconstruction
from course_lib.metrics import anomaly_scores, reconstruction_error


def test_reconstruction_error_matches_sklearn():
    rng = np.random.default_rng(0)
    x, x_hat = rng.random((6, 28, 28)), rng.random((6, 28, 28))
    ours = reconstruction_error(x, x_hat)
    ref = [mean_squared_error(a.ravel(), b.ravel()) for a, b in zip(x, x_hat)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    ref_mae = [mean_absolute_error(a.ravel(), b.ravel()) for a, b in zip(x, x_hat)]
    np.testing.assert_allclose(reconstruction_error(x, x_hat, kind="mae"), ref_mae, rtol=1e-12)
    assert np.all(reconstruction_error(x, x) == 0)


@pytest.mark.parametrize("a, b, message", [
    (np.zeros((3, 4)), np.zeros((3, 5)), "same shape"),
    (np.zeros((0, 4)), np.zeros((0, 4)), "non-empty"),
    (np.full((2, 2), np.nan), np.zeros((2, 2)), "NaN"),
])
def test_reconstruction_error_rejects_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        reconstruction_error(a, b)
    with pytest.raises(ValueError, match="kind"):
        reconstruction_error(np.zeros((1, 2)), np.zeros((1, 2)), kind="huber")


def test_anomaly_scores_uses_the_model():
    class Halver:
        def predict(self, x, batch_size=None, verbose=0):
            return x / 2

    x = np.ones((3, 4), np.float32) * np.array([[0.0], [1.0], [2.0]], np.float32)
    np.testing.assert_allclose(anomaly_scores(Halver(), x), [0.0, 0.25, 1.0])


def test_pca_baseline_agrees_with_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 30)) @ rng.normal(size=(30, 30))
    base = PCAReconstruction(n_components=5).fit(x)
    pca = PCA(n_components=5, random_state=0).fit(x)
    ref = np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)
    np.testing.assert_allclose(base.score_samples(x), ref, rtol=1e-8)
    # an input far from the training subspace scores higher than typical training rows
    outlier = rng.normal(size=(1, 30)) * 50
    assert base.score_samples(outlier)[0] > np.percentile(base.score_samples(x), 99)
    with pytest.raises(ValueError, match="NaN"):
        base.score_samples(np.full((1, 30), np.nan))


# --------------------------------------------------------------------------- thresholds, evaluate
import json  # noqa: E402
import warnings  # noqa: E402

from sklearn.metrics import (average_precision_score, confusion_matrix,  # noqa: E402
                             precision_recall_fscore_support, roc_auc_score)

from course_lib.metrics import (evaluate, threshold_alert_budget,  # noqa: E402
                                threshold_best_f1, threshold_min_cost, threshold_percentile)

# A hand-made case: three normals, two anomalies; one anomaly (0.25) hides among the normals.
Y_HAND = np.array([0, 0, 0, 1, 1])
S_HAND = np.array([0.1, 0.2, 0.3, 0.25, 0.9])


def _random_case(seed, n=300, base_rate=0.1):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < base_rate).astype(int)
    y[:2] = [0, 1]  # both classes, whatever the seed
    s = rng.normal(size=n) + 1.5 * y
    return y, np.round(s, 2)  # rounding makes ties, as real scores can have


def _flagged(scores, threshold):
    return (np.asarray(scores) > threshold).astype(int)


def _counts(y, s, candidates):
    """(fp, fn, tp) of flagging ``s > t`` for every candidate threshold t at once (numpy: a
    call of ``evaluate`` per candidate would take a second per case)."""
    flagged = s[None, :] > np.asarray(candidates)[:, None]
    anomaly = np.asarray(y)[None, :] == 1
    return ((flagged & ~anomaly).sum(axis=1), (~flagged & anomaly).sum(axis=1),
            (flagged & anomaly).sum(axis=1))


def test_evaluate_hand_made_example():
    r = evaluate(Y_HAND, S_HAND, threshold=0.2)
    # pairs (anomaly, normal) ranked right: 0.25 beats 0.1 and 0.2; 0.9 beats all three -> 5/6
    assert r["auroc"] == pytest.approx(5 / 6)
    # ranking 0.9 (hit), 0.3 (miss), 0.25 (hit): AP = 0.5 * 1 + 0.5 * 2/3
    assert r["auprc"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert (r["tn"], r["fp"], r["fn"], r["tp"]) == (2, 1, 0, 2)  # 0.2 itself is not flagged
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0
    assert r["f1"] == pytest.approx(0.8) and r["alert_rate"] == pytest.approx(0.6)
    assert r["threshold"] == 0.2
    assert set(evaluate(Y_HAND, S_HAND)) == {"auroc", "auprc"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_matches_sklearn(seed):
    y, s = _random_case(seed)
    t = float(np.median(s))
    r = evaluate(y, s, t)
    assert r["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert r["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    pred = _flagged(s, t)
    p, rec, f1, _ = precision_recall_fscore_support(y, pred, average="binary")
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((p, rec, f1), abs=1e-12)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert (r["tn"], r["fp"], r["fn"], r["tp"]) == (tn, fp, fn, tp)
    assert r["alert_rate"] == pytest.approx(pred.mean())
    assert all(isinstance(r[k], int) for k in ("tn", "fp", "fn", "tp"))
    json.dumps(r)  # plain Python numbers: a table or a JSON log can take it as it is


def test_evaluate_accepts_bool_and_float_labels():
    a = evaluate(Y_HAND.astype(bool), S_HAND, 0.2)
    b = evaluate(Y_HAND.astype(float), list(S_HAND), 0.2)
    assert a == b == evaluate(Y_HAND, S_HAND, 0.2)


def test_threshold_best_f1_hand_made_and_strict_convention():
    t = threshold_best_f1(Y_HAND, S_HAND)
    # best: flag 0.25, 0.3 and 0.9 (F1 0.8); the threshold sits just below 0.25
    assert t < 0.25 and t > 0.2 and np.nextafter(t, np.inf) == 0.25
    assert _flagged(S_HAND, t).tolist() == [0, 0, 1, 1, 1]
    assert evaluate(Y_HAND, S_HAND, t)["f1"] == pytest.approx(0.8)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_threshold_best_f1_is_the_best_of_all_candidates(seed):
    y, s = _random_case(seed)
    t = threshold_best_f1(y, s)
    candidates = np.concatenate([np.unique(s), [s.min() - 1]])
    fp, fn, tp = _counts(y, s, candidates)
    best = np.max(2 * tp / (2 * tp + fp + fn))     # F1 (each case holds an anomaly: fn + tp > 0)
    assert evaluate(y, s, t)["f1"] == pytest.approx(best, abs=1e-12)
    # the same F1 as scikit-learn's, for the best candidate and a poor one
    for c in (candidates[np.argmax(2 * tp / (2 * tp + fp + fn))], s.min() - 1):
        assert precision_recall_fscore_support(y, _flagged(s, c), average="binary")[2] == \
            pytest.approx(evaluate(y, s, c)["f1"], abs=1e-12)


def test_threshold_min_cost_hand_made():
    # missing an anomaly costs 10: flag 0.2's right side (one false alarm, cost 1)
    t = threshold_min_cost(Y_HAND, S_HAND, cost_fp=1, cost_fn=10)
    assert _flagged(S_HAND, t).tolist() == [0, 0, 1, 1, 1]
    # a missed anomaly costs less than a false alarm: flag only 0.9 (cost 0.5)
    t = threshold_min_cost(Y_HAND, S_HAND, cost_fp=1, cost_fn=0.5)
    assert _flagged(S_HAND, t).tolist() == [0, 0, 0, 0, 1]
    # false alarms are free: every threshold that catches both anomalies costs 0; among
    # equal costs the one with the fewest alerts wins
    t = threshold_min_cost(Y_HAND, S_HAND, cost_fp=0, cost_fn=1)
    assert _flagged(S_HAND, t).tolist() == [0, 0, 1, 1, 1]
    # the lowest score is an anomaly: only a threshold below every score catches it
    t = threshold_min_cost([1, 0, 1], [0.1, 0.5, 0.9], cost_fp=1, cost_fn=10)
    assert t < 0.1 and _flagged([0.1, 0.5, 0.9], t).all()


@pytest.mark.parametrize("seed, cost_fn", [(0, 10.0), (1, 3.0), (2, 50.0)])
def test_threshold_min_cost_is_the_cheapest_candidate(seed, cost_fn):
    y, s = _random_case(seed)
    t = threshold_min_cost(y, s, cost_fp=1.0, cost_fn=cost_fn)
    candidates = np.concatenate([np.unique(s), [s.min() - 1]])
    fp, fn, _ = _counts(y, s, candidates)
    r = evaluate(y, s, t)
    assert 1.0 * r["fp"] + cost_fn * r["fn"] == pytest.approx(np.min(1.0 * fp + cost_fn * fn))


def test_threshold_percentile():
    s = np.random.default_rng(0).normal(size=10_000)
    t = threshold_percentile(s, 99)
    assert t == pytest.approx(np.percentile(s, 99))
    assert 0.009 <= _flagged(s, t).mean() <= 0.011  # about 1% of normals flagged
    assert threshold_percentile(s) == t  # 99 is the default
    assert threshold_percentile([3.0], 50) == 3.0
    for bad in (-1, 101, np.nan):
        with pytest.raises(ValueError, match=r"\[0, 100\]"):
            threshold_percentile(s, bad)


@pytest.mark.parametrize("rate, expected", [(0.0, 0), (0.05, 5), (0.29, 29), (0.999, 99),
                                            (1.0, 100)])
def test_threshold_alert_budget_flags_the_budget(rate, expected):
    s = np.random.default_rng(0).permutation(100) / 7.0  # 100 distinct scores
    assert _flagged(s, threshold_alert_budget(s, rate)).sum() == expected


def test_threshold_alert_budget_never_exceeds_the_budget_with_ties():
    s = np.array([1.0, 2.0, 2.0, 2.0, 5.0])
    assert _flagged(s, threshold_alert_budget(s, 0.4)).sum() == 1  # 2 allowed; ties left out
    assert _flagged(s, threshold_alert_budget(s, 0.8)).sum() == 4
    with pytest.raises(ValueError, match="alert_rate"):
        threshold_alert_budget(s, 1.5)


def test_all_scores_equal():
    y, s = np.array([0, 0, 0, 1]), np.full(4, 0.7)
    r = evaluate(y, s)
    assert r["auroc"] == 0.5 and r["auprc"] == pytest.approx(0.25)  # no better than chance
    t = threshold_best_f1(y, s)
    assert _flagged(s, t).all()  # the only way to catch the anomaly: flag everything
    assert _flagged(s, threshold_min_cost(y, s, cost_fp=1, cost_fn=10)).all()
    assert not _flagged(s, threshold_min_cost(y, s, cost_fp=1, cost_fn=2)).any()
    assert not _flagged(s, threshold_percentile(s, 99)).any()
    assert not _flagged(s, threshold_alert_budget(s, 0.5)).any()  # a tie cannot be split
    assert _flagged(s, threshold_alert_budget(s, 1.0)).all()


def test_no_anomalies_in_validation_data():
    y, s = np.zeros(50, int), np.linspace(0, 1, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sklearn warning leaks out either
        r = evaluate(y, s, threshold=0.9)
    assert r["auroc"] is None and r["auprc"] is None
    assert r["tp"] == r["fn"] == 0 and r["fp"] == 5 and r["recall"] == 0.0
    with pytest.raises(ValueError, match="at least one labelled anomaly.*threshold_percentile"):
        threshold_best_f1(y, s)
    assert not _flagged(s, threshold_min_cost(y, s)).any()  # nothing to catch: flag nothing
    only_anomalies = evaluate(np.ones(5, int), S_HAND, threshold=0.2)
    assert only_anomalies["auroc"] is None and only_anomalies["tp"] == 3


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_rejected(bad):
    s = S_HAND.copy()
    s[2] = bad
    calls = [lambda: evaluate(Y_HAND, s), lambda: threshold_best_f1(Y_HAND, s),
             lambda: threshold_min_cost(Y_HAND, s), lambda: threshold_percentile(s),
             lambda: threshold_alert_budget(s, 0.1)]
    for call in calls:
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            call()


def test_empty_input_is_rejected():
    for call in [lambda: evaluate([], []), lambda: threshold_best_f1([], []),
                 lambda: threshold_min_cost([], []), lambda: threshold_percentile([]),
                 lambda: threshold_alert_budget([], 0.1)]:
        with pytest.raises(ValueError, match="empty"):
            call()


@pytest.mark.parametrize("labels, message", [
    ([0, 1, 0], "same length"),
    ([0, 2, 1, 0, 0], r"0 \(normal\) or 1 \(anomaly\), found \[2\]"),
    ([0, -1, 1, 0, 0], r"found \[-1\]"),
    ([0, 0.5, 1, 0, 0], r"found \[0.5\]"),
    ([0, np.nan, 1, 0, 0], "found"),
    (["a", "b", "a", "a", "b"], "dtype"),
    ([[0, 1, 0, 1, 0]], "1-D"),
])
def test_bad_labels_are_rejected(labels, message):
    for call in (lambda: evaluate(labels, S_HAND), lambda: threshold_best_f1(labels, S_HAND),
                 lambda: threshold_min_cost(labels, S_HAND)):
        with pytest.raises(ValueError, match=message):
            call()


def test_bad_scores_costs_and_thresholds_are_rejected():
    with pytest.raises(ValueError, match="1-D"):
        evaluate(Y_HAND, S_HAND.reshape(5, 1))
    with pytest.raises(ValueError, match="cost_fn"):
        threshold_min_cost(Y_HAND, S_HAND, cost_fn=-1)
    with pytest.raises(ValueError, match="cost_fp"):
        threshold_min_cost(Y_HAND, S_HAND, cost_fp="cheap")
    with pytest.raises(ValueError, match="threshold"):
        evaluate(Y_HAND, S_HAND, threshold=np.nan)


# --------------------------------------------------------------------------- at another rate
def test_precision_at_rate_keeps_every_threshold_of_a_run_of_anomalies():
    """Ranked from the highest score: one normal, then three anomalies in a row.  The ROC curve
    runs straight up from (1, 0) to (1, 1); ``roc_curve``'s default drop_intermediate=True keeps
    only the ends, which gives the whole run the precision of its top, 3/4, not 1/2, 2/3, 3/4."""
    from sklearn.metrics import roc_curve

    from course_lib.metrics import precision_recall_at_rate

    y, s = np.array([0, 1, 1, 1]), np.array([0.9, 0.8, 0.7, 0.6])
    at_own = precision_recall_at_rate(y, s, rate=0.75)          # the test set's own share
    np.testing.assert_allclose(at_own["recall"], [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(at_own["precision"], [1, 0, 1 / 2, 2 / 3, 3 / 4])
    assert np.isclose(at_own["average_precision"], (1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert np.isclose(at_own["average_precision"], average_precision_score(y, s))
    # at a real rate of 10%: each anomaly's precision is 0.1 r / (0.1 r + 0.9 f), f = 1
    b, r = 0.1, np.array([1 / 3, 2 / 3, 1])
    expected = np.mean(b * r / (b * r + (1 - b)))
    at_real = precision_recall_at_rate(y, s, rate=b)
    assert np.isclose(at_real["average_precision"], expected)          # about 0.068
    # what the default drop_intermediate=True would have given: too high (0.1)
    f, rr, _ = roc_curve(y, s)
    p = np.divide(b * rr, b * rr + (1 - b) * f, out=np.ones_like(rr), where=b * rr + f > 0)
    biased = float(np.sum(np.diff(rr) * p[1:]))
    assert np.isclose(biased, 0.1) and biased > at_real["average_precision"] + 0.03


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_at_rate_equals_sklearn_at_the_own_rate(seed):
    from sklearn.metrics import precision_recall_curve

    from course_lib.metrics import precision_recall_at_rate

    y, s = _random_case(seed)                        # ties included
    out = precision_recall_at_rate(y, s, rate=y.mean())
    assert np.isclose(out["average_precision"], average_precision_score(y, s))
    precision, recall, _ = precision_recall_curve(y, s)   # recall decreasing there
    np.testing.assert_allclose(out["recall"][1:], recall[::-1][1:])
    np.testing.assert_allclose(out["precision"][1:], precision[::-1][1:])
    # a lower rate lowers every precision but leaves recall alone
    lower = precision_recall_at_rate(y, s, rate=0.01)
    np.testing.assert_array_equal(lower["recall"], out["recall"])
    assert np.all(lower["precision"][1:] <= out["precision"][1:] + 1e-12)
    assert lower["average_precision"] < out["average_precision"]


def test_precision_at_rate_rejects_bad_input():
    from course_lib.metrics import precision_recall_at_rate

    with pytest.raises(ValueError, match="rate"):
        precision_recall_at_rate(Y_HAND, S_HAND, rate=0)
    with pytest.raises(ValueError, match="rate"):
        precision_recall_at_rate(Y_HAND, S_HAND, rate=1.5)
    with pytest.raises(ValueError, match="both"):
        precision_recall_at_rate([0, 0, 0], [0.1, 0.2, 0.3], rate=0.1)
    with pytest.raises(ValueError, match="same length"):
        precision_recall_at_rate([0, 1], S_HAND, rate=0.1)


# --------------------------------------------------------------------------- conformal threshold
def test_conformal_threshold_is_the_right_order_statistic():
    from course_lib.metrics import threshold_conformal

    scores = np.arange(1.0, 20.0)                      # n = 19 scores 1..19
    assert threshold_conformal(scores, alpha=0.05) == 19.0    # ceil(20 * 0.95) = 19th
    assert threshold_conformal(scores, alpha=0.1) == 18.0     # ceil(20 * 0.9) = 18th
    assert threshold_conformal(scores[::-1], alpha=0.5) == 10.0   # order does not matter


@pytest.mark.parametrize("kind", ["normal", "exponential", "discrete"])
def test_conformal_threshold_keeps_false_alarms_at_most_alpha_over_random_splits(kind):
    """The guarantee, checked as issue 21 states it: over 100 random calibration/new splits of
    exchangeable normal scores, the mean realised false-alarm rate is <= alpha + 0.02 (and the
    rule is not far more cautious than it needs to be), whatever the distribution."""
    from course_lib.metrics import threshold_conformal

    rng = np.random.default_rng(0)
    draw = {"normal": lambda n: rng.normal(0, 1, n), "exponential": lambda n: rng.exponential(1, n),
            "discrete": lambda n: rng.integers(0, 30, n).astype(float)}[kind]
    alpha, rates = 0.05, []
    for _ in range(100):
        pool = draw(400)
        calibration, new = pool[:100], pool[100:]
        rates.append(np.mean(new > threshold_conformal(calibration, alpha)))
    assert np.mean(rates) <= alpha + 0.02
    assert np.mean(rates) >= alpha - (0.04 if kind == "discrete" else 0.02)


def test_conformal_threshold_refuses_too_few_scores_and_bad_alpha():
    from course_lib.checks import DataError
    from course_lib.metrics import threshold_conformal

    with pytest.raises(DataError, match="needs at least 19"):
        threshold_conformal(np.arange(18.0), alpha=0.05)
    assert threshold_conformal(np.arange(19.0), alpha=0.05) == 18.0
    for alpha in (0, 1, -0.1, float("nan")):
        with pytest.raises(DataError, match="alpha"):
            threshold_conformal(np.arange(50.0), alpha=alpha)
    with pytest.raises(DataError, match="normal_scores"):
        threshold_conformal([1.0, np.nan] * 20)
