"""The coordinator's check that every slot of a query holds one person, then the tags.

The querier sends, for each other lender, the lender's answer to the blinded points with the
lender's proof, and the points it unblinded from it; per applicant, its proof that one scalar
unblinds every lender's answer (``fedcredit.debt.dleq``). Both verified, the points of one slot
are ``k_i * P`` for one ``P`` and every lender ``i``: the querier can no longer show one lender
a person and the others a decoy, or mix people across slots (security review F5). Only then
are the points hashed into the tags the tables are matched on.

Cost at the coordinator: four scalar multiplications per applicant and lender (about 0.4 ms on
one core), spread over the cores for long batches.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedcredit.debt.dleq import verify_common_scalars, verify_evaluation
from fedcredit.debt.messages import QueryRequest
from fedcredit.debt.oprf import derive_tag
from fedcredit.errors import ProtocolError


def verified_tags(request: QueryRequest, keys: Mapping[str, bytes]) -> dict[str, tuple[bytes, ...]]:
    """Per lender the applicants' tags, once every proof of ``request`` verifies against the
    lenders' OPRF public keys ``keys`` (lender -> ``K``); ProtocolError naming what failed.

    The caller has checked that ``request.lenders`` names exactly the lenders of ``keys``.
    """
    size = request.size
    if len(request.blinded) != size or len(request.proofs) != size:
        raise ProtocolError(f"a query must carry {size} blinded points and {size} proofs")
    entries = sorted(request.lenders, key=lambda entry: entry.lender)
    for entry in entries:
        if len(entry.evaluated) != size or len(entry.points) != size:
            raise ProtocolError(f"the points for lender {entry.lender!r} are not {size} long")
        try:
            verify_evaluation(keys[entry.lender], request.blinded, entry.evaluated, entry.proof)
        except ProtocolError as exc:
            raise ProtocolError(f"lender {entry.lender!r}: {exc}") from exc
    verify_common_scalars(
        [[entry.evaluated[x] for entry in entries] for x in range(size)],
        [[entry.points[x] for entry in entries] for x in range(size)],
        request.proofs,
    )
    return {entry.lender: tuple(derive_tag(p) for p in entry.points) for entry in entries}
