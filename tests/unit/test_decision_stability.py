"""PSI and CSI against hand-computed values, the floor for empty bins, the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedcredit.decision.stability import (
    ACT,
    SHARE_FLOOR,
    STABLE,
    WATCH,
    FeatureStability,
    ScoreBaseline,
    StabilityReport,
    binned_counts,
    decile_baseline,
    feature_stability,
    grade_baseline,
    population_stability,
    score_stability,
    stability_status,
)
from fedcredit.errors import DataError
from fedcredit.model.binning import Binning
from fedcredit.model.scorecard import Scorecard


def test_psi_of_a_half_split_moved_to_a_quarter_is_the_hand_computed_value() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert population_stability([50, 50], [25, 75]) == pytest.approx(0.2746530721670, abs=1e-12)


def test_psi_of_three_bins_swapping_a_tenth_is_the_hand_computed_value() -> None:
    # -0.1 ln(0.75) + 0 + 0.1 ln(4/3) = 0.2 ln(4/3)
    assert population_stability([40, 30, 30], [300, 300, 400]) == pytest.approx(
        0.0575364144904, abs=1e-12
    )


def test_an_empty_bin_counts_as_the_floor_share() -> None:
    # p = (1, 1e-4 floored), q = (0.9, 0.1): 0.1 ln(1 / 0.9) + 0.0999 ln(0.1 / 1e-4)
    expected = 0.1 * math.log(1 / 0.9) + (0.1 - SHARE_FLOOR) * math.log(0.1 / SHARE_FLOOR)

    assert population_stability([100, 0], [90, 10]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.7006208, abs=1e-7)


def test_the_same_population_is_stable_at_zero() -> None:
    assert population_stability([3, 0, 7], [30, 0, 70]) == 0.0


@pytest.mark.parametrize(
    ("index", "status"),
    [(0.0, STABLE), (0.0999, STABLE), (0.1, WATCH), (0.25, WATCH), (0.2501, ACT), (3.0, ACT)],
)
def test_the_usual_thresholds_name_the_status(index: float, status: str) -> None:
    assert stability_status(index) == status


@pytest.mark.parametrize(
    ("expected", "actual"),
    [([1, 2], [1, 2, 3]), ([0, 0], [1, 1]), ([-1, 2], [1, 1]), ([], [])],
)
def test_counts_that_cannot_be_compared_are_refused(expected: list[int], actual: list[int]) -> None:
    with pytest.raises(DataError):
        population_stability(expected, actual)


def test_decile_bins_of_the_baseline_hold_a_tenth_each() -> None:
    baseline = decile_baseline(np.arange(1000, dtype=np.float64))

    assert len(baseline.edges) == 9
    assert baseline.counts == (100,) * 10


def test_decile_bins_merge_where_many_scores_tie_at_the_bound() -> None:
    scores = np.concatenate([np.full(500, 350.0), np.linspace(400, 900, 500)])

    baseline = decile_baseline(scores)

    assert baseline.counts[0] == 500
    assert sum(baseline.counts) == 1000
    assert len(baseline.counts) == 6


def test_grade_bins_count_what_the_scorecard_grades() -> None:
    card = Scorecard()
    scores = np.array([350.0, 499.9, 500.0, 560.0, 619.0, 620.0, 700.0, 950.0])

    baseline = grade_baseline(scores, card)

    grades = card.grade(scores).tolist()
    assert baseline.labels == ("E", "D", "C", "B", "A")
    assert baseline.counts == tuple(grades.count(g) for g in baseline.labels)


def test_the_same_population_scores_stable_and_a_shifted_one_calls_for_action() -> None:
    rng = np.random.default_rng(7)
    training = rng.normal(600, 40, 20_000)
    baseline = decile_baseline(training)

    same = score_stability(baseline, rng.normal(600, 40, 20_000))
    shifted = score_stability(baseline, rng.normal(640, 40, 20_000))

    assert same.status == STABLE and same.psi < 0.01
    assert shifted.status == ACT and shifted.psi > 0.25


def test_score_stability_agrees_with_a_plain_computation_over_the_bins() -> None:
    baseline = ScoreBaseline(edges=(500.0, 600.0), counts=(20, 50, 30), labels=("a", "b", "c"))
    scores = [450.0, 500.0, 550.0, 599.0, 600.0, 800.0, 900.0, 950.0]  # 1, 3, 4 per bin

    result = score_stability(baseline, scores)

    p, q = [0.2, 0.5, 0.3], [1 / 8, 3 / 8, 4 / 8]
    plain = sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))
    assert result.psi == pytest.approx(plain, rel=1e-12)
    assert result.new_share == pytest.approx(tuple(q))
    assert sum(result.terms) == pytest.approx(result.psi)


def test_a_baseline_survives_its_stored_form() -> None:
    baseline = decile_baseline(np.linspace(350, 950, 101))

    again = ScoreBaseline.from_dict(json.loads(json.dumps(baseline.to_dict())))

    assert again == baseline


def test_a_stored_form_that_is_not_a_baseline_is_refused() -> None:
    with pytest.raises(DataError, match="not a score baseline"):
        ScoreBaseline.from_dict({"edges": [1.0]})


def test_feature_csi_from_the_party_bins_matches_the_plain_index() -> None:
    binning = Binning("numeric", edges=(10.0, 20.0))  # (-inf,10], (10,20], (20,inf), missing
    training = [5.0, 15.0, 15.0, 25.0, float("nan")]
    current = [5.0, 5.0, 15.0, 25.0, 25.0]

    expected, actual = binned_counts(binning, training), binned_counts(binning, current)
    result = feature_stability("ecommerce", "orders", expected, actual)

    assert expected.tolist() == [1, 2, 1, 1]
    assert actual.tolist() == [2, 1, 2, 0]
    p, q = [0.2, 0.4, 0.2, 0.2], [0.4, 0.2, 0.4, SHARE_FLOOR]
    plain = sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))
    assert result.csi == pytest.approx(plain, rel=1e-12)
    assert result.status == ACT


def test_the_report_holds_the_score_psi_and_each_party_feature_csi_with_statuses() -> None:
    baseline = ScoreBaseline(edges=(600.0,), counts=(50, 50), labels=("<600", ">=600"))
    score = score_stability(baseline, [500.0] * 25 + [700.0] * 75)
    features = (
        FeatureStability("ecommerce", "orders", 0.05, STABLE),
        FeatureStability("payments", "txn_count", 0.3, ACT),
    )

    report = StabilityReport(score, features)
    data = json.loads(report.to_json())
    text = report.to_text()

    assert data["score_psi"] == pytest.approx(0.2746530721670)
    assert data["score_status"] == ACT
    assert data["csi"] == [
        {"party": "ecommerce", "feature": "orders", "csi": 0.05, "status": "stable"},
        {"party": "payments", "feature": "txn_count", "csi": 0.3, "status": "act"},
    ]
    assert data["thresholds"] == {"stable_below": 0.1, "watch_up_to": 0.25}
    assert text.splitlines()[0] == "score PSI 0.2747 (act)"
    assert any(
        line.split() == ["payments", "txn_count", "0.3000", "act"] for line in text.splitlines()
    )
    assert any(
        line.split() == [">=600", "50.00%", "75.00%", "0.1014"] for line in text.splitlines()
    )
