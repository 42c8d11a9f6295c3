"""What goes to a key's owner, on every executor, on the real local Ray cluster of
``test_ray_executor`` (two CPUs).

The textbook randomizers ``r**n mod n**2`` (``Executor.powers``), ``pack_for_owner`` and the loan
stacking's digit packing (``mask_and_pack_digits``, now the executor's ``pack``) give the same
bits on threads, worker processes and Ray for an injected rng, and the same bits as the
formulas they were written with before; the background stock keeps refilling while Ray is the
executor; a Ray worker killed in the middle of a ``powers`` block is replaced and the block
rerun, with neither a wrong nor a doubled value.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz

from fedcredit.crypto import (
    decrypt_digits,
    decrypt_packed,
    encrypt_vector,
    mask_and_pack_digits,
)
from fedcredit.crypto import keys as keys_module
from fedcredit.crypto.executors import ThreadExecutor
from fedcredit.crypto.executors.processes import ProcessExecutor
from fedcredit.crypto.executors.ray_executor import BlockSizes, RayExecutor
from fedcredit.crypto.keys import FULL_STOCK, PublicKey, _full_obfuscators
from fedcredit.crypto.packing import pack_for_owner
from fedcredit.crypto.vector import EncryptedVector

# Without Ray this import skips the module (``pytest.importorskip`` in test_ray_executor).
from tests.integration.test_ray_executor import cluster, on
from tests.support.keys import KeyPair
from tests.support.ray_cluster import kill_a_worker_during

__all__ = ["cluster"]  # the module-scoped local Ray cluster, shared with test_ray_executor

DIGIT = 80


@pytest.fixture(scope="module")
def processes() -> Iterator[ProcessExecutor]:
    executor = ProcessExecutor(2, min_block=8)
    yield executor
    executor.close()


def _textbook(key: PublicKey, count: int, rng: random.Random) -> list[Any]:
    """The randomizers as ``_full_obfuscators`` computed them before the seam, by hand."""
    out = []
    while len(out) < count:
        r = mpz(rng.randrange(1, int(key.n)))
        if gmpy2.gcd(r, key.n) == 1:
            out.append(gmpy2.powmod(r, key.n, key.nsquare))
    return out


def _everywhere(cluster: RayExecutor, processes: ProcessExecutor, fn: Any) -> list[Any]:
    return [on(executor, fn) for executor in (ThreadExecutor(), processes, cluster)]


def _ints(key: PublicKey, values: Sequence[int], seed: int) -> EncryptedVector:
    zeros = encrypt_vector(key, np.zeros(len(values)), 0, rng=random.Random(seed))
    return zeros.add_plain_ints(list(values))


def test_owner_randomizers_are_the_same_bits_on_threads_processes_and_ray(
    cluster: RayExecutor, processes: ProcessExecutor, keypair: KeyPair
) -> None:
    pk, sk = keypair
    count = 21  # five blocks of four or five bases on the cluster
    assert cluster._counts(count, cluster.blocks.powers) is not None

    got = _everywhere(
        cluster, processes, lambda: _full_obfuscators(pk.n, pk.nsquare, count, random.Random(8))
    )

    expected = _textbook(pk, count, random.Random(8))
    assert got == [expected] * 3
    assert [int(v) for v in sk.raw_decrypt_many(expected)] == [0] * count
    assert len(set(expected)) == count


def test_pack_for_owner_is_the_same_bits_on_threads_processes_and_ray(
    cluster: RayExecutor, processes: ProcessExecutor, keypair: KeyPair
) -> None:
    pk, sk = keypair
    values = [random.Random(9).randrange(1 << 30) for _ in range(130)]  # 10 ciphertexts of 14
    ev = _ints(pk, values, 10)

    got = _everywhere(
        cluster, processes, lambda: pack_for_owner(ev, 30, rng=random.Random(11)).ciphertexts
    )

    assert got[1] == got[0] and got[2] == got[0]
    packed = pack_for_owner(ev, 30, rng=random.Random(11))
    assert packed.ciphertexts == got[0]
    assert decrypt_packed(sk, packed) == values


def test_digit_packing_is_the_same_bits_on_threads_processes_and_ray(
    cluster: RayExecutor, processes: ProcessExecutor, keypair: KeyPair
) -> None:
    pk, sk = keypair
    group = 11
    values = [random.Random(12).randrange(1 << 64) for _ in range(100)]  # 10 ciphertexts
    ev = _ints(pk, values, 13)
    assert cluster._counts(10, cluster.blocks.pack) is not None

    got = _everywhere(
        cluster, processes, lambda: mask_and_pack_digits(ev, DIGIT, group, rng=random.Random(14))
    )

    packed, masks = got[0]
    assert got[1] == got[0] and got[2] == got[0]
    assert packed.ciphertexts == _old_digit_packing(pk, ev, group, random.Random(14))
    numbers = decrypt_digits(sk, packed)
    recovered = []
    for start, mask in zip(range(0, len(values), group), masks, strict=True):
        used = len(values[start : start + group])
        width = DIGIT * used
        number = sum(d << (DIGIT * (used - 1 - k)) for k, d in enumerate(numbers[start:][:used]))
        plain = (number - mask) % (1 << width)
        recovered += [(plain >> (DIGIT * (used - 1 - k))) % (1 << DIGIT) for k in range(used)]
    assert recovered == values


def _old_digit_packing(
    key: PublicKey, ev: EncryptedVector, group: int, rng: random.Random
) -> tuple[Any, ...]:
    """``mask_and_pack_digits`` as it was written before it used the executor's ``pack``."""
    n, nsq, shift = key.n, key.nsquare, mpz(1) << DIGIT
    sizes = [min(group, len(ev) - start) for start in range(0, len(ev), group)]
    masks = [rng.getrandbits(DIGIT * used + 80) for used in sizes]
    packed = []
    for start, mask in zip(range(0, len(ev), group), masks, strict=True):
        cts = ev.ciphertexts[start : start + group]
        acc = cts[0]
        for c in cts[1:]:
            acc = gmpy2.powmod(acc, shift, nsq) * c % nsq
        packed.append(acc * (1 + n * mpz(mask)) % nsq)
    randomizers = _textbook(key, len(packed), rng)
    return tuple(c * r % nsq for c, r in zip(packed, randomizers, strict=True))


def test_the_randomizer_stock_refills_in_the_background_with_ray_as_the_executor(
    cluster: RayExecutor, keypairs: Any
) -> None:
    pk, sk = keypairs(1024, 31)  # a key of its own: its stock starts empty here

    def draw() -> tuple[list[Any], int]:
        taken = pk.full_obfuscators(12)  # 12 >= the cluster's block of 4: part goes to Ray
        stock = keys_module._FULL_STOCKS.get(pk.n, lambda: pytest.fail("no stock was made"))
        deadline = time.monotonic() + 60
        while len(stock) < FULL_STOCK and time.monotonic() < deadline:
            time.sleep(0.05)
        stocked = len(stock)
        return taken + pk.full_obfuscators(3), stocked  # three from the refilled stock

    values, stocked = on(cluster, draw)

    assert stocked == FULL_STOCK
    assert [int(v) for v in sk.raw_decrypt_many(values)] == [0] * len(values)
    assert len(set(values)) == len(values)


def test_a_worker_killed_mid_powers_block_is_retried_without_a_wrong_or_doubled_result(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, _ = keypair
    count = 1600  # two blocks of 800 powers at 1024 bits: each long enough to be caught running
    expected = _textbook(pk, count, random.Random(15))
    slow = RayExecutor("local", blocks=BlockSizes(powers=800, per_worker=1))
    killed, got, hung = kill_a_worker_during(
        "powers_task",
        lambda: on(slow, lambda: _full_obfuscators(pk.n, pk.nsquare, count, random.Random(15))),
    )
    assert killed is not None, "no Ray worker was seen running a powers block"
    assert not hung
    assert got == [expected]
