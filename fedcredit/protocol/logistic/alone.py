"""The lender trained on its own columns alone, the way the federation trains it.

What a lender would have without partners: the same ``LabelParty`` (its aligned rows in the
shared order, the same split, the same encoder and fixed-point design, the same optimizer with
its curvature bound), stepped in plaintext because there is nobody to encrypt for. Every step
is the federated one with the partners' part of the score at zero:

- the batches are ``rows_of("train", epoch, batch)``, the gradient ``X'd / B`` plus the L2 term
  (the intercept not penalized), one optimizer step per batch;
- the residual ``d``: with ``sigmoid = "local"`` the federation expands the sigmoid around the
  lender's own score plus its prediction of the partners' part; alone that part is zero, the
  expansion point is the score itself and ``d = sigmoid(z) - y`` exactly. With ``"taylor"``
  ``d = z / 4 + 1/2 - y``, as in the federation;
- after each epoch the validation rows' true log-loss picks the kept epoch and drives early
  stopping, with ``tol`` as the least improvement that counts (``fedcredit.driver.schedule``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedcredit.model.logistic import sigmoid
from fedcredit.model.metrics import log_loss
from fedcredit.protocol.logistic.lender import LabelParty


@dataclass(frozen=True)
class AloneFit:
    """The kept weights (``[columns..., intercept]``), the epochs run and the kept one (1-based)."""

    weights: np.ndarray
    epochs_run: int
    kept_epoch: int
    validation_loss: list[float] = field(default_factory=list)


def train_alone(party: LabelParty) -> AloneFit:
    """Train ``party`` (aligned, its encoder set) on its own columns; its weights end kept."""
    settings = party.settings
    x = party.design_for(party.raw[party.aligned_rows]).astype(np.float64)
    x /= float(1 << party.x_scale_bits)
    y = np.asarray(party.labels(np.arange(x.shape[0])), dtype=np.float64)
    mask = np.ones(party.n_weights)
    mask[-1] = 0.0  # the intercept is not regularized, as in the federation
    validation = party.rows_of("validation", 0, 0)
    best: float | None = None
    best_weights, best_epoch, stale, losses = party.weights.copy(), 0, 0, []
    epoch = 0
    while epoch < int(settings.epochs):
        party.optimizer.set_epoch(epoch)
        for batch in range(party.batches_per_epoch()):
            rows = party.rows_of("train", epoch, batch)
            z = x[rows] @ party.weights
            taylor = settings.sigmoid == "taylor"
            d = (0.25 * z + 0.5 if taylor else sigmoid(z)) - y[rows]
            grad = x[rows].T @ d / len(rows) + float(settings.l2) * mask * party.weights
            party.weights = party.optimizer.step(party.weights, grad)
        epoch += 1
        if not len(validation):
            best_weights, best_epoch = party.weights.copy(), epoch - 1
            continue
        loss = log_loss(y[validation], sigmoid(x[validation] @ party.weights))
        losses.append(loss)
        stale = 0 if best is None or loss < best - float(settings.tol) else stale + 1
        if best is None or loss < best:
            best, best_weights, best_epoch = loss, party.weights.copy(), epoch - 1
        if settings.early_stopping_rounds and stale >= int(settings.early_stopping_rounds):
            break
    party.weights = best_weights
    return AloneFit(best_weights, epoch, best_epoch + 1, losses)


def own_logits(party: LabelParty, rows: np.ndarray) -> np.ndarray:
    """The logit of the aligned ``rows`` from the party's own columns and weights."""
    x = party.design_for(party.raw[party.aligned_rows[rows]]).astype(np.float64)
    logits: np.ndarray = x / float(1 << party.x_scale_bits) @ party.weights
    return logits


__all__ = ["AloneFit", "own_logits", "train_alone"]
