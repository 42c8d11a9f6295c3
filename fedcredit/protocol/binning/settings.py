"""The binning phase's settings: the ``[binning]`` table of the federation file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

BINNING_METHODS: Final = ("quantile", "equal_width")


@dataclass(frozen=True)
class BinningSettings:
    method: str = "quantile"
    bins: int = 10
    min_bin_share: float = 0.05
    iv_threshold: float = 0.02
    # Per column and run, partners add geometric noise to their bin counts (BINNING.md); 0: off.
    noise_epsilon: float = 1.0
