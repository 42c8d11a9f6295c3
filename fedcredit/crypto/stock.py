"""Randomness drawn ahead: values a key will need, computed in a daemon thread, each used once.

Two kinds, one per key and process:

- ``r**n mod n**2`` (textbook obfuscators, for ciphertexts a data party that owns the key will
  decrypt): a few are kept ready so an online request does not wait for a 2048-bit
  exponentiation.
- DJN's ``hs**x`` (issue 16): a party spends most of an epoch waiting for its peers, and
  encryption is one table exponentiation and one multiplication, so up to
  ``set_randomness_stock(values)`` of them are computed while this process's crypto pool is
  idle (``pool.idle_seconds``), and encryption then costs one multiplication. Off by default
  (0): on one machine the parties share the cores and a party's idle time is another's work.

Values are handed out first in, first out, each exactly once, and never written anywhere.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gmpy2

from fedcredit.crypto import pool
from fedcredit.errors import CryptoError

#: How long the pool must have been idle before the DJN stock computes more.
IDLE_SECONDS = 0.02
#: Values computed between two idleness checks.
CHUNK = 16
#: Stocks kept per kind: a long-lived node sees a new key per job.
MAX_KEYS = 8

_randomness_values = 0


def set_randomness_stock(values: int) -> None:
    """Keep up to ``values`` DJN obfuscators per key ready in this process (0: none)."""
    global _randomness_values
    if isinstance(values, bool) or not isinstance(values, int) or values < 0:
        raise CryptoError(f"the randomness stock must be a non-negative integer, got {values!r}")
    _randomness_values = values


def randomness_stock() -> int:
    """The DJN stock size per key (0: encryption computes its randomness when asked)."""
    return _randomness_values


class Stock:
    """Up to ``capacity`` values of ``make_one()``, refilled by a daemon thread (only while the
    crypto pool is idle when ``idle_only``); ``take`` hands stocked values out first, each
    once, and makes the rest with ``make_many``."""

    def __init__(
        self,
        make_one: Callable[[], Any],
        make_many: Callable[[int], list[Any]],
        capacity: int,
        *,
        idle_only: bool,
        name: str,
    ) -> None:
        self.capacity = capacity
        self._make_one, self._make_many = make_one, make_many
        self._idle_only = idle_only
        self._values: deque[Any] = deque()
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._wanted.set()
        self._stopped = False
        threading.Thread(target=self._fill, name=name, daemon=True).start()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def stop(self) -> None:
        """End the refill thread and drop the stocked values."""
        with self._lock:
            self._stopped = True
            self._values.clear()
        self._wanted.set()

    def take_ready(self, count: int) -> list[Any]:
        """Up to ``count`` stocked values (fewer, or none, if fewer are ready); makes none."""
        with self._lock:
            got = [self._values.popleft() for _ in range(min(count, len(self._values)))]
        self._wanted.set()
        return got

    def take(self, count: int) -> list[Any]:
        with self._lock:
            got = [self._values.popleft() for _ in range(min(count, len(self._values)))]
        self._wanted.set()
        if len(got) < count:
            got += self._make_many(count - len(got))
        return got

    def _fill(self) -> None:
        gmpy2.get_context().allow_release_gil = True
        while True:
            self._wanted.wait()
            with self._lock:
                if self._stopped:
                    return
                room = self.capacity - len(self._values)
                if room <= 0:
                    self._wanted.clear()
            if room <= 0:
                continue
            if self._idle_only and pool.idle_seconds() < IDLE_SECONDS:
                time.sleep(IDLE_SECONDS / 4)
                continue
            made = [self._make_one() for _ in range(min(room, CHUNK if self._idle_only else 1))]
            with self._lock:
                self._values.extend(made)


class StockRegistry:
    """One :class:`Stock` per key modulus, at most ``MAX_KEYS`` (the oldest is dropped)."""

    def __init__(self) -> None:
        self._stocks: dict[int, Stock] = {}
        self._lock = threading.Lock()

    def get(self, n: Any, make: Callable[[], Stock]) -> Stock:
        with self._lock:
            stock = self._stocks.get(int(n))
            if stock is None:
                if len(self._stocks) >= MAX_KEYS:
                    self._stocks.pop(next(iter(self._stocks))).stop()
                stock = self._stocks[int(n)] = make()
            return stock
