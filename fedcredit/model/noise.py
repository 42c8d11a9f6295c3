"""Exact two-sided geometric (discrete Laplace) noise, sampled with integers only.

``P(k) = (1 - a) / (1 + a) * a**|k|`` with ``a = exp(-epsilon / sensitivity)``, for every
integer ``k``. The sampler follows Canonne, Kamath and Steinke, "The Discrete Gaussian for
Differential Privacy" (NeurIPS 2020), Algorithms 1 and 2: Bernoulli trials of ``exp(-gamma)``
for a rational ``gamma``, built from uniform integer draws, so no floating-point logarithm or
rounding shapes the distribution (textbook ``log(1 - U)`` samplers leave gaps and a biased
tail, Mironov, CCS 2012). ``epsilon`` is taken as the exact rational value of the float given.

Draws come from ``rng`` through ``randrange`` only (default ``secrets.SystemRandom()``, the
operating system's generator, fresh for every call); a seeded ``random.Random`` makes tests
deterministic.
"""

from __future__ import annotations

import math
import random
import secrets
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from fedcredit.errors import ConfigError

IntArray = npt.NDArray[np.int64]


def _bernoulli(numerator: int, denominator: int, rng: random.Random) -> bool:
    """True with probability ``numerator / denominator`` (0 <= it <= 1)."""
    return rng.randrange(denominator) < numerator


def _bernoulli_exp_unit(numerator: int, denominator: int, rng: random.Random) -> bool:
    """True with probability ``exp(-gamma)``, ``gamma = numerator / denominator`` in [0, 1]."""
    k = 1
    while _bernoulli(numerator, denominator * k, rng):
        k += 1
    return k % 2 == 1


def _bernoulli_exp(numerator: int, denominator: int, rng: random.Random) -> bool:
    """True with probability ``exp(-gamma)`` for any rational ``gamma >= 0``."""
    whole, rest = divmod(numerator, denominator)
    for _ in range(whole):
        if not _bernoulli_exp_unit(1, 1, rng):
            return False
    return _bernoulli_exp_unit(rest, denominator, rng)


def _discrete_laplace(s: int, t: int, rng: random.Random) -> int:
    """One draw with ``P(k)`` proportional to ``exp(-|k| s / t)`` (s, t >= 1)."""
    while True:
        u = rng.randrange(t)
        if not _bernoulli_exp(u, t, rng):
            continue
        v = 0
        while _bernoulli_exp(1, 1, rng):
            v += 1
        # u + t v is geometric with P(x) ~ exp(-x / t), so its quotient by s has ratio
        # exp(-s / t); a random sign, rejecting "-0", makes it two-sided.
        magnitude = (u + t * v) // s
        negative = rng.randrange(2) == 1
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude


def two_sided_geometric(
    size: int,
    epsilon: float,
    sensitivity: int,
    rng: random.Random | None = None,
    *,
    clip: int = 1 << 62,
) -> IntArray:
    """``size`` independent draws with ``P(k)`` proportional to ``exp(-epsilon |k| / sensitivity)``.

    Adding one draw to a count of L1 sensitivity ``sensitivity`` is epsilon-differentially
    private. A draw beyond ``±clip`` is clipped (probability below
    ``exp(-epsilon clip / sensitivity)``). ConfigError when ``epsilon`` is not a positive finite
    number.
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"noise epsilon must be a positive number, got {epsilon}")
    if sensitivity < 1:
        raise ConfigError(f"noise sensitivity must be a positive integer, got {sensitivity}")
    ratio = Fraction(epsilon) / sensitivity  # exact: a float is a binary fraction
    source = rng if rng is not None else secrets.SystemRandom()
    draws = [
        max(-clip, min(clip, _discrete_laplace(ratio.numerator, ratio.denominator, source)))
        for _ in range(size)
    ]
    return np.array(draws, dtype=np.int64)


def two_sided_geometric_pmf(k: npt.ArrayLike, epsilon: float, sensitivity: int) -> np.ndarray:
    """The exact probabilities of ``two_sided_geometric`` (in floating point, for checks)."""
    a = math.exp(-epsilon / sensitivity)
    return np.asarray((1 - a) / (1 + a) * a ** np.abs(np.asarray(k, dtype=np.float64)))
