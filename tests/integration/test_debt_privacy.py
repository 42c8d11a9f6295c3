"""What each party sees: a lender's view does not depend on whether the applicant is its
customer, and nothing the coordinator receives carries an identifier or a balance."""

from __future__ import annotations

import hashlib
import random

import pytest
from scipy import stats

from fedcredit.crypto.digits import DIGIT_MASK_SECURITY_BITS, group_sizes
from fedcredit.debt import LocalFederation, Transcript, run_local_query
from fedcredit.debt.cipher import decrypt_masked_numbers, decrypt_masked_slots
from fedcredit.debt.encoding import DIGIT_BITS, SUM_BITS, row_value
from fedcredit.debt.messages import QueryRequest, UploadTable
from fedcredit.debt.oprf import hash_to_point

KEY_BITS = 1024
ALPHA = 1e-6  # A false alarm once in a million runs (0.001 once failed CI-like runs by
# chance, p = 1.7e-4); a broken mask still fails: with 300 values a side it gives p ~ 0.


@pytest.fixture(scope="module")
def watched() -> tuple[LocalFederation, list[str], list[str]]:
    """Lender 'watched' has 300 customers with large balances; 'other' has a few."""
    rng = random.Random(11)
    customers = [f"cust-{i}" for i in range(300)]
    strangers = [f"stranger-{i}" for i in range(300)]
    books = {
        "querier": {},
        "watched": {pid: rng.randint(10**9, 10**13) for pid in customers},
        "other": {pid: 1 for pid in customers[:50]},
    }
    return LocalFederation.create(books, key_bits=KEY_BITS), customers, strangers


def lender_view(
    federation: LocalFederation, applicants: list[str], batch: bool
) -> tuple[list[float], list[int], list[float], list[tuple[int, ...]]]:
    """What 'watched' saw: each decrypted masked number as its position in its mask range,
    the 80-bit digits it seals, blinded points (as fractions) and message shapes."""
    transcript = Transcript()
    groups = [applicants] if batch else [[pid] for pid in applicants]
    for group in groups:
        run_local_query(federation, "querier", group, transcript=transcript)
    secret = federation.lenders["watched"]._private_key
    numbers: list[float] = []
    digits: list[int] = []
    for masked in transcript.masked_batches["watched"]:
        packed = masked.packed
        sizes = group_sizes(packed.count, packed.group)
        for number, used in zip(decrypt_masked_numbers(secret, packed), sizes, strict=True):
            numbers.append(number / 2 ** (DIGIT_BITS * used + DIGIT_MASK_SECURITY_BITS))
        digits.extend(decrypt_masked_slots(secret, packed))
    points = [
        int.from_bytes(p, "little") / 2**255
        for request in transcript.oprf_requests["watched"]
        for p in request.points
    ]
    shapes = [
        (
            masked.size,
            len(masked.recipient_key),
            len(masked.packed.ciphertexts),
            masked.packed.digit_bits,
            masked.packed.group,
            *(c.bit_length() > KEY_BITS for c in masked.packed.ciphertexts),
        )
        for masked in transcript.masked_batches["watched"]
    ] + [(len(r.points), *map(len, r.points)) for r in transcript.oprf_requests["watched"]]
    return numbers, digits, points, shapes


def test_masked_values_a_lender_decrypts_look_the_same_for_customers_and_strangers(watched) -> None:  # type: ignore[no-untyped-def]
    federation, customers, strangers = watched

    mine, mine_digits, _, _ = lender_view(federation, customers, batch=True)
    theirs, their_digits, _, _ = lender_view(federation, strangers, batch=True)

    assert all(0 <= v < 1.0 + 1e-9 for v in mine + theirs)
    assert stats.ks_2samp(mine, theirs).pvalue > ALPHA
    # The 80-bit digits (what the lender seals for the querier) are uniform in both groups.
    low_mine = [v / (1 << SUM_BITS) for v in mine_digits]
    low_theirs = [v / (1 << SUM_BITS) for v in their_digits]
    assert len(low_mine) == len(customers)
    assert stats.ks_2samp(low_mine, low_theirs).pvalue > ALPHA
    assert stats.kstest(low_mine, "uniform").pvalue > ALPHA


def test_a_lender_sees_the_same_message_sizes_and_random_points_either_way(watched) -> None:  # type: ignore[no-untyped-def]
    federation, customers, strangers = watched

    mine_values, _, mine_points, mine_shapes = lender_view(federation, customers[:60], False)
    their_values, _, their_points, their_shapes = lender_view(federation, strangers[:60], False)

    assert set(mine_shapes) == set(their_shapes)
    assert len(set(mine_shapes)) == 2  # one shape of masked batch, one of OPRF request
    assert stats.ks_2samp(mine_points, their_points).pvalue > ALPHA
    assert stats.ks_2samp(mine_values, their_values).pvalue > ALPHA


def test_the_same_applicant_is_blinded_differently_every_time(watched) -> None:  # type: ignore[no-untyped-def]
    federation, customers, _ = watched

    _, _, points, _ = lender_view(federation, [customers[0]] * 20, batch=False)

    assert len(set(points)) == 20


def wire_bytes(message: UploadTable | QueryRequest) -> bytes:
    """Everything a message carries, as the bytes a wire encoding would hold."""
    if isinstance(message, UploadTable):
        width = (message.public_key.bits * 2 + 7) // 8
        cts = b"".join(int(c).to_bytes(width, "big") for c in message.ciphertexts.ciphertexts)
        return b"".join(message.tags) + cts
    parts = [message.recipient_key, *message.blinded, *message.proofs]
    for entry in message.lenders:
        parts += [*entry.evaluated, entry.proof, *entry.points]
    return b"".join(parts)


def test_nothing_sent_to_the_coordinator_holds_an_identifier_or_a_balance() -> None:
    ids = ["ID-9f3a7c-UNIQUE", "310101199001011234"]
    balance = 987_654_321
    transcript = Transcript()
    federation = LocalFederation.create(
        {"querier": {ids[1]: balance}, "a": {pid: balance for pid in ids}, "b": {ids[0]: balance}},
        key_bits=KEY_BITS,
        transcript=transcript,
    )

    run_local_query(federation, "querier", ids, transcript=transcript)

    seen = b"".join(wire_bytes(u) for ups in transcript.uploads.values() for u in ups)
    seen += b"".join(wire_bytes(q) for q in transcript.queries)
    seen += b"".join(s.box for shares in transcript.shares.values() for s in shares)
    forbidden = [str(balance).encode(), balance.to_bytes(4, "big"), balance.to_bytes(4, "little")]
    forbidden += [row_value(balance).to_bytes(8, "big"), f"{balance / 100:.2f}".encode()]
    for pid in ids:
        forbidden += [pid.encode(), pid.encode("utf-16-le"), hash_to_point(pid)]
        forbidden += [hashlib.sha256(pid.encode()).digest()]
    for needle in forbidden:
        assert needle not in seen, needle
    assert transcript.queries and all(
        len(t) == 32 for q in transcript.queries for e in q.lenders for t in e.points
    )
