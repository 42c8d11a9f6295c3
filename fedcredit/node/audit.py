"""A partner's record of the lender's scoring queries and its daily quota (security review F14).

Every ``PartialScore`` request that reaches a partner is one line of JSON in its own folder,
``audit/scoring-<UTC date>.jsonl``, appended and synced before the answer leaves: when, for
which job, who asked, how many applicants, whether it was answered (and if not, why), and the
applicants' ids, each as a keyed hash under the node's secret (``fedcredit.node.secret``): the
file names no customer, the same applicant has the same tag on every line, and another partner
tags it differently. Each line carries the SHA-256 of the line before it (at the start of a
file, of the last line of the previous file), so a removed or edited line breaks the chain.

The quota counts the applicants answered to each caller in the last 24 hours. The node reads
them back from the log when it starts, so a restart does not reset it.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedcredit.errors import QuotaError, StorageError
from fedcredit.files import ChainedLog, line_hash
from fedcredit.node.secret import keyed_tag

DAY_SECONDS = 86_400.0
PREFIX = "scoring-"


class ScoringAudit:
    """The append-only log of scoring queries in ``folder``, and the per-caller quota."""

    def __init__(
        self,
        name: str,
        folder: Path,
        secret: bytes,
        quota_per_day: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.folder = folder
        self.quota_per_day = quota_per_day
        self._secret = secret
        self._clock = clock
        self._lock = threading.Lock()
        self._answered: deque[tuple[float, str, int]] = deque()  # time, caller, applicants
        self._chain = ChainedLog("scoring audit log")
        self._load()

    def admit(self, caller: str, job: str, ids: Sequence[str]) -> None:
        """Log the query as answered when it fits ``caller``'s quota; else log it refused and
        raise QuotaError."""
        with self._lock:
            now = self._clock()
            while self._answered and self._answered[0][0] <= now - DAY_SECONDS:
                self._answered.popleft()
            used = sum(count for _, who, count in self._answered if who == caller)
            if used + len(ids) > self.quota_per_day:
                self._write(now, caller, job, ids, "quota")
                raise QuotaError(
                    f"party {self.name!r}: scoring quota of {self.quota_per_day} applicants per "
                    f"day for {caller!r} reached ({used} answered in the last 24 hours, "
                    f"{len(ids)} asked); the federation file's [scoring] quota_per_day sets it"
                )
            self._write(now, caller, job, ids, None)
            self._answered.append((now, caller, len(ids)))

    def refuse(self, caller: str, job: str, ids: Sequence[str], reason: str) -> None:
        """Log a query the node refuses for ``reason`` (it does not count against the quota)."""
        with self._lock:
            self._write(self._clock(), caller, job, ids, reason)

    # -- the file --------------------------------------------------------------------------
    def _path(self, when: float) -> Path:
        day = datetime.datetime.fromtimestamp(when, datetime.UTC).date().isoformat()
        return self.folder / f"{PREFIX}{day}.jsonl"

    def _write(
        self, when: float, caller: str, job: str, ids: Sequence[str], refused: str | None
    ) -> None:
        record: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(),
            "job": job,
            "caller": caller,
            "count": len(ids),
            "answered": refused is None,
        }
        if refused is not None:
            record["reason"] = refused
        record["ids"] = [keyed_tag(self._secret, "audit", cid) for cid in ids]
        self._chain.append(self._path(when), record)  # no answer leaves without its line

    def _load(self) -> None:
        """The chain's last line and the answered queries of the last 24 hours, from disk."""
        files = sorted(self.folder.glob(f"{PREFIX}*.jsonl")) if self.folder.is_dir() else []
        now = self._clock()
        recent = {self._path(now - DAY_SECONDS).name, self._path(now).name}
        for path in files:
            if path.name not in recent and path != files[-1]:
                continue
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise StorageError(f"cannot read the scoring audit log {path}: {exc}") from exc
            if path == files[-1] and lines:
                self._chain.previous = line_hash(lines[-1])
            if path.name in recent:
                self._load_answered(path, lines, now)

    def _load_answered(self, path: Path, lines: list[str], now: float) -> None:
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                when = datetime.datetime.fromisoformat(record["time"]).timestamp()
                entry = (when, str(record["caller"]), int(record["count"]))
                answered = bool(record["answered"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"{path}: line {number} is not an audit record ({exc}); the log is "
                    "append-only: restore it rather than edit it"
                ) from exc
            if answered and when > now - DAY_SECONDS:
                self._answered.append(entry)
