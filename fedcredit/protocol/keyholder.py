"""The coordinator's side: it holds the Paillier private key and decrypts masked values only.

Every value a data party sends for decryption carries a fresh mask at least 40 bits wider than
the value (``fedcredit.crypto.mask_and_pack``), so what the coordinator reads is statistically
independent of gradients, scores and labels. It never receives a per-row value unmasked.
"""

from __future__ import annotations

import threading

from fedcredit.crypto import (
    PackedCiphertexts,
    PrivateKey,
    PublicKey,
    decrypt_packed,
    generate_keypair,
)
from fedcredit.errors import ProtocolError


class KeyHolder:
    """One Paillier key pair per job; decrypts masked, packed slots for the caller."""

    def __init__(self, *, allow_small_keys: bool = False, record: bool = False) -> None:
        self._allow_small = allow_small_keys
        # With ``record``, every decrypted slot is kept: tests check that what the
        # coordinator sees is uncorrelated with gradients and scores.
        self.observed: list[int] | None = [] if record else None
        self._lock = threading.Lock()
        self._job_id: str | None = None
        self._public: PublicKey | None = None
        self._private: PrivateKey | None = None

    def use_keypair(self, job_id: str, public: PublicKey, private: PrivateKey) -> None:
        """Adopt an existing key pair (tests reuse one key across many jobs)."""
        with self._lock:
            self._job_id, self._public, self._private = job_id, public, private

    def start_job(self, job_id: str, key_bits: int) -> PublicKey:
        """Make (or keep, for the same job) the job's key pair and return its public key."""
        with self._lock:
            if self._job_id == job_id and self._public is not None:
                return self._public
            public, private = generate_keypair(key_bits, allow_small=self._allow_small)
            self._job_id, self._public, self._private = job_id, public, private
            return public

    @property
    def job_id(self) -> str | None:
        return self._job_id

    def public_key(self) -> PublicKey:
        if self._public is None:
            raise ProtocolError("the coordinator has no key yet: no job was started")
        return self._public

    def _private_key(self) -> PrivateKey:
        if self._private is None:
            raise ProtocolError("the coordinator has no key yet: no job was started")
        return self._private

    def decrypt_masked(self, packed: PackedCiphertexts) -> list[int]:
        """The masked slot values (what the coordinator sees: value + fresh wide mask)."""
        slots = decrypt_packed(self._private_key(), packed)
        if self.observed is not None:
            self.observed.extend(slots)
        return slots

    def decrypt_loss(self, masked_scores: PackedCiphertexts, masked_sum: PackedCiphertexts) -> int:
        """One integer: the sum of squares of the masked scores plus the one masked scalar.

        That sum is all the lender needs for the batch's loss and all it gets
        (``LabelParty.loss_request``); the coordinator sees masked values only.
        """
        if masked_sum.count != 1:
            raise ProtocolError(f"a loss request has one masked scalar, not {masked_sum.count}")
        slots = self.decrypt_masked(masked_scores)
        return sum(s * s for s in slots) + self.decrypt_masked(masked_sum)[0]
