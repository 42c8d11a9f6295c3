"""The lender's micro-batcher: concurrent calls share one run, each gets exactly its own
answers, and a failing run fails only the calls that were part of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from fedcredit.errors import ProtocolError
from fedcredit.node.batching import MicroBatcher


class Work:
    """Answers ``item * 10``, records every run's items; fails a run holding a negative item;
    a run of item 0 alone takes half a second (something already running)."""

    def __init__(self) -> None:
        self.runs: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.runs.append(list(items))
        if any(i < 0 for i in items):
            raise ProtocolError("a negative item")
        if items == [0]:
            time.sleep(0.5)
        return [i * 10 for i in items]


@contextmanager
def busy(batcher: MicroBatcher[int, int]) -> Iterator[None]:
    """A call already running: the calls made meanwhile gather into batches."""
    thread = threading.Thread(target=batcher.submit, args=([0],))
    thread.start()
    time.sleep(0.05)
    yield
    thread.join()


def callers(batcher: MicroBatcher[int, int], requests: list[list[int]]) -> list[object]:
    """Submit every request from its own thread at once; each answer or exception, in order."""
    barrier = threading.Barrier(len(requests))

    def one(items: list[int]) -> object:
        barrier.wait()
        try:
            return batcher.submit(items)
        except ProtocolError as exc:
            return exc

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, requests))


def test_concurrent_calls_share_runs_and_each_gets_its_own_answers() -> None:
    work = Work()
    batcher = MicroBatcher(work, max_wait_s=0.2, max_items=1000)
    requests = [[100 * c + i for i in range(c % 3 + 1)] for c in range(1, 21)]

    with busy(batcher):
        answers = callers(batcher, requests)

    assert answers == [[i * 10 for i in r] for r in requests]
    assert len(work.runs) - 1 < len(requests)
    everything = sorted(i for run in work.runs for i in run)
    assert everything == sorted([0, *(i for r in requests for i in r)])


def test_a_failing_run_fails_only_its_own_callers() -> None:
    work = Work()
    batcher = MicroBatcher(work, max_wait_s=0.2, max_items=1000)
    with busy(batcher):
        failed = callers(batcher, [[1, 2], [-1], [3]])

    later = batcher.submit([4, 5])

    assert all(isinstance(a, ProtocolError) for a in failed)
    assert later == [40, 50]
    assert work.runs[-1] == [4, 5]


def test_a_full_batch_runs_without_waiting_and_the_rest_start_another() -> None:
    work = Work()
    batcher = MicroBatcher(work, max_wait_s=5.0, max_items=4)
    started = time.monotonic()

    with busy(batcher):
        answers = callers(batcher, [[1, 2], [3, 4], [5, 6], [7, 8]])

    assert answers == [[10, 20], [30, 40], [50, 60], [70, 80]]
    assert sorted(len(run) for run in work.runs) == [1, 4, 4]
    assert time.monotonic() - started < 5.0


def test_while_every_slot_is_busy_a_batch_keeps_gathering_past_its_wait() -> None:
    # Arrange: one batch may run at a time, and one is running for half a second.
    work = Work()
    batcher = MicroBatcher(work, max_wait_s=0.01, max_items=100, max_running=1)
    answers: list[list[int]] = [[] for _ in range(3)]

    def one(i: int) -> None:
        answers[i] = batcher.submit([i + 1])

    # Act: three calls 50 ms apart, each far past the 10 ms wait of the one before.
    with busy(batcher):
        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join()

    # Assert: one batch of all three ran after the busy one, and each got its own answer.
    assert answers == [[10], [20], [30]]
    assert work.runs == [[0], [1, 2, 3]]


def test_with_two_slots_a_second_batch_runs_beside_a_busy_one() -> None:
    work = Work()
    batcher = MicroBatcher(work, max_wait_s=0.01, max_items=100, max_running=2)
    started = time.monotonic()

    with busy(batcher):
        assert batcher.submit([7]) == [70]
        elapsed = time.monotonic() - started

    assert elapsed < 0.4  # It did not wait for the half-second run to end.
    assert work.runs == [[0], [7]]


def test_a_batcher_needs_at_least_one_running_slot() -> None:
    with pytest.raises(ProtocolError, match="max_running >= 1"):
        MicroBatcher(Work(), max_wait_s=0.1, max_items=9, max_running=0)


def test_a_call_that_finds_nothing_running_does_not_wait() -> None:
    work = Work()
    batcher = MicroBatcher(work, max_wait_s=5.0, max_items=100)
    started = time.monotonic()

    assert batcher.submit([1, 2]) == [10, 20]
    assert time.monotonic() - started < 5.0


def test_with_no_wait_every_call_runs_alone() -> None:
    work = Work()
    batcher = MicroBatcher(work, max_wait_s=0.0, max_items=100)

    answers = callers(batcher, [[1], [2], [3]])

    assert answers == [[10], [20], [30]]
    assert sorted(work.runs) == [[1], [2], [3]]


def test_a_run_with_the_wrong_number_of_answers_fails_its_callers() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(
        lambda items: items[:-1], max_wait_s=0.0, max_items=9
    )

    with pytest.raises(ProtocolError, match="2 items got 1 answers"):
        batcher.submit([1, 2])


def test_an_empty_call_runs_nothing() -> None:
    work = Work()

    assert MicroBatcher(work, max_wait_s=0.1, max_items=9).submit([]) == []
    assert work.runs == []
