"""Per-party optimizers on numpy weight vectors, with JSON-ready state.

In the federation every party updates only its own weights with its own optimizer.
Both optimizers here act elementwise, so a party's optimizer over its slice of the
weights gives exactly the same numbers as one optimizer over all weights: this is
why the plaintext reference (``fit_plain``) matches the federated training.

Learning rate at epoch ``e`` (0-based)::

    lr_e = lr / (1 + decay * e) * gamma ** (e // step_size)   # step part only if step_size > 0

The caller sets the epoch with ``set_epoch`` at the start of every epoch.
``state_dict()`` returns plain lists, floats, ints and strings (``json.dumps`` works on
it); ``load_state_dict`` restores it and raises ``ConfigError`` when it does not fit.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fedcredit.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


class Optimizer(Protocol):
    """What a training loop needs from an optimizer."""

    name: str

    def set_epoch(self, epoch: int) -> None:
        """Select the learning rate of ``epoch`` (0-based)."""

    @property
    def current_lr(self) -> float:
        """The learning rate used by the next ``step``."""

    def step(self, weights: FloatArray, gradient: FloatArray) -> FloatArray:
        """Return the updated weights (a new array; the input is left untouched)."""

    def state_dict(self) -> dict[str, Any]:
        """The whole state as JSON-ready values."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from ``state_dict``."""


def _positive(name: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0.0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _in_range(name: str, value: float, low: float, high: float) -> float:
    if not math.isfinite(value) or not low <= value < high:
        raise ConfigError(f"{name} must be in [{low}, {high}), got {value!r}")
    return float(value)


class _Schedule:
    """Learning-rate decay shared by both optimizers."""

    def __init__(self, lr: float, decay: float, step_size: int, gamma: float) -> None:
        self.lr = _positive("learning rate", lr)
        if not math.isfinite(decay) or decay < 0.0:
            raise ConfigError(f"decay must be >= 0, got {decay!r}")
        if step_size < 0:
            raise ConfigError(f"step_size must be >= 0 (0 turns step decay off), got {step_size}")
        self.decay = float(decay)
        self.step_size = int(step_size)
        self.gamma = _positive("gamma", gamma)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    @property
    def current_lr(self) -> float:
        lr = self.lr / (1.0 + self.decay * self.epoch)
        if self.step_size > 0:
            lr *= self.gamma ** (self.epoch // self.step_size)
        return lr

    def _schedule_state(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "decay": self.decay,
            "step_size": self.step_size,
            "gamma": self.gamma,
            "epoch": self.epoch,
        }

    def _load_schedule(self, state: dict[str, Any]) -> None:
        _Schedule.__init__(
            self,
            float(state["lr"]),
            float(state["decay"]),
            int(state["step_size"]),
            float(state["gamma"]),
        )
        self.set_epoch(int(state["epoch"]))


def _vector(state: dict[str, Any], key: str) -> FloatArray | None:
    value = state.get(key)
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ConfigError(f"optimizer state {key!r} must be a list of finite numbers")
    return array


def _check_shapes(weights: FloatArray, gradient: FloatArray) -> None:
    if weights.shape != gradient.shape or weights.ndim != 1:
        raise ConfigError(
            f"weights and gradient must be 1-D of the same length, "
            f"got {weights.shape} and {gradient.shape}"
        )


class SGD(_Schedule):
    """Gradient descent with heavy-ball momentum: ``v = momentum * v + g; w -= lr_e * v``."""

    name = "sgd"

    def __init__(
        self,
        lr: float = 0.15,
        momentum: float = 0.0,
        decay: float = 0.0,
        step_size: int = 0,
        gamma: float = 0.5,
    ) -> None:
        super().__init__(lr, decay, step_size, gamma)
        self.momentum = _in_range("momentum", momentum, 0.0, 1.0)
        self.velocity: FloatArray | None = None

    def step(self, weights: FloatArray, gradient: FloatArray) -> FloatArray:
        _check_shapes(weights, gradient)
        if self.velocity is None or self.velocity.shape != gradient.shape:
            self.velocity = np.zeros_like(gradient, dtype=np.float64)
        self.velocity = self.momentum * self.velocity + gradient
        return weights - self.current_lr * self.velocity

    def state_dict(self) -> dict[str, Any]:
        velocity = None if self.velocity is None else self.velocity.tolist()
        return {
            "name": self.name,
            **self._schedule_state(),
            "momentum": self.momentum,
            "velocity": velocity,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_name(state, self.name)
        try:
            self._load_schedule(state)
            self.momentum = _in_range("momentum", float(state["momentum"]), 0.0, 1.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"optimizer state for sgd is incomplete: {exc}") from exc
        self.velocity = _vector(state, "velocity")


class Adam(_Schedule):
    """Adam with bias correction (Kingma and Ba, 2015), elementwise per weight."""

    name = "adam"

    def __init__(
        self,
        lr: float = 0.15,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        decay: float = 0.0,
        step_size: int = 0,
        gamma: float = 0.5,
    ) -> None:
        super().__init__(lr, decay, step_size, gamma)
        self.beta1 = _in_range("beta1", beta1, 0.0, 1.0)
        self.beta2 = _in_range("beta2", beta2, 0.0, 1.0)
        self.eps = _positive("eps", eps)
        self.t = 0
        self.m: FloatArray | None = None
        self.v: FloatArray | None = None

    def step(self, weights: FloatArray, gradient: FloatArray) -> FloatArray:
        _check_shapes(weights, gradient)
        if self.m is None or self.v is None or self.m.shape != gradient.shape:
            self.m = np.zeros_like(gradient, dtype=np.float64)
            self.v = np.zeros_like(gradient, dtype=np.float64)
            self.t = 0
        self.t += 1
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * gradient
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * gradient * gradient
        m_hat = self.m / (1.0 - self.beta1**self.t)
        v_hat = self.v / (1.0 - self.beta2**self.t)
        return weights - self.current_lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self._schedule_state(),
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "t": self.t,
            "m": None if self.m is None else self.m.tolist(),
            "v": None if self.v is None else self.v.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_name(state, self.name)
        try:
            self._load_schedule(state)
            self.beta1 = _in_range("beta1", float(state["beta1"]), 0.0, 1.0)
            self.beta2 = _in_range("beta2", float(state["beta2"]), 0.0, 1.0)
            self.eps = _positive("eps", float(state["eps"]))
            self.t = int(state["t"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"optimizer state for adam is incomplete: {exc}") from exc
        self.m = _vector(state, "m")
        self.v = _vector(state, "v")
        if (self.m is None) != (self.v is None) or (
            self.m is not None and self.v is not None and self.m.shape != self.v.shape
        ):
            raise ConfigError("optimizer state for adam has mismatched moment vectors m and v")


class Newton(_Schedule):
    """Block Newton with the logistic curvature bound: ``w -= lr_e * M^-1 g``.

    ``M = X'X / (4 n) + l2 * P`` is built by the party from its own training columns alone
    (``set_curvature``): the logistic loss has Hessian ``X' diag(p (1 - p)) X / n``, and
    ``p (1 - p) <= 1/4`` (Boehning and Lindsay, 1988), so ``M`` bounds the curvature of the
    party's own block. Each party preconditions only its own gradient, so nothing about its
    data leaves it and the messages are those of gradient descent. The step is invariant to
    rescaling a party's columns, which is what keeps heavy-tailed columns from blowing up the
    way a fixed learning rate does (Adam's step is ``lr`` per weight, whatever the column's
    spread). With one party and the full batch, ``lr = 1`` can never raise the loss; across
    ``k`` parties the bound holds for ``lr = 1/k`` and in practice ``lr = 1`` converges
    (``benchmarks/quality.py``), the kept model being chosen on validation rows.
    """

    name = "newton"

    def __init__(
        self,
        lr: float = 1.0,
        decay: float = 0.0,
        step_size: int = 0,
        gamma: float = 0.5,
    ) -> None:
        super().__init__(lr, decay, step_size, gamma)
        self.inverse: FloatArray | None = None

    def set_curvature(self, matrix: npt.ArrayLike) -> None:
        """Use the symmetric positive semi-definite ``matrix`` as the curvature bound."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.all(np.isfinite(m)):
            raise ConfigError(f"curvature must be a finite square matrix, got shape {m.shape}")
        # A column that is constant on the training rows has no curvature of its own; the
        # pseudo-inverse leaves its weight where the penalty puts it instead of dividing by 0.
        self.inverse = np.asarray(np.linalg.pinv((m + m.T) / 2.0, hermitian=True), np.float64)

    def step(self, weights: FloatArray, gradient: FloatArray) -> FloatArray:
        _check_shapes(weights, gradient)
        if self.inverse is None or self.inverse.shape[0] != gradient.shape[0]:
            raise ConfigError("the newton optimizer needs the party's curvature first")
        return weights - self.current_lr * (self.inverse @ gradient)

    def state_dict(self) -> dict[str, Any]:
        # The curvature is rebuilt from the party's data; only the schedule is state.
        return {"name": self.name, **self._schedule_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_name(state, self.name)
        try:
            self._load_schedule(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"optimizer state for newton is incomplete: {exc}") from exc


def curvature_bound(x: npt.ArrayLike, l2: float, penalized: npt.ArrayLike) -> FloatArray:
    """``X'X / (4 n) + l2 * diag(penalized)``: the curvature bound ``Newton`` steps with."""
    data = np.asarray(x, dtype=np.float64)
    rows = max(1, data.shape[0])
    bound: FloatArray = data.T @ data / (4.0 * rows)
    bound += float(l2) * np.diag(np.asarray(penalized, dtype=np.float64))
    return bound


def _check_name(state: dict[str, Any], expected: str) -> None:
    if not isinstance(state, dict) or state.get("name") != expected:
        found = state.get("name") if isinstance(state, dict) else type(state).__name__
        raise ConfigError(f"optimizer state is for {found!r}, not {expected!r}")


AnyOptimizer = SGD | Adam | Newton
OPTIMIZERS: dict[str, type[SGD] | type[Adam] | type[Newton]] = {
    "sgd": SGD,
    "adam": Adam,
    "newton": Newton,
}


def make_optimizer(name: str, **kwargs: Any) -> AnyOptimizer:
    """Build an optimizer by name (``"sgd"``, ``"adam"`` or ``"newton"``) with its keyword arguments.

    Raises ``ConfigError`` for an unknown name or an argument the optimizer does not take.
    """
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for optimizer {name!r}: {exc}") from exc


def optimizer_from_state(state: dict[str, Any]) -> AnyOptimizer:
    """Rebuild an optimizer from a ``state_dict`` (for example read back from a checkpoint)."""
    if not isinstance(state, dict) or not isinstance(state.get("name"), str):
        raise ConfigError("optimizer state must be a dict with a 'name'")
    optimizer = make_optimizer(state["name"])
    optimizer.load_state_dict(state)
    return optimizer


def l2_gradient(weights: FloatArray, l2: float, mask_intercept: bool = False) -> FloatArray:
    """Gradient of the penalty ``l2 / 2 * ||w||^2``, that is ``l2 * w``.

    With ``mask_intercept`` the last weight is the intercept (the lender's convention)
    and is not penalized.
    """
    if not math.isfinite(l2) or l2 < 0.0:
        raise ConfigError(f"l2 must be >= 0, got {l2!r}")
    gradient = l2 * np.asarray(weights, dtype=np.float64)
    if mask_intercept and gradient.size > 0:
        gradient[-1] = 0.0
    return gradient
