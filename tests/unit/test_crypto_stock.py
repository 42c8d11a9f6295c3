"""The comb window from a memory budget, and DJN randomness computed ahead (issue 16)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from fedcredit.crypto import decrypt_vector, encrypt_vector, generate_keypair, pool
from fedcredit.crypto.djn import set_table_budget, table_bytes, window_for_budget
from fedcredit.crypto.keys import PublicKey
from fedcredit.crypto.stock import Stock, randomness_stock, set_randomness_stock
from fedcredit.errors import CryptoError

KEY_BITS = 1024
MIB = 2**20


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    set_randomness_stock(0)
    set_table_budget(None)


def wait_for(predicate: object, seconds: float = 20.0) -> bool:
    """Poll until ``predicate()`` holds (a readiness wait, not a speed check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_the_window_is_the_widest_whose_table_fits_the_budget() -> None:
    # At 2048-bit keys (n/2-bit exponents, numbers below n**2).
    assert window_for_budget(1024, 4096, 18 * MIB) == 8
    assert window_for_budget(1024, 4096, 190 * MIB) == 12
    assert window_for_budget(1024, 4096, 1) == 2
    for window in range(2, 16):
        budget = table_bytes(1024, 4096, window)
        assert window_for_budget(1024, 4096, budget) == window
        assert window_for_budget(1024, 4096, budget - 1) == max(2, window - 1)


def test_a_budget_sizes_new_tables_and_an_explicit_window_wins() -> None:
    public, _ = generate_keypair(KEY_BITS, allow_small=True, rng=random.Random(1))
    set_table_budget(64)

    budgeted = PublicKey(public.n, public.hs)
    fixed = PublicKey(public.n, public.hs, comb_window=5)

    assert budgeted.table.window == window_for_budget(512, 2048, 64 * MIB) == 12
    assert fixed.table.window == 5
    assert budgeted.table.pow(12345) == fixed.table.pow(12345)
    with pytest.raises(CryptoError, match="budget"):
        set_table_budget(0)


def test_without_a_stock_nothing_is_computed_ahead() -> None:
    public, _ = generate_keypair(KEY_BITS, allow_small=True, rng=random.Random(2))
    assert randomness_stock() == 0

    public.obfuscators(3)

    assert not any(t.name == "djn-randomness" for t in threading.enumerate() if t.is_alive())


def test_stocked_randomness_encrypts_correctly_and_each_value_is_used_once() -> None:
    # Arrange: a stock of 40 per key, filled while the pool is idle.
    set_randomness_stock(40)
    public, private = generate_keypair(KEY_BITS, allow_small=True, rng=random.Random(3))
    public.obfuscators(1)  # makes the stock
    stock = public._djn_stock()
    assert wait_for(lambda: len(stock) == 40)

    # Act: take more than the stock holds, twice, and encrypt from it.
    first = public.obfuscators(50)
    assert wait_for(lambda: len(stock) == 40)
    second = public.obfuscators(50)
    values = [0.5, -2.25, 1e3, 0.0, 7.125] * 4
    encrypted = encrypt_vector(public, values, 16)

    # Assert: every value once (none handed out twice), and the ciphertexts decrypt.
    assert len(set(first) | set(second)) == 100
    assert decrypt_vector(private, encrypted).tolist() == values
    assert len(set(encrypted.ciphertexts)) == len(values)


def test_values_are_handed_out_first_in_first_out() -> None:
    counter = iter(range(10**6))
    stock = Stock(lambda: next(counter), lambda k: [-1] * k, 5, idle_only=False, name="t")
    try:
        assert wait_for(lambda: len(stock) == 5)
        taken = stock.take(3) + stock.take(4)
        # The five stocked first come out first, in order; what follows is either refilled
        # (later values) or made on the spot (-1); nothing comes out twice.
        assert taken[:5] == [0, 1, 2, 3, 4]
        stocked = [v for v in taken if v >= 0]
        assert stocked == sorted(set(stocked))
    finally:
        stock.stop()


def test_the_djn_stock_waits_while_the_pool_works() -> None:
    # Arrange: an empty stock, and a foreground pool call held open.
    set_randomness_stock(30)
    public, _ = generate_keypair(KEY_BITS, allow_small=True, rng=random.Random(4))
    assert public.table.window == 8  # built now: building it needs the pool
    release = threading.Event()
    started = threading.Event()

    def hold(_: int) -> int:
        started.set()
        release.wait(10)
        return 0

    busy = threading.Thread(target=pool.map_tasks, args=(hold, [1, 2]), daemon=True)
    busy.start()
    assert started.wait(10)
    stock = public._djn_stock()

    # Act / Assert: nothing is computed while the foreground call runs; it fills after.
    time.sleep(0.3)
    assert len(stock) == 0
    release.set()
    busy.join(10)
    assert wait_for(lambda: len(stock) == 30)
