"""A lender's side of the loan-stacking protocol: its upload, OPRF answers and masked decryptions.

What a lender learns from a query: the number of applicants in the batch (and, with direct OPRF
calls, which lender asks). The blinded points are uniformly random group elements, the masked
values it decrypts are uniform to within ``2**-80`` whether or not an applicant is its customer,
and every message it receives has a size fixed by the batch size alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import PublicKey as BoxPublicKey
from nacl.public import SealedBox

from fedcredit.debt.cipher import PrivateKey, PublicKey, decrypt_masked_slots, encrypt_values
from fedcredit.debt.dleq import prove_evaluation
from fedcredit.debt.encoding import DIGIT_BITS, encode_share, row_value
from fedcredit.debt.messages import (
    MaskedBatch,
    OPRFAnswer,
    OPRFRequest,
    SealedShares,
    UploadTable,
)
from fedcredit.debt.oprf import OPRFKey
from fedcredit.errors import ProtocolError

MAX_BATCH = 100_000
"""The largest batch a lender answers in one message."""


@dataclass(frozen=True)
class PendingUpload:
    """An upload built under a new OPRF key, which becomes current once the coordinator acks."""

    table: UploadTable
    key: OPRFKey


class DebtLender:
    """One lender's secrets (OPRF key, Paillier private key) and the steps it runs."""

    def __init__(self, public_key: PublicKey, private_key: PrivateKey) -> None:
        self.public_key = public_key
        self._private_key = private_key
        self._oprf = OPRFKey.generate(epoch=0)

    @property
    def epoch(self) -> int:
        """The epoch of the OPRF key that answers queries now."""
        return self._oprf.epoch

    def prepare_upload(self, balances: Mapping[str, int]) -> PendingUpload:
        """Tag and encrypt every customer with a positive balance, under a fresh OPRF key.

        A fresh key per upload makes tags of different uploads unlinkable, so the coordinator
        cannot tell which customers stayed, left or joined. Rows are shuffled so their order
        says nothing about the lender's own ordering.
        """
        key = OPRFKey.generate(epoch=self._oprf.epoch + 1)
        customers = [(pid, cents) for pid, cents in balances.items() if cents > 0]
        order = list(range(len(customers)))
        secrets.SystemRandom().shuffle(order)
        rows = [customers[i] for i in order]
        tags = tuple(key.tags([pid for pid, _ in rows]))
        cipher = encrypt_values(self.public_key, [row_value(cents) for _, cents in rows])
        table = UploadTable(key.epoch, self.public_key, tags, cipher, oprf_key=key.public)
        return PendingUpload(table=table, key=key)

    def confirm_upload(self, pending: PendingUpload) -> None:
        """Answer queries with the key of an upload the coordinator has accepted."""
        self._oprf = pending.key

    def evaluate(self, request: OPRFRequest) -> OPRFAnswer:
        """Apply this lender's key to blinded points (one scalar multiplication each) and prove
        it (one more each): the coordinator checks the proof against the upload's ``K``."""
        if not 0 < len(request.points) <= MAX_BATCH:
            raise ProtocolError(f"a batch must hold 1 to {MAX_BATCH} points")
        key = self._oprf
        points = tuple(key.evaluate(request.points))
        proof = prove_evaluation(key.scalar, request.points, points)
        return OPRFAnswer(epoch=key.epoch, points=points, proof=proof)

    def decrypt_masked(self, batch: MaskedBatch) -> SealedShares:
        """Decrypt the masked numbers, reduce each modulo ``2**(80 g)`` (``g`` applicants in
        it), cut them into 80-bit digits, one per applicant, and seal those to the querier.

        The coordinator cannot open the box; the querier cannot unmask one lender's values
        because it learns only the sum of the masks over all lenders.
        """
        if not 0 < batch.size <= MAX_BATCH:
            raise ProtocolError(f"a masked batch must hold 1 to {MAX_BATCH} values")
        if batch.packed.digit_bits != DIGIT_BITS or batch.packed.count != batch.size:
            raise ProtocolError(
                f"a masked batch must carry {batch.size} values packed as {DIGIT_BITS}-bit digits"
            )
        slots = decrypt_masked_slots(self._private_key, batch.packed)
        if len(slots) < batch.size:
            raise ProtocolError(f"a masked batch holds {len(slots)} slots, not {batch.size}")
        try:
            box = SealedBox(BoxPublicKey(batch.recipient_key))
        except (NaclCryptoError, TypeError, ValueError) as exc:
            raise ProtocolError("the querier's one-time key is not an X25519 public key") from exc
        payload = b"".join(encode_share(v) for v in slots[: batch.size])
        return SealedShares(box=box.encrypt(payload))
