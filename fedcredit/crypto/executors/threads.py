"""The default executor, the process's thread pool, and the block functions every executor runs.

The block functions take and return plain gmpy2 numbers (and numpy feature blocks). The thread
pool applies them to slices of a call's input; the Ray executor applies them to blocks of rows in
its workers. Products of blocks are combined with the same modular multiplications either way,
and every result is reduced into ``[0, modulus)``, so both give the same bits.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedcredit.crypto import pool
from fedcredit.crypto.buckets import multiexp_signed, multiexp_unsigned
from fedcredit.crypto.djn import FixedBaseTable
from fedcredit.crypto.modarith import batch_invert


def encrypt_block(
    table: FixedBaseTable, n: Any, plaintexts: Sequence[int], exponents: Sequence[int]
) -> list[Any]:
    """DJN ciphertexts ``(1 + n (m mod n)) * hs**x mod n**2`` of one block."""
    nsq = table.modulus
    return [
        (1 + n * (mpz(m) % n)) * table.pow(x) % nsq
        for m, x in zip(plaintexts, exponents, strict=True)
    ]


def column_parts(cts: Sequence[Any], column: npt.NDArray[np.int64], nsq: Any) -> tuple[Any, Any]:
    """``(prod over X > 0 of c**X, prod over X < 0 of c**-X)`` for one column of one block."""
    parts = []
    for sign in (1, -1):
        rows = np.flatnonzero(column * sign > 0)
        parts.append(
            multiexp_unsigned([cts[i] for i in rows.tolist()], (column[rows] * sign).tolist(), nsq)
        )
    return parts[0], parts[1]


def matvec_block(nsq: Any, cts: Sequence[Any], x: npt.NDArray[np.int64]) -> list[tuple[Any, Any]]:
    """The positive and negative parts of every column of one block of rows."""
    return [column_parts(cts, x[:, j], nsq) for j in range(x.shape[1])]


def finish_matvec(nsq: Any, positives: Sequence[Any], negatives: Sequence[Any]) -> list[Any]:
    """``P_j / N_j mod nsq`` per column, the inverses batched (Montgomery's trick)."""
    inverses = batch_invert(list(negatives), nsq)
    return [p * inv % nsq for p, inv in zip(positives, inverses, strict=True)]


def pack_group(n: Any, nsq: Any, slot_bits: int, cts: Sequence[Any], masks: Sequence[int]) -> Any:
    """One packed ciphertext: Horner over ``cts`` by ``2**slot_bits``, times ``1 + n M``."""
    shift = mpz(1) << slot_bits
    acc = cts[0]
    packed_mask = masks[0]
    for c, r in zip(cts[1:], masks[1:], strict=True):
        acc = gmpy2.powmod(acc, shift, nsq) * c % nsq
        packed_mask = (packed_mask << slot_bits) | r
    # The masks enter once, packed, as g**M = 1 + n M: no extra exponentiation.
    return acc * (1 + n * (mpz(packed_mask) % n)) % nsq


class ThreadExecutor:
    """The kernels on this process's crypto thread pool (``fedcredit.crypto.pool``)."""

    name = "threads"

    def encrypt(
        self, table: FixedBaseTable, n: Any, plaintexts: Sequence[int], exponents: Sequence[int]
    ) -> list[Any]:
        pairs = list(zip(plaintexts, exponents, strict=True))

        def work(part: Sequence[tuple[int, int]]) -> list[Any]:
            return encrypt_block(table, n, [m for m, _ in part], [x for _, x in part])

        return pool.map_chunked(work, pairs)

    def matvec_t(self, nsq: Any, ciphertexts: Sequence[Any], x: npt.NDArray[np.int64]) -> list[Any]:
        # One task per (column, sign) over the whole batch of rows; the pool spreads them.
        tasks = []
        for j in range(x.shape[1]):
            column = x[:, j]
            for sign in (1, -1):
                rows = np.flatnonzero(column * sign > 0)
                tasks.append(
                    ([ciphertexts[i] for i in rows.tolist()], (column[rows] * sign).tolist())
                )

        def work(task: tuple[list[Any], list[int]]) -> Any:
            return multiexp_unsigned(task[0], task[1], nsq)

        inline = len(ciphertexts) * x.shape[1] < pool.INLINE_BELOW
        parts = pool.map_tasks(work, tasks, inline=inline)
        return finish_matvec(nsq, parts[0::2], parts[1::2])

    def weighted_sum(self, nsq: Any, ciphertexts: Sequence[Any], weights: Sequence[int]) -> Any:
        pairs = list(zip(ciphertexts, weights, strict=True))
        chunks = (
            pool.split(pairs, pool.get_workers()) if len(pairs) >= pool.INLINE_BELOW else [pairs]
        )

        def work(part: Sequence[tuple[Any, int]]) -> Any:
            return multiexp_signed([c for c, _ in part], [w for _, w in part], nsq)

        acc = mpz(1)
        for partial in pool.map_tasks(work, chunks):
            acc = acc * partial % nsq
        return acc

    def pack(
        self,
        n: Any,
        nsq: Any,
        slot_bits: int,
        groups: Sequence[tuple[Sequence[Any], Sequence[int]]],
    ) -> list[Any]:
        return pool.map_tasks(
            lambda g: pack_group(n, nsq, slot_bits, g[0], g[1]), groups, inline=len(groups) < 2
        )

    def decrypt(self, key: Any, ciphertexts: Sequence[Any]) -> list[Any]:
        cts = [mpz(c) for c in ciphertexts]
        if len(cts) >= 2 * pool.get_workers():
            return pool.map_chunked(lambda part: [key.raw_decrypt(c) for c in part], cts)
        # Few ciphertexts (a packed gradient is often one): split each into its mod-p and mod-q
        # halves so that every core still has work.
        tasks = [(c, use_p) for c in cts for use_p in (True, False)]
        halves = pool.map_tasks(lambda task: key.decrypt_half(*task), tasks)
        return [
            key.combine_halves(mp, mq) for mp, mq in zip(halves[0::2], halves[1::2], strict=True)
        ]

    def close(self) -> None:
        """Nothing to release: the pool belongs to ``fedcredit.crypto.pool``."""

    def bin_sums(
        self, nsq: Any, ciphertexts: Sequence[Any], codes: npt.NDArray[np.int64],
        n_bins: Sequence[int],
    ) -> list[list[Any]]:  # fmt: skip
        """Per column j and bin b: the product of the ciphertexts with ``codes[:, j] == b``."""
        # One task per column over all the rows; the pool spreads the columns.
        inline = len(ciphertexts) * codes.shape[1] < pool.INLINE_BELOW or codes.shape[1] < 2
        return pool.map_tasks(
            lambda j: column_bin_products(nsq, ciphertexts, codes[:, j], n_bins[j]),
            list(range(codes.shape[1])),
            inline=inline,
        )

    def map_blocks(
        self,
        fn: Callable[..., bytes],
        count: int,
        args: Callable[[int, int], tuple[Any, ...]],
    ) -> list[bytes] | None:
        """Always ``None``: the caller's own path on this process is the thread pool's."""
        del fn, count, args
        return None

    def powers(self, bases: Sequence[Any], exponent: Any, modulus: Any) -> list[Any]:
        """``[b**exponent mod modulus]``, one task a base on the pool (inline for one)."""
        return pool.map_tasks(lambda b: gmpy2.powmod(b, exponent, modulus), bases)


def powers_block(bases: Sequence[Any], exponent: Any, modulus: Any) -> list[Any]:
    """``[b**exponent mod modulus for b in bases]`` of one block (each in ``[0, modulus)``)."""
    return [gmpy2.powmod(b, exponent, modulus) for b in bases]


def column_bin_products(
    nsq: Any, cts: Sequence[Any], column: npt.NDArray[np.int64], n_bins: int
) -> list[Any]:
    """``[prod of cts[i] with column[i] == b, mod nsq, for b < n_bins]``: 1 for an empty bin
    (the encryption of 0 with no randomness, as ``EncryptedVector.sum`` of nothing)."""
    acc = [mpz(1)] * n_bins
    for c, b in zip(cts, column.tolist(), strict=True):
        acc[b] = acc[b] * c % nsq
    return acc


def bin_products(
    nsq: Any, cts: Sequence[Any], codes: npt.NDArray[np.int64], n_bins: Sequence[int]
) -> list[Any]:
    """Every column's :func:`column_bin_products` of one block of rows, column after column."""
    return [
        v
        for j in range(codes.shape[1])
        for v in column_bin_products(nsq, cts, codes[:, j], n_bins[j])
    ]


def combine_bin_products(
    nsq: Any, blocks: Sequence[Sequence[Any]], n_bins: Sequence[int]
) -> list[list[Any]]:
    """The blocks' :func:`bin_products` multiplied together, split into one list per column."""
    total = list(blocks[0])
    for block in blocks[1:]:
        total = [a * b % nsq for a, b in zip(total, block, strict=True)]
    out, start = [], 0
    for size in n_bins:
        out.append(total[start : start + size])
        start += size
    return out


def in_flight(
    counts: Sequence[int],
    start: Callable[[int, int], Any],
    finish: Callable[[Any], bytes],
    cancel: Callable[[Any], Any],
    window: int,
) -> list[bytes]:
    """``finish(start(a, b))`` for consecutive blocks of ``counts`` items, in order, with at most
    ``window`` blocks started and not yet finished (a long list is never queued whole); blocks
    still pending when one fails are cancelled."""
    pending: collections.deque[Any] = collections.deque()
    results: list[bytes] = []
    try:
        for a, b in itertools.pairwise(itertools.accumulate(counts, initial=0)):
            pending.append(start(a, b))
            if len(pending) >= window:
                results.append(finish(pending.popleft()))
        while pending:
            results.append(finish(pending.popleft()))
    finally:
        for handle in pending:
            cancel(handle)
    return results
