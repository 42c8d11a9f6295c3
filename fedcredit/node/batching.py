"""Micro-batching: concurrent calls gathered for a few milliseconds into one piece of work.

The lender's node answers each ``Score`` or ``Decide`` call with a round of partner calls and
one masked decryption, whose cost hardly depends on how many applicants it carries. Calls that
arrive while another batch is running share one round: the first call of a batch (its leader)
waits up to ``max_wait_s``, or until the batch holds ``max_items``, then runs the work for every
item of the batch on its own thread. At most ``max_running`` batches run at once: past that, a
batch keeps gathering calls until one ends (or it is full), so under load batches grow with the
load instead of many small ones competing for the same cores, each paying the round's fixed
cost. A call that finds nothing running starts at once, so a lone caller pays no wait; each
caller gets exactly its own slice of the answers back, in its own order. A batch whose work
fails raises that error to its own callers only; the next batch starts afresh. There is no
background thread: nothing to start or stop.

What the batch reveals: the work sees the union of its callers' items, as it would one call
after another (a partner sees the lender's applicants, the coordinator masked slots).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fedcredit.errors import ProtocolError

MAX_RUNNING = 2
"""Batches running at once: two let one batch's partner round overlap another's decryption."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Batch(Generic[T, R]):
    """Items gathered so far, and each caller's slice of them with the future it waits on."""

    items: list[T] = field(default_factory=list)
    callers: list[tuple[int, int, Future[list[R]]]] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)


class MicroBatcher(Generic[T, R]):
    """Runs ``work`` over the items of concurrent ``submit`` calls gathered together.

    ``work(items)`` must return one answer per item, in order. ``max_wait_s = 0`` turns
    batching off: every call runs alone, on its own thread. A call with ``max_items`` items or
    more also runs alone. ``batches`` and ``batched_items`` count what ran (for tests and logs).
    """

    def __init__(
        self,
        work: Callable[[list[T]], list[R]],
        *,
        max_wait_s: float,
        max_items: int,
        max_running: int = MAX_RUNNING,
    ) -> None:
        if max_wait_s < 0 or max_items < 1 or max_running < 1:
            raise ProtocolError(
                "a batcher needs max_wait_s >= 0, max_items >= 1 and max_running >= 1"
            )
        self._work = work
        self.max_wait_s = max_wait_s
        self.max_items = max_items
        self.max_running = max_running
        self._slots = threading.BoundedSemaphore(max_running)
        self._lock = threading.Lock()
        self._open: _Batch[T, R] | None = None
        self._running = 0
        self.batches = 0
        self.batched_items = 0

    def submit(self, items: Sequence[T]) -> list[R]:
        """The answers for ``items``, in order, once the batch they joined has run."""
        own = list(items)
        if not own:
            return []
        if self.max_wait_s == 0 or len(own) >= self.max_items:
            alone: _Batch[T, R] = _Batch()
            future = self._join(alone, own)
            self._run(alone)
            return future.result()
        with self._lock:
            batch = self._open
            if batch is not None and len(batch.items) + len(own) > self.max_items:
                batch.full.set()  # Its leader runs it now; this call starts the next one.
                self._open = batch = None
            leader = batch is None
            if batch is None:
                batch = self._open = _Batch()
            future = self._join(batch, own)
            if len(batch.items) >= self.max_items:
                batch.full.set()
            # Gather only while the work is busy anyway: an idle batcher adds no latency.
            wait = self.max_wait_s if self._running else 0.0
        if leader:
            if wait:
                batch.full.wait(wait)
            # Still open while every slot is busy: calls arriving meanwhile join it.
            with self._slots:
                with self._lock:
                    if self._open is batch:
                        self._open = None  # Closed: later calls start a new batch.
                self._run(batch)
        return future.result()

    @staticmethod
    def _join(batch: _Batch[T, R], own: list[T]) -> Future[list[R]]:
        future: Future[list[R]] = Future()
        start = len(batch.items)
        batch.items.extend(own)
        batch.callers.append((start, start + len(own), future))
        return future

    def _run(self, batch: _Batch[T, R]) -> None:
        with self._lock:
            self.batches += 1
            self.batched_items += len(batch.items)
            self._running += 1
        try:
            answers = self._work(batch.items)
            if len(answers) != len(batch.items):
                raise ProtocolError(
                    f"a batch of {len(batch.items)} items got {len(answers)} answers"
                )
        except BaseException as exc:  # Every caller of this batch, and only them, gets it.
            for _, _, future in batch.callers:
                future.set_exception(exc)
            return
        finally:
            with self._lock:
                self._running -= 1
        for start, end, future in batch.callers:
            future.set_result(answers[start:end])


__all__ = ["MicroBatcher"]
