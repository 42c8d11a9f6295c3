"""Metrics against scikit-learn on the same predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from fedcredit.errors import DataError
from fedcredit.model import metrics


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.25).astype(np.int64)
    p = 1.0 / (1.0 + np.exp(-(rng.normal(size=2000) + 1.2 * y - 1.0)))
    return y, p


@pytest.fixture
def tied_predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    y = (rng.random(1500) < 0.3).astype(np.int64)
    # Scores on a coarse grid, so many rows share a score.
    p = np.round(np.clip(0.3 + 0.2 * y + rng.normal(scale=0.2, size=1500), 0.01, 0.99), 1)
    return y, p


def test_auc_matches_sklearn(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = predictions
    assert metrics.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)


def test_auc_counts_ties_as_one_half(tied_predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = tied_predictions
    assert metrics.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)


def test_auc_of_all_equal_scores_is_one_half() -> None:
    assert metrics.auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)


def test_roc_curve_matches_sklearn_without_dropped_points(
    tied_predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = tied_predictions
    fpr, tpr, thresholds = metrics.roc_curve(y, p)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    np.testing.assert_array_equal(thresholds[1:], sk_thr[1:])
    assert thresholds[0] == np.inf


def test_ks_is_the_largest_gap_of_the_sklearn_roc(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, p, drop_intermediate=False)
    value, threshold = metrics.ks(y, p)
    best = int(np.argmax(sk_tpr - sk_fpr))
    assert value == pytest.approx(sk_tpr[best] - sk_fpr[best], abs=1e-9)
    assert threshold == sk_thr[best]


def test_ks_threshold_separates_the_flagged_rows(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    value, threshold = metrics.ks(y, p)
    flagged = p >= threshold
    tpr = flagged[y == 1].mean()
    fpr = flagged[y == 0].mean()
    assert tpr - fpr == pytest.approx(value, abs=1e-12)


def test_ks_curve_reaches_the_ks_statistic(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = predictions
    thresholds, tpr, fpr = metrics.ks_curve(y, p)
    assert thresholds.shape == tpr.shape == fpr.shape
    assert np.max(tpr - fpr) == pytest.approx(metrics.ks(y, p)[0])


def test_log_loss_matches_sklearn(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = predictions
    assert metrics.log_loss(y, p) == pytest.approx(skm.log_loss(y, p), abs=1e-9)


def test_accuracy_matches_sklearn(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = predictions
    assert metrics.accuracy(y, p, 0.4) == pytest.approx(skm.accuracy_score(y, p >= 0.4), abs=1e-9)


def test_confusion_matches_sklearn(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = predictions
    tn, fp, fn, tp = skm.confusion_matrix(y, p >= 0.3).ravel()
    assert metrics.confusion(y, p, 0.3) == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def test_evaluate_reports_every_figure(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = predictions
    report = metrics.evaluate(y, p)
    assert report["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
    assert report["log_loss"] == pytest.approx(skm.log_loss(y, p), abs=1e-9)
    assert report["rows"] == 2000
    assert report["positives"] == int(y.sum())
    assert sum(report["confusion"].values()) == 2000
    assert {"ks", "ks_threshold", "accuracy"} <= report.keys()


def test_auc_refuses_a_single_class() -> None:
    with pytest.raises(DataError, match="single class"):
        metrics.auc([1, 1, 1], [0.1, 0.2, 0.3])


def test_metrics_refuse_mismatched_lengths() -> None:
    with pytest.raises(DataError, match="differ in length"):
        metrics.auc([0, 1], [0.1, 0.2, 0.3])


def test_metrics_refuse_labels_other_than_zero_and_one() -> None:
    with pytest.raises(DataError, match="0 or 1"):
        metrics.confusion([0, 2], [0.1, 0.2])


def test_log_loss_refuses_scores_outside_zero_one() -> None:
    with pytest.raises(DataError, match="probabilities"):
        metrics.log_loss([0, 1], [-0.5, 2.0])


NEW_KEYS = {"auc_se", "auc_ci95", "ks_ci95", "ks_resamples"}


def brute_force_delong(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """AUC and DeLong's standard error straight from the definition, in O(m n)."""
    x, z = p[y == 1], p[y == 0]
    m, n = x.size, z.size
    psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
    theta = float(psi.mean())
    v10 = psi.mean(axis=1)  # each default's share of goods below it
    v01 = psi.mean(axis=0)  # each good's share of defaults above it
    s10 = float(np.sum((v10 - theta) ** 2)) / (m - 1)
    s01 = float(np.sum((v01 - theta) ** 2)) / (n - 1)
    return theta, math.sqrt(s10 / m + s01 / n)


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_delong_standard_error_equals_the_structural_components_by_brute_force() -> None:
    rng = np.random.default_rng(11)
    y = (rng.random(80) < 0.35).astype(np.int64)
    # A coarse grid, so defaults and goods tie and the midranks matter.
    p = np.round(rng.normal(size=80) + 0.8 * y, 1)
    theta, se = brute_force_delong(y, p)
    result = metrics.auc_delong(y, p)
    assert result.auc == pytest.approx(theta, abs=1e-12)
    assert result.se == pytest.approx(se, rel=1e-10)


def test_delong_auc_matches_sklearn(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = predictions
    assert metrics.auc_delong(y, p).auc == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)


def test_delong_interval_is_the_normal_one_and_counts_rows_and_events(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    result = metrics.auc_delong(y, p)
    assert result.lo == pytest.approx(result.auc - 1.959964 * result.se)
    assert result.hi == pytest.approx(result.auc + 1.959964 * result.se)
    assert (result.rows, result.events) == (2000, int(y.sum()))


def test_delong_interval_covers_the_true_binormal_auc_about_95_percent_of_the_time() -> None:
    # Goods score N(0, 1) and defaults N(mu, 1), so the true AUC is Phi(mu / sqrt 2). At
    # this size DeLong's interval covers about 94.6% of the time (20,000 repetitions);
    # with 1,000 repetitions, falling outside [0.90, 0.985] by chance has probability
    # about 1e-8, while a standard error off by sqrt 2 either way falls outside (99.4% or
    # 83% coverage) with probability above 0.999.
    rng = np.random.default_rng(2014)
    m, n, mu = 100, 300, 1.0
    true_auc = normal_cdf(mu / math.sqrt(2.0))
    y = np.r_[np.ones(m, dtype=np.int64), np.zeros(n, dtype=np.int64)]
    repetitions = 1000
    covered = 0
    for _ in range(repetitions):
        p = np.r_[rng.normal(mu, 1.0, m), rng.normal(0.0, 1.0, n)]
        result = metrics.auc_delong(y, p)
        covered += result.lo <= true_auc <= result.hi
    assert 0.90 <= covered / repetitions <= 0.985


def test_delong_interval_is_clipped_to_zero_one() -> None:
    result = metrics.auc_delong([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.5, 0.4, 0.8, 0.9])
    assert result.auc + 1.959964 * result.se > 1.0
    assert result.hi == 1.0
    assert result.lo < result.auc


def test_delong_refuses_a_single_default() -> None:
    with pytest.raises(DataError, match="two defaults"):
        metrics.auc_delong([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4])


def test_bootstrap_ks_of_each_resample_equals_ks_on_the_resampled_rows(
    tied_predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = tied_predictions
    rng = np.random.default_rng(9)
    pos_rows, neg_rows = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    pos_draws = rng.integers(0, pos_rows.size, size=(25, pos_rows.size))
    neg_draws = rng.integers(0, neg_rows.size, size=(25, neg_rows.size))
    values = metrics._resampled_ks(y, p, pos_draws, neg_draws)
    expected = []
    for pos_draw, neg_draw in zip(pos_draws, neg_draws, strict=True):
        rows = np.r_[pos_rows[pos_draw], neg_rows[neg_draw]]
        expected.append(metrics.ks(y[rows], p[rows])[0])
    np.testing.assert_allclose(values, expected, atol=1e-12)


def test_bootstrap_ks_interval_contains_the_point_estimate(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    result = metrics.ks_bootstrap(y, p)
    assert result.ks == metrics.ks(y, p)[0]
    assert result.lo < result.ks < result.hi
    assert result.resamples == 1000


def test_bootstrap_ks_interval_narrows_as_rows_grow() -> None:
    rng = np.random.default_rng(17)
    widths = []
    for rows in (500, 8000):
        y = (rng.random(rows) < 0.1).astype(np.int64)
        p = rng.normal(size=rows) + 1.0 * y
        result = metrics.ks_bootstrap(y, p)
        widths.append(result.hi - result.lo)
    # Sixteen times the rows: about a quarter of the width.
    assert widths[1] < widths[0] / 2


def test_bootstrap_ks_is_reproducible_and_the_seed_changes_it(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    first = metrics.ks_bootstrap(y, p, resamples=200)
    again = metrics.ks_bootstrap(y, p, resamples=200)
    other = metrics.ks_bootstrap(y, p, resamples=200, seed=1)
    assert first == again
    assert (other.lo, other.hi) != (first.lo, first.hi)


def test_bootstrap_ks_refuses_zero_resamples(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = predictions
    with pytest.raises(DataError, match="resample"):
        metrics.ks_bootstrap(y, p, resamples=0)


def test_evaluate_keeps_its_old_keys_and_values(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    report = metrics.evaluate(y, p, 0.3)
    ks_value, ks_threshold = metrics.ks(y, p)
    assert {key: report[key] for key in report if key not in NEW_KEYS} == {
        "auc": metrics.auc(y, p),
        "ks": ks_value,
        "ks_threshold": ks_threshold,
        "accuracy": metrics.accuracy(y, p, 0.3),
        "log_loss": metrics.log_loss(y, p),
        "confusion": metrics.confusion(y, p, 0.3),
        "positives": int(y.sum()),
        "rows": 2000,
        "threshold": 0.3,
    }


def test_evaluate_reports_both_intervals_as_plain_json(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    report = metrics.evaluate(y, p)
    delong = metrics.auc_delong(y, p)
    boot = metrics.ks_bootstrap(y, p)
    assert report.keys() >= NEW_KEYS
    assert report["auc_se"] == delong.se
    assert report["auc_ci95"] == [delong.lo, delong.hi]
    assert report["ks_ci95"] == [boot.lo, boot.hi]
    assert report["ks_resamples"] == 1000
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_evaluate_leaves_the_auc_interval_out_with_a_single_default() -> None:
    report = metrics.evaluate([0, 0, 0, 1], [0.1, 0.2, 0.6, 0.4])
    assert report["auc_se"] is None and report["auc_ci95"] is None
    assert report["auc"] == pytest.approx(2 / 3)


def test_summarize_gives_each_interval_and_the_counts() -> None:
    report = {
        "auc": 0.8304,
        "auc_ci95": [0.8012, 0.8596],
        "ks": 0.5121,
        "ks_ci95": [0.4702, 0.5603],
        "rows": 2250,
        "positives": 153,
    }
    assert metrics.summarize(report) == (
        "AUC 0.830 (95% CI 0.801-0.860, 2,250 rows, 153 defaults); KS 0.512 (95% CI 0.470-0.560)"
    )


def test_summarize_leaves_out_a_missing_interval() -> None:
    report = {"auc": 0.75, "auc_ci95": None, "ks": 0.5, "rows": 4, "positives": 1}
    assert metrics.summarize(report) == "AUC 0.750 (4 rows, 1 default); KS 0.500"
