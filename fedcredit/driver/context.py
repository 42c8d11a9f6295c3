"""What every phase of a job needs, and the one place the driver calls a node.

The driver sees acknowledgements and aggregates only (set sizes, the lender's secure loss,
evaluation metrics). Ciphertexts under the coordinator's key never pass through it: data parties
send them to each other directly. PSI lists do pass through it; they are blinded by scalars it
does not know.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import grpc

from fedcredit.config import Federation
from fedcredit.node.transport.peers import COORDINATOR, Peers, PeerStubs
from fedcredit.proto.v1 import common_pb2

STEP_TIMEOUT_S: Final = 600.0
#: Binning's steps sum a column's encrypted labels per bin: slower than a training step.
BINNING_TIMEOUT_S: Final = 900.0

Rpc = Callable[[PeerStubs], "grpc.UnaryUnaryMultiCallable[Any, Any]"]
"""One RPC of a node's typed stubs, e.g. ``lambda s: s.job.Setup``."""

Progress = Callable[[str, Mapping[str, Any]], None]
_T = TypeVar("_T")
_R = TypeVar("_R")


PSI_CHUNK_POINTS = 2 * 1024 * 1024
"""64 MiB of points per PSI message: a quarter of the nodes' 256 MiB message limit."""


class JobContext:
    """One job as the driver sees it: its id, the nodes, the envelope, calls and progress.

    ``peers`` and ``progress`` may be replaced while the job runs (tests do); every call reads
    them afresh. ``timings`` collects each phase's seconds, ``aligned_features`` each party's
    weight count after alignment (text columns one-hot encoded), as PsiAlign reports it.
    """

    def __init__(
        self,
        federation: Federation,
        addresses: Mapping[str, str],
        *,
        credentials: grpc.ChannelCredentials | None,
        progress: Progress,
        state_dirs: Mapping[str, str] | None = None,
        liveness: Callable[[], None] | None = None,
    ) -> None:
        self.fed = federation
        self.addresses = dict(addresses)
        self.peers = Peers(
            addresses, federation.lender.name, credentials=credentials, own_name=COORDINATOR
        )
        self.progress = progress
        self.state_dirs = dict(state_dirs or {})
        self.liveness = liveness or (lambda: None)
        self.job_id = f"{federation.name}-{uuid.uuid4().hex[:12]}"
        self._seq = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=max(4, len(self.peers.parties)))
        self.timings: dict[str, float] = {}
        self.psi_chunk_points = PSI_CHUNK_POINTS
        """Most points per PSI message either way (tests lower it to send lists in chunks)."""
        self.aligned_features: dict[str, int] = {}

    @property
    def parties(self) -> list[str]:
        """Every data party, sorted by name."""
        return list(self.peers.parties)

    @property
    def lender(self) -> str:
        return self.peers.lender

    @property
    def hosts(self) -> list[str]:
        """Every data party but the lender."""
        return list(self.peers.hosts)

    def env(self, epoch: int = 0, batch: int = 0) -> common_pb2.Envelope:
        """The envelope of the next request: job id, position, and a fresh sequence number."""
        return common_pb2.Envelope(
            job_id=self.job_id, epoch=epoch, batch=batch, seq=next(self._seq)
        )

    def call(self, party: str, rpc: Rpc, request: Any, *, timeout_s: float = STEP_TIMEOUT_S) -> Any:
        """Call ``rpc`` (``lambda s: s.job.Setup``) on ``party`` (or ``COORDINATOR``).

        Every call is idempotent for the node (the envelope's sequence number), so it is
        retried on UNAVAILABLE; the node processes are checked before and after.
        """
        self.liveness()
        try:
            return self.peers.call(party, rpc, request, timeout_s)
        finally:
            self.liveness()

    def call_all(
        self,
        parties: Iterable[str],
        rpc: Rpc,
        make: Callable[[str], Any],
        *,
        timeout_s: float = STEP_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Call ``rpc`` on several parties at once (``make(party)`` builds each request).

        Returns party -> reply; the first failure is raised.
        """
        futures = {
            p: self._pool.submit(self.call, p, rpc, make(p), timeout_s=timeout_s) for p in parties
        }
        return {p: f.result() for p, f in futures.items()}

    def map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        """``fn`` over ``items`` at once on the job's threads (a phase made of several calls)."""
        return list(self._pool.map(fn, items))


class StepClock:
    """Counts the finished steps of a phase run by several threads and reports each one.

    Reports ``kind`` with ``done``, ``steps``, ``seconds`` and ``seconds_left`` (the mean
    step time so far times the steps still to run).
    """

    def __init__(self, progress: Progress, kind: str, steps: int) -> None:
        self._progress = progress
        self._kind = kind
        self._steps = steps
        self._done = 0
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self._done += count
            done = self._done
        seconds = time.monotonic() - self._started
        self._progress(
            self._kind,
            {
                "done": done,
                "steps": self._steps,
                "seconds": seconds,
                "seconds_left": seconds / done * (self._steps - done),
            },
        )
