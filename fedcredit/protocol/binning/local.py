"""Federated binning in one process, for tests and benchmarks.

The nodes run exactly these steps with every ciphertext crossing gRPC between them; here the
same domain objects call each other directly, in the order of ``BINNING``
(``fedcredit.protocol.binning.schedule``).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedcredit.errors import ProtocolError
from fedcredit.protocol.binning.bins import BinnedParty
from fedcredit.protocol.binning.lender import LabelledParty, LenderBinning
from fedcredit.protocol.binning.messages import ColumnPlan
from fedcredit.protocol.binning.partner import PartnerBinning
from fedcredit.protocol.binning.plan import ColumnReport
from fedcredit.protocol.binning.report import report_rows
from fedcredit.protocol.binning.schedule import BINNING
from fedcredit.protocol.rounds import Round


@dataclass(frozen=True)
class BinningResult:
    report: list[dict[str, Any]]
    features: dict[str, int]


@dataclass
class _Job:
    """One in-process binning job: both sides and what has crossed between them so far."""

    lender: LenderBinning
    partners: dict[str, PartnerBinning]
    key_bits: int
    allow_small: bool
    rng: random.Random | None
    plans: dict[str, list[ColumnPlan]] = field(default_factory=dict)
    reports: list[ColumnReport] = field(default_factory=list)
    features: dict[str, int] = field(default_factory=dict)


def run_binning_local(
    lender: LabelledParty,
    hosts: Sequence[BinnedParty],
    settings: Any,
    *,
    categorical: Mapping[str, Collection[str]] | None = None,
    key_bits: int = 2048,
    allow_small: bool = False,
    rng: random.Random | None = None,
) -> BinningResult:
    """The node protocol's rounds (``BINNING``), the same domain objects calling each other."""
    cats = categorical or {}
    job = _Job(
        LenderBinning(lender, settings, cats.get(lender.name, ())),
        {h.name: PartnerBinning(h, settings, cats.get(h.name, ())) for h in hosts},
        key_bits,
        allow_small,
        rng,
    )
    for round_ in BINNING.rounds:
        run_round(job, round_)
    return BinningResult(report_rows(job.reports), job.features)


def run_round(job: _Job, round_: Round) -> None:
    """One round of ``BINNING``: its step, for the parties it names, in the partners' order."""
    if round_.step == "labels":
        labels = job.lender.encrypt_labels(job.key_bits, allow_small=job.allow_small)
        for partner in job.partners.values():
            partner.receive_labels(labels, allow_small=job.allow_small)
    elif round_.step == "bin_sums":
        for name, partner in job.partners.items():
            job.lender.receive_sums(name, partner.bin_sums(job.rng))
    elif round_.step == "select":
        job.plans, job.reports, own = job.lender.select(list(job.partners))
        job.features[job.lender.lender.name] = own
    elif round_.step == "apply_plan":
        for name, partner in job.partners.items():
            job.features[name] = partner.apply_plan(job.plans[name])
    else:
        raise ProtocolError(f"binning has no step {round_.step!r}")
