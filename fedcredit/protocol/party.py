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

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fedcredit.crypto import (
    EncryptedVector,
    PackedCiphertexts,
    PublicKey,
    encrypt_vector,
    mask_and_pack,
    matvec_t,
    unmask,
)
from fedcredit.errors import ConfigError, ProtocolError, StorageError
from fedcredit.model.optim import Newton, curvature_bound, make_optimizer
from fedcredit.protocol.disclosure import round_partial
from fedcredit.protocol.fixedpoint import (
    CLIP,
    Z_BOUND_BITS,
    Z_SCALE_BITS,
    job_gradient_value_bits,
    quantize,
    residual_scale_bits,
)
from fedcredit.protocol.isolation import check_batch
from fedcredit.protocol.split import Split, batch_count, batch_rows, split_rows

PHASES = ("train", "validation", "test")


class ColumnEncoder(Protocol):
    """Turns a party's raw columns into design columns (e.g. one-hot bins), locally."""

    @property
    def feature_names(self) -> list[str]: ...

    def transform(self, raw: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AlignStats:
    """What a party reports after alignment: counts only."""

    common: int
    train: int
    validation: int
    test: int


@dataclass
class PendingMasks:
    """Masks a party keeps between asking the coordinator and unmasking."""

    masks: list[int]
    scale_bits: int
    rows: int


class FeatureParty:
    """A party with columns and its own weights (a host; the lender extends it)."""

    has_label = False
    #: Raw columns holding category codes (``fedcredit.protocol.binning.category_code``): the
    #: text columns of the data file and those its ``categorical`` key names. Set by whoever
    #: builds the party from a file (``fedcredit.node.runtime.make_party_node``).
    categorical: tuple[str, ...] = ()
    #: One-hot encode ``categorical`` at alignment (``fedcredit.protocol.encoding``): plain
    #: logistic regression. Off when a [binning] job bins the raw columns after alignment.
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
        settings: Any,
    ) -> None:
        self.name = name
        self.settings = settings
        self._ids = ids
        self._raw = np.asarray(features, dtype=np.float64)
        self.feature_names = list(feature_names)
        self.public_key: PublicKey | None = None
        self.data_hash = _hash_data(ids, self._raw)
        self._index: dict[str, int] = {}
        self.split: Split | None = None
        self.mean = np.zeros(self._raw.shape[1])
        self.std = np.ones(self._raw.shape[1])
        self._x_int = np.zeros((0, 0), dtype=np.int64)
        # An optional column encoder (binning): when set, the design matrix is its output
        # instead of the standardized raw columns.
        self.encoder: ColumnEncoder | None = None
        self.weights = np.zeros(self.n_weights)
        self.optimizer = make_optimizer(**_optimizer_args(settings))
        self.epoch = 0

    # -- alignment -----------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def n_columns(self) -> int:
        """Columns of the design matrix before any intercept."""
        return (
            len(self.encoder.feature_names) if self.encoder is not None else int(self._raw.shape[1])
        )

    @property
    def n_weights(self) -> int:
        return self.n_columns

    @property
    def raw(self) -> np.ndarray:
        """This party's raw columns in its own file order (never leaves the party)."""
        return self._raw

    @property
    def aligned_rows(self) -> np.ndarray:
        """Indices into the raw rows of the aligned customers, in the shared order."""
        return self._aligned_rows

    def set_encoder(self, encoder: ColumnEncoder | None) -> None:
        """Use ``encoder`` (e.g. one-hot bins) for the design matrix; resets weights and state."""
        self.encoder = encoder
        if encoder is not None:
            self.feature_names = list(encoder.feature_names)
        self.weights = np.zeros(self.n_weights)
        self.optimizer = make_optimizer(**_optimizer_args(self.settings))
        if self.split is not None:
            self._x_int = self._design(self._raw[self._aligned_rows])
            self._prepare_optimizer()

    def _prepare_optimizer(self) -> None:
        """Give a Newton optimizer the curvature bound of this party's own training columns."""
        if isinstance(self.optimizer, Newton) and self.split is not None:
            x = self._x_int[self.split.train].astype(np.float64) / float(1 << self.x_scale_bits)
            self.optimizer.set_curvature(
                curvature_bound(x, float(self.settings.l2), self._l2_mask())
            )

    @property
    def x_scale_bits(self) -> int:
        return int(self.settings.x_scale_bits)

    def align(self, common_ids: list[str]) -> AlignStats:
        """Keep the common customers in the shared order, split them and standardize.

        A party with categorical columns and no encoder then one-hot encodes them, fitted on
        its training rows (``one_hot_categories``; ``fedcredit.protocol.encoding``).
        """
        position = {cid: i for i, cid in enumerate(self._ids)}
        missing = [cid for cid in common_ids[:5] if cid not in position]
        if missing:
            raise ProtocolError(f"party {self.name!r}: aligned ids not in its data: {missing}")
        rows = np.array([position[cid] for cid in common_ids], dtype=np.int64)
        self._aligned_rows = rows
        self.split = split_rows(
            len(common_ids),
            test_fraction=float(self.settings.test_fraction),
            validation_fraction=float(self.settings.validation_fraction),
            seed=int(self.settings.seed),
        )
        raw = self._raw[rows]
        train = raw[self.split.train]
        self.mean = train.mean(axis=0) if len(train) else np.zeros(raw.shape[1])
        std = train.std(axis=0) if len(train) else np.ones(raw.shape[1])
        self.std = np.where(std > 0, std, 1.0)
        self._x_int = self._design(raw)
        self._prepare_optimizer()
        self._encode_categories()
        return AlignStats(
            common=len(common_ids),
            train=len(self.split.train),
            validation=len(self.split.validation),
            test=len(self.split.test),
        )

    def _encode_categories(self) -> None:
        if self.encoder is None and self.categorical and self.one_hot_categories:
            # Imported here: fedcredit.protocol.encoding builds on this module.
            from fedcredit.protocol.encoding import fit_onehot

            self.set_encoder(fit_onehot(self))

    def _design(self, raw: np.ndarray) -> np.ndarray:
        """Standardized (or encoded), clipped, fixed-point columns (the lender adds the intercept)."""
        if self.encoder is not None:
            return quantize(np.clip(self.encoder.transform(raw), -CLIP, CLIP), self.x_scale_bits)
        z = np.clip((raw - self.mean) / self.std, -CLIP, CLIP)
        return quantize(z, self.x_scale_bits)

    def design_for(self, raw: np.ndarray) -> np.ndarray:
        """The fixed-point design matrix for new rows (scoring)."""
        return self._design(np.asarray(raw, dtype=np.float64))

    def rows_of(self, phase: str, epoch: int, batch: int) -> np.ndarray:
        """Indices into the aligned rows for a step; identical at every party."""
        split = self._require_split()
        if phase == "train":
            return batch_rows(
                split.train, int(self.settings.batch_size), self.settings.seed, epoch, batch
            )
        if phase == "validation":
            return split.validation
        if phase == "test":
            return split.test
        raise ProtocolError(f"unknown phase {phase!r}")

    def batches_per_epoch(self) -> int:
        return batch_count(len(self._require_split().train), int(self.settings.batch_size))

    def _require_split(self) -> Split:
        if self.split is None:
            raise ProtocolError(f"party {self.name!r} has not aligned ids yet")
        return self.split

    def _require_key(self) -> PublicKey:
        if self.public_key is None:
            raise ProtocolError(f"party {self.name!r} has no public key for this job")
        return self.public_key

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
        # Imported here: fedcredit.protocol.encoding builds on this module.
        from fedcredit.protocol.binning import BinEncoder
        from fedcredit.protocol.encoding import encoder_from_dict

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
            # Imported here: fedcredit.protocol.encoding builds on this module.
            from fedcredit.protocol.encoding import encoder_from_dict

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
    def rows_for_ids(self, ids: list[str]) -> tuple[np.ndarray, list[int]]:
        """Fixed-point rows for the ids this party holds, and the positions it lacks."""
        if not self._index:
            self._index = {cid: i for i, cid in enumerate(self._ids)}
        found = [self._index.get(cid, -1) for cid in ids]
        missing = [i for i, r in enumerate(found) if r < 0]
        rows = np.array([r if r >= 0 else 0 for r in found], dtype=np.int64)
        return self.design_for(self._raw[rows]), missing

    def partial_for_ids(
        self, ids: list[str], unknown: Callable[[list[str]], np.ndarray] | None = None
    ) -> tuple[EncryptedVector, list[int]]:
        """Encrypted partial scores for applicants, rounded to ``release_bits``, and the
        positions of the ids this party lacks, which get ``unknown``'s answers (else zero)."""
        x, missing = self.rows_for_ids(ids)
        u = self.linear(x)
        u[missing] = unknown([ids[i] for i in missing]) if unknown and missing else 0.0
        u = round_partial(u, self.release_bits)
        return encrypt_vector(self._require_key(), u, Z_SCALE_BITS), missing


def _optimizer_args(settings: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": str(settings.optimizer),
        "lr": float(settings.learning_rate),
        "decay": float(settings.decay),
    }
    if args["name"] == "sgd":
        args["momentum"] = float(settings.momentum)
    return args


def _hash_data(ids: list[str], values: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(ids).encode())
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()[:32]


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a crash leaves the old file."""
    write_text_atomic(path, json.dumps(payload))


def write_text_atomic(path: Path, text: str) -> None:
    """Write text through a temporary file and a rename, so a crash leaves the old file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        # When the folder itself is gone or unwritable, nothing was left in it.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


__all__ = [
    "PHASES",
    "Z_BOUND_BITS",
    "AlignStats",
    "FeatureParty",
    "PendingMasks",
    "write_json_atomic",
    "write_text_atomic",
]
