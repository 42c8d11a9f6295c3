"""Fixed-point slots of the encrypted gradients: one scale per message, several values per plaintext.

The lender encodes each training row's ``g`` and ``h`` (rounded to ``2**-scale_bits``) as signed
slots of ``width`` bits of one plaintext ``sum_k v_k 2**(width k)``. In joint mode a plaintext
holds ``per_node = 3`` slots (rows, ``h``, ``g``) for each of ``nodes`` node positions and a row's
values sit in the slots of its own node (zeros elsewhere), so a partner's sums over any rows are
every node's sums at once. A slot is wide enough for the sum over every training row, so sums
never spill into the next slot; signed slots are read back lowest first, borrowing from the next.

A partner packs its candidates' sums several to a ciphertext with ``pack_for_owner`` (offset to
be non-negative, re-randomized with ``r**n``: the lender owns the key, security review F6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedcredit.crypto.packing import SLOT_EXTRA_BITS
from fedcredit.errors import CryptoError


@dataclass(frozen=True)
class SlotLayout:
    """``nodes`` node positions of ``per_node`` signed slots of ``width`` bits in one plaintext."""

    width: int
    per_node: int
    nodes: int

    @property
    def bits(self) -> int:
        return self.width * self.per_node * self.nodes

    @property
    def offset(self) -> int:
        """Added to a candidate's plaintext before packing, so that it is non-negative."""
        return 1 << (self.bits - 1)


def slot_width(rows: int, scale_bits: int) -> int:
    """Bits of one signed slot holding a sum over ``rows`` values of magnitude at most 1."""
    return scale_bits + max(1, rows).bit_length() + 2


def nodes_per_plaintext(key_bits: int, width: int, per_node: int) -> int:
    """How many node positions fit one plaintext that a partner can still pack (at least 1)."""
    room = key_bits - 2 - SLOT_EXTRA_BITS
    count = room // (width * per_node)
    if count < 1:
        raise CryptoError(f"a {key_bits}-bit key cannot hold {per_node} slots of {width} bits")
    return int(count)


def quantize(values: npt.ArrayLike, scale_bits: int) -> list[int]:
    """``round(v * 2**scale_bits)`` as Python ints."""
    return [int(v) for v in np.round(np.asarray(values, np.float64) * 2.0**scale_bits).tolist()]


def encode_rows(
    columns: Sequence[Sequence[int]], slot: npt.ArrayLike, layout: SlotLayout
) -> list[int]:
    """Per row one signed plaintext: ``columns[k][i]`` in slot ``slot[i] * per_node + k``
    (``slot[i] < 0``: the row sits in none of this plaintext's node positions, all zeros)."""
    positions = np.asarray(slot, dtype=np.int64).tolist()
    out = []
    for i, pos in enumerate(positions):
        if pos < 0:
            out.append(0)
            continue
        base = pos * layout.per_node
        out.append(sum(int(col[i]) << (layout.width * (base + k)) for k, col in enumerate(columns)))
    return out


def decode(value: int, layout: SlotLayout) -> list[int]:
    """The signed slots of one candidate's plaintext (``value`` with the offset still in)."""
    p = int(value) - layout.offset
    half, full = 1 << (layout.width - 1), 1 << layout.width
    slots = []
    for _ in range(layout.per_node * layout.nodes):
        v = p % full
        if v >= half:
            v -= full
        slots.append(v)
        p = (p - v) >> layout.width
    if p != 0:
        raise CryptoError("a decrypted candidate does not fit its slots")
    return slots


__all__ = ["SlotLayout", "decode", "encode_rows", "nodes_per_plaintext", "quantize", "slot_width"]
