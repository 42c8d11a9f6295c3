"""The logistic family's settings: the ``[train]`` table of the federation file.

One frozen dataclass for the federated training and for its plaintext reference
(``fedcredit.model.logistic.fit_plain``, which reads the same fields). ``config/sections.py``
parses the ``[train]`` table into it, with errors naming the file and the key; constructing it
directly checks the values too (``ConfigError``), so a test or a benchmark cannot train with
settings the federation file would refuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from fedcredit.errors import ConfigError
from fedcredit.model.optim import AnyOptimizer, make_optimizer

OPTIMIZERS: Final = ("newton", "adam", "sgd")
#: The learning rate each optimizer uses when the federation file names none.
DEFAULT_LR: Final = {"newton": 1.0, "adam": 0.15, "sgd": 0.15}
SIGMOIDS: Final = ("local", "taylor")


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of the (federated or plaintext) training.

    ``batch_size <= 0`` means one batch of all rows (the plaintext reference only: the
    federation file requires a positive batch). ``momentum`` is used by ``"sgd"`` only.
    ``decay`` gives ``lr_e = learning_rate / (1 + decay * epoch)``.
    """

    epochs: int = 10
    batch_size: int = 4096
    # None: the optimizer's own default (DEFAULT_LR: newton 1.0, adam and sgd 0.15).
    learning_rate: float | None = None
    l2: float = 0.01
    test_fraction: float = 0.25
    validation_fraction: float = 0.0
    optimizer: str = "newton"  # per-party Newton steps with the logistic curvature bound
    momentum: float = 0.9
    decay: float = 0.0
    tol: float = 1e-4
    early_stopping_rounds: int = 3  # 0 disables early stopping
    seed: int = 7
    x_scale_bits: int = 8  # measured: no AUC loss at 8 bits (benchmarks/precision.py)
    sigmoid: str = "local"  # "local" (expansion at the lender's own score) or "taylor" (FATE)
    threshold: float = 0.5  # probability of default above which evaluation counts a "bad"

    def __post_init__(self) -> None:
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", DEFAULT_LR.get(self.optimizer, 0.15))
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.early_stopping_rounds < 0:
            raise ConfigError("early_stopping_rounds must be >= 0 (0 turns it off)")
        if not math.isfinite(self.tol) or self.tol < 0.0:
            raise ConfigError(f"tol must be >= 0, got {self.tol}")
        if not math.isfinite(self.l2) or self.l2 < 0.0:
            raise ConfigError(f"l2 must be >= 0, got {self.l2}")
        # Building one optimizer validates learning_rate, momentum and decay.
        self.make_optimizer()

    def optimizer_args(self) -> dict[str, Any]:
        """``make_optimizer``'s arguments for one party's weights, as these settings ask."""
        args: dict[str, Any] = {
            "name": str(self.optimizer),
            "lr": float(self.learning_rate or 0.0),
            "decay": float(self.decay),
        }
        if args["name"] == "sgd":
            args["momentum"] = float(self.momentum)
        return args

    def make_optimizer(self) -> AnyOptimizer:
        """A fresh optimizer for one party's weights, as these settings ask."""
        return make_optimizer(**self.optimizer_args())


def reference_settings(**changes: Any) -> TrainSettings:
    """Settings for the plaintext reference ``fit_plain``: Adam unless ``changes`` names sgd.

    The reference has no Newton step (its curvature bound is built per party, in the
    federation), so its default optimizer is Adam; every other default is the federation's.
    """
    return TrainSettings(**{"optimizer": "adam", **changes})
