"""The whole training protocol in one process, for tests and benchmarks.

The nodes run exactly these steps with every ciphertext crossing gRPC between them; here the
same domain objects call each other directly, so the arithmetic can be checked against
plaintext and timed without a network.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedcredit.protocol.coordinator import KeyHolder
from fedcredit.protocol.lender import LabelParty
from fedcredit.protocol.party import FeatureParty


def train_batch(
    lender: LabelParty,
    hosts: Sequence[FeatureParty],
    keys: KeyHolder,
    epoch: int,
    batch: int,
    *,
    want_loss: bool = False,
) -> float | None:
    """One mini-batch: partial scores, residual, masked gradients, updates; the loss if asked."""
    partials = {h.name: h.partial("train", epoch, batch) for h in hosts}
    z = lender.encrypted_scores("train", epoch, batch, partials)
    residual = lender.residual(z, "train", epoch, batch)
    loss = None
    if want_loss:
        request, pending = lender.loss_request(z, "train", epoch, batch)
        total = keys.decrypt_loss(request.masked_scores, request.masked_sums)
        loss = LabelParty.finish_loss(total, pending)
    for party in (lender, *hosts):
        packed, masks = party.gradient_request(residual, epoch, batch)
        party.apply_gradient(keys.decrypt_masked(packed), masks, epoch)
    return loss


def held_out_scores(
    lender: LabelParty, hosts: Sequence[FeatureParty], keys: KeyHolder
) -> np.ndarray:
    """The final scores z of the test rows, as the lender learns them."""
    partials = {h.name: h.partial("test", 0, 0) for h in hosts}
    z = lender.encrypted_scores("test", 0, 0, partials)
    packed, pending = LabelParty.score_request(z)
    return LabelParty.finish_scores(keys.decrypt_masked(packed), pending)


def validate(
    lender: LabelParty, hosts: Sequence[FeatureParty], keys: KeyHolder, epoch: int
) -> float:
    """The true log-loss of the validation rows after ``epoch``, as the lender computes it
    from their decrypted scores (which also refits its expansion point)."""
    batches = lender.batches_per_epoch()
    partials = {h.name: h.partial("validation", epoch, batches) for h in hosts}
    z = lender.encrypted_scores("validation", epoch, batches, partials)
    packed, pending = LabelParty.score_request(z)
    return lender.validation_log_loss(
        LabelParty.finish_scores(keys.decrypt_masked(packed), pending)
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
        if len(lender.rows_of("validation", epoch, batches)):
            validate(lender, hosts, keys, epoch)
    return losses
