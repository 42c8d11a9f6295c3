"""The domain messages of the loan-stacking protocol (what travels, and who may read it).

Flow for a batch of ``B`` applicants asked by lender Q, with other lenders ``L_1..L_N`` and the
coordinator A (each arrow is one message; every vector has ``B`` entries):

1. ``L_i -> A``   ``UploadTable``: shuffled (tag, Enc_i(row value)) pairs, refreshed on change.
2. ``Q -> L_i``   ``OPRFRequest``: blinded points; ``L_i -> Q`` ``OPRFAnswer``: ``k_i`` applied,
   with a proof that it was (against ``K_i = k_i G`` from the upload).
3. ``Q -> A``     ``QueryRequest``: the blinded points, per lender its answer, its proof and the
   ``B`` unblinded points, per applicant a proof that one scalar unblinds every lender's answer
   (so one person per slot), and a one-time X25519 key. A checks, then hashes the points into tags.
4. ``A -> L_i``   ``MaskedBatch``: Enc_i(row value or 0), ``g`` applicants per ciphertext as
   80-bit digits of one number, each number plus one mask; exactly ``B`` values.
   ``L_i -> A``   ``SealedShares``: its ``B`` digits of the numbers modulo ``2**(80 g)``, sealed to Q.
5. ``A -> Q``     ``QueryAnswer``: the sealed boxes (shuffled) and the mask sums per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedcredit.debt.cipher import DigitPacked, EncryptedVector, PublicKey


@dataclass(frozen=True)
class UploadTable:
    """A lender's customer table for the coordinator: no identity and no balance in the clear."""

    epoch: int
    public_key: PublicKey
    tags: tuple[bytes, ...]
    ciphertexts: EncryptedVector = field(repr=False)
    oprf_key: bytes = b""
    """``K = k G`` for the upload's OPRF key: the coordinator checks every answer against it
    and refuses an upload without one."""


@dataclass(frozen=True)
class OPRFRequest:
    """Blinded points ``r * H(x)``, uniformly random to the lender."""

    points: tuple[bytes, ...]


@dataclass(frozen=True)
class OPRFAnswer:
    """``k * B`` for each blinded point, the epoch of the key used, and the lender's proof
    (``dleq.prove_evaluation``) that every point is ``k * B`` for that epoch's key."""

    epoch: int
    points: tuple[bytes, ...]
    proof: bytes


@dataclass(frozen=True)
class LenderTags:
    """One lender's part of a query, from which the coordinator derives (and trusts) the tags
    of the applicants under that lender's key, in applicant order: the lender's answer
    ``evaluated`` (``k * B_x``) with its ``proof``, and the unblinded ``points`` ``k * H(x)``."""

    lender: str
    epoch: int
    evaluated: tuple[bytes, ...]
    proof: bytes
    points: tuple[bytes, ...]


@dataclass(frozen=True)
class QueryRequest:
    """What the querier sends the coordinator: blinded and unblinded points, never an identity.

    ``blinded`` are the points every lender was asked about; ``proofs`` hold, per applicant,
    the querier's proof (``dleq.prove_common_scalar``) that one scalar turns every lender's
    answer into its ``points``: the slot holds one person for every lender."""

    size: int
    recipient_key: bytes
    min_count_for_total: int
    lenders: tuple[LenderTags, ...]
    blinded: tuple[bytes, ...]
    proofs: tuple[bytes, ...]


@dataclass(frozen=True)
class MaskedBatch:
    """What the coordinator sends a lender: ``size`` values packed as masked 80-bit digits
    (``packed.group`` per ciphertext) and the querier's seal key."""

    size: int
    recipient_key: bytes
    packed: DigitPacked = field(repr=False)


@dataclass(frozen=True)
class SealedShares:
    """A lender's masked values modulo ``2**80``, sealed to the querier's one-time key."""

    box: bytes


@dataclass(frozen=True)
class QueryAnswer:
    """What the querier gets back: shuffled sealed boxes and, per group of ``group_size``
    applicants, the sum of the lenders' masks as one 80-bit digit per applicant."""

    boxes: tuple[bytes, ...]
    mask_sums: tuple[int, ...]
    min_count_for_total: int
    group_size: int = 1


@dataclass(frozen=True)
class DebtResult:
    """The answer for one applicant: the two aggregates, or the count and why no total."""

    other_lenders: int
    total_outstanding_cents: int | None
    reason: str = ""

    @property
    def total_outstanding(self) -> str:
        """The total in currency units with two decimals, or '' when withheld."""
        cents = self.total_outstanding_cents
        return "" if cents is None else f"{cents // 100}.{cents % 100:02d}"
