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

The debt coordinator keeps the same kind of log and quota for loan-stacking queries
(``DebtQueryAudit``, ``audit/debt-queries-<UTC date>.jsonl``): who asked about how many
applicants, and when (it never sees an id).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fedcredit.errors import QuotaError
from fedcredit.files import DAY_SECONDS, DailyQuotaLog
from fedcredit.node.secret import keyed_tag

__all__ = ["DAY_SECONDS", "DebtQueryAudit", "ScoringAudit"]

PREFIX = "scoring-"
DEBT_PREFIX = "debt-queries-"


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
        self._lock = threading.Lock()
        self._log = DailyQuotaLog("scoring audit log", folder, PREFIX, clock=clock)

    def admit(self, caller: str, job: str, ids: Sequence[str], query: str = "") -> None:
        """Log the query as answered when it fits ``caller``'s quota; else log it refused and
        raise QuotaError. ``query`` names a query other than ``PartialScore`` (e.g.
        ``stability``) on its line; the quota counts every query's applicants together."""
        with self._lock:
            now = self._log.clock()
            used = self._log.used(caller, now)
            if used + len(ids) > self.quota_per_day:
                self._write(now, caller, job, ids, "quota", query)
                raise QuotaError(
                    f"party {self.name!r}: scoring quota of {self.quota_per_day} applicants per "
                    f"day for {caller!r} reached ({used} answered in the last 24 hours, "
                    f"{len(ids)} asked); the federation file's [scoring] quota_per_day sets it"
                )
            self._write(now, caller, job, ids, None, query)

    def refuse(
        self, caller: str, job: str, ids: Sequence[str], reason: str, query: str = ""
    ) -> None:
        """Log a query the node refuses for ``reason`` (it does not count against the quota)."""
        with self._lock:
            self._write(self._log.clock(), caller, job, ids, reason, query)

    def _write(
        self,
        when: float,
        caller: str,
        job: str,
        ids: Sequence[str],
        refused: str | None,
        query: str = "",
    ) -> None:
        tags = [keyed_tag(self._secret, "audit", cid) for cid in ids]
        extra = {"job": job, **({"query": query} if query else {}), "ids": tags}
        self._log.write(when, caller, len(ids), refused, extra)


class DebtQueryAudit:
    """The debt coordinator's log of loan-stacking queries (who asked, how many applicants,
    when; it never sees an id) and the per-querier quota (security review F14): a querier that
    watches one person's total over time, or walks a list of people, spends its quota."""

    def __init__(
        self, folder: Path, quota_per_day: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.quota_per_day = quota_per_day
        self._lock = threading.Lock()
        self._log = DailyQuotaLog("debt query audit log", folder, DEBT_PREFIX, clock=clock)

    def admit(self, caller: str, applicants: int) -> None:
        """Log the query; QuotaError (logged as refused) past ``caller``'s daily quota."""
        with self._lock:
            now = self._log.clock()
            used = self._log.used(caller, now)
            if used + applicants > self.quota_per_day:
                self._log.write(now, caller, applicants, "quota", {})
                raise QuotaError(
                    f"the debt check's quota of {self.quota_per_day} applicants per day for "
                    f"{caller!r} is reached ({used} asked in the last 24 hours, {applicants} "
                    "now); the federation file's [scoring] quota_per_day sets it"
                )
            self._log.write(now, caller, applicants, None, {})
