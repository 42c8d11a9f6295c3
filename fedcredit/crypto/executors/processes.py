"""Encryption and the PSI's blocks on worker processes of this machine; the rest on the threads.

Why: the DJN comb (``FixedBaseTable.pow``) is a Python loop around gmpy2 multiplications, and
the thread holds the GIL between them, so two crypto threads encrypt only about 1.2-1.3 times
as fast as one (``benchmarks/crypto.py``; docs/TREES.md, "Where the lender's g/h encryption time
went"). Worker processes have no GIL to share: a party's large encryptions (the trees lender's
g and h, a logistic party's residuals) run on every core.

What travels and what stays is the Ray executor's (``ray_executor``): plaintexts, exponents and
ciphertexts as fixed-width bytes, and each worker builds a key's table once, on its first block,
with the same code, so the ciphertexts are the same bits as the threads'. The exponents are drawn
in the caller's thread as for every executor. Workers are spawned (never forked from a process
that runs gRPC threads) when the executor is made, and live as long as it does. Calls under
``min_block`` values per worker run on the local threads, where a process round trip would cost
more than it saves.

The PSI's hashing and blinding (``map_blocks``, blocks of ``fedcredit.psi.group``) run there
too: the hashing is Python holding the GIL, so on the threads it is serial.

The bin sums (``fedcredit.crypto.bin_sums``) stay on the threads (inherited): their loop is one
gmpy2 multiplication after another, which releases the GIL, and two threads were as fast as two
worker processes that must first receive the ciphertexts as bytes (2048 bits, 22,500 rows x 12
columns, under nice on a shared machine: 1.29-1.54 s on two threads, 1.42-2.09 s on two
processes, 2.1-2.7 s on one thread). So do the owner-bound randomizers ``r**n mod n**2`` (``powers``): one
long gmpy2 ``powmod`` each, GIL released, and 32 at 2048 bits took 0.52-0.58 s on two threads,
0.55-0.69 s on two worker processes (0.57-0.69 s on one thread), under nice on a shared machine.

Who sees what: the workers are this party's own processes; they see what the thread pool sees
(for the PSI, the ids and the scalar of each block, kept no longer than the task).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from gmpy2 import mpz

from fedcredit.crypto.djn import FixedBaseTable
from fedcredit.crypto.executors.ray_executor import (
    KeySpec,
    TableSpec,
    _cached,
    encrypt_task,
    from_bytes,
    noop_task,
    split_counts,
    to_bytes,
    width_of,
    worker_key,
)
from fedcredit.crypto.executors.threads import ThreadExecutor, in_flight

#: Values per block below which a call stays on the local threads.
MIN_BLOCK = 128

_crt_tables: dict[Any, Any] = {}


def encrypt_owned_task(spec: KeySpec, window: int, plain: bytes, exps: bytes) -> bytes:
    """One block of the key owner's encryption by the CRT (``fedcredit.crypto.owner``), in a
    worker that keeps the key's half tables after its first block."""
    from fedcredit.crypto.owner import CrtTables

    key = worker_key(spec)
    tables = _cached(_crt_tables, (spec, window), lambda: CrtTables(key, window).build())
    n, nsq = key.public_key.n, key.public_key.nsquare
    ms = from_bytes(plain, width_of(n))
    xs = from_bytes(exps, -(-tables.exponent_bits // 8))
    return to_bytes(tables.encrypt(ms, xs), width_of(nsq))


class ProcessExecutor(ThreadExecutor):
    """``encrypt`` and ``map_blocks`` on ``workers`` spawned processes (default: one per core);
    the other kernels on this process's thread pool (they are short or already GIL-free)."""

    name = "processes"

    def __init__(self, workers: int | None = None, *, min_block: int = MIN_BLOCK) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.min_block = min_block
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        # Start every worker now (spawning one takes about a second), not on the first call.
        list(self._pool.map(noop_task, [b""] * self.workers))

    def _blocks(self, count: int) -> list[int] | None:
        """Block bounds for ``count`` values, or ``None`` when the call stays local."""
        blocks = min(self.workers * 2, count // self.min_block)
        return None if blocks < 2 else [count * i // blocks for i in range(blocks + 1)]

    def _run(
        self,
        task: Callable[..., bytes],
        head: tuple[Any, ...],
        n: Any,
        nsq: Any,
        exponent_bits: int,
        bounds: list[int],
        plaintexts: Sequence[int],
        exponents: Sequence[int],
    ) -> list[Any]:
        """``task(*head, plaintexts, exponents)`` per block as fixed-width bytes, in order."""
        n_width, x_width = width_of(n), -(-exponent_bits // 8)
        futures = [
            self._pool.submit(
                task,
                *head,
                to_bytes([mpz(m) % n for m in plaintexts[a:b]], n_width),
                to_bytes(exponents[a:b], x_width),
            )
            for a, b in itertools.pairwise(bounds)
        ]
        width = width_of(nsq)
        return [c for future in futures for c in from_bytes(future.result(), width)]

    def encrypt(
        self, table: FixedBaseTable, n: Any, plaintexts: Sequence[int], exponents: Sequence[int]
    ) -> list[Any]:
        bounds = self._blocks(len(plaintexts))
        if bounds is None:
            return super().encrypt(table, n, plaintexts, exponents)
        nsq = table.modulus
        spec: TableSpec = (to_bytes([table.base], width_of(nsq)), to_bytes([nsq], width_of(nsq)),
                           table.exponent_bits, table.window)  # fmt: skip
        head = (spec, to_bytes([n], width_of(n)))
        return self._run(
            encrypt_task, head, n, nsq, table.exponent_bits, bounds, plaintexts, exponents
        )

    def encrypt_owned(
        self, private_key: Any, window: int, plaintexts: Sequence[int], exponents: Sequence[int]
    ) -> list[Any] | None:
        """The key owner's CRT encryption on the workers (they see the key's factors, as the
        owner's own processes); ``None`` when the call is too small for them."""
        bounds = self._blocks(len(plaintexts))
        if bounds is None:
            return None
        key = private_key.public_key
        n, nsq = key.n, key.nsquare
        spec: KeySpec = (to_bytes([n], width_of(n)), to_bytes([key.hs], width_of(nsq)),
                         to_bytes([private_key.p], width_of(n)),
                         to_bytes([private_key.q], width_of(n)))  # fmt: skip
        return self._run(
            encrypt_owned_task, (spec, window), n, nsq, key.exponent_bits, bounds,
            plaintexts, exponents,
        )  # fmt: skip

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()

    #: Items per block of :meth:`map_blocks` (PSI ids or points, 10 to 50 us each): at least
    #: 10 ms of work against a round trip to a worker of well under a millisecond, and at
    #: most 8 MiB of points, so that a 10M-id list is never copied whole into the queue.
    psi_min_block = 1024
    psi_max_block = 262_144

    def map_blocks(
        self,
        fn: Callable[..., bytes],
        count: int,
        args: Callable[[int, int], tuple[Any, ...]],
    ) -> list[bytes] | None:
        """``fn(*args(a, b))`` per block on the worker processes, two blocks a worker (more
        for a long list, each at most ``psi_max_block``), at most two a worker in flight;
        ``None`` under two blocks' worth of items, which the caller runs on its threads."""
        counts = split_counts(count, self.psi_min_block, self.psi_max_block, self.workers * 2)
        if len(counts) < 2:
            return None
        return in_flight(
            counts,
            lambda a, b: self._pool.submit(fn, *args(a, b)),
            lambda future: future.result(),
            lambda future: future.cancel(),
            2 * self.workers,
        )


__all__ = ["MIN_BLOCK", "ProcessExecutor", "encrypt_owned_task"]
