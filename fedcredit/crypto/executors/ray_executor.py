"""The heavy kernels as Ray tasks on blocks of rows, on an existing Ray cluster or a local one.

What travels: ciphertexts, plaintexts and exponents as fixed-width big-endian bytes (one
``bytes`` per block; pickling gmpy2 numbers one by one is several times slower), features as
int64 numpy blocks, masks and weights as Python ints. What stays: each worker process keeps the
fixed-base table of every key it has seen (built on its first block, about 0.8 s at 2048 bits),
so a table is built once per worker, not per task. Workers run
``fedcredit.crypto.executors.threads``' block functions, the thread pool's own, so results are
the same bits.

Fault tolerance: every task is a pure function of its arguments, and a call gathers one result
per block by its ``ObjectRef``. A worker that dies mid-task is replaced and the task rerun
(``max_retries``); the rerun computes the same block again and its result replaces, never adds
to, the lost one. Errors raised by the arithmetic itself are not retried.

Who sees what: the Ray cluster is part of the party. Its workers and object store see the
plaintexts being encrypted with their DJN exponents, and for ``decrypt`` the key's factors: run
it on the party's own machines, with Ray's TLS between them (docs/SCALING.md, "A party on a Ray cluster").
``map_blocks`` (the PSI's hashing and blinding) sends the party's ids and its PSI scalar with
each task; a worker keeps neither after the task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedcredit.crypto import pool
from fedcredit.crypto.buckets import multiexp_signed
from fedcredit.crypto.djn import FixedBaseTable
from fedcredit.crypto.executors.threads import (
    ThreadExecutor,
    bin_products,
    combine_bin_products,
    encrypt_block,
    finish_matvec,
    in_flight,
    matvec_block,
    pack_group,
    powers_block,
)
from fedcredit.errors import CryptoError, FedCreditError

#: ``ray_address`` that starts a cluster on this machine instead of joining one.
LOCAL = "local"
#: Keys whose tables a worker keeps (a long-lived cluster sees a new key per job).
WORKER_KEYS = 8


@dataclass(frozen=True)
class BlockSizes:
    """Rows (groups for ``pack``) per Ray task: at least ``min_*``, at most ``max_rows``.

    The minimums keep a task's arithmetic far above Ray's per-task overhead, about 1 to 3 ms on
    this machine (``benchmarks/scale.py``, ``ray_task_overhead_ms``): at 2048 bits 128 DJN
    encryptions take about 120 ms on one core, 512 rows of ``X.T @ [[d]]`` with ten 8-bit
    columns about 40 ms, 32 decryptions about 110 ms. Smaller calls run on the local threads.
    """

    encrypt: int = 128
    matvec: int = 512
    weighted: int = 512
    pack: int = 8
    decrypt: int = 32
    max_rows: int = 8192
    #: Blocks per worker when a call is large enough: a slow block does not idle the others.
    per_worker: int = 2
    #: Rows of the bin sums: one multiplication a row and column (about 10 us at 2048 bits), so
    #: 512 rows of four columns are about 20 ms.
    bins: int = 512

    #: PSI ids or points per block (``map_blocks``): 2,048 X25519 blindings are about 100 ms
    #: on one core, 50 times Ray's overhead; at most 8 MiB of points a task.
    psi: int = 2048
    psi_max: int = 262_144
    #: Bases of ``powers``: one ``r**n mod n**2`` is 10 to 25 ms at 2048 bits, so 8 are 40 to
    #: 100 times Ray's overhead (the r**n stock refills in its own thread, never here).
    powers: int = 8


# -- bytes ------------------------------------------------------------------------------------
def width_of(modulus: Any) -> int:
    """Bytes of one number below ``modulus``."""
    return int((mpz(modulus).bit_length() + 7) // 8)


def to_bytes(values: Sequence[Any], width: int) -> bytes:
    """``values`` (non-negative, below ``2**(8 width)``), each ``width`` bytes, big-endian."""
    return b"".join(mpz(v).to_bytes(width, "big") for v in values)


def from_bytes(data: bytes, width: int) -> list[Any]:
    """The numbers of :func:`to_bytes` output, as ``mpz``."""
    view = memoryview(data)
    return [mpz.from_bytes(view[i : i + width], "big") for i in range(0, len(data), width)]


# -- what runs in a worker --------------------------------------------------------------------
TableSpec = tuple[bytes, bytes, int, int]  # hs, n**2, exponent bits, window
KeySpec = tuple[bytes, bytes, bytes, bytes]  # n, hs, p, q

_worker_lock = threading.Lock()
_worker_tables: dict[TableSpec, FixedBaseTable] = {}
_worker_keys: dict[KeySpec, Any] = {}


def reset_worker_cache() -> None:
    """Forget the tables and keys this process keeps as a Ray worker (for tests)."""
    with _worker_lock:
        _worker_tables.clear()
        _worker_keys.clear()


def _cached(cache: dict[Any, Any], spec: Any, make: Callable[[], Any]) -> Any:
    with _worker_lock:
        held = cache.get(spec)
    if held is None:
        held = make()
        with _worker_lock:
            if len(cache) >= WORKER_KEYS:
                cache.pop(next(iter(cache)))
            cache[spec] = held
    return held


def worker_table(spec: TableSpec) -> FixedBaseTable:
    """The fixed-base table of ``spec``, built on this worker's first use and kept."""
    hs, nsq, bits, window = spec

    def build() -> FixedBaseTable:
        # A Ray task holds one CPU: build the table on this thread, not on a pool of threads.
        pool.set_workers(1)
        return FixedBaseTable(mpz.from_bytes(hs, "big"), mpz.from_bytes(nsq, "big"), bits, window)

    table: FixedBaseTable = _cached(_worker_tables, spec, build)
    return table


def worker_key(spec: KeySpec) -> Any:
    """The private key of ``spec`` with its CRT constants, made once per worker."""
    from fedcredit.crypto.keys import PrivateKey, PublicKey

    n, hs, p, q = (mpz.from_bytes(v, "big") for v in spec)
    return _cached(_worker_keys, spec, lambda: PrivateKey(PublicKey(n, hs), p, q))


def encrypt_task(spec: TableSpec, n_bytes: bytes, plain: bytes, exps: bytes) -> bytes:
    table = worker_table(spec)
    n = mpz.from_bytes(n_bytes, "big")
    ms = from_bytes(plain, len(n_bytes))
    xs = from_bytes(exps, -(-table.exponent_bits // 8))
    return to_bytes(encrypt_block(table, n, ms, xs), len(spec[1]))


def matvec_task(nsq_bytes: bytes, cts: bytes, x: npt.NDArray[np.int64]) -> bytes:
    nsq = mpz.from_bytes(nsq_bytes, "big")
    parts = matvec_block(nsq, from_bytes(cts, len(nsq_bytes)), x)
    return to_bytes([v for pair in parts for v in pair], len(nsq_bytes))


def weighted_task(nsq_bytes: bytes, cts: bytes, weights: list[int]) -> bytes:
    nsq = mpz.from_bytes(nsq_bytes, "big")
    return to_bytes(
        [multiexp_signed(from_bytes(cts, len(nsq_bytes)), weights, nsq)], len(nsq_bytes)
    )


def pack_task(
    n_bytes: bytes, nsq_bytes: bytes, slot_bits: int, cts: bytes, sizes: list[int], masks: list[int]
) -> bytes:
    n, nsq = mpz.from_bytes(n_bytes, "big"), mpz.from_bytes(nsq_bytes, "big")
    values = from_bytes(cts, len(nsq_bytes))
    out, start = [], 0
    for size in sizes:
        out.append(pack_group(n, nsq, slot_bits, values[start : start + size],
                              masks[start : start + size]))  # fmt: skip
        start += size
    return to_bytes(out, len(nsq_bytes))


def decrypt_task(spec: KeySpec, cts: bytes) -> bytes:
    key = worker_key(spec)
    width = width_of(key.public_key.nsquare)
    return to_bytes([key.raw_decrypt(c) for c in from_bytes(cts, width)], len(spec[0]))


def noop_task(payload: bytes) -> bytes:
    """A round trip and nothing else: ``benchmarks/scale.py`` times Ray's per-task overhead."""
    return payload


def bin_sums_task(
    nsq_bytes: bytes, cts: bytes, codes: npt.NDArray[np.int64], n_bins: list[int]
) -> bytes:
    """Every (column, bin) partial product of one block of rows, column after column."""
    nsq = mpz.from_bytes(nsq_bytes, "big")
    values = from_bytes(cts, len(nsq_bytes))
    return to_bytes(bin_products(nsq, values, codes, n_bins), len(nsq_bytes))


def powers_task(modulus: bytes, exponent: bytes, bases: bytes) -> bytes:
    """``b**exponent mod modulus`` for each base of one block, as fixed-width bytes."""
    m, e = mpz.from_bytes(modulus, "big"), mpz.from_bytes(exponent, "big")
    return to_bytes(powers_block(from_bytes(bases, len(modulus)), e, m), len(modulus))


def bin_sums_calls(
    nsq: Any, ciphertexts: Sequence[Any], codes: npt.NDArray[np.int64], n_bins: Sequence[int],
    counts: Sequence[int],
) -> list[tuple[bytes, bytes, npt.NDArray[np.int64], list[int]]]:  # fmt: skip
    """The arguments of :func:`bin_sums_task` for consecutive blocks of ``counts`` rows."""
    width = width_of(nsq)
    nsq_bytes, sizes = to_bytes([nsq], width), [int(b) for b in n_bins]
    calls, start = [], 0
    for size in counts:
        block = to_bytes(ciphertexts[start : start + size], width)
        calls.append((nsq_bytes, block, np.ascontiguousarray(codes[start : start + size]), sizes))
        start += size
    return calls


# -- the driver side --------------------------------------------------------------------------
def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise CryptoError("the Ray executor needs Ray: pip install 'fedcredit[ray]'") from exc
    return ray


def split_counts(count: int, min_rows: int, max_rows: int, parts_wanted: int) -> list[int]:
    """Block lengths for ``count`` rows: about ``parts_wanted`` blocks of ``min_rows`` to
    ``max_rows`` rows (a single block when ``count`` is below ``2 * min_rows``)."""
    parts = max(-(-count // max_rows), min(parts_wanted, count // max(min_rows, 1)), 1)
    size, extra = divmod(count, parts)
    return [size + (1 if i < extra else 0) for i in range(parts)]


class RayExecutor:
    """The kernels as Ray tasks. ``address`` is a Ray address (``"auto"``, ``"host:6379"``,
    ``"ray://host:10001"``) or ``"local"`` for a cluster of ``workers`` CPUs on this machine.

    A process that already called ``ray.init`` keeps its connection (and ``close`` leaves it).
    Calls smaller than ``blocks`` says run on the local thread pool, where Ray's overhead
    would cost more than the arithmetic.
    """

    name = "ray"

    def __init__(
        self,
        address: str = LOCAL,
        *,
        workers: int | None = None,
        blocks: BlockSizes | None = None,
        max_retries: int = 3,
    ) -> None:
        ray = _import_ray()
        self._ray = ray
        self.address = address
        self.blocks = blocks or BlockSizes()
        self._owns = False
        if not ray.is_initialized():
            try:
                if address == LOCAL:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=address, log_to_driver=False)
            except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError...
                raise CryptoError(
                    f"cannot start or join the Ray cluster {address!r}: {exc}"
                ) from exc
            self._owns = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        options = {"max_retries": max_retries, "retry_exceptions": False, "num_cpus": 1}
        self._options = options
        self._tasks = {
            fn.__name__: ray.remote(**options)(fn)
            for fn in (
                encrypt_task, matvec_task, weighted_task, pack_task, decrypt_task, noop_task,
                bin_sums_task, powers_task,
            )
        }  # fmt: skip
        self._local = ThreadExecutor()

    def _counts(self, count: int, min_rows: int) -> list[int] | None:
        if count < min_rows:
            return None
        b = self.blocks
        return split_counts(count, min_rows, b.max_rows, self.workers * b.per_worker)

    def _run(self, name: str, calls: list[tuple[Any, ...]]) -> list[bytes]:
        task = self._tasks[name]
        try:
            refs = [task.remote(*args) for args in calls]
            results: list[bytes] = self._ray.get(refs)
        except self._ray.exceptions.RayError as exc:
            raise CryptoError(f"Ray executor: {name} failed: {type(exc).__name__}: {exc}") from exc
        return results

    def encrypt(
        self, table: FixedBaseTable, n: Any, plaintexts: Sequence[int], exponents: Sequence[int]
    ) -> list[Any]:
        counts = self._counts(len(plaintexts), self.blocks.encrypt)
        if counts is None:
            return self._local.encrypt(table, n, plaintexts, exponents)
        nsq = table.modulus
        spec: TableSpec = (to_bytes([table.base], width_of(nsq)), to_bytes([nsq], width_of(nsq)),
                           table.exponent_bits, table.window)  # fmt: skip
        n_width, x_width = width_of(n), -(-table.exponent_bits // 8)
        n_bytes = to_bytes([n], n_width)
        calls, start = [], 0
        for size in counts:
            ms = [mpz(m) % n for m in plaintexts[start : start + size]]
            xs = exponents[start : start + size]
            calls.append((spec, n_bytes, to_bytes(ms, n_width), to_bytes(xs, x_width)))
            start += size
        return [
            c for block in self._run("encrypt_task", calls) for c in from_bytes(block, len(spec[1]))
        ]

    def matvec_t(self, nsq: Any, ciphertexts: Sequence[Any], x: npt.NDArray[np.int64]) -> list[Any]:
        counts = self._counts(len(ciphertexts), self.blocks.matvec)
        if counts is None or x.shape[1] == 0:
            return self._local.matvec_t(nsq, ciphertexts, x)
        width = width_of(nsq)
        nsq_bytes = to_bytes([nsq], width)
        calls, start = [], 0
        for size in counts:
            block = to_bytes(ciphertexts[start : start + size], width)
            calls.append((nsq_bytes, block, np.ascontiguousarray(x[start : start + size])))
            start += size
        positives = [mpz(1)] * x.shape[1]
        negatives = [mpz(1)] * x.shape[1]
        for result in self._run("matvec_task", calls):
            values = from_bytes(result, width)
            for j in range(x.shape[1]):
                positives[j] = positives[j] * values[2 * j] % nsq
                negatives[j] = negatives[j] * values[2 * j + 1] % nsq
        return finish_matvec(nsq, positives, negatives)

    def weighted_sum(self, nsq: Any, ciphertexts: Sequence[Any], weights: Sequence[int]) -> Any:
        counts = self._counts(len(ciphertexts), self.blocks.weighted)
        if counts is None:
            return self._local.weighted_sum(nsq, ciphertexts, weights)
        width = width_of(nsq)
        nsq_bytes = to_bytes([nsq], width)
        calls, start = [], 0
        for size in counts:
            block = to_bytes(ciphertexts[start : start + size], width)
            calls.append((nsq_bytes, block, [int(w) for w in weights[start : start + size]]))
            start += size
        acc = mpz(1)
        for result in self._run("weighted_task", calls):
            acc = acc * from_bytes(result, width)[0] % nsq
        return acc

    def pack(
        self,
        n: Any,
        nsq: Any,
        slot_bits: int,
        groups: Sequence[tuple[Sequence[Any], Sequence[int]]],
    ) -> list[Any]:
        counts = self._counts(len(groups), self.blocks.pack)
        if counts is None:
            return self._local.pack(n, nsq, slot_bits, groups)
        width = width_of(nsq)
        n_bytes, nsq_bytes = to_bytes([n], width_of(n)), to_bytes([nsq], width)
        calls, start = [], 0
        for size in counts:
            chunk = groups[start : start + size]
            cts = to_bytes([c for g in chunk for c in g[0]], width)
            masks = [int(m) for g in chunk for m in g[1]]
            calls.append((n_bytes, nsq_bytes, slot_bits, cts, [len(g[0]) for g in chunk], masks))
            start += size
        return [c for block in self._run("pack_task", calls) for c in from_bytes(block, width)]

    def decrypt(self, key: Any, ciphertexts: Sequence[Any]) -> list[Any]:
        counts = self._counts(len(ciphertexts), self.blocks.decrypt)
        if counts is None:
            return self._local.decrypt(key, ciphertexts)
        public = key.public_key
        n_width, width = width_of(public.n), width_of(public.nsquare)
        spec: KeySpec = (
            to_bytes([public.n], n_width), to_bytes([public.hs], width),
            to_bytes([key.p], n_width), to_bytes([key.q], n_width),
        )  # fmt: skip
        calls, start = [], 0
        for size in counts:
            calls.append((spec, to_bytes(ciphertexts[start : start + size], width)))
            start += size
        return [m for block in self._run("decrypt_task", calls) for m in from_bytes(block, n_width)]

    def round_trip_seconds(self, count: int = 100) -> float:
        """Median seconds of one no-op task, submitted and fetched alone: Ray's overhead."""
        import time

        samples = []
        for _ in range(count):
            started = time.perf_counter()
            self._ray.get(self._tasks["noop_task"].remote(b"x" * 512))
            samples.append(time.perf_counter() - started)
        return float(sorted(samples)[len(samples) // 2])

    def close(self) -> None:
        """Disconnect (and stop the local cluster) if this executor started Ray."""
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def bin_sums(
        self, nsq: Any, ciphertexts: Sequence[Any], codes: npt.NDArray[np.int64],
        n_bins: Sequence[int],
    ) -> list[list[Any]]:  # fmt: skip
        """Blocks of rows on the workers, each returning every (column, bin) partial product;
        their products here are the same residues as the threads' (bit-identical)."""
        counts = self._counts(len(ciphertexts), self.blocks.bins)
        if counts is None or codes.shape[1] == 0:
            return self._local.bin_sums(nsq, ciphertexts, codes, n_bins)
        calls = bin_sums_calls(nsq, ciphertexts, codes, n_bins, counts)
        width = width_of(nsq)
        blocks = [from_bytes(block, width) for block in self._run("bin_sums_task", calls)]
        return combine_bin_products(nsq, blocks, n_bins)

    def map_blocks(
        self,
        fn: Callable[..., bytes],
        count: int,
        args: Callable[[int, int], tuple[Any, ...]],
    ) -> list[bytes] | None:
        """``fn(*args(a, b))`` per block as Ray tasks (``per_worker`` blocks a worker, each of
        ``blocks.psi`` to ``blocks.psi_max`` items), one result per block by its ObjectRef,
        at most ``2 * per_worker`` blocks a worker in flight; ``None`` under two blocks.

        A worker that dies mid-block is replaced and the block rerun (``max_retries``); an
        error ``fn`` raises (a bad point, a bad id) is raised here as it is, never retried.
        """
        b = self.blocks
        counts = split_counts(count, b.psi, b.psi_max, self.workers * b.per_worker)
        if len(counts) < 2:
            return None
        key = f"{fn.__module__}.{fn.__qualname__}"
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = self._ray.remote(**self._options)(fn)
        return in_flight(
            counts,
            lambda a, z: task.remote(*args(a, z)),
            lambda ref: self._get_block(ref, fn),
            self._ray.cancel,
            2 * b.per_worker * self.workers,
        )

    def _get_block(self, ref: Any, fn: Callable[..., bytes]) -> bytes:
        """One block's result; the block function's own error as it is (Ray wraps it)."""
        try:
            result: bytes = self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, FedCreditError):
                raise exc.cause from None
            raise CryptoError(f"Ray executor: {fn.__name__} failed: {exc.cause!r}") from exc
        except self._ray.exceptions.RayError as exc:
            raise CryptoError(
                f"Ray executor: {fn.__name__} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return result

    def powers(self, bases: Sequence[Any], exponent: Any, modulus: Any) -> list[Any]:
        """Blocks of ``blocks.powers`` bases or more on the workers (safe to call from a
        background thread: Ray's submit and get are); fewer on the local threads."""
        counts = self._counts(len(bases), self.blocks.powers)
        if counts is None:
            return self._local.powers(bases, exponent, modulus)
        width, start, calls = width_of(modulus), 0, []
        head = (to_bytes([modulus], width), to_bytes([exponent], width_of(exponent + 1)))
        for size in counts:
            block = [mpz(b) % modulus for b in bases[start : start + size]]
            calls.append((*head, to_bytes(block, width)))
            start += size
        return [v for block in self._run("powers_task", calls) for v in from_bytes(block, width)]
