"""The trees family's settings: the ``[trees]`` table of the federation file, with ``[train]``'s
``seed``, ``test_fraction``, ``validation_fraction`` and ``early_stopping_rounds``.

Constructing ``TreeSettings`` checks every value and raises ``ConfigError`` naming the key;
``from_table`` parses a raw TOML table (unknown keys refused by name, as everywhere) in the style
of ``fedcredit.config.sections``, without depending on the config layer above this one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fedcredit.errors import ConfigError
from fedcredit.model.trees import TreeParams

MODES: Final = ("mix", "joint")
#: Keys of ``[trees]`` (the others come from ``[train]``).
TABLE_KEYS: Final = (
    "trees", "depth", "learning_rate", "bins", "l2", "min_child_weight", "min_rows", "mode",
    "subsample", "gh_scale_bits",
)  # fmt: skip
#: Keys of ``[train]`` that apply to this family too.
TRAIN_KEYS: Final = ("seed", "test_fraction", "validation_fraction", "early_stopping_rounds")


@dataclass(frozen=True)
class TreeSettings:
    """Hyper-parameters of federated boosted trees (defaults: ``docs/TREES.md``).

    ``min_rows`` is the privacy floor: no bin of a partner's column and no child of a split
    offered to the lender holds fewer training rows. ``gh_scale_bits`` is the fixed-point scale
    of the encrypted gradients and hessians (one scale per message). ``mode = "mix"`` (each tree
    on one party's columns, round robin from the lender) is the default: measured in
    ``benchmarks/results/trees_local.json``, it matches ``"joint"``'s AUC within noise at a
    fraction of its cost.
    """

    trees: int = 30
    depth: int = 3
    learning_rate: float = 0.3
    bins: int = 32
    l2: float = 1.0
    min_child_weight: float = 1.0
    min_rows: int = 20
    mode: str = "mix"
    subsample: float = 1.0
    gh_scale_bits: int = 24
    seed: int = 7
    test_fraction: float = 0.25
    validation_fraction: float = 0.0
    early_stopping_rounds: int = 3
    #: Read by ``PartyColumns`` (the design matrix it builds is not used by this family).
    x_scale_bits: int = 8
    batch_size: int = 0

    def __post_init__(self) -> None:
        _integer("trees", self.trees, 1, 10_000)
        _integer("depth", self.depth, 1, 6)
        _number("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        _integer("bins", self.bins, 2, 256)
        _number("l2", self.l2, 0.0, None)
        _number("min_child_weight", self.min_child_weight, 0.0, None)
        _integer("min_rows", self.min_rows, 0, 1_000_000)
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        _number("subsample", self.subsample, 0.0, 1.0, low_open=True)
        _integer("gh_scale_bits", self.gh_scale_bits, 8, 40)
        _integer("seed", self.seed, 0, None)
        _number("test_fraction", self.test_fraction, 0.0, 1.0, high_open=True)
        _number("validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True)
        if self.test_fraction + self.validation_fraction >= 1.0:
            raise ConfigError(
                "validation_fraction: test_fraction + validation_fraction must be below 1"
            )
        _integer("early_stopping_rounds", self.early_stopping_rounds, 0, None)

    @property
    def params(self) -> TreeParams:
        """What one tree's growth needs (``fedcredit.model.trees``)."""
        return TreeParams(
            depth=self.depth,
            l2=self.l2,
            min_child_weight=self.min_child_weight,
            min_rows=self.min_rows,
            learning_rate=self.learning_rate,
            gh_scale_bits=self.gh_scale_bits,
        )


def _integer(key: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"{key} must be {bound}, got {value}")


def _number(
    key: str, value: Any, low: float, high: float | None, *, low_open: bool = False,
    high_open: bool = False,
) -> None:  # fmt: skip
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    below = value <= low if low_open else value < low
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(
            f"{key} must be in {left}{low}, {high if high is not None else 'inf'}{right}, got {value}"
        )


def from_table(table: Any, source: str, train: Mapping[str, Any] | None = None) -> TreeSettings:
    """``[trees]`` of the file ``source`` (plus the ``[train]`` keys that apply), checked; a
    ConfigError names the file, the table and the key."""
    where = f"{source}: [trees]"
    if table is None:
        table = {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(TABLE_KEYS)})")
    shared = {k: v for k, v in (train or {}).items() if k in TRAIN_KEYS}
    try:
        return TreeSettings(**shared, **dict(table))
    except ConfigError as exc:
        key = str(exc).split(" ", 1)[0].rstrip(":")
        table_name = "[train]" if key in TRAIN_KEYS else "[trees]"
        raise ConfigError(f"{source}: {table_name} {exc}") from exc


KEYS: Final = tuple(f.name for f in dataclasses.fields(TreeSettings))

__all__ = ["KEYS", "MODES", "TABLE_KEYS", "TRAIN_KEYS", "TreeSettings", "from_table"]
