"""What the coordinator may decrypt, for whom and when: the job's decryption schedule.

The coordinator holds the job's private key. Every value it decrypts is masked, but the caller
removes its own mask, so a decryption tells the caller whatever the ciphertext holds: a host that
sends the ``[[4d]]`` it received learns every label of the batch, a lender that sends a host's
``[[u_h]]`` learns that host's partial scores (security review F4). So the coordinator decrypts
only what the protocol asks for, once:

===========  ==========================  =================================================
step         who, when                   slots (count, value_bits)
===========  ==========================  =================================================
train        every party, each batch     its design columns, the job's gradient width
loss         lender, last batch          the batch's rows at the score width, one scalar
validation   lender, once per epoch      the validation rows at the score width
test         lender, once per job        the test rows at the score width
score        lender, scoring jobs only   at most ``max_score_rows`` at the score width
===========  ==========================  =================================================

The table is not written down here: the gate reads it from the family's rounds
(``fedcredit.protocol.logistic.schedule.TRAINING``, data of ``fedcredit.protocol.rounds``),
resolving each count and width kind from the job's figures below.

Per (caller, step, epoch, batch) one request; a byte-identical retry (a dropped reply) gets
the same answer again, which tells the caller nothing new. A training job's schedule comes from
the coordinator's own federation file (parties, roles, batch size, epochs, scale, sigmoid) and
what the driver registers after alignment (row counts and each party's design columns); from
then on no scoring request is decrypted under that job's key, and a job without a schedule
decrypts scoring requests only. Everything asked, allowed or refused, is one line of the audit
log (``AuditLog``).

What remains trusted: the driver (the coordinator's own operator) for the row counts and the
widths it relays, and each party for its own count of design columns, which no one else can
see. That count is fixed before any ciphertext of the job exists, must stay below the smallest
batch, and below the federation file's bound when the file lists the party's columns. Within
its quota a deviating party can still send other ciphertexts in place of its own gradient (at
most its width of values per step, and its own gradient of that step is then lost): a limit of
the design, stated in docs/THREAT-MODEL.md.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedcredit.errors import ProtocolError
from fedcredit.files import ChainedLog, last_line_hash
from fedcredit.protocol.fixedpoint import (
    job_gradient_value_bits,
    largest_batch,
    loss_value_bits,
    score_value_bits,
)
from fedcredit.protocol.logistic.schedule import TRAINING
from fedcredit.protocol.rounds import Count, Phase, Round, Slots, When, Who, Width
from fedcredit.protocol.split import batch_count, residuals_hidden, smallest_batch

STEPS = TRAINING.decryption_steps()
Shape = tuple[tuple[int, int], ...]
"""A request's packed parts as (count, value_bits), in order."""


class DecryptionRefused(ProtocolError):
    """The coordinator refuses a decryption or a schedule the protocol does not allow."""


@dataclass(frozen=True)
class JobRules:
    """What the coordinator reads from its own federation file about every training job."""

    lender: str
    hosts: tuple[str, ...]
    batch_size: int
    epochs: int
    x_scale_bits: int
    sigmoid: str
    width_caps: Mapping[str, int | None] = field(default_factory=dict)
    """The most design columns each party may have (None: the file does not bound it)."""
    max_score_rows: int = 100_000

    @property
    def parties(self) -> tuple[str, ...]:
        return (self.lender, *self.hosts)


@dataclass(frozen=True)
class Schedule:
    """What the driver registers for a training job once alignment (and binning) are done."""

    train_rows: int
    validation_rows: int
    test_rows: int
    widths: Mapping[str, int]
    """Each party's design columns: its gradient's slot count (the lender's with the intercept)."""


@dataclass(frozen=True)
class Ticket:
    """One decryption request as the coordinator sees it (the caller from its certificate)."""

    caller: str
    job_id: str
    step: str
    epoch: int
    batch: int
    shape: Shape
    digest: str
    """A hash of the whole request: an identical retry has the same one."""


class AuditLog:
    """An append-only JSON-lines record of every decryption request, in the coordinator's folder.

    Each line is written and synced before the decryption happens (a line that cannot be written
    stops the decryption) and carries the SHA-256 of the line before it, so a removed or edited
    line breaks the chain.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._chain = ChainedLog("decryption audit", last_line_hash(path, "decryption audit"))

    def write(self, entry: Mapping[str, Any]) -> None:
        when = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
        self._chain.append(self.path, {"time": when.isoformat(timespec="milliseconds"), **entry})


class DecryptionGate:
    """Admits or refuses each decryption request against the current job's schedule."""

    def __init__(
        self,
        rules: JobRules | None,
        audit: AuditLog | None = None,
        *,
        driver: str = "coordinator",
        phase: Phase = TRAINING,
    ) -> None:
        self.rules = rules
        self.phase = phase
        self.audit = audit
        self.driver = driver
        self._lock = threading.Lock()
        self._job: str | None = None
        self._schedule: Schedule | None = None
        self._used: dict[tuple[str, str, int, int], str] = {}

    def start_job(self, job_id: str) -> None:
        """A new job (a new key): no schedule yet, no step used."""
        with self._lock:
            if job_id != self._job:
                self._job, self._schedule, self._used = job_id, None, {}

    def register(self, caller: str, job_id: str, schedule: Schedule) -> None:
        """Fix the job's schedule once (an identical repeat is a retry); DecryptionRefused else."""
        with self._lock:
            entry = {"caller": caller, "job": job_id, "step": "schedule", **_fields(schedule)}
            try:
                if caller != self.driver:
                    raise DecryptionRefused(
                        f"only the coordinator's operator registers a schedule, not {caller!r}"
                    )
                self._check_schedule(job_id, schedule)
            except DecryptionRefused as exc:
                self._log({**entry, "decision": "refused", "reason": str(exc)})
                raise
            self._log({**entry, "decision": "allowed"})
            self._schedule = schedule

    def admit(self, ticket: Ticket) -> None:
        """Record the request; return if it may be decrypted, else raise DecryptionRefused."""
        with self._lock:
            entry = {
                "caller": ticket.caller,
                "job": ticket.job_id,
                "step": ticket.step,
                "epoch": ticket.epoch,
                "batch": ticket.batch,
                "count": [count for count, _ in ticket.shape],
                "value_bits": [bits for _, bits in ticket.shape],
            }
            try:
                key = self._check(ticket)
                used = self._used.get(key) if key is not None else None
                if used is not None and used != ticket.digest:
                    raise DecryptionRefused(
                        f"{ticket.caller!r} already had its {ticket.step} request of epoch "
                        f"{ticket.epoch}, batch {ticket.batch} decrypted: one per step"
                    )
            except DecryptionRefused as exc:
                self._log({**entry, "decision": "refused", "reason": str(exc)})
                raise
            self._log({**entry, "decision": "retry" if used is not None else "allowed"})
            if key is not None:
                self._used[key] = ticket.digest

    # -- the rules ---------------------------------------------------------------------------
    def _log(self, entry: Mapping[str, Any]) -> None:
        if self.audit is not None:
            self.audit.write(entry)

    def _rules(self) -> JobRules:
        if self.rules is None:
            raise DecryptionRefused("the coordinator was started without its federation's rules")
        return self.rules

    def _check_schedule(self, job_id: str, schedule: Schedule) -> None:
        rules = self._rules()
        if job_id != self._job:
            raise DecryptionRefused(f"no job {job_id!r} was started at the coordinator")
        if self._schedule is not None:
            if self._schedule == schedule:
                return
            raise DecryptionRefused(f"job {job_id!r} already has its decryption schedule")
        if set(schedule.widths) != set(rules.parties):
            raise DecryptionRefused(
                f"a schedule names the parties {sorted(schedule.widths)}, the federation "
                f"{sorted(rules.parties)}"
            )
        if schedule.train_rows < 1 or min(schedule.validation_rows, schedule.test_rows) < 0:
            raise DecryptionRefused("a schedule needs training rows")
        smallest = smallest_batch(schedule.train_rows, rules.batch_size)
        for party, width in sorted(schedule.widths.items()):
            cap = rules.width_caps.get(party)
            if width < 1 or not residuals_hidden(width, schedule.train_rows, rules.batch_size):
                raise DecryptionRefused(
                    f"party {party!r}: {width} design columns, a mini-batch has {smallest} rows: "
                    "its gradient would give its residuals away"
                )
            if cap is not None and width > cap:
                raise DecryptionRefused(
                    f"party {party!r}: {width} design columns, more than the {cap} its columns "
                    "in the federation file (its 'features' key) can make"
                )

    def _check(self, ticket: Ticket) -> tuple[str, str, int, int] | None:
        """The step's key (None: not once-only), or DecryptionRefused naming the rule.

        The step's round (``self.phase``) says who may ask, when, and what it holds.
        """
        rules = self._rules()
        if ticket.job_id != self._job:
            raise DecryptionRefused(f"no job {ticket.job_id!r} was started at the coordinator")
        round_ = self.phase.decryption(ticket.step)
        if round_ is None:
            raise DecryptionRefused(f"unknown decryption step {ticket.step!r}")
        _check_caller(round_, ticket, rules)
        if round_.when is When.SCORING:
            if self._schedule is not None:
                raise DecryptionRefused(
                    "this job trains: scores are decrypted only in a scoring job (a fresh key)"
                )
            _expect(ticket, _shape(round_, ticket, rules, None))
            return None
        schedule = self._schedule
        if schedule is None:
            raise DecryptionRefused(
                f"job {ticket.job_id!r} has no decryption schedule: the driver registers it "
                "after alignment, before training"
            )
        if round_.when is When.ONCE:
            _expect(ticket, _shape(round_, ticket, rules, schedule))
            return (ticket.caller, ticket.step, 0, 0)
        if ticket.epoch >= rules.epochs:
            raise DecryptionRefused(f"epoch {ticket.epoch} is past the job's {rules.epochs}")
        if round_.when is When.EACH_EPOCH:
            _expect(ticket, _shape(round_, ticket, rules, schedule))
            return (ticket.caller, ticket.step, ticket.epoch, 0)
        batches = batch_count(schedule.train_rows, rules.batch_size)
        last = batches - 1
        if round_.when is When.LAST_BATCH:
            if ticket.batch != last:
                raise DecryptionRefused(f"the {ticket.step} is asked for on batch {last} only")
            _expect(ticket, _shape(round_, ticket, rules, schedule))
            return (ticket.caller, ticket.step, ticket.epoch, 0)
        if ticket.batch > last:
            raise DecryptionRefused(f"batch {ticket.batch} is past the epoch's {batches}")
        _expect(ticket, _shape(round_, ticket, rules, schedule))
        return (ticket.caller, ticket.step, ticket.epoch, ticket.batch)


def _check_caller(round_: Round, ticket: Ticket, rules: JobRules) -> None:
    """DecryptionRefused unless the round's parties include the caller (every party: later)."""
    if round_.who is Who.LENDER and ticket.caller != rules.lender:
        raise DecryptionRefused(
            f"only the lender asks for {ticket.step} decryptions, not {ticket.caller!r}"
        )
    if round_.who is Who.HOSTS and ticket.caller not in rules.hosts:
        raise DecryptionRefused(
            f"only the hosts ask for {ticket.step} decryptions, not {ticket.caller!r}"
        )


def _shape(round_: Round, ticket: Ticket, rules: JobRules, schedule: Schedule | None) -> Shape:
    """The (count, value_bits) of every part the round lets ``ticket``'s caller ask for."""
    out = []
    for index, slots in enumerate(round_.decrypts):
        count = _count(slots, index, round_, ticket, rules, schedule)
        out.append((count, _width(slots, ticket, rules, schedule)))
    return tuple(out)


def _count(
    slots: Slots,
    index: int,
    round_: Round,
    ticket: Ticket,
    rules: JobRules,
    schedule: Schedule | None,
) -> int:
    if slots.count is Count.SCALAR:
        return 1
    if slots.count is Count.SCORING_ROWS:
        # The caller says how many applicants it scores, within the federation's bound.
        count = ticket.shape[index][0] if len(ticket.shape) == len(round_.decrypts) else 0
        if not 1 <= count <= rules.max_score_rows:
            raise DecryptionRefused(f"a scoring request has 1 to {rules.max_score_rows} slots")
        return count
    figures = _registered(schedule)
    if slots.count is Count.VALIDATION_ROWS:
        return figures.validation_rows
    if slots.count is Count.TEST_ROWS:
        return figures.test_rows
    if slots.count is Count.BATCH_ROWS:
        return _batch_rows(ticket.batch, figures.train_rows, rules.batch_size)
    if ticket.caller not in figures.widths:
        raise DecryptionRefused(f"{ticket.caller!r} is not a party of this job")
    return figures.widths[ticket.caller]


def _width(slots: Slots, ticket: Ticket, rules: JobRules, schedule: Schedule | None) -> int:
    if slots.width is Width.SCORE:
        return score_value_bits()
    figures = _registered(schedule)
    if slots.width is Width.LOSS:
        return loss_value_bits(_batch_rows(ticket.batch, figures.train_rows, rules.batch_size))
    return job_gradient_value_bits(
        figures.train_rows, rules.batch_size, rules.x_scale_bits, rules.sigmoid
    )


def _registered(schedule: Schedule | None) -> Schedule:
    if schedule is None:
        raise DecryptionRefused("this decryption needs the job's registered schedule")
    return schedule


def _batch_rows(batch: int, train_rows: int, batch_size: int) -> int:
    """The rows of mini-batch ``batch``: the last one takes the remainder."""
    if batch == batch_count(train_rows, batch_size) - 1:
        return largest_batch(train_rows, batch_size)
    return smallest_batch(train_rows, batch_size)


def _expect(ticket: Ticket, shape: Shape) -> None:
    if ticket.shape != shape:
        want = ", ".join(f"{c} slots of {b} bits" for c, b in shape)
        got = ", ".join(f"{c} slots of {b} bits" for c, b in ticket.shape)
        raise DecryptionRefused(
            f"{ticket.caller!r}: a {ticket.step} request has {want}, this one {got}"
        )


def _fields(schedule: Schedule) -> dict[str, Any]:
    return {
        "train_rows": schedule.train_rows,
        "validation_rows": schedule.validation_rows,
        "test_rows": schedule.test_rows,
        "widths": dict(sorted(schedule.widths.items())),
    }
