"""A querier cannot mix persons inside one loan-stacking slot (security review F5).

The querying lender Q builds the per-lender part of its query itself. Unless the coordinator can
check that the entries of one slot belong to one person, Q can deviate in two ways:

- **membership at a chosen lender**: the real person for lender ``card`` and a decoy nobody
  lends to for every other lender. The count is then 1 or 0: whether the person is ``card``'s
  customer, which "never which lenders" promises Q never learns;
- **slot mixing**: slots ``(x@card, y@fintech)``, ``(y@fintech, w@auto)``, ``(x@card, w@auto)``
  each reach the count of 2, so the count-1 rule releases their totals, and three totals
  solve for ``x``'s balance at ``card`` alone.

The attacking querier is our own code used as a deviating lender would: one honest
``DebtQuery`` per lender, each over the list of people it wants that lender to see, every
lender's answer obtained the honest way, and the per-lender parts spliced into one request.
Real keys (1024 bits), a real coordinator and real lenders, in one process; one test goes over
gRPC with mutual TLS.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

import grpc
import pytest
import rbcl

from fedcredit.debt import DebtQuery, LocalFederation, QueryRequest, run_local_query
from fedcredit.debt.dleq import prove_evaluation, verify_evaluation
from fedcredit.debt.oprf import OPRFKey, hash_to_point
from fedcredit.driver.debt import COORDINATOR, LocalConsortium
from fedcredit.errors import ProtocolError
from fedcredit.node.serde.debt import query_to_proto
from fedcredit.node.transport.tls import init_certs

KEY_BITS = 1024
QUERIER = "bank"
BOOKS: dict[str, dict[str, int]] = {
    "bank": {"xavier": 1_00},
    "card": {"xavier": 123_456_78, "carla": 5_00},
    "fintech": {"yara": 9_876_54},
    "auto": {"wes": 4_444_44},
}


@pytest.fixture(scope="module")
def federation() -> LocalFederation:
    return LocalFederation.create(BOOKS, key_bits=KEY_BITS)


def spliced_request(
    federation: LocalFederation, views: Mapping[str, Sequence[str]]
) -> tuple[DebtQuery, QueryRequest]:
    """What a deviating querier sends: lender ``name`` is asked, honestly, about
    ``views[name]``; the parts are put together under the first lender's query."""
    parts = []
    queries = []
    for name, people in sorted(views.items()):
        query = DebtQuery(people)
        answer = federation.lenders[name].evaluate(query.oprf_request())
        queries.append(query)
        parts.append(query.request({name: answer}))
    main = queries[0]
    entries = tuple(entry for part in parts for entry in part.lenders)
    return main, dataclasses.replace(parts[0], lenders=entries)


def run_spliced(
    federation: LocalFederation, views: Mapping[str, Sequence[str]]
) -> list[tuple[int, int | None]] | str:
    """The querier's results for a spliced request, or the coordinator's refusal."""
    query, request = spliced_request(federation, views)
    try:
        prepared = federation.coordinator.prepare(QUERIER, request)
    except ProtocolError as exc:
        return str(exc)
    shares = {
        name: federation.lenders[name].decrypt_masked(batch)
        for name, batch in prepared.batches.items()
    }
    results = query.finish(prepared.answer(shares))
    return [(r.other_lenders, r.total_outstanding_cents) for r in results]


def decoy() -> str:
    return f"decoy-{random.SystemRandom().getrandbits(64):016x}"


def membership(federation: LocalFederation, target: str, person: str) -> int | str:
    """The count for ``person`` at ``target`` only, every other lender shown a decoy."""
    views = {name: [person if name == target else decoy()] for name in BOOKS if name != QUERIER}
    outcome = run_spliced(federation, views)
    return outcome if isinstance(outcome, str) else outcome[0][0]


def test_honest_queries_give_a_count_over_all_lenders_and_withhold_lone_totals(
    federation: LocalFederation,
) -> None:
    results = run_local_query(federation, QUERIER, ["xavier", "carla", "nobody"])

    assert [(r.other_lenders, r.total_outstanding_cents) for r in results] == [
        (1, None),
        (1, None),
        (0, 0),
    ]


def test_decoys_for_every_lender_but_one_do_not_reveal_that_lenders_customers(
    federation: LocalFederation,
) -> None:
    # Act: 'carla' lends from card only; 'fintech-stranger' from nobody.
    customer = membership(federation, "card", "carla")
    stranger = membership(federation, "card", "fintech-stranger")

    # Assert: the coordinator refuses both, so the querier learns nothing about card alone.
    assert isinstance(customer, str) and isinstance(stranger, str), (
        f"the attack worked: count {customer} for card's customer, {stranger} for a stranger"
    )
    assert "proof" in customer and "proof" in stranger


def test_mixing_people_across_slots_does_not_release_one_lenders_balance(
    federation: LocalFederation,
) -> None:
    # Arrange: x = xavier (card only, among the others), y = yara (fintech), w = wes (auto).
    views = {
        "card": ["xavier", decoy(), "xavier"],
        "fintech": ["yara", "yara", decoy()],
        "auto": [decoy(), "wes", "wes"],
    }

    # Act
    outcome = run_spliced(federation, views)

    # Assert: refused; on the code before the fix the three totals gave card's balance of x.
    if not isinstance(outcome, str):
        (c1, s1), (c2, s2), (c3, s3) = outcome
        solved = None if None in (s1, s2, s3) else (s1 - s2 + s3) // 2  # type: ignore[operator]
        pytest.fail(
            f"the attack worked: counts {c1}, {c2}, {c3}; card's balance of xavier solved as "
            f"{solved} (the book says {BOOKS['card']['xavier']})"
        )
    assert "proof" in outcome


def test_unblinding_one_lenders_answer_with_another_scalar_is_refused(
    federation: LocalFederation,
) -> None:
    # Arrange: one blinded point, every lender's honest answer, then card's unblinded point
    # multiplied by a scalar of the querier's choice (any other person's point at card).
    query = DebtQuery(["xavier"])
    request = query.oprf_request()
    answers = {n: federation.lenders[n].evaluate(request) for n in BOOKS if n != QUERIER}
    honest = query.request(answers)
    factor = rbcl.crypto_core_ristretto255_scalar_random()
    entries = tuple(
        dataclasses.replace(
            e, points=tuple(rbcl.crypto_scalarmult_ristretto255(factor, p) for p in e.points)
        )
        if e.lender == "card"
        else e
        for e in honest.lenders
    )

    # Act / Assert
    with pytest.raises(ProtocolError, match="proof"):
        federation.coordinator.prepare(QUERIER, dataclasses.replace(honest, lenders=entries))


def test_a_lender_answering_under_another_key_is_caught_by_the_coordinator(
    federation: LocalFederation,
) -> None:
    # Arrange: auto's answer replaced by fintech's key applied to the same blinded points.
    query = DebtQuery(["wes"])
    request = query.oprf_request()
    answers = {n: federation.lenders[n].evaluate(request) for n in BOOKS if n != QUERIER}
    answers["auto"] = dataclasses.replace(answers["fintech"], epoch=answers["auto"].epoch)

    # Act / Assert
    with pytest.raises(ProtocolError, match=r"lender 'auto'.*proof"):
        federation.coordinator.prepare(QUERIER, query.request(answers))


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    names = list(BOOKS)
    certs = init_certs(tmp_path_factory.mktemp("certs"), [*names, COORDINATOR])
    with LocalConsortium(names, certs, key_bits=KEY_BITS) as running:
        for name, balances in BOOKS.items():
            running.upload(name, balances)
        yield running


def test_over_grpc_the_coordinator_refuses_a_spliced_query(consortium) -> None:  # type: ignore[no-untyped-def]
    # Arrange: the querier asks each lender over mutual TLS, as the real client does.
    federation = LocalFederation(consortium.lenders, consortium.coordinator)
    views = {name: ["carla" if name == "card" else decoy()] for name in BOOKS if name != QUERIER}
    _, request = spliced_request(federation, views)
    stub = consortium.stub(QUERIER, COORDINATOR)

    # Act
    with pytest.raises(grpc.RpcError) as caught:
        stub.Query(query_to_proto(request), timeout=30)

    # Assert
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "proof" in (caught.value.details() or "")


def test_an_upload_without_an_oprf_public_key_is_refused_naming_the_lender(
    federation: LocalFederation,
) -> None:
    pending = federation.lenders["card"].prepare_upload({"carla": 5_00})

    with pytest.raises(ProtocolError, match=r"lender 'card'.*OPRF public key"):
        federation.coordinator.accept_upload(
            "card", dataclasses.replace(pending.table, oprf_key=b"")
        )


def test_an_evaluation_proof_binds_every_point_of_the_batch() -> None:
    key = OPRFKey.generate()
    blinded = [hash_to_point(f"person-{i}") for i in range(5)]
    evaluated = key.evaluate(blinded)
    proof = prove_evaluation(key.scalar, blinded, evaluated)
    verify_evaluation(key.public, blinded, evaluated, proof)  # the honest batch verifies

    swapped = [evaluated[1], evaluated[0], *evaluated[2:]]
    with pytest.raises(ProtocolError, match="proof"):
        verify_evaluation(key.public, blinded, swapped, proof)
    with pytest.raises(ProtocolError, match="proof"):
        verify_evaluation(OPRFKey.generate().public, blinded, evaluated, proof)


def test_a_proof_with_an_unreduced_scalar_or_the_wrong_length_is_refused() -> None:
    key = OPRFKey.generate()
    blinded = [hash_to_point("x")]
    evaluated = key.evaluate(blinded)
    proof = prove_evaluation(key.scalar, blinded, evaluated)
    order = 2**252 + 27742317777372353535851937790883648493
    response = int.from_bytes(proof[32:], "little")
    unreduced = proof[:32] + (response + order).to_bytes(32, "little")

    with pytest.raises(ProtocolError, match="not reduced"):
        verify_evaluation(key.public, blinded, evaluated, unreduced)
    with pytest.raises(ProtocolError, match="64 bytes"):
        verify_evaluation(key.public, blinded, evaluated, proof[:63])
