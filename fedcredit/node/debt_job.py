"""The loan-stacking check's steps at a node (docs/DEBT.md): a lender's OPRF answer, and the
coordinator's answer to a query with every other lender's masked decryption (``answer_query``).
The servicers (``fedcredit.node.services.debt``) only check callers, convert messages
(``fedcredit.node.serde.debt``) and call one function here; the querier's and the uploader's
side is ``fedcredit.node.debt_client``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass

from fedcredit.debt import (
    DebtCoordinator,
    DebtLender,
    OPRFAnswer,
    OPRFRequest,
    QueryAnswer,
    QueryRequest,
    SealedShares,
)
from fedcredit.debt.coordinator import StaleTableError
from fedcredit.errors import CryptoError, FedCreditError
from fedcredit.node.debt_client import LenderStubs
from fedcredit.node.errors import InvalidRequest, NotReady
from fedcredit.node.serde import debt
from fedcredit.node.transport.peers import fan_out

LOG = logging.getLogger("fedcredit.node.services.debt")


@contextmanager
def refused_as_invalid() -> Iterator[None]:
    """A debt request's refusal by ``fedcredit.debt`` is about what the request holds
    (``InvalidRequest``), unless a lender's table is stale or a ciphertext is bad."""
    try:
        yield
    except (StaleTableError, CryptoError, InvalidRequest):
        raise
    except FedCreditError as exc:
        raise InvalidRequest(str(exc)) from exc


# The lender's and the coordinator's sides.


def evaluate_oprf(lender: DebtLender, points: Sequence[bytes]) -> OPRFAnswer:
    """A lender's OPRF answer to another lender's blinded points."""
    with refused_as_invalid():
        return lender.evaluate(OPRFRequest(tuple(points)))


@dataclass(frozen=True)
class Answered:
    """The coordinator's answer to a query, and the bytes it exchanged with lenders for it."""

    answer: QueryAnswer
    lender_bytes: int


def answer_query(
    coordinator: DebtCoordinator,
    lenders: LenderStubs,
    caller: str,
    query: QueryRequest,
    *,
    timeout_s: float,
    pool: Executor | None,
) -> Answered:
    """Check ``caller``'s query, have every other lender decrypt its masked batch, combine.

    ``NotReady`` while a lender's table has not arrived or a lender does not answer.
    """
    loaded = set(coordinator.lenders)
    missing = sorted(n for n in lenders.names if n != caller and n not in loaded)
    if missing:
        # Lender nodes upload in the background once they start: ask again shortly.
        raise NotReady(
            f"waiting for the table(s) of lender(s) {', '.join(missing)}: not uploaded yet"
        )
    with refused_as_invalid():
        prepared = coordinator.prepare(caller, query)
    try:
        messages = {
            name: debt.masked_batch_to_proto(batch, coordinator.table(name).public_key)
            for name, batch in prepared.batches.items()
        }
        replies = fan_out(
            {name: lenders.stub(name) for name in messages},
            lambda s: s.DecryptMasked,
            messages.__getitem__,
            timeout_s=timeout_s,
            idempotent=False,
            pool=pool,
        )
    except FedCreditError as exc:
        LOG.warning("a lender failed to decrypt its masked batch: %s", exc)
        raise NotReady(f"a lender did not answer: {exc}") from exc
    size = sum(messages[n].ByteSize() + r.ByteSize() for n, r in replies.items())
    shares: dict[str, SealedShares] = {n: debt.sealed_shares_of(r) for n, r in replies.items()}
    with refused_as_invalid():
        return Answered(prepared.answer(shares), size)
