"""For the key's owner: its CRT encryption (crypto/owner.py), the same bits as the public-key
path, and ``pack_for_owner``'s Horner packing, the same bits as the weighted sum it replaced."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from fedcredit.crypto import decrypt_vector, pool
from fedcredit.crypto.djn import set_table_budget
from fedcredit.crypto.executors.base import current_executor
from fedcredit.crypto.multiexp import weighted_sum
from fedcredit.crypto.owner import CrtTables, crt_tables, encrypt_ints_as_owner, encrypt_owned
from fedcredit.crypto.packing import (
    SLOT_EXTRA_BITS,
    decrypt_packed,
    pack_for_owner,
    slots_per_ciphertext,
)
from fedcredit.crypto.stock import set_randomness_stock
from fedcredit.crypto.vector import encrypt_ints
from tests.support.keys import KeyPair, KeyPairs


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    set_table_budget(None)
    set_randomness_stock(0)
    pool.set_workers(None)


def _ints(key_bits: int, count: int) -> list[int]:
    source = random.Random(3)
    # Signed values, zero, and values near n: every case encrypt_ints reduces mod n.
    out = [0, 1, -1, -(2**200), 2 ** (key_bits - 2)]
    return out + [source.getrandbits(key_bits - 8) - 2 ** (key_bits - 9) for _ in range(count)]


@pytest.mark.parametrize("workers", [1, 2])
def test_owner_ciphertexts_equal_the_public_paths_at_a_fixed_rng(
    keypair: KeyPair, workers: int
) -> None:
    public, private = keypair
    pool.set_workers(workers)
    ints = _ints(public.bits, 60)
    expected = encrypt_ints(public, ints, 0, rng=random.Random(11))
    got = encrypt_ints_as_owner(private, ints, 0, rng=random.Random(11))
    assert got.ciphertexts == expected.ciphertexts
    assert got.scale_bits == expected.scale_bits == 0


@pytest.mark.parametrize("window", [2, 5, 8, 10])
def test_every_window_gives_the_public_tables_power(keypair: KeyPair, window: int) -> None:
    public, private = keypair
    tables = CrtTables(private, window)
    source = random.Random(window)
    exponents = [0, 1, 2**public.exponent_bits - 1] + [
        source.getrandbits(public.exponent_bits) for _ in range(20)
    ]
    assert [tables.pow(x) for x in exponents] == [public.table.pow(x) for x in exponents]
    with pytest.raises(ValueError):
        tables.pow(2**public.exponent_bits)


def test_the_halves_share_the_table_budget(keypairs: KeyPairs) -> None:
    _, private = keypairs(1024, 7)
    set_table_budget(64)
    # 64 MiB shared by two half tables of 1024-bit numbers and 512-bit exponents: window 12.
    assert crt_tables(private).window == 12
    set_table_budget(None)
    assert CrtTables(private).window == 8


def test_without_the_private_key_the_public_path_decrypts_the_same(keypair: KeyPair) -> None:
    public, private = keypair
    values = [5, -7, 2**40]
    for ev in (
        encrypt_owned(public, None, values, 3),
        encrypt_owned(public, private, values, 3),
    ):
        assert decrypt_vector(private, ev).tolist() == [v / 8 for v in values]


def test_stocked_randomness_goes_first_and_the_rest_is_computed(keypairs: KeyPairs) -> None:
    public, private = keypairs(1024, 9)  # a key of its own: a stock of its own
    set_randomness_stock(8)
    stock = public._djn_stock()
    deadline = time.monotonic() + 20
    while len(stock) < 8 and time.monotonic() < deadline:  # a readiness wait, not a speed check
        time.sleep(0.01)
    assert len(stock) == 8
    stocked = list(stock._values)
    values = list(range(-10, 10))
    try:
        ev = encrypt_ints_as_owner(private, values, 0)
    finally:
        stock.stop()  # no refill thread left for other tests
    n, nsq = public.n, public.nsquare
    # The eight stocked values are the first eight ciphertexts' randomness; twelve computed.
    assert ev.ciphertexts[:8] == [
        (1 + n * (m % n)) * r % nsq for m, r in zip(values[:8], stocked, strict=True)
    ]
    assert decrypt_vector(private, ev).tolist() == [float(v) for v in values]


@pytest.mark.parametrize("count", [1, 5, 23])
def test_owner_packing_by_horner_equals_the_weighted_sum_and_decrypts(
    keypair: KeyPair, count: int
) -> None:
    public, private = keypair
    values = [random.Random(count).getrandbits(30) for _ in range(count)]
    ev = encrypt_ints(public, values, 0, rng=random.Random(4))
    slot_bits = 30 + SLOT_EXTRA_BITS
    per = slots_per_ciphertext(public.bits, slot_bits)
    groups = [ev.take(list(range(s, min(s + per, count)))) for s in range(0, count, per)]
    horner = current_executor().pack(
        public.n, public.nsquare, slot_bits, [(g.ciphertexts, [0] * len(g)) for g in groups]
    )
    weighted = [
        weighted_sum(g, [1 << (slot_bits * (len(g) - 1 - i)) for i in range(len(g))]).ciphertexts[0]
        for g in groups
    ]
    assert horner == weighted
    packed = pack_for_owner(ev, 30)
    assert len(packed.ciphertexts) == len(groups)
    assert decrypt_packed(private, packed) == values
