"""A schedule as data: the rounds of a model family (or of a phase such as binning).

Each round says which parties act, at which step, when, and what the coordinator (the key
holder) may decrypt for the caller at that step: how many values (``Count``) and how wide
(``Width``). The same rounds drive three things: ``protocol/<family>/local.py`` runs them in
one process by calling the roles; the driver runs them over gRPC; the coordinator's
``DecryptionGate`` (``fedcredit.protocol.schedule``) holds every caller to them.

The kinds are names, not numbers: the figures behind them (rows, design columns, widths) are
known only once the job is aligned, and the gate resolves them from the federation file and
the schedule the driver registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Who(StrEnum):
    """Which parties act in a round (and may ask for its decryption)."""

    LENDER = "lender"
    HOSTS = "hosts"
    EVERY_PARTY = "every party"


class When(StrEnum):
    """When a round happens."""

    EACH_BATCH = "each batch"
    LAST_BATCH = "last batch"
    EACH_EPOCH = "each epoch"
    ONCE = "once per job"
    SCORING = "scoring"


class Count(StrEnum):
    """How many values a decryption holds."""

    DESIGN_COLUMNS = "design columns"
    """The caller's design columns (its gradient's slots; the lender's with the intercept)."""
    BATCH_ROWS = "batch rows"
    """The rows of the step's mini-batch."""
    VALIDATION_ROWS = "validation rows"
    TEST_ROWS = "test rows"
    SCALAR = "one scalar"
    SCORING_ROWS = "scoring rows"
    """The applicants of a scoring request: at most the federation's ``max_score_rows``."""


class Width(StrEnum):
    """How wide each decrypted value is (its ``value_bits``)."""

    GRADIENT = "gradient width"
    """The job's constant gradient width (``fixedpoint.job_gradient_value_bits``)."""
    SCORE = "score width"
    """A final score's width (``fixedpoint.score_value_bits``)."""
    LOSS = "loss width"
    """The masked loss scalar's width over the batch rows (``fixedpoint.loss_value_bits``)."""


@dataclass(frozen=True)
class Slots:
    """One packed part of a decryption request: ``count`` values of ``width`` bits."""

    count: Count
    width: Width


@dataclass(frozen=True)
class Round:
    """One step of a schedule; ``decrypts`` is empty when the coordinator decrypts nothing."""

    step: str
    who: Who
    when: When
    decrypts: tuple[Slots, ...] = ()


@dataclass(frozen=True)
class Phase:
    """A family's (or binning's) rounds, in the order one batch, epoch or job runs them."""

    name: str
    rounds: tuple[Round, ...]

    def decryption_steps(self) -> tuple[str, ...]:
        """The steps at which the coordinator may decrypt something, in order."""
        return tuple(r.step for r in self.rounds if r.decrypts)

    def decryption(self, step: str) -> Round | None:
        """The round of ``step`` if the coordinator may decrypt at it, else None."""
        return next((r for r in self.rounds if r.step == step and r.decrypts), None)

    def at(self, *when: When) -> tuple[Round, ...]:
        """The rounds that happen at any of ``when``, in order."""
        return tuple(r for r in self.rounds if r.when in when)


__all__ = ["Count", "Phase", "Round", "Slots", "When", "Who", "Width"]
