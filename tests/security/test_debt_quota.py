"""Loan-stacking queries are logged and limited at the debt coordinator (security review F14).

A querier that follows the protocol to the letter can still ask about anyone, and ask again:
watching one person's total day after day shows when another lender's balance moves (DEBT.md,
"Limits"). Before this fix nothing counted or recorded queries; now the coordinator writes every
query (who asked, how many applicants, when; it never sees an id) to a hash-chained log in its
own folder and refuses a querier past its daily quota, which survives a restart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedcredit.debt import LocalFederation, run_local_query
from fedcredit.errors import QuotaError
from fedcredit.files import DAY_SECONDS
from fedcredit.node.audit import DebtQueryAudit

KEY_BITS = 1024
QUOTA = 5


def consortium(audit: DebtQueryAudit | None) -> LocalFederation:
    """A querier and two lenders that both lend to cust-1 (so its total is released)."""
    return LocalFederation.create(
        {"querier": {}, "a": {"cust-1": 3_00}, "b": {"cust-1": 4_00}},
        key_bits=KEY_BITS,
        admit=None if audit is None else audit.admit,
    )


def test_without_a_quota_a_querier_watches_one_persons_total_as_often_as_it_likes() -> None:
    # The attack on the code before the fix: nothing stops or records the tenth look.
    federation = consortium(None)

    totals = [run_local_query(federation, "querier", ["cust-1"])[0] for _ in range(QUOTA + 5)]

    assert {r.total_outstanding_cents for r in totals} == {7_00}


def test_a_querier_past_its_daily_quota_is_refused_even_after_a_restart(tmp_path: Path) -> None:
    # Arrange
    now = [1_800_000_000.0]
    audit = DebtQueryAudit(tmp_path, QUOTA, clock=lambda: now[0])
    federation = consortium(audit)

    # Act: the querier looks at cust-1 until it is stopped; the coordinator restarts.
    answered = [run_local_query(federation, "querier", ["cust-1"]) for _ in range(QUOTA)]
    with pytest.raises(QuotaError, match=r"quota of 5 applicants per day for 'querier'"):
        run_local_query(federation, "querier", ["cust-1"])
    restarted = consortium(DebtQueryAudit(tmp_path, QUOTA, clock=lambda: now[0]))
    with pytest.raises(QuotaError, match=r"\[scoring\] quota_per_day"):
        run_local_query(restarted, "querier", ["cust-1"])
    other = run_local_query(restarted, "a", ["cust-1"])  # another querier has its own quota
    now[0] += DAY_SECONDS + 1
    later = run_local_query(restarted, "querier", ["cust-1"])

    # Assert: five answers, two logged refusals, then a new day; every line chained, no id.
    assert len(answered) == QUOTA and other[0].other_lenders == 1
    assert later[0].total_outstanding_cents == 7_00
    lines = [
        json.loads(line)
        for path in sorted(tmp_path.glob("debt-queries-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert [(r["caller"], r["answered"]) for r in lines] == [
        *[("querier", True)] * QUOTA,
        ("querier", False),
        ("querier", False),
        ("a", True),
        ("querier", True),
    ]
    assert all(r["count"] == 1 for r in lines)
    assert lines[0]["prev"] == "" and all(r["prev"] for r in lines[1:])
    assert "cust-1" not in "".join(p.read_text() for p in tmp_path.glob("*.jsonl"))
