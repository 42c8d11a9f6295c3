"""Scorecard arithmetic: scaling, clipping, grades, reason codes and points tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcredit.errors import ConfigError, DataError
from fedcredit.model.scorecard import PARTNERS, Reason, Scorecard


def test_base_odds_give_the_base_score() -> None:
    card = Scorecard(base_score=600, base_odds=50, pdo=20)
    # 50:1 good:bad means a probability of default of 1/51.
    assert card.score(np.array([1 / 51]))[0] == pytest.approx(600.0)


def test_doubling_the_good_odds_adds_pdo_points() -> None:
    card = Scorecard()
    p1 = 1 / 51  # good:bad 50
    p2 = 1 / 101  # good:bad 100
    s1, s2 = card.score(np.array([p1, p2]))
    assert s2 - s1 == pytest.approx(20.0)


def test_factor_and_offset_follow_the_documented_formulas() -> None:
    card = Scorecard(base_score=600, base_odds=50, pdo=20)
    assert card.factor == pytest.approx(20 / math.log(2))
    assert card.offset == pytest.approx(600 - 20 / math.log(2) * math.log(50))


def test_a_higher_probability_of_default_gives_a_lower_score() -> None:
    scores = Scorecard().score(np.array([0.01, 0.1, 0.5]))
    assert scores[0] > scores[1] > scores[2]


def test_scores_are_clipped_to_the_range() -> None:
    card = Scorecard(min_score=350, max_score=950)
    np.testing.assert_array_equal(card.score(np.array([0.0, 1.0])), [950.0, 350.0])
    np.testing.assert_array_equal(card.score_from_logit(np.array([-100.0, 100.0])), [950, 350])


def test_probability_inverts_score_inside_the_range() -> None:
    card = Scorecard()
    p = np.array([0.005, 0.05, 0.2, 0.6])
    np.testing.assert_allclose(card.probability(card.score(p)), p, rtol=1e-10)


def test_score_from_logit_agrees_with_score_of_the_sigmoid() -> None:
    card = Scorecard()
    z = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(card.score_from_logit(z), card.score(1 / (1 + np.exp(-z))))


def test_grades_follow_the_configured_bands() -> None:
    card = Scorecard(grades=(("A", 700), ("B", 600), ("C", -math.inf)))
    grades = card.grade(np.array([950.0, 700.0, 699.9, 600.0, 350.0]))
    assert grades.tolist() == ["A", "A", "B", "B", "C"]


def test_default_grades_run_from_a_to_e() -> None:
    grades = Scorecard().grade(np.array([900.0, 650.0, 580.0, 520.0, 400.0]))
    assert grades.tolist() == ["A", "B", "C", "D", "E"]


def test_grade_bands_out_of_order_are_refused() -> None:
    with pytest.raises(ConfigError, match="best to worst"):
        Scorecard(grades=(("A", 600), ("B", 700), ("C", -math.inf)))


def test_grade_bands_leaving_low_scores_ungraded_are_refused() -> None:
    with pytest.raises(ConfigError, match="no grade"):
        Scorecard(grades=(("A", 700), ("B", 500)))


@pytest.mark.parametrize("kwargs", [{"pdo": 0}, {"base_odds": -1}, {"min_score": 960}])
def test_bad_scaling_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Scorecard(**kwargs)


def test_score_refuses_probabilities_outside_zero_one() -> None:
    with pytest.raises(DataError):
        Scorecard().score(np.array([1.2]))


def test_reasons_list_the_largest_adverse_contributions_first() -> None:
    card = Scorecard()
    reasons = card.reasons({"PAY_0": 0.9, "LIMIT_BAL": 0.2, "PAY_2": -0.4}, 0.5, top=3)
    assert [r.name for r in reasons] == ["PAY_0", PARTNERS, "LIMIT_BAL"]
    assert reasons[0].points == pytest.approx(0.9 * card.factor)


def test_reasons_show_partners_as_one_aggregate_item() -> None:
    reasons = Scorecard().reasons({"PAY_0": 0.1}, partners_total=2.0, top=3)
    assert reasons[0] == Reason(PARTNERS, pytest.approx(2.0 * Scorecard().factor))
    assert sum(r.name == PARTNERS for r in reasons) == 1


def test_reasons_leave_out_favourable_contributions_and_respect_top() -> None:
    reasons = Scorecard().reasons({"a": 0.3, "b": 0.2, "c": 0.1, "d": -1.0}, -0.5, top=2)
    assert [r.name for r in reasons] == ["a", "b"]


def test_a_lender_column_named_partners_is_refused() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        Scorecard().reasons({PARTNERS: 0.1}, 0.0)


def test_points_table_adds_up_to_the_score() -> None:
    card = Scorecard()
    intercept = -1.3
    bin_logits = {"PAY_0": np.array([-0.4, 0.1, 0.9]), "AGE": np.array([0.2, -0.1])}
    table = card.points_table(intercept, bin_logits)
    # An applicant in bin 2 of PAY_0 and bin 1 of AGE:
    z = intercept + 0.9 - 0.1
    total = table.base + table.points["PAY_0"][2] + table.points["AGE"][1]
    assert total == pytest.approx(card.score_from_logit(np.array([z]))[0])
    assert table.points["PAY_0"][2] < 0 < table.points["PAY_0"][0]
