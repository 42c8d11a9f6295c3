"""The whole training protocol in one process, for tests and benchmarks.

The nodes run exactly these steps with every ciphertext crossing gRPC between them; here the
same domain objects call each other directly, round by round of the family's schedule
(``fedcredit.protocol.logistic.schedule.TRAINING``), so the arithmetic can be checked against
plaintext and timed without a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedcredit.crypto import EncryptedVector
from fedcredit.errors import ProtocolError
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.schedule import TRAINING
from fedcredit.protocol.rounds import Round, When


@dataclass
class _Step:
    """What one batch's rounds hand each other (the lender's view of the messages)."""

    lender: LabelParty
    hosts: Sequence[FeatureParty]
    keys: KeyHolder
    epoch: int
    batch: int
    partials: dict[str, EncryptedVector] = field(default_factory=dict)
    z: EncryptedVector | None = None
    residual: EncryptedVector | None = None
    loss: float | None = None

    def scores(self) -> EncryptedVector:
        if self.z is None:
            raise ProtocolError(f"round order: no scores yet in batch {self.batch}")
        return self.z


def run_round(step: _Step, round_: Round) -> None:
    """One training round of ``TRAINING`` for the parties it names."""
    lender, hosts, epoch, batch = step.lender, step.hosts, step.epoch, step.batch
    if round_.step == "partial":
        step.partials = {h.name: h.partial("train", epoch, batch) for h in hosts}
    elif round_.step == "residual":
        step.z = lender.encrypted_scores("train", epoch, batch, step.partials)
        step.residual = lender.residual(step.z, "train", epoch, batch)
    elif round_.step == "loss":
        request, pending = lender.loss_request(step.scores(), "train", epoch, batch)
        total = step.keys.decrypt_loss(request.masked_scores, request.masked_sums)
        step.loss = LabelParty.finish_loss(total, pending)
    elif round_.step == "train":
        if step.residual is None:
            raise ProtocolError(f"round order: no residual yet in batch {batch}")
        for party in (lender, *hosts):
            packed, masks = party.gradient_request(step.residual, epoch, batch)
            party.apply_gradient(step.keys.decrypt_masked(packed), masks, epoch)
    else:
        raise ProtocolError(f"logistic regression has no batch step {round_.step!r}")


def train_batch(
    lender: LabelParty,
    hosts: Sequence[FeatureParty],
    keys: KeyHolder,
    epoch: int,
    batch: int,
    *,
    want_loss: bool = False,
) -> float | None:
    """One mini-batch: partial scores, residual, masked gradients, updates; the loss if asked.

    The rounds of ``TRAINING`` that happen each batch, and the last-batch ones (the loss)
    when ``want_loss``.
    """
    step = _Step(lender, hosts, keys, epoch, batch)
    for round_ in TRAINING.at(When.EACH_BATCH, When.LAST_BATCH):
        if round_.when is When.EACH_BATCH or want_loss:
            run_round(step, round_)
    return step.loss


def _final_scores(
    lender: LabelParty,
    hosts: Sequence[FeatureParty],
    keys: KeyHolder,
    phase: str,
    epoch: int,
    batch: int,
) -> np.ndarray:
    """The final scores z of ``phase``'s rows, as the lender learns them (masked at the key holder)."""
    partials = {h.name: h.partial(phase, epoch, batch) for h in hosts}
    z = lender.encrypted_scores(phase, epoch, batch, partials)
    packed, pending = LabelParty.score_request(z)
    return LabelParty.finish_scores(keys.decrypt_masked(packed), pending)


def held_out_scores(
    lender: LabelParty, hosts: Sequence[FeatureParty], keys: KeyHolder
) -> np.ndarray:
    """The final scores z of the test rows, as the lender learns them (round ``test``)."""
    return _final_scores(lender, hosts, keys, "test", 0, 0)


def validate(
    lender: LabelParty, hosts: Sequence[FeatureParty], keys: KeyHolder, epoch: int
) -> float:
    """The true log-loss of the validation rows after ``epoch``, as the lender computes it
    from their decrypted scores (which also refits its expansion point; round ``validation``)."""
    batches = lender.batches_per_epoch()
    return lender.validation_log_loss(
        _final_scores(lender, hosts, keys, "validation", epoch, batches)
    )


def train_local(
    lender: LabelParty, hosts: Sequence[FeatureParty], keys: KeyHolder, epochs: int
) -> list[float]:
    """Every epoch and batch in order, then the validation rows (when there are any), as the
    nodes run them; returns the Taylor loss of each epoch's last batch."""
    losses = []
    for epoch in range(epochs):
        batches = lender.batches_per_epoch()
        for batch in range(batches):
            loss = train_batch(lender, hosts, keys, epoch, batch, want_loss=batch == batches - 1)
            if loss is not None:
                losses.append(loss)
        for round_ in TRAINING.at(When.EACH_EPOCH):
            if round_.step != "validation":
                raise ProtocolError(f"logistic regression has no epoch step {round_.step!r}")
            if len(lender.rows_of("validation", epoch, batches)):
                validate(lender, hosts, keys, epoch)
    return losses


__all__ = ["held_out_scores", "run_round", "train_batch", "train_local", "validate"]
