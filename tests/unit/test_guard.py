"""Messages of another job, replayed sequence numbers and stale rounds are refused; a retry of
the same sequence number gets the same reply without running the step twice."""

from __future__ import annotations

import pytest

from fedcredit.errors import ProtocolError
from fedcredit.protocol.guard import Header, SequenceGuard


def started(job: str = "job-1") -> SequenceGuard[int]:
    guard: SequenceGuard[int] = SequenceGuard()
    guard.start_job(job)
    return guard


def test_a_retried_call_is_answered_from_cache_and_applied_once() -> None:
    guard = started()
    runs: list[int] = []

    def step() -> int:
        runs.append(1)
        return len(runs)

    first = guard.run_once("driver", "ComputeGradient", Header("job-1", 0, 1, 7), step)
    again = guard.run_once("driver", "ComputeGradient", Header("job-1", 0, 1, 7), step)
    assert (first, again, len(runs)) == (1, 1, 1)


def test_a_replayed_older_sequence_number_is_refused() -> None:
    guard = started()
    guard.run_once("driver", "Step", Header("job-1", 0, 0, 5), lambda: 1)
    guard.run_once("driver", "Step", Header("job-1", 0, 1, 6), lambda: 2)
    with pytest.raises(ProtocolError, match="replayed or stale sequence number 5"):
        guard.run_once("driver", "Step", Header("job-1", 0, 0, 5), lambda: 3)


def test_a_stale_round_is_refused_even_with_a_new_sequence_number() -> None:
    guard = started()
    guard.run_once("driver", "Step", Header("job-1", 2, 0, 10), lambda: 1)
    with pytest.raises(ProtocolError, match="stale round"):
        guard.run_once("driver", "Step", Header("job-1", 1, 3, 11), lambda: 2)


def test_a_message_of_another_job_is_refused() -> None:
    guard = started("job-1")
    with pytest.raises(ProtocolError, match="job-2"):
        guard.run_once("driver", "Step", Header("job-2", 0, 0, 1), lambda: 1)


def test_nothing_is_accepted_before_a_job_is_set_up() -> None:
    guard: SequenceGuard[int] = SequenceGuard()
    with pytest.raises(ProtocolError, match="no job"):
        guard.run_once("driver", "Step", Header("job-1", 0, 0, 1), lambda: 1)


def test_callers_and_methods_have_separate_sequences() -> None:
    guard = started()
    guard.run_once("driver", "A", Header("job-1", 0, 0, 9), lambda: 1)
    assert guard.run_once("lender", "A", Header("job-1", 0, 0, 1), lambda: 2) == 2
    assert guard.run_once("driver", "B", Header("job-1", 0, 0, 1), lambda: 3) == 3
