"""The [policy] table: defaults, and every refusal in one line naming file, table and key."""

from __future__ import annotations

from typing import Any

import pytest

from fedcredit.decision.policy import REGULATORY_APR_CAP, Policy, policy_from_table
from fedcredit.errors import ConfigError

SOURCE = "fed.toml"


def refusal(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        policy_from_table(table, SOURCE)
    return str(caught.value)


def test_an_empty_table_gives_the_defaults_of_the_market() -> None:
    policy = policy_from_table({}, SOURCE)

    assert policy == Policy()
    assert (policy.limit_min, policy.limit_max) == (5_000, 50_000)
    assert (policy.apr_min, policy.apr_max) == (0.073, REGULATORY_APR_CAP)
    assert policy.instalments == (3, 6, 9, 12)
    assert policy.refer_score < policy.approve_score < policy.best_offer_score


def test_every_key_given_is_read() -> None:
    table = {
        "approve_score": 610, "refer_score": 570.5, "best_offer_score": 700,
        "limit_min": 3_000, "limit_max": 30_000, "limit_step": 500,
        "apr_min": 0.1, "apr_max": 0.2, "instalments": [3, 12],
        "max_other_lenders": 1, "max_total_outstanding": 50_000,
    }  # fmt: skip

    policy = policy_from_table(table, SOURCE)

    assert policy.to_dict() == {**table, "approve_score": 610.0, "best_offer_score": 700.0,
                                "max_total_outstanding": 50_000.0}  # fmt: skip
    assert policy.instalments == (3, 12)


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ({"apr_max": 0.25}, "apr_max", "regulatory cap"),
        ({"apr_min": 0.3, "apr_max": 0.24}, "apr_min", "regulatory cap"),
        ({"apr_min": 0.0}, "apr_min", "above 0"),
        ({"refer_score": 650, "approve_score": 600}, "refer_score", "approve_score"),
        ({"best_offer_score": 600, "approve_score": 600}, "best_offer_score", "above"),
        ({"limit_min": 60_000, "limit_max": 50_000}, "limit_min", "limit_max"),
        ({"apr_min": 0.2, "apr_max": 0.1}, "apr_min", "apr_max"),
        ({"apr_min": 0.0731, "apr_max": 0.0739}, "apr_min", "tenths"),
        ({"instalments": []}, "instalments", "at least one"),
        ({"instalments": [3, 6, 24]}, "instalments", "between 3 and 12"),
        ({"instalments": [1, 6]}, "instalments", "between 3 and 12"),
        ({"instalments": [6, 3]}, "instalments", "increasing"),
        ({"instalments": [3, 3]}, "instalments", "increasing"),
        ({"instalments": [3, "6"]}, "instalments", "whole numbers"),
        ({"instalments": 6}, "instalments", "list"),
        ({"limit_min": 5000.5}, "limit_min", "whole number"),
        ({"limit_step": 0}, "limit_step", "at least 1"),
        ({"approve_score": "600"}, "approve_score", "number"),
        ({"approve_score": True}, "approve_score", "number"),
        ({"refer_score": float("nan")}, "refer_score", "finite"),
        ({"max_other_lenders": -1}, "max_other_lenders", "at least 0"),
        ({"max_other_lenders": 2.0}, "max_other_lenders", "whole number"),
        ({"max_total_outstanding": -5}, "max_total_outstanding", "at least 0"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_naming_file_table_and_key(
    table: dict[str, Any], key: str, words: str
) -> None:
    message = refusal(table)

    assert message.startswith(f"{SOURCE}: [policy] {key}: ")
    assert words in message
    assert "\n" not in message


def test_an_unknown_key_is_refused_with_the_closest_known_one() -> None:
    message = refusal({"aprmax": 0.2})

    assert message == f"{SOURCE}: [policy]: unknown key 'aprmax' (did you mean 'apr_max'?)"


def test_a_value_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^fed\.toml: \[policy\] must be a table$"):
        policy_from_table([1, 2], SOURCE)  # type: ignore[arg-type]


def test_equal_refer_and_approve_scores_are_allowed_and_leave_no_referral_band() -> None:
    policy = policy_from_table({"refer_score": 600, "approve_score": 600}, SOURCE)

    assert policy.refer_score == policy.approve_score == 600.0


def test_a_policy_built_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"\[policy\] apr_max: .*regulatory cap"):
        Policy(apr_max=0.3)
    with pytest.raises(ConfigError, match=r"\[policy\] refer_score"):
        Policy(refer_score=700.0)


def test_rates_off_the_tenth_of_a_percent_grid_are_offered_on_the_grid_inside_them() -> None:
    policy = policy_from_table({"apr_min": 0.0735, "apr_max": 0.2399}, SOURCE)

    assert policy.apr_range_tenths == (74, 239)
