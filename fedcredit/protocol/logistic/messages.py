"""The domain messages of federated logistic regression (what travels, and who may read it).

Flow for mini-batch ``b`` of epoch ``e``, lender L, hosts H_1..H_N, coordinator C (the key
holder; each arrow is one message, ``B`` the batch's rows, ``f`` a party's design columns):

1. ``H_i -> L``  ``PartialScores``: ``[[u_i]] = Enc(X_i w_i)``, ``B`` values at ``Z_SCALE_BITS``.
   L cannot read them (C holds the key) and only ever adds them up.
2. ``L -> H_i``  ``Residual``: ``[[4d]]``, ``B`` values, re-randomized so that H_i cannot strip
   the randomness of its own ``[[u_i]]`` from it. H_i cannot read it.
3. ``L -> C``    ``LossRequest`` (last batch only): masked scores and one masked scalar; C
   answers one integer, from which L gets the batch's Taylor loss and nothing else.
4. ``P -> C``    ``MaskedGradient`` (every party P): ``X_P.T @ [[4d]]`` plus fresh masks,
   packed, ``f`` slots at the job's gradient width. C reads masked slots only; P removes its
   masks and learns its own gradient (``f`` below the smallest batch: ``split.batch_rule``).
5. ``C -> P``    ``MaskedSlots``: the decrypted masked slots, in order.

After each epoch (validation rows), once per job (test rows) and per scoring request, the
hosts send ``PartialScores`` again, L adds its own part and sends ``MaskedScores`` to C; it
unmasks the answer and learns the final scores z of those rows, which it is meant to learn.
For online scoring a host packs its partial scores into ``MaskedScores``' slots before
encrypting (``FeatureParty.partial_for_ids``), and L adds its part and the masks slot by slot.
Which caller may ask C for which decryption, how many values and how wide, is the schedule
(``fedcredit.protocol.logistic.schedule``); C holds every caller to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedcredit.crypto import EncryptedVector, PackedCiphertexts

PartialScores = EncryptedVector
"""A host's ``[[u_h]]`` for a step's rows (read by no one: the lender adds them up)."""
Residual = EncryptedVector
"""The lender's ``[[4d]]`` for a training batch (read by no one: every party multiplies it)."""
MaskedGradient = PackedCiphertexts
"""A party's masked, packed gradient (the coordinator reads masked slots only)."""
MaskedScores = PackedCiphertexts
"""The lender's masked, packed final scores (the coordinator reads masked slots only)."""
MaskedSlots = list[int]
"""What the coordinator returns: masked slot values, for the caller to unmask."""


@dataclass(frozen=True)
class LossRequest:
    """Masked values for the coordinator: per-row z + r (packed) and one masked scalar.

    The coordinator returns one integer, ``Σ (z + r)² +`` the decrypted scalar, from which the
    lender gets exactly the batch's Taylor loss and nothing else about its scores.
    """

    masked_scores: PackedCiphertexts
    masked_sums: PackedCiphertexts


__all__ = [
    "LossRequest",
    "MaskedGradient",
    "MaskedScores",
    "MaskedSlots",
    "PartialScores",
    "Residual",
]
