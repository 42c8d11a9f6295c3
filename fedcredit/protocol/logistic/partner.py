"""A data party's side of federated logistic regression, as plain state over domain objects.

Vertical split: the lender holds labels, its columns and the intercept; every other party holds
its columns and its own weights. The coordinator holds the Paillier private key and only ever
decrypts masked, packed values (see fedcredit.crypto.packing).

Per mini-batch (Taylor-approximated logistic loss, sigma(z) ~ 1/2 + z/4, as in FATE):
1. each host encrypts its partial score ``u_h = X_h w_h`` and sends it to the lender;
2. the lender encrypts its own part freshly (so the sum is re-randomized) and forms
   ``[[4d]] = [[u_g]] + sum_h [[u_h]] + (2 - 4y)``, which goes to every host;
3. every party computes ``[[G]] = X_int.T @ [[4d]]``, masks and packs it, has the coordinator
   decrypt the masked slots, removes its masks and updates its own weights.
What each side learns: a host learns its own gradient (batch size above its feature count, so it
cannot solve for residuals); the lender learns its own gradient and, at evaluation, the final
scores; the coordinator learns masked values only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedcredit.crypto import (
    EncryptedVector,
    PackedCiphertexts,
    encrypt_packed,
    encrypt_vector,
    mask_and_pack,
    matvec_t,
    unmask,
)
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.model.optim import Newton, curvature_bound
from fedcredit.protocol.binning.encoder import BinEncoder
from fedcredit.protocol.columns import ColumnEncoder, PartyColumns
from fedcredit.protocol.disclosure import round_partial
from fedcredit.protocol.fixedpoint import (
    Z_SCALE_BITS,
    job_gradient_value_bits,
    residual_scale_bits,
    score_value_bits,
)
from fedcredit.protocol.isolation import check_batch
from fedcredit.protocol.logistic.encoding import encoder_from_dict, fit_onehot
from fedcredit.protocol.logistic.settings import TrainSettings


@dataclass
class PendingMasks:
    """Masks a party keeps between asking the coordinator and unmasking."""

    masks: list[int]
    scale_bits: int
    rows: int


class FeatureParty(PartyColumns):
    """A party with columns and its own weights (a host; the lender extends it)."""

    has_label = False
    #: One-hot encode ``categorical`` at alignment (``fedcredit.protocol.logistic.encoding``):
    #: plain logistic regression. Off when a [binning] job bins the raw columns after alignment.
    one_hot_categories: bool = True
    #: Partial scores whose sum the lender decrypts (evaluation, validation, scoring) are
    #: rounded to multiples of 2^-release_bits ([scoring] precision_bits; None: not rounded).
    #: Set by ``fedcredit.node.runtime.make_party_node``; see ``fedcredit.protocol.disclosure``.
    release_bits: int | None = None

    def __init__(
        self,
        name: str,
        ids: list[str],
        features: np.ndarray,
        feature_names: list[str],
        settings: TrainSettings,
    ) -> None:
        super().__init__(name, ids, features, feature_names, settings)
        self.settings: TrainSettings = settings
        self.weights = np.zeros(self.n_weights)
        self.optimizer = settings.make_optimizer()
        self.epoch = 0

    @property
    def n_weights(self) -> int:
        return self.n_columns

    def _design_changed(self, *, rebuilt: bool) -> None:
        """A new encoder: weights and optimizer state start again (resets weights and state)."""
        self.weights = np.zeros(self.n_weights)
        self.optimizer = self.settings.make_optimizer()
        super()._design_changed(rebuilt=rebuilt)
        if rebuilt:
            self._prepare_optimizer()

    def _aligned(self) -> None:
        """After alignment: the Newton curvature bound, then one-hot text columns.

        A party with categorical columns and no encoder one-hot encodes them, fitted on its
        training rows (``one_hot_categories``; ``fedcredit.protocol.logistic.encoding``).
        """
        self._prepare_optimizer()
        if self.encoder is None and self.categorical and self.one_hot_categories:
            self.set_encoder(fit_onehot(self))

    def _prepare_optimizer(self) -> None:
        """Give a Newton optimizer the curvature bound of this party's own training columns."""
        if isinstance(self.optimizer, Newton) and self.split is not None:
            x = self._x_int[self.split.train].astype(np.float64) / float(1 << self.x_scale_bits)
            self.optimizer.set_curvature(
                curvature_bound(x, float(self.settings.l2), self._l2_mask())
            )

    # -- training ------------------------------------------------------------------------
    def linear(self, x_int: np.ndarray) -> np.ndarray:
        """This party's partial score for fixed-point rows."""
        return (x_int.astype(np.float64) / float(1 << self.x_scale_bits)) @ self.weights

    def partial(self, phase: str, epoch: int, batch: int) -> EncryptedVector:
        """``[[u]] = Enc(X w)`` for the step's rows, at the shared score scale."""
        rows = self.rows_of(phase, epoch, batch)
        u = self.linear(self._x_int[rows])
        if phase != "train":  # the lender decrypts the sum of these
            u = round_partial(u, self.release_bits)
        return encrypt_vector(self._require_key(), u, Z_SCALE_BITS)

    def gradient_request(
        self, residual4: EncryptedVector, epoch: int, batch: int
    ) -> tuple[PackedCiphertexts, PendingMasks]:
        """Mask and pack ``X.T @ [[4d]]`` for the coordinator to decrypt."""
        rows = self.rows_of("train", epoch, batch)
        if residual4.scale_bits != residual_scale_bits(self.settings.sigmoid):
            raise ProtocolError(f"party {self.name!r}: residual at an unexpected scale")
        if len(residual4) != len(rows):
            raise ProtocolError(
                f"party {self.name!r}: residual has {len(residual4)} values, batch has {len(rows)}"
            )
        x = self._x_int[rows]
        check_batch(self.name, self.feature_names, x, epoch, batch)
        encrypted = matvec_t(x, self.x_scale_bits, residual4)
        # The job's constant width, never this batch's largest |x| (security review F13).
        train = len(self._require_split().train)
        bits = job_gradient_value_bits(
            train, int(self.settings.batch_size), self.x_scale_bits, str(self.settings.sigmoid)
        )
        packed, masks = mask_and_pack(encrypted, bits)
        return packed, PendingMasks(masks, encrypted.scale_bits, len(rows))

    def apply_gradient(self, slots: list[int], pending: PendingMasks, epoch: int) -> None:
        """Remove the masks, finish the gradient (1/4B, L2) and take an optimizer step."""
        g4 = unmask(slots, pending.masks, pending.scale_bits)
        grad = g4 / (4.0 * pending.rows)
        grad = grad + float(self.settings.l2) * self._l2_mask() * self.weights
        self.optimizer.set_epoch(epoch)
        self.weights = self.optimizer.step(self.weights, grad)

    def _l2_mask(self) -> np.ndarray:
        return np.ones(self.n_weights)

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "party": self.name,
            "epoch": self.epoch,
            "weights": self.weights.tolist(),
            "optimizer": self.optimizer.state_dict(),
            "data_hash": self.data_hash,
            # A resumed job does not bin again (its noise is fresh every run): the encoder
            # comes back from the checkpoint.
            "encoder": self.encoder.to_dict() if self.encoder is not None else None,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state.get("data_hash") != self.data_hash:
            raise ProtocolError(f"party {self.name!r}: checkpoint was made on other data")
        if state.get("encoder") is not None:
            self._restore_encoder(state["encoder"])
        self.epoch = int(state["epoch"])
        self.weights = np.asarray(state["weights"], dtype=np.float64)
        self.optimizer.load_state_dict(state["optimizer"])

    def _restore_encoder(self, data: Mapping[str, Any]) -> None:
        encoder = encoder_from_dict(data, self)
        if isinstance(encoder, BinEncoder):
            encoder.bind_weights(lambda: self.weights, has_intercept=self.has_label)
        self.set_encoder(encoder)

    def model_part(self) -> dict[str, Any]:
        """What this party stores of the model: its own columns, scaling and weights."""
        return {
            "party": self.name,
            "encoder": self.encoder.to_dict() if self.encoder is not None else None,
            "has_label": self.has_label,
            "feature_names": self.feature_names,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weights": self.weights.tolist(),
            "x_scale_bits": self.x_scale_bits,
            "data_hash": self.data_hash,
        }

    def load_model_part(self, part: Mapping[str, Any]) -> None:
        if part.get("encoder") is not None:
            self.set_encoder(encoder_from_dict(part["encoder"], self))
        if list(part["feature_names"]) != self.feature_names:
            raise ConfigError(
                f"party {self.name!r}: model columns {part['feature_names']} differ from the "
                f"data's {self.feature_names}"
            )
        self.mean = np.asarray(part["mean"], dtype=np.float64)
        self.std = np.asarray(part["std"], dtype=np.float64)
        self.weights = np.asarray(part["weights"], dtype=np.float64)

    # -- scoring -------------------------------------------------------------------------
    def partial_for_ids(
        self, ids: list[str], unknown: Callable[[list[str]], np.ndarray] | None = None
    ) -> tuple[EncryptedVector, list[int]]:
        """Encrypted partial scores for applicants, rounded to ``release_bits``, and the
        positions of the ids this party lacks, which get ``unknown``'s answers (else zero).

        The scores are packed before encryption, in the slots the lender's masked decryption
        uses (``score_value_bits`` wide, ``fedcredit.crypto.encrypt_packed``): one encryption
        per packed plaintext, not per applicant. The lender adds its own part and masks slot
        by slot (``LabelParty.packed_score_request``).
        """
        x, missing = self.rows_for_ids(ids)
        u = self.linear(x)
        u[missing] = unknown([ids[i] for i in missing]) if unknown and missing else 0.0
        u = round_partial(u, self.release_bits)
        key = self._require_key()
        return encrypt_packed(key, u, score_value_bits(), Z_SCALE_BITS), missing


__all__ = ["ColumnEncoder", "FeatureParty", "PendingMasks"]
