"""The querying lender's side: blind, collect OPRF answers, ask the coordinator, unmask.

What the querier learns per applicant: the number of other lenders with an outstanding balance
and, when that number reaches the coordinator's threshold, their total; never which lenders.
It opens one sealed box per lender, each holding values masked by masks it does not know, and
subtracts the coordinator's sum of those masks from their sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import PrivateKey as BoxPrivateKey
from nacl.public import SealedBox

from fedcredit.debt.dleq import prove_common_scalar
from fedcredit.debt.encoding import decode_shares, split_sum, unmask_groups
from fedcredit.debt.lender import MAX_BATCH
from fedcredit.debt.messages import (
    DebtResult,
    LenderTags,
    OPRFAnswer,
    OPRFRequest,
    QueryAnswer,
    QueryRequest,
)
from fedcredit.debt.oprf import Blinding, _map
from fedcredit.errors import ProtocolError


def withheld_reason(count: int, threshold: int) -> str:
    """Why a total is not reported, in words for the output file."""
    noun = "lender" if count == 1 else "lenders"
    return (
        f"total withheld: {count} other {noun} (a total is reported only for {threshold} or "
        "more, so that no single lender's balance is revealed)"
    )


class DebtQuery:
    """One query (a batch of applicants) from its blinding to its unmasked results."""

    def __init__(self, applicants: Sequence[str], min_count_for_total: int = 2) -> None:
        if not 0 < len(applicants) <= MAX_BATCH:
            raise ProtocolError(f"a query must hold 1 to {MAX_BATCH} applicants")
        if min_count_for_total < 1:
            raise ProtocolError("the minimum count for a total must be at least 1")
        self.size = len(applicants)
        self.min_count_for_total = min_count_for_total
        self._blinding = Blinding.of(applicants)
        self._box_key = BoxPrivateKey.generate()

    def oprf_request(self) -> OPRFRequest:
        """The blinded points, the same message for every lender."""
        return OPRFRequest(points=self._blinding.points)

    def request(self, answers: Mapping[str, OPRFAnswer]) -> QueryRequest:
        """Unblind every lender's answer and prove, per applicant, that one scalar unblinds
        them all; the request carries no identifier (the coordinator derives the tags)."""
        if not answers:
            raise ProtocolError("a query needs the answer of at least one other lender")
        ordered = sorted(answers.items())
        unblinded = [self._blinding.unblind(answer.points) for _, answer in ordered]
        inverses = self._blinding.inverses
        proofs = _map(
            lambda x: prove_common_scalar(
                inverses[x],
                [answer.points[x] for _, answer in ordered],
                [points[x] for points in unblinded],
            ),
            range(self.size),
        )
        lenders = tuple(
            LenderTags(name, answer.epoch, answer.points, answer.proof, tuple(points))
            for (name, answer), points in zip(ordered, unblinded, strict=True)
        )
        return QueryRequest(
            size=self.size,
            recipient_key=bytes(self._box_key.public_key),
            min_count_for_total=self.min_count_for_total,
            lenders=lenders,
            blinded=self._blinding.points,
            proofs=tuple(proofs),
        )

    def finish(self, answer: QueryAnswer) -> list[DebtResult]:
        """Open the sealed boxes, add them up per group, subtract the mask sums and split
        count/total."""
        if len(answer.mask_sums) != self.size:
            raise ProtocolError(f"the answer holds {len(answer.mask_sums)} sums, not {self.size}")
        opener = SealedBox(self._box_key)
        columns: list[list[int]] = []
        for box in answer.boxes:
            try:
                columns.append(decode_shares(opener.decrypt(box), self.size))
            except NaclCryptoError as exc:
                raise ProtocolError("a sealed share box could not be opened") from exc
        sums = unmask_groups(columns, answer.mask_sums, answer.group_size)
        threshold = answer.min_count_for_total
        results = []
        for total in sums:
            count, cents = split_sum(total)
            if count == 0 or count >= threshold:
                results.append(DebtResult(count, cents))
            else:
                results.append(DebtResult(count, None, withheld_reason(count, threshold)))
        return results
