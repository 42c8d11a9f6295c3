"""The domain messages of federated boosted trees (what travels, and who may read it).

The lender L holds the labels and a Paillier key of its own for the job; partners P_i hold
columns; the coordinator decrypts nothing in this family. ``N`` is the training rows, ``A`` all
aligned rows (train, validation, test), in the shared order every party holds.

Mode ``"mix"``, a tree built on P's columns (the lender's own trees need no message):

1. ``L -> P``  ``Gradients``: per training row one ciphertext, ``g`` and ``h`` in two slots at
   one scale; rows left out of the tree's sample are encryptions of zero. P reads nothing.
2. ``P -> L``  ``Histograms`` per level: per open node, the left sums of P's admissible
   candidates (both children at least ``min_rows`` rows), shuffled, packed, re-randomized with
   ``r**n``. L reads the sums of each candidate, never which column or bin it is.
3. ``L -> P``  ``MixChoice`` per level: per open node the winning candidate's index or -1
   (a leaf). P learns which of its candidates won, as in SecureBoost.
4. ``P -> L``  ``Leaves`` at the end of the tree: the leaf of every aligned row. L learns the
   tree's partition of the rows (it needs it for the margins), no threshold.

Mode ``"joint"``, every tree on every party's columns, per level ``d``:

1. ``L -> P_i``  ``Gradients``: per training row ciphertexts in which only the slots of the
   row's node hold ``(1, h, g)``: the same count of ciphertexts whatever the nodes, fresh each
   level. P_i reads nothing and cannot tell a row's node.
2. ``P_i -> L``  ``Histograms``: per candidate of P_i's columns (the same candidates every
   level), the sums of every node at once, shuffled, packed, re-randomized with ``r**n``.
3. ``L -> P_i``  ``SideRequest``: exactly ``2**d`` (token, candidate) pairs, whatever the tree's
   shape: at each node position P_i's best candidate there (the winner where P_i won, decoys
   elsewhere), in random order. P_i cannot tell which are used.
4. ``P_i -> L``  ``Sides``: per pair the side (left bit) of every aligned row. L learns, per
   host split, the side of every row, and as much for the decoys.

Scoring (both modes): L sends the applicants' ids; a partner answers ``LeafMasks`` (mix: for
each of its trees, the leaves each applicant can reach) or ``SplitBits`` (joint: the side of
each applicant at each of its tokens); L combines them with its own splits.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedcredit.crypto import EncryptedVector, PackedCiphertexts, PublicKey


@dataclass(frozen=True)
class Gradients:
    """L -> P: ``[[g, h]]`` in slots (read by no one but L). ``groups`` ciphertexts per row,
    group-major; ``width`` bits per slot at ``scale_bits``."""

    tree: int
    level: int
    width: int
    scale_bits: int
    groups: int
    nodes: int
    values: EncryptedVector

    @property
    def public_key(self) -> PublicKey:
        return self.values.public_key


@dataclass(frozen=True)
class Histograms:
    """P -> L: packed left sums of shuffled candidates (L reads sums, not which candidate).

    ``counts[j]``: mix, the candidates of the ``j``-th open node; joint, the candidates of
    plaintext group ``j`` (every group has the same candidates)."""

    tree: int
    level: int
    counts: tuple[int, ...]
    sums: tuple[PackedCiphertexts, ...]


@dataclass(frozen=True)
class MixChoice:
    """L -> P (mix): per open node of the level, the winning candidate's index, -1 for a leaf."""

    tree: int
    level: int
    winners: tuple[int, ...]


@dataclass(frozen=True)
class Leaves:
    """P -> L (mix): the leaf (heap index) of every aligned row in P's tree."""

    tree: int
    leaves: bytes


@dataclass(frozen=True)
class SideRequest:
    """L -> P (joint): ``2**level`` (token, candidate index) pairs, in random order."""

    tree: int
    level: int
    picks: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Sides:
    """P -> L (joint): per pick, the left bit of every aligned row (``numpy.packbits``)."""

    tree: int
    level: int
    sides: tuple[bytes, ...]


@dataclass(frozen=True)
class LeafMasks:
    """P -> L (scoring, mix): per tree of P's, per applicant, the reachable leaves (packed bits
    over the tree's heap positions)."""

    trees: tuple[int, ...]
    masks: tuple[bytes, ...]
    rows: int


@dataclass(frozen=True)
class SplitBits:
    """P -> L (scoring, joint): per token of P's, the left bit of every applicant."""

    tokens: tuple[str, ...]
    bits: tuple[bytes, ...]
    rows: int


__all__ = [
    "Gradients",
    "Histograms",
    "LeafMasks",
    "Leaves",
    "MixChoice",
    "SideRequest",
    "Sides",
    "SplitBits",
]
