"""Paillier key pairs for tests, generated once per (bits, seed) from a seeded generator."""

from __future__ import annotations

import random

from fedcredit.crypto import PrivateKey, PublicKey, generate_keypair

KeyPair = tuple[PublicKey, PrivateKey]


class KeyPairs:
    """Key pairs by (bits, seed), each generated once."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, int], KeyPair] = {}

    def __call__(self, bits: int = 1024, seed: int = 1) -> KeyPair:
        if (bits, seed) not in self._made:
            rng = random.Random(seed)
            self._made[(bits, seed)] = generate_keypair(bits, allow_small=bits < 2048, rng=rng)
        return self._made[(bits, seed)]
