"""Replay and stale-round protection for messages that belong to a job.

Every message carries (job id, epoch, batch, sequence number). A node keeps, per caller, the
highest sequence number it has served and the reply it gave: a retry of the same sequence number
(an idempotent retry after a dropped connection) gets the same reply without running the step
again, so an update is applied exactly once; a lower number, or a message of another job, is
refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fedcredit.errors import ProtocolError

T = TypeVar("T")


@dataclass(frozen=True)
class Header:
    """The job header every protocol message carries."""

    job_id: str
    epoch: int
    batch: int
    seq: int


class SequenceGuard(Generic[T]):
    """Accepts each (caller, sequence number) once; replays a retried call's cached reply."""

    def __init__(self) -> None:
        self._job_id: str | None = None
        self._last: dict[tuple[str, str], tuple[int, tuple[int, int], T | None]] = {}
        self._lock = threading.Lock()
        self._call_locks: dict[tuple[str, str], threading.Lock] = {}

    def start_job(self, job_id: str) -> None:
        """Bind the guard to a job; messages of any other job are refused from now on."""
        with self._lock:
            if self._job_id != job_id:
                self._job_id = job_id
                self._last.clear()

    @property
    def job_id(self) -> str | None:
        return self._job_id

    def check_job(self, header: Header) -> None:
        """Refuse a message that belongs to no job or to another job."""
        if self._job_id is None:
            raise ProtocolError("no job has been set up on this node")
        if header.job_id != self._job_id:
            raise ProtocolError(
                f"message for job {header.job_id!r}, this node runs {self._job_id!r}"
            )

    def run_once(self, caller: str, method: str, header: Header, step: Callable[[], T]) -> T:
        """Run ``step`` for a new sequence number, or return the cached reply of a retry.

        Raises ProtocolError for another job or a sequence number below the last one served.
        """
        self.check_job(header)
        key = (caller, method)
        with self._lock:
            lock = self._call_locks.setdefault(key, threading.Lock())
        with lock:
            last = self._last.get(key)
            round_ = (header.epoch, header.batch)
            if last is not None:
                last_seq, last_round, reply = last
                # A step that returns None (an Ack) is cached too: its retry must succeed.
                if header.seq == last_seq:
                    return reply  # type: ignore[return-value]
                if header.seq <= last_seq:
                    raise ProtocolError(
                        f"replayed or stale sequence number {header.seq} from {caller!r} "
                        f"for {method} (last served {last_seq})"
                    )
                if round_ < last_round:
                    raise ProtocolError(
                        f"stale round {round_} from {caller!r} for {method} "
                        f"(already at {last_round})"
                    )
            result = step()
            self._last[key] = (header.seq, round_, result)
            return result
