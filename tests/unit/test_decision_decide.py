"""Decisions: score bands, offers that follow the score, debt rules and reason codes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.debt import DebtResult
from fedcredit.decision.decide import (
    APPROVE,
    DEBT_CHECK_UNAVAILABLE,
    DECLINE,
    NO_ADVERSE_FACTOR,
    PARTNER_DATA_MISSING,
    REFER,
    TOO_MANY_OTHER_LENDERS,
    TOTAL_OUTSTANDING_TOO_HIGH,
    Applicant,
    DebtFacts,
    DebtUnavailable,
    Decision,
    decide,
    decide_many,
    offers,
    unscored,
)
from fedcredit.decision.policy import Policy, policy_from_table
from fedcredit.errors import DataError

POLICY = Policy()  # approve 600, refer 560, best offer 680, 5,000-50,000, 7.3-24 %


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Any valid policy, built through the validator the federation file uses."""
    approve = draw(st.floats(300, 900))
    limit_min = draw(st.integers(1, 100_000))
    apr_low = draw(st.integers(1, 240))
    table = {
        "approve_score": approve,
        "refer_score": approve - draw(st.floats(0, 200)),
        "best_offer_score": approve + draw(st.floats(0.01, 400)),
        "limit_min": limit_min,
        "limit_max": limit_min + draw(st.integers(0, 200_000)),
        "limit_step": draw(st.integers(1, 5_000)),
        "apr_min": apr_low / 1000,
        "apr_max": draw(st.integers(apr_low, 240)) / 1000,
    }
    return policy_from_table(table, "fed.toml")


scores = st.floats(min_value=0, max_value=1200, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(policy=policies(), s1=scores, s2=scores)
def test_a_higher_score_never_gets_a_lower_limit_or_a_higher_rate(
    policy: Policy, s1: float, s2: float
) -> None:
    low, high = sorted((s1, s2))
    limits, aprs = offers(policy, [low, high])

    assert limits[0] <= limits[1]
    assert aprs[0] >= aprs[1]


@settings(max_examples=300, deadline=None)
@given(policy=policies(), score=scores)
def test_offers_match_a_plain_computation_of_the_policy(policy: Policy, score: float) -> None:
    t = min(
        1.0,
        max(0.0, (score - policy.approve_score) / (policy.best_offer_score - policy.approve_score)),
    )
    span = policy.limit_max - policy.limit_min
    limit = math.floor((policy.limit_min + t * span) / policy.limit_step) * policy.limit_step
    limit = min(policy.limit_max, max(policy.limit_min, limit))
    low, high = policy.apr_range_tenths
    tenths = min(high, max(low, round(high - t * (high - low))))

    limits, aprs = offers(policy, [score])

    assert int(limits[0]) == limit
    assert float(aprs[0]) == tenths / 1000
    assert policy.apr_min - 1e-12 <= aprs[0] <= policy.apr_max + 1e-12
    assert policy.limit_min <= limits[0] <= policy.limit_max


def test_offers_run_from_the_floor_at_the_cut_off_to_the_best_at_the_best_offer_score() -> None:
    limits, aprs = offers(POLICY, [600, 640, 680, 900])

    assert limits.tolist() == [5_000, 27_500, 50_000, 50_000]
    assert aprs.tolist() == [0.24, 0.156, 0.073, 0.073]


def test_limits_are_whole_steps_and_rates_whole_tenths_of_a_percent() -> None:
    limits, aprs = offers(POLICY, [601.3, 617.77, 655.5])

    assert all(limit % 100 == 0 for limit in limits.tolist())
    assert all(abs(a * 1000 - round(a * 1000)) < 1e-9 for a in aprs.tolist())


@pytest.mark.parametrize(
    ("score", "expected"),
    [(600.0, APPROVE), (599.99, REFER), (560.0, REFER), (559.99, DECLINE), (350.0, DECLINE)],
)
def test_the_score_alone_approves_refers_or_declines_at_the_cut_offs(
    score: float, expected: str
) -> None:
    decision = decide(POLICY, score, "C", ["PAY_0"], None, applicant_id="a1")

    assert decision.decision == expected


def test_only_an_approval_carries_an_offer_and_it_holds_the_policy_instalments() -> None:
    approved = decide(POLICY, 640.0, "B", ["PAY_0"], None, applicant_id="a1")
    referred = decide(POLICY, 580.0, "C", ["PAY_0"], None, applicant_id="a2")

    assert (approved.limit, approved.apr, approved.instalments) == (27_500, 0.156, (3, 6, 9, 12))
    assert approved.reasons == ()
    assert (referred.limit, referred.apr, referred.instalments) == (None, None, ())


def test_a_decline_and_a_refer_carry_the_scorecard_reasons_worst_first() -> None:
    declined = decide(POLICY, 500.0, "D", ["PAY_0", "partners"], None, applicant_id="a1")
    referred = decide(POLICY, 580.0, "C", ["LIMIT_BAL"], None, applicant_id="a2")

    assert declined.reasons == ("PAY_0", "partners")
    assert referred.reasons == ("LIMIT_BAL",)


def test_a_low_score_without_an_adverse_factor_still_carries_a_reason() -> None:
    decision = decide(POLICY, 500.0, "D", [], None, applicant_id="a1")

    assert decision.reasons == (NO_ADVERSE_FACTOR,)


@pytest.mark.parametrize(
    ("debt", "fired"),
    [
        (DebtFacts(4, None), (TOO_MANY_OTHER_LENDERS,)),
        (DebtFacts(2, 20_000_001), (TOTAL_OUTSTANDING_TOO_HIGH,)),
        (DebtFacts(5, 30_000_000), (TOO_MANY_OTHER_LENDERS, TOTAL_OUTSTANDING_TOO_HIGH)),
        (DebtResult(4, None, "total withheld"), (TOO_MANY_OTHER_LENDERS,)),
    ],
)
def test_a_debt_rule_that_fires_declines_even_the_best_score_and_is_named(
    debt: DebtFacts, fired: tuple[str, ...]
) -> None:
    decision = decide(POLICY, 900.0, "A", [], debt, applicant_id="a1")

    assert decision.decision == DECLINE
    assert decision.reasons == fired


@pytest.mark.parametrize(
    "debt",
    [DebtFacts(3, 20_000_000), DebtFacts(0, 0), DebtFacts(1, None), DebtResult(3, 19_999_999)],
)
def test_debt_at_the_limits_of_the_rules_does_not_stop_an_approval(debt: DebtFacts) -> None:
    decision = decide(POLICY, 700.0, "A", [], debt, applicant_id="a1")

    assert decision.decision == APPROVE


def test_a_debt_rule_on_a_low_score_comes_before_the_scorecard_reasons() -> None:
    decision = decide(POLICY, 500.0, "D", ["PAY_0"], DebtFacts(9, None), applicant_id="a1")

    assert decision.decision == DECLINE
    assert decision.reasons == (TOO_MANY_OTHER_LENDERS, "PAY_0")


def test_a_failed_debt_check_refers_an_applicant_the_score_would_approve() -> None:
    decision = decide(POLICY, 700.0, "A", [], DebtUnavailable("timeout"), applicant_id="a1")

    assert decision.decision == REFER
    assert decision.reasons == (DEBT_CHECK_UNAVAILABLE,)


def test_a_failed_debt_check_never_lifts_a_decline() -> None:
    decision = decide(POLICY, 500.0, "D", ["PAY_0"], DebtUnavailable(), applicant_id="a1")

    assert decision.decision == DECLINE
    assert decision.reasons == (DEBT_CHECK_UNAVAILABLE, "PAY_0")


def test_missing_partner_data_refers_an_approval_and_says_so() -> None:
    decision = decide(POLICY, 700.0, "A", [], None, applicant_id="a1", partner_missing=True)

    assert decision.decision == REFER
    assert decision.reasons == (PARTNER_DATA_MISSING,)


def test_a_reason_repeated_by_the_scorecard_is_listed_once() -> None:
    decision = decide(
        POLICY, 580.0, "C", [PARTNER_DATA_MISSING, "PAY_0"], None,
        applicant_id="a1", partner_missing=True,
    )  # fmt: skip

    assert decision.reasons == (PARTNER_DATA_MISSING, "PAY_0")


def test_decide_many_keeps_the_input_order_and_agrees_with_decide() -> None:
    applicants = [
        Applicant("a1", 700.0, "A"),
        Applicant("a2", 500.0, "D", ("PAY_0",)),
        Applicant("a3", 620.0, "B", (), DebtFacts(5, None)),
        Applicant("a4", 650.0, "B", (), DebtUnavailable()),
    ]

    many = decide_many(POLICY, applicants)
    one_by_one = [
        decide(POLICY, a.score, a.grade, a.reasons, a.debt, applicant_id=a.applicant_id)
        for a in applicants
    ]

    assert [d.applicant_id for d in many] == ["a1", "a2", "a3", "a4"]
    assert [d.decision for d in many] == [APPROVE, DECLINE, DECLINE, REFER]
    assert many == one_by_one


def test_no_applicants_give_no_decisions() -> None:
    assert decide_many(POLICY, []) == []


def test_a_score_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(DataError, match="finite"):
        decide(POLICY, float("nan"), "A", [], None, applicant_id="a1")


def test_an_applicant_that_could_not_be_scored_is_referred_with_the_reason() -> None:
    decision = unscored("a9", "not in the lender's data")

    assert (decision.decision, decision.score, decision.offer) == (REFER, None, None)
    assert decision.reasons == ("not in the lender's data",)


def test_a_decision_cannot_be_built_inconsistent() -> None:
    with pytest.raises(DataError, match="reason"):
        Decision("a1", 500.0, "D", DECLINE, None, ())
    with pytest.raises(DataError, match="offer"):
        Decision("a1", 700.0, "A", APPROVE, None, ())
