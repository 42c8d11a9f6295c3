"""The lender's side of the protocol: labels, intercept, residuals, the secure loss, evaluation.

The lender never holds a host's weights or a host's per-sample partial score in clear. It learns
the final score z of a row only at evaluation and scoring (which is what it is meant to learn; with
one partner, z minus its own part is that partner's partial score, as the threat model states).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedcredit.crypto import (
    EncryptedVector,
    PackedCiphertexts,
    mask_and_pack,
    mask_packed,
    unmask,
    weighted_sum,
)
from fedcredit.errors import ProtocolError
from fedcredit.model.logistic import sigmoid
from fedcredit.model.metrics import log_loss
from fedcredit.protocol.fixedpoint import (
    SLOPE_SCALE_BITS,
    Z_SCALE_BITS,
    loss_value_bits,
    score_value_bits,
)
from fedcredit.protocol.logistic.messages import LossRequest
from fedcredit.protocol.logistic.partner import FeatureParty, PendingMasks
from fedcredit.protocol.logistic.settings import TrainSettings

#: Ridge penalty of the expansion point's regression (on sums over the validation rows).
EXPANSION_RIDGE = 1.0


@dataclass
class PendingLoss:
    """What the lender keeps while the coordinator works on a loss request."""

    score_masks: list[int]
    sum_mask: int
    rows: int


class LabelParty(FeatureParty):
    """The lender: a feature party that also holds the default label and the intercept."""

    has_label = True

    def __init__(
        self,
        name: str,
        ids: list[str],
        features: np.ndarray,
        feature_names: list[str],
        labels: np.ndarray,
        settings: TrainSettings,
    ) -> None:
        self._labels_all = np.asarray(labels, dtype=np.int64)
        # Coefficients of the partners' part of the score on the lender's own design columns,
        # fitted on the validation rows (``validation_log_loss``): the "local" sigmoid expands
        # around the lender's score plus this prediction instead of its score alone.
        self.expansion: np.ndarray | None = None
        super().__init__(name, ids, features, feature_names, settings)

    @property
    def n_weights(self) -> int:
        return self.n_columns + 1  # the last weight is the intercept

    def _design(self, raw: np.ndarray) -> np.ndarray:
        x = super()._design(raw)
        ones = np.full((x.shape[0], 1), 1 << self.x_scale_bits, dtype=np.int64)
        return np.hstack([x, ones])

    def _l2_mask(self) -> np.ndarray:
        mask = np.ones(self.n_weights)
        mask[-1] = 0.0  # the intercept is not regularized
        return mask

    def labels(self, rows: np.ndarray) -> np.ndarray:
        labels: np.ndarray = self._labels_all[self._aligned_rows[rows]]
        return labels

    # -- training ------------------------------------------------------------------------
    def encrypted_scores(
        self, phase: str, epoch: int, batch: int, partials: Mapping[str, EncryptedVector]
    ) -> EncryptedVector:
        """``[[z]] = sum of the hosts' [[u_h]] + u_lender`` for the step's rows.

        The lender's own part is added in the clear (it never leaves the lender unencrypted:
        everything derived from [[z]] is re-randomized or masked before it is sent).
        """
        rows = self.rows_of(phase, epoch, batch)
        if not partials:
            raise ProtocolError("no partial scores from any host")
        total: EncryptedVector | None = None
        for party, vector in sorted(partials.items()):
            if len(vector) != len(rows):
                raise ProtocolError(
                    f"partial scores from {party!r} have {len(vector)} rows, expected {len(rows)}"
                )
            total = vector if total is None else total.add(vector)
        assert total is not None
        return total.add_plain(self.linear(self._x_int[rows]))

    def residual(self, z: EncryptedVector, phase: str, epoch: int, batch: int) -> EncryptedVector:
        """``[[4d]]``, four times the approximated residual sigma(z) - y, re-randomized.

        ``taylor`` (FATE's baseline): sigma(z) ~ 1/2 + z/4, so 4d = z + 2 - 4y.
        ``local`` (default): the first-order expansion around a point c the lender knows in
        the clear: sigma(z) ~ sigma(c) + sigma'(c) (z - c), with c = u, its own score, plus,
        once there are validation rows, its prediction of the partners' part from its own
        columns (``expansion``, fitted on the validation rows' scores it learns anyway). Exact
        when z is near c; it needs one small plaintext exponent per row and sends exactly the
        same messages, so it reveals nothing more. 4d = 4 sigma'(c) [[z - c]] + 4 (sigma(c) - y),
        the slope carried with SLOPE_SCALE_BITS fractional bits.
        The fresh randomization matters: a host knows the randomness of its own [[u_h]] and,
        without it, could strip it from the residual and read d (and so the labels).
        """
        rows = self.rows_of(phase, epoch, batch)
        y = self.labels(rows).astype(np.float64)
        if self.settings.sigmoid == "taylor":
            return z.add_plain(2.0 - 4.0 * y).rerandomize()
        centre = self.expansion_point(self._x_int[rows])
        p = sigmoid(centre)
        slope = np.rint(4.0 * p * (1.0 - p) * float(1 << SLOPE_SCALE_BITS)).astype(np.int64)
        offset = z.add_plain(-centre)
        return offset.mul_plain_ints(slope, SLOPE_SCALE_BITS).add_plain(4.0 * (p - y)).rerandomize()

    def expansion_point(self, x_int: np.ndarray) -> np.ndarray:
        """Where the "local" sigmoid is expanded: own score plus the predicted partners' part."""
        own = self.linear(x_int)
        if self.expansion is None:
            return own
        x = x_int.astype(np.float64) / float(1 << self.x_scale_bits)
        centre: np.ndarray = own + x @ self.expansion
        return centre

    def loss_request(
        self, z: EncryptedVector, phase: str, epoch: int, batch: int
    ) -> tuple[LossRequest, PendingLoss]:
        """Mask the scores so that the coordinator's one answer gives the lender only the loss.

        The mean Taylor loss is ``log 2 + (Σz² − 4 Σy'z) / 8m`` with ``y' = ±1``. Over the
        fixed-point scores (scale ``s``) the lender sends ``[[z + r]]`` per row and the one
        scalar ``[[T]] = [[Σ (−2r − 4s y') z]]``, masked. The coordinator returns
        ``Σ (z + r)² + T + m``; less ``Σr²`` and the mask ``m`` that is ``Σz² − 4s Σy'z``, the
        loss times ``8 m s²``, and nothing more: neither ``Σz²`` nor ``Σy'z`` on its own
        (security review F15). The coordinator sees ``z + r`` and ``T + m``, both masked.
        """
        y = self.labels(self.rows_of(phase, epoch, batch))
        packed, r = mask_and_pack(z, score_value_bits())
        four_s = 4 << Z_SCALE_BITS
        weights = [
            -2 * mask - (four_s if label else -four_s)
            for mask, label in zip(r, y.tolist(), strict=True)
        ]
        packed_sum, m = mask_and_pack(weighted_sum(z, weights), loss_value_bits(len(r)))
        return LossRequest(packed, packed_sum), PendingLoss(r, m[0], len(r))

    @staticmethod
    def finish_loss(total: int, pending: PendingLoss) -> float:
        """The mean Taylor loss ``log 2 - y'z/2 + z^2/8`` from the coordinator's one answer."""
        quadratic = total - pending.sum_mask - sum(r * r for r in pending.score_masks)
        scale = float(1 << Z_SCALE_BITS)
        return math.log(2.0) + quadratic / (scale * scale) / 8.0 / float(pending.rows)

    def validation_log_loss(self, scores: np.ndarray) -> float:
        """The true mean log-loss of the validation rows from their decrypted final scores.

        This is the figure early stopping, ``tol`` and the kept model act on. The lender
        learns the validation rows' scores after every epoch, as it learns the test rows'
        scores once at evaluation (docs/THREAT-MODEL.md states the difference).
        """
        rows = self.rows_of("validation", 0, 0)
        y = self.labels(rows)
        z = np.asarray(scores, dtype=np.float64)
        if len(z) != len(y):
            raise ProtocolError(f"{len(z)} validation scores for {len(y)} validation rows")
        self._fit_expansion(self._x_int[rows], z)
        return log_loss(y, sigmoid(z))

    def _fit_expansion(self, x_int: np.ndarray, z: np.ndarray) -> None:
        """Ridge regression of the partners' part ``z - u`` on the lender's own columns.

        Where partners' columns correlate with the lender's (tumour sizes measured twice,
        balances and limits), this puts the expansion point of the next epoch's residuals
        near the true score and removes most of the linearization's bias.
        """
        x = x_int.astype(np.float64) / float(1 << self.x_scale_bits)
        partners = z - x @ self.weights
        gram = x.T @ x + EXPANSION_RIDGE * np.eye(x.shape[1])
        self.expansion = np.linalg.solve(gram, x.T @ partners)

    def state(self) -> dict[str, Any]:
        state = super().state()
        state["expansion"] = None if self.expansion is None else self.expansion.tolist()
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        expansion = state.get("expansion")
        self.expansion = None if expansion is None else np.asarray(expansion, dtype=np.float64)

    # -- evaluation and scoring ------------------------------------------------------------
    @staticmethod
    def score_request(z: EncryptedVector) -> tuple[PackedCiphertexts, PendingMasks]:
        """Mask and pack final scores for decryption; only the lender can unmask them."""
        packed, masks = mask_and_pack(z, score_value_bits())
        return packed, PendingMasks(masks, z.scale_bits, len(masks))

    @staticmethod
    def packed_score_request(
        partials: EncryptedVector, own: np.ndarray
    ) -> tuple[PackedCiphertexts, PendingMasks]:
        """Add the lender's own parts (in the clear) and fresh masks, slot by slot, to the
        partners' summed packed partial scores (``FeatureParty.partial_for_ids``), for the
        coordinator: the same slots, widths and masks as ``score_request``."""
        if partials.scale_bits != Z_SCALE_BITS:
            raise ProtocolError(
                f"partial scores at scale 2^{partials.scale_bits}, not 2^{Z_SCALE_BITS}"
            )
        packed, masks = mask_packed(partials, own, score_value_bits())
        return packed, PendingMasks(masks, partials.scale_bits, len(masks))

    @staticmethod
    def finish_scores(slots: list[int], pending: PendingMasks) -> np.ndarray:
        return unmask(slots, pending.masks, pending.scale_bits)

    def own_part_for_ids(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """The lender's own part of applicants' logits (in the clear: it is added to the
        partners' fresh ciphertexts, which hide the sum), its per-column contributions, and
        the applicants it does not hold."""
        x, missing = self.rows_for_ids(ids)
        contributions = (x.astype(np.float64) / float(1 << self.x_scale_bits)) * self.weights
        return self.linear(x), contributions, missing


__all__ = ["EXPANSION_RIDGE", "LabelParty", "LossRequest", "PendingLoss"]
