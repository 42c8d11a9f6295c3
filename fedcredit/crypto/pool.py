"""The crypto worker pool: one thread pool, created on first use and reused.

gmpy2 releases the GIL inside ``powmod``, multiplication and division only when the
calling thread's context says ``allow_release_gil``; the context is per thread, so every
worker sets it in its initializer. Tiny inputs run inline in the caller's thread, where a
pool round trip would cost more than the arithmetic.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import gmpy2

from fedcredit.errors import CryptoError

T = TypeVar("T")
R = TypeVar("R")

#: Inputs shorter than this run inline (no pool round trip).
INLINE_BELOW = 16

_lock = threading.Lock()
_workers: int | None = None
_executor: ThreadPoolExecutor | None = None
_local = threading.local()
_busy = 0  # foreground calls of map_tasks / map_chunked running now
_last_busy = 0.0  # time.monotonic() when the last one ended


class _Foreground:
    """Marks a foreground crypto call, so background precomputation can wait for idle time."""

    def __enter__(self) -> None:
        global _busy
        with _lock:
            _busy += 1

    def __exit__(self, *exc: object) -> None:
        global _busy, _last_busy
        with _lock:
            _busy -= 1
            _last_busy = time.monotonic()


def idle_seconds() -> float:
    """How long no foreground crypto call has run in this process (0.0 while one runs)."""
    with _lock:
        if _busy:
            return 0.0
        return time.monotonic() - _last_busy


def _init_worker() -> None:
    gmpy2.get_context().allow_release_gil = True
    _local.in_pool = True


def _inline_here() -> bool:
    # A worker that waited on its own pool could deadlock it: nested calls run inline.
    return get_workers() == 1 or getattr(_local, "in_pool", False)


def get_workers() -> int:
    """The number of worker threads crypto operations use (default ``os.cpu_count()``)."""
    if _workers is not None:
        return _workers
    return os.cpu_count() or 1


def set_workers(count: int | None) -> None:
    """Set the worker count (``None`` restores ``os.cpu_count()``); 1 means run inline.

    The current pool is shut down and a new one is made on next use.
    """
    global _workers, _executor
    if count is not None and (not isinstance(count, int) or count < 1):
        raise CryptoError(f"worker count must be a positive integer or None, got {count!r}")
    with _lock:
        _workers = count
        old, _executor = _executor, None
    if old is not None:
        old.shutdown(wait=True)


def shutdown_pool() -> None:
    """Stop the worker threads (a new pool is made on next use); for tests and exit."""
    global _executor
    with _lock:
        old, _executor = _executor, None
    if old is not None:
        old.shutdown(wait=True)


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=get_workers(),
                thread_name_prefix="fedcredit-crypto",
                initializer=_init_worker,
            )
        return _executor


def split(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    """Split ``items`` into at most ``parts`` contiguous, nearly equal, non-empty slices."""
    count = len(items)
    parts = max(1, min(parts, count))
    size, extra = divmod(count, parts)
    out: list[Sequence[T]] = []
    start = 0
    for index in range(parts):
        stop = start + size + (1 if index < extra else 0)
        out.append(items[start:stop])
        start = stop
    return out


def map_tasks(fn: Callable[[T], R], tasks: Sequence[T], *, inline: bool = False) -> list[R]:
    """``[fn(t) for t in tasks]``, on the pool unless ``inline`` or one worker or one task."""
    with _Foreground():
        if inline or len(tasks) <= 1 or _inline_here():
            return [fn(task) for task in tasks]
        return list(_get_executor().map(fn, tasks))


def map_chunked(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
    """Apply a list-to-list ``fn`` to slices of ``items`` in parallel and join the results.

    Slices are about four per worker so an unlucky slow slice does not idle the others.
    """
    workers = get_workers()
    with _Foreground():
        if len(items) < INLINE_BELOW or _inline_here():
            return fn(items)
        chunks = split(items, workers * 4)
        out: list[R] = []
        for part in _get_executor().map(fn, chunks):
            out.extend(part)
        return out
