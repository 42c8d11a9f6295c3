"""Metrics against scikit-learn on the same predictions."""

from __future__ import annotations

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
