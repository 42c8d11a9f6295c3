"""The loan-stacking protocol in one process: exact aggregates, the count rule, epochs."""

from __future__ import annotations

import random

import pytest

from fedcredit.crypto.keys import generate_keypair
from fedcredit.debt import DebtQuery, LocalFederation, Transcript, run_local_query, upload
from fedcredit.debt.cipher import decrypt_masked_slots
from fedcredit.debt.encoding import MATCH_WITHHELD, SUM_MODULUS, split_sum
from fedcredit.debt.lender import DebtLender
from fedcredit.errors import ProtocolError

KEY_BITS = 1024


def random_books(
    rng: random.Random, lenders: list[str]
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Books where applicants sit in 0, 1, 2 and all lenders, plus random others."""
    books: dict[str, dict[str, int]] = {name: {} for name in lenders}
    applicants: list[str] = []
    for k, members in enumerate([[], lenders[:1], lenders[1:3], lenders, lenders[2:]]):
        pid = f"fixed-{k}"
        applicants.append(pid)
        for name in members:
            books[name][pid] = rng.randint(1, 10**9)
    for i in range(40):
        pid = f"person-{i}"
        applicants.append(pid)
        for name in lenders:
            if rng.random() < 0.4:
                books[name][pid] = rng.randint(1, 10**11)
    for name in lenders:  # Customers nobody asks about.
        for i in range(20):
            books[name][f"{name}-only-{i}"] = rng.randint(1, 10**6)
    return books, applicants


def plain_answer(books: dict[str, dict[str, int]], querier: str, pid: str) -> tuple[int, int]:
    balances = [book[pid] for name, book in books.items() if name != querier and pid in book]
    return len(balances), sum(balances)


@pytest.fixture(scope="module")
def federation_and_books() -> tuple[LocalFederation, dict[str, dict[str, int]], list[str]]:
    rng = random.Random(7)
    books, applicants = random_books(rng, ["bank", "fintech", "card", "auto"])
    return LocalFederation.create(books, key_bits=KEY_BITS, min_count_floor=1), books, applicants


def test_counts_and_totals_equal_a_plain_computation(federation_and_books) -> None:  # type: ignore[no-untyped-def]
    federation, books, applicants = federation_and_books

    for querier in books:
        results = run_local_query(federation, querier, applicants, min_count_for_total=1)

        for pid, result in zip(applicants, results, strict=True):
            assert (result.other_lenders, result.total_outstanding_cents) == plain_answer(
                books, querier, pid
            ), (querier, pid)


def test_the_querier_own_book_is_not_counted(federation_and_books) -> None:  # type: ignore[no-untyped-def]
    federation, _, _ = federation_and_books

    [result] = run_local_query(federation, "bank", ["bank-only-3"], min_count_for_total=1)

    assert (result.other_lenders, result.total_outstanding_cents) == (0, 0)


def test_a_single_applicant_query_works(federation_and_books) -> None:  # type: ignore[no-untyped-def]
    federation, books, _ = federation_and_books

    [result] = run_local_query(federation, "auto", ["fixed-3"], min_count_for_total=1)

    assert result.other_lenders == 3
    assert result.total_outstanding_cents == sum(
        books[n]["fixed-3"] for n in ("bank", "fintech", "card")
    )


def test_by_default_a_total_is_withheld_when_one_lender_matches(federation_and_books) -> None:  # type: ignore[no-untyped-def]
    federation, books, _ = federation_and_books

    zero, one, two = run_local_query(federation, "auto", ["fixed-0", "fixed-1", "fixed-2"])

    assert (zero.other_lenders, zero.total_outstanding_cents) == (0, 0)
    assert one.other_lenders == 1
    assert one.total_outstanding_cents is None
    assert "withheld" in one.reason and "2 or more" in one.reason
    assert two.other_lenders == 2
    assert two.total_outstanding_cents == books["fintech"]["fixed-2"] + books["card"]["fixed-2"]


def test_the_threshold_is_configurable(federation_and_books) -> None:  # type: ignore[no-untyped-def]
    federation, _, _ = federation_and_books

    [result] = run_local_query(federation, "auto", ["fixed-2"], min_count_for_total=3)

    assert result.other_lenders == 2
    assert result.total_outstanding_cents is None
    assert "3 or more" in result.reason


def test_the_querier_never_receives_a_lone_balance() -> None:
    federation = LocalFederation.create(
        {"querier": {}, "other": {"alice": 123_456}}, key_bits=KEY_BITS, min_count_floor=2
    )
    transcript = Transcript()

    run_local_query(federation, "querier", ["alice"], transcript=transcript)

    # With one other lender the mask sum is that lender's mask, so decrypting its slot and
    # subtracting shows exactly what the querier's unmasked sum is: the indicator alone.
    batch = transcript.masked_batches["other"][0]
    [slot] = decrypt_masked_slots(federation.lenders["other"]._private_key, batch.packed)
    revealed = (slot - transcript.answers[0].mask_sums[0]) % SUM_MODULUS
    assert revealed == MATCH_WITHHELD
    assert split_sum(revealed) == (1, 0)


def test_the_coordinator_floor_overrides_a_lower_request() -> None:
    federation = LocalFederation.create(
        {"q": {}, "a": {"x": 5}, "b": {"y": 7}}, key_bits=KEY_BITS, min_count_floor=2
    )

    [result] = run_local_query(federation, "q", ["x"], min_count_for_total=1)

    assert result.other_lenders == 1
    assert result.total_outstanding_cents is None


def test_a_new_upload_rotates_the_key_and_stale_answers_are_refused() -> None:
    federation = LocalFederation.create(
        {"q": {}, "a": {"x": 5}}, key_bits=KEY_BITS, min_count_floor=1
    )
    lender = federation.lenders["a"]
    old_tags = federation.coordinator.table("a").index.keys()

    query = DebtQuery(["x"], min_count_for_total=1)
    stale = {"a": lender.evaluate(query.oprf_request())}
    upload(lender, "a", {"x": 9, "z": 1}, federation.coordinator)

    with pytest.raises(ProtocolError, match="stale epoch"):
        federation.coordinator.prepare("q", query.request(stale))
    assert not set(old_tags) & set(federation.coordinator.table("a").index)
    [result] = run_local_query(federation, "q", ["x"], min_count_for_total=1)
    assert (result.other_lenders, result.total_outstanding_cents) == (1, 9)


def test_a_query_that_leaves_out_a_lender_is_refused() -> None:
    federation = LocalFederation.create({"q": {}, "a": {"x": 5}, "b": {}}, key_bits=KEY_BITS)

    query = DebtQuery(["x"])
    answers = {"a": federation.lenders["a"].evaluate(query.oprf_request())}

    with pytest.raises(ProtocolError, match="exactly the other lenders: a, b"):
        federation.coordinator.prepare("q", query.request(answers))


def test_a_lender_with_a_foreign_key_cannot_decrypt_a_batch() -> None:
    federation = LocalFederation.create({"q": {}, "a": {"x": 5}}, key_bits=KEY_BITS)
    transcript = Transcript()
    run_local_query(federation, "q", ["x"], transcript=transcript)
    public, private = generate_keypair(KEY_BITS, allow_small=True)
    stranger = DebtLender(public, private)

    with pytest.raises(Exception, match="key"):
        stranger.decrypt_masked(transcript.masked_batches["a"][0])
