"""Plaintext reference of the federated training: Taylor-approximated logistic regression.

This is exactly what the federation computes, without encryption, so tests can compare
federated weights with it and the lender can train on its own columns as a baseline.

Conventions shared with ``fedcredit.protocol`` (every party must follow them):

- Rows are the aligned intersection, in the same order at every party.
- Weights start at zero. The lender's weight vector is ``[its columns..., intercept]``;
  hosts have no intercept. ``FitResult.weights`` is ``[coef..., intercept]`` over the
  columns of ``X`` in order.
- The logistic loss is replaced by its second-order Taylor expansion at ``z = 0``
  (FATE's choice, so the gradient is linear in ``z`` and works under Paillier)::

      sigma(z) ~ 0.5 + z / 4,   d = 0.25 z + 0.5 - y,   gradient = X.T d / B
      loss(z, y) ~ log 2 - 0.5 y' z + z^2 / 8   with y' = 2 y - 1

- L2 adds ``l2 * w`` to every gradient except the intercept's (``l2_gradient``).
- Mini-batches come from ``batch_indices(n, batch_size, seed, epoch)``; the validation
  rows (when ``validation_fraction > 0``) from ``validation_split(n, fraction, seed)``.
  Both draw the same permutations as ``fedcredit.protocol.split`` (``batch_rows`` and
  ``split_rows`` with no test part), so ``fit_plain`` reproduces a federated run.
- The epoch's train loss is the Taylor loss of its last batch, evaluated with the weights
  that batch was trained from, without the L2 term (the lender cannot see the partners'
  weights); this is the figure the federation's driver records. Training stops when two
  successive epoch losses differ by less than ``tol``.
- Early stopping (when there is a validation set and ``early_stopping_rounds > 0``):
  after each epoch the Taylor loss of the validation rows is computed; after that many
  epochs without a loss lower than the best by more than 1e-12, training stops. As in
  the federation, the last epoch's weights are returned (``best_epoch`` says which epoch
  had the lowest validation loss).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fedcredit.errors import ConfigError, DataError
from fedcredit.model.optim import AnyOptimizer, l2_gradient

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LOG2 = math.log(2.0)


class PlainSettings(Protocol):
    """What ``fit_plain`` reads from the training settings.

    The one dataclass is ``fedcredit.protocol.logistic.settings.TrainSettings``
    (``reference_settings()`` gives its plaintext defaults); this layer only names the
    fields it uses. ``batch_size <= 0`` means one batch of all rows.
    """

    @property
    def epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def l2(self) -> float: ...
    @property
    def optimizer(self) -> str: ...
    @property
    def tol(self) -> float: ...
    @property
    def early_stopping_rounds(self) -> int: ...
    @property
    def validation_fraction(self) -> float: ...
    @property
    def seed(self) -> int: ...
    def make_optimizer(self) -> AnyOptimizer: ...


@dataclass(frozen=True)
class FitResult:
    """Weights and history of a training run.

    ``loss_history`` holds each epoch's last-batch Taylor loss (what the federation
    records and tests against ``tol``), ``mean_loss_history`` the mean over the epoch's
    batches, ``validation_loss`` the Taylor loss of the validation rows after each epoch.
    """

    coef: FloatArray
    intercept: float
    loss_history: list[float] = field(default_factory=list)
    mean_loss_history: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int = 0
    converged: bool = False
    stopped_early: bool = False

    @property
    def weights(self) -> FloatArray:
        """``[coef..., intercept]``."""
        weights: FloatArray = np.r_[self.coef, self.intercept].astype(np.float64)
        return weights

    def decision_function(self, x: npt.ArrayLike) -> FloatArray:
        """The logit ``z = X coef + intercept``."""
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept

    def predict_proba(self, x: npt.ArrayLike) -> FloatArray:
        """Probability of default, ``sigmoid(z)`` (the exact sigmoid, not the Taylor line)."""
        return sigmoid(self.decision_function(x))


def sigmoid(z: npt.ArrayLike) -> FloatArray:
    """The logistic function, computed without overflow for large ``|z|``."""
    z_arr = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z_arr)
    positive = z_arr >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z_arr[positive]))
    exp_z = np.exp(z_arr[~positive])
    out[~positive] = exp_z / (1.0 + exp_z)
    return out


def taylor_residual(z: FloatArray, y: npt.ArrayLike) -> FloatArray:
    """``d = 0.25 z + 0.5 - y``: the Taylor stand-in for ``sigmoid(z) - y``."""
    return 0.25 * z + 0.5 - np.asarray(y, dtype=np.float64)


def taylor_loss(z: FloatArray, y: npt.ArrayLike) -> float:
    """Mean Taylor loss ``log 2 - 0.5 y' z + z^2 / 8`` with ``y' = 2 y - 1``."""
    y_signed = 2.0 * np.asarray(y, dtype=np.float64) - 1.0
    return taylor_loss_from_sums(z.size, float(y_signed @ z), float(z @ z))


def taylor_loss_from_sums(rows: int, sum_signed_z: float, sum_z2: float) -> float:
    """Mean Taylor loss from the two sums the lender recovers in the federation.

    ``sum_signed_z`` is ``sum y' z`` and ``sum_z2`` is ``sum z^2`` over ``rows`` rows.
    """
    if rows <= 0:
        raise DataError("the Taylor loss needs at least one row")
    return LOG2 - 0.5 * sum_signed_z / rows + sum_z2 / (8.0 * rows)


def taylor_gradient(x: FloatArray, residual: FloatArray) -> FloatArray:
    """``X.T d / B`` for one batch (no L2, no intercept)."""
    return np.asarray(x.T @ residual / residual.size, dtype=np.float64)


# Stream tags shared with fedcredit.protocol.split: changing them breaks reproducibility.
_BATCH_STREAM = 0xBA7C
_SPLIT_STREAM = 0x5EED


def batch_indices(n: int, batch_size: int, seed: int, epoch: int) -> list[IntArray]:
    """The mini-batches of one epoch: positions ``0..n-1`` (into the training rows).

    The order is ``np.random.default_rng([seed, epoch, 0xBA7C]).permutation(n)``, cut into
    ``max(1, n // batch_size)`` batches of ``batch_size`` positions; the remainder joins
    the last batch, so no batch is ever smaller than ``batch_size`` (a tiny batch would
    let a party solve for per-row residuals from its gradient). Each batch is sorted.
    ``batch_size <= 0`` means one batch of all positions. Every party calls this with the
    same arguments and gets the same batches, without exchanging a message; all parties
    must run a NumPy whose ``Generator.permutation`` draws the same stream (it has been
    unchanged since NumPy 1.17, but NEP 19 does not promise it).
    """
    if n <= 0:
        raise DataError("no rows to split into batches")
    if seed < 0 or epoch < 0:
        raise ConfigError(f"seed and epoch must be >= 0, got {seed} and {epoch}")
    order = np.random.default_rng([seed, epoch, _BATCH_STREAM]).permutation(n)
    if batch_size <= 0:
        return [np.sort(order).astype(np.int64)]
    count = max(1, n // batch_size)
    bounds = [b * batch_size for b in range(count)] + [n]
    return [np.sort(order[lo:hi]).astype(np.int64) for lo, hi in itertools.pairwise(bounds)]


def validation_split(n: int, fraction: float, seed: int) -> tuple[IntArray, IntArray]:
    """``(train_rows, validation_rows)``: a seeded split every party computes alike.

    ``round(n * fraction)`` rows, the first ones of
    ``np.random.default_rng([seed, 0x5EED]).permutation(n)``, go to validation (the same
    rows as ``fedcredit.protocol.split.split_rows`` with no test part); both arrays are
    sorted. The split does not look at labels (hosts have none), so it is not stratified.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    n_val = round(n * fraction)
    if n_val == 0:
        return np.arange(n, dtype=np.int64), np.empty(0, dtype=np.int64)
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    return np.sort(order[n_val:]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)


def _check_xy(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x_arr = np.asarray(x, dtype=np.float64)
    y_arr = np.asarray(y, dtype=np.float64)
    if x_arr.ndim != 2:
        raise DataError(f"X must be 2-D (rows, columns), got shape {x_arr.shape}")
    if y_arr.ndim != 1 or y_arr.shape[0] != x_arr.shape[0]:
        raise DataError(f"y must be 1-D with one label per row of X, got {y_arr.shape}")
    if not np.all(np.isfinite(x_arr)):
        raise DataError("X contains NaN or infinity; impute or bin it first")
    if not np.all((y_arr == 0.0) | (y_arr == 1.0)):
        raise DataError("labels must be 0 or 1")
    return x_arr, y_arr


def _train_epoch(
    x: FloatArray,
    y: FloatArray,
    w: FloatArray,
    optimizer: AnyOptimizer,
    cfg: PlainSettings,
    epoch: int,
) -> tuple[FloatArray, float, float]:
    """One epoch over ``(x, y)``: new weights, last batch's loss and mean loss over the epoch."""
    optimizer.set_epoch(epoch)
    loss_sum = last_loss = 0.0
    for batch in batch_indices(x.shape[0], cfg.batch_size, cfg.seed, epoch):
        xb, yb = x[batch], y[batch]
        z = xb @ w[:-1] + w[-1]
        last_loss = taylor_loss(z, yb)
        loss_sum += last_loss * batch.size
        residual = taylor_residual(z, yb)
        gradient = np.r_[taylor_gradient(xb, residual), residual.mean()]
        gradient += l2_gradient(w, cfg.l2, mask_intercept=True)
        w = optimizer.step(w, gradient)
    return w, last_loss, loss_sum / x.shape[0]


def _rows(
    n: int, cfg: PlainSettings, train_rows: IntArray | None, validation_rows: IntArray | None
) -> tuple[IntArray, IntArray]:
    if train_rows is None:
        if validation_rows is not None:
            raise ConfigError("validation_rows needs train_rows too")
        return validation_split(n, cfg.validation_fraction, cfg.seed)
    train = np.asarray(train_rows, dtype=np.int64)
    val = np.asarray([] if validation_rows is None else validation_rows, dtype=np.int64)
    for name, rows in (("train_rows", train), ("validation_rows", val)):
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
            raise DataError(f"{name} must be a 1-D array of row indices in 0..{n - 1}")
    if train.size == 0:
        raise DataError("train_rows is empty")
    return train, val


def fit_plain(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    config: PlainSettings | None = None,
    *,
    train_rows: npt.ArrayLike | None = None,
    validation_rows: npt.ArrayLike | None = None,
) -> FitResult:
    """Train the Taylor logistic regression in plaintext, as the federation does.

    ``X`` should already be standardized (or WOE/one-hot coded), rows in the aligned
    order. Without ``train_rows`` the rows are split by ``validation_split``; pass
    ``train_rows`` and ``validation_rows`` (for example ``split_rows(...).train`` and
    ``.validation``) to reproduce a federated run with a test part. Returns the weights
    after the last epoch run.
    """
    x_arr, y_arr = _check_xy(x, y)
    if config is None:
        raise ConfigError(
            "fit_plain needs its training settings: "
            "fedcredit.protocol.logistic.settings.reference_settings()"
        )
    cfg = config
    if cfg.optimizer not in ("adam", "sgd"):
        raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")
    train, val = _rows(
        x_arr.shape[0],
        cfg,
        None if train_rows is None else np.asarray(train_rows),
        None if validation_rows is None else np.asarray(validation_rows),
    )
    x_train, y_train = x_arr[train], y_arr[train]
    optimizer = cfg.make_optimizer()
    w = np.zeros(x_arr.shape[1] + 1, dtype=np.float64)
    losses: list[float] = []
    mean_losses: list[float] = []
    val_losses: list[float] = []
    best, best_epoch, stale = math.inf, 0, 0
    converged = stopped_early = False
    for epoch in range(cfg.epochs):
        w, last_loss, mean_loss = _train_epoch(x_train, y_train, w, optimizer, cfg, epoch)
        losses.append(last_loss)
        mean_losses.append(mean_loss)
        converged = len(losses) > 1 and abs(losses[-2] - losses[-1]) < cfg.tol
        if val.size:
            val_losses.append(taylor_loss(x_arr[val] @ w[:-1] + w[-1], y_arr[val]))
            if val_losses[-1] < best - 1e-12:
                best, best_epoch, stale = val_losses[-1], epoch, 0
            else:
                stale += 1
            stopped_early = bool(cfg.early_stopping_rounds) and stale >= cfg.early_stopping_rounds
        if converged or stopped_early:
            break
    return FitResult(
        coef=w[:-1].copy(),
        intercept=float(w[-1]),
        loss_history=losses,
        mean_loss_history=mean_losses,
        validation_loss=val_losses,
        epochs_run=len(losses),
        best_epoch=best_epoch if val.size else len(losses) - 1,
        converged=converged,
        stopped_early=stopped_early,
    )
