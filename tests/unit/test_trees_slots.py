"""Signed fixed-point slots survive encryption, sums and packing."""

from __future__ import annotations

import numpy as np

from fedcredit.crypto import EncryptedVector, decrypt_packed
from fedcredit.crypto.vector import encrypt_ints
from fedcredit.protocol.trees.partner import pack
from fedcredit.protocol.trees.slots import SlotLayout, decode, encode_rows, slot_width
from tests.support.keys import KeyPair


def test_packed_sums_of_signed_slots_decode_exactly(keypair: KeyPair) -> None:
    public, private = keypair
    layout = SlotLayout(slot_width(8, 20), 3, 2)
    rng = np.random.default_rng(0)
    g = rng.integers(-(2**20), 2**20, 8).tolist()
    h = rng.integers(0, 2**18, 8).tolist()
    node = [0, 1, 1, 0, -1, 1, 0, 0]
    values = encrypt_ints(public, encode_rows([[1] * 8, h, g], node, layout), 0)
    first = values.take([0, 1, 2]).sum()
    second = values.take([3, 4, 5, 6, 7]).sum()
    packed = pack([first, second], layout)
    got = [decode(v, layout) for v in decrypt_packed(private, packed)]
    for sums, rows in zip(got, ([0, 1, 2], [3, 4, 5, 6, 7]), strict=True):
        for pos in (0, 1):
            at = [i for i in rows if node[i] == pos]
            assert sums[3 * pos : 3 * pos + 3] == [
                len(at),
                sum(h[i] for i in at),
                sum(g[i] for i in at),
            ]
    assert isinstance(first, EncryptedVector)
