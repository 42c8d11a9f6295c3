"""The whole loan-stacking protocol in one process, for tests and for seeing the flow at once.

``run_local_query`` passes the same domain messages the gRPC services carry, in the same order,
and can record every message each party receives in a ``Transcript``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from fedcredit.crypto import generate_keypair
from fedcredit.crypto.keys import MIN_KEY_BITS
from fedcredit.debt.coordinator import DebtCoordinator
from fedcredit.debt.lender import DebtLender
from fedcredit.debt.messages import (
    DebtResult,
    MaskedBatch,
    OPRFAnswer,
    OPRFRequest,
    QueryAnswer,
    QueryRequest,
    SealedShares,
    UploadTable,
)
from fedcredit.debt.querier import DebtQuery
from fedcredit.errors import ProtocolError


@dataclass
class Transcript:
    """Every message each party received, by party name (``coordinator`` for A)."""

    oprf_requests: dict[str, list[OPRFRequest]] = field(default_factory=dict)
    masked_batches: dict[str, list[MaskedBatch]] = field(default_factory=dict)
    shares: dict[str, list[SealedShares]] = field(default_factory=dict)
    uploads: dict[str, list[UploadTable]] = field(default_factory=dict)
    queries: list[QueryRequest] = field(default_factory=list)
    answers: list[QueryAnswer] = field(default_factory=list)


@dataclass
class LocalFederation:
    """Lenders and a coordinator in one process, with every table uploaded."""

    lenders: dict[str, DebtLender]
    coordinator: DebtCoordinator

    @classmethod
    def create(
        cls,
        books: Mapping[str, Mapping[str, int]],
        *,
        key_bits: int = 2048,
        min_count_floor: int = 2,
        transcript: Transcript | None = None,
        admit: Callable[[str, int], None] | None = None,
    ) -> LocalFederation:
        """One lender per book (id -> balance in cents), keys generated, tables uploaded.

        ``key_bits`` below 2048 (tests) lets the coordinator take keys that small too;
        ``admit`` is the coordinator's check of each query (its audit log and quota).
        """
        coordinator = DebtCoordinator(
            min_count_floor=min_count_floor, allow_small_keys=key_bits < MIN_KEY_BITS, admit=admit
        )
        lenders: dict[str, DebtLender] = {}
        for name, book in books.items():
            public, private = generate_keypair(key_bits, allow_small=key_bits < MIN_KEY_BITS)
            lenders[name] = DebtLender(public, private)
            upload(lenders[name], name, book, coordinator, transcript)
        return cls(lenders, coordinator)


def upload(
    lender: DebtLender,
    name: str,
    book: Mapping[str, int],
    coordinator: DebtCoordinator,
    transcript: Transcript | None = None,
) -> None:
    """Build, send and confirm one lender's upload."""
    pending = lender.prepare_upload(book)
    if transcript is not None:
        transcript.uploads.setdefault(name, []).append(pending.table)
    coordinator.accept_upload(name, pending.table)
    lender.confirm_upload(pending)


def run_local_query(
    federation: LocalFederation,
    querier: str,
    applicants: Sequence[str],
    *,
    min_count_for_total: int = 2,
    transcript: Transcript | None = None,
) -> list[DebtResult]:
    """Ask, as lender ``querier``, about ``applicants``; one result per applicant, in order."""
    if querier not in federation.lenders:
        raise ProtocolError(f"{querier!r} is not a lender of this federation")
    others = {n: lender for n, lender in federation.lenders.items() if n != querier}
    query = DebtQuery(applicants, min_count_for_total)
    oprf_request = query.oprf_request()
    answers: dict[str, OPRFAnswer] = {}
    for name, lender in others.items():
        if transcript is not None:
            transcript.oprf_requests.setdefault(name, []).append(oprf_request)
        answers[name] = lender.evaluate(oprf_request)
    request = query.request(answers)
    prepared = federation.coordinator.prepare(querier, request)
    shares: dict[str, SealedShares] = {}
    for name, batch in prepared.batches.items():
        shares[name] = others[name].decrypt_masked(batch)
        if transcript is not None:
            transcript.masked_batches.setdefault(name, []).append(batch)
            transcript.shares.setdefault(name, []).append(shares[name])
    answer = prepared.answer(shares)
    if transcript is not None:
        transcript.queries.append(request)
        transcript.answers.append(answer)
    results: list[DebtResult] = query.finish(answer)
    return results
