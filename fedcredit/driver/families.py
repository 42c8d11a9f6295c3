"""How the driver runs each model family's schedule over gRPC: one entry per family.

A family declares its rounds as data (``fedcredit.protocol.rounds``: who acts, when, what the
coordinator may decrypt); ``protocol/<family>/local.py`` runs them in one process. Over gRPC
the driver needs three more facts per family, which this table holds: which RPC asks a node to
run a round, which rounds ride inside another round's RPC, and how the loop counts (epochs, and
batches per epoch). The training loop (``fedcredit.driver.schedule.train``) reads nothing else
of a family, so a new family adds its entry here and its services on the nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fedcredit.config import Federation
from fedcredit.driver.context import Rpc
from fedcredit.errors import ConfigError
from fedcredit.protocol.family import get_family
from fedcredit.protocol.rounds import Phase, Round, When, Who
from fedcredit.protocol.split import batch_count
from fedcredit.protocol.trees.settings import TreeSettings


@dataclass(frozen=True)
class FamilyDriver:
    """The driver's side of one family's schedule."""

    rpcs: Mapping[str, Rpc]
    """Round step -> the RPC that runs it on each party the round names."""
    epochs: Callable[[Federation], int]
    batches: Callable[[Federation, Mapping[str, int]], int]
    """Batches per epoch, from the federation and the aligned row counts."""
    carried_by: Mapping[str, str] = field(default_factory=dict)
    """A round run inside another round's RPC on the batch it names (logistic: the secure loss
    is asked for with the residual of the epoch's last batch)."""
    feeds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """An epoch round -> the batch rounds run for its rows; it runs only when the split of the
    same name (``validation``) has rows, and its answer is the last of them."""
    own_stopping: bool = False
    """The family keeps the kept model and early stopping itself (the lender's answer says
    ``stop``); the driver neither restores a best epoch nor replays losses on resume."""
    evaluation: tuple[tuple[Who, Rpc], ...] = ()
    """The RPCs that score the test rows, in order; the last one's reply (the lender's) holds
    the metrics and files (``fedcredit.driver.evaluate``)."""
    units: tuple[str, str] = ("epoch", "batch")
    """What the progress lines call an epoch and a batch of this family."""


LOGISTIC = FamilyDriver(
    rpcs={
        "partial": lambda s: s.logistic.ComputePartial,
        "residual": lambda s: s.logistic.ComputeResidual,
        "train": lambda s: s.logistic.ComputeGradient,
    },
    epochs=lambda fed: fed.train.epochs,
    batches=lambda fed, aligned: batch_count(aligned["train"], fed.train.batch_size),
    carried_by={"loss": "residual"},
    feeds={"validation": ("partial", "residual")},
    evaluation=(
        (Who.HOSTS, lambda s: s.logistic.ComputePartial),
        (Who.LENDER, lambda s: s.logistic.Evaluate),
    ),
)

TREES = FamilyDriver(
    # An epoch is a tree, a batch one of its levels. Every round is the lender's: it calls its
    # partners itself (histograms, leaves, sides ride inside these RPCs, peer to peer), and
    # answers ``EndTree`` with the lender's early-stopping flag.
    rpcs={
        "gradients": lambda s: s.trees.SendGradients,
        "splits": lambda s: s.trees.ChooseSplits,
        "validation": lambda s: s.trees.EndTree,
    },
    epochs=lambda fed: _trees(fed).trees,
    batches=lambda fed, _: _trees(fed).depth,
    own_stopping=True,
    evaluation=((Who.LENDER, lambda s: s.trees.Evaluate),),
    units=("tree", "level"),
)

DRIVERS: Mapping[str, FamilyDriver] = {"logistic": LOGISTIC, "trees": TREES}


def _trees(fed: Federation) -> TreeSettings:
    if fed.trees is None:
        raise ConfigError(f'{fed.path.name}: [model] family = "trees" without [trees] settings')
    return fed.trees


def family_driver(fed: Federation) -> tuple[Phase, FamilyDriver]:
    """The job's family's rounds and the driver's entry for them."""
    family = get_family(fed.family)
    driver = DRIVERS.get(family.name)
    if driver is None:
        raise ConfigError(
            f"{fed.path.name}: [model] family: {family.name!r} runs in one process only in this "
            f"release (fedcredit.protocol.{family.name}.local); the nodes train "
            + ", ".join(repr(n) for n in sorted(DRIVERS))
        )
    return family.schedule(fed.family_settings), driver


def parties_of(who: Who, lender: str, hosts: list[str], parties: list[str]) -> list[str]:
    """The parties a round names."""
    if who is Who.LENDER:
        return [lender]
    if who is Who.HOSTS:
        return list(hosts)
    return list(parties)


def batch_rounds(phase: Phase, driver: FamilyDriver) -> tuple[tuple[Round, bool], ...]:
    """The rounds of every batch that have an RPC, each with whether it also carries a
    last-batch round."""
    carriers = {driver.carried_by.get(r.step) for r in phase.at(When.LAST_BATCH)}
    return tuple(
        (r, r.step in carriers) for r in phase.at(When.EACH_BATCH) if r.step in driver.rpcs
    )


def epoch_rounds(phase: Phase) -> tuple[tuple[Round, ...], tuple[Round, ...]]:
    """The once-per-epoch rounds declared before the batch rounds, and those after them (a
    trees family sends each tree's gradients first and collects its leaves last)."""
    batch = (When.EACH_BATCH, When.LAST_BATCH)
    first = next((i for i, r in enumerate(phase.rounds) if r.when in batch), len(phase.rounds))
    each = [(i, r) for i, r in enumerate(phase.rounds) if r.when is When.EACH_EPOCH]
    return tuple(r for i, r in each if i < first), tuple(r for i, r in each if i > first)


def round_named(phase: Phase, step: str) -> Round:
    """The round of ``step`` (a ``feeds`` entry names batch rounds by step)."""
    return next(r for r in phase.rounds if r.step == step)


__all__ = [
    "DRIVERS",
    "LOGISTIC",
    "TREES",
    "FamilyDriver",
    "batch_rounds",
    "epoch_rounds",
    "family_driver",
    "parties_of",
    "round_named",
]
