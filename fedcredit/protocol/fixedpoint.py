"""Fixed-point conventions of the training protocol: one scale per message, never per value.

phe's default encoding picks an exponent per value that travels in clear and leaks the size of
each value (and through it, labels). Here every vector has one scale, fixed by the protocol:
partial scores and residuals at ``Z_SCALE_BITS``, feature columns at the job's ``x_scale_bits``.
"""

from __future__ import annotations

import math

import numpy as np

from fedcredit.protocol.split import batch_count

# Partial scores z and residuals 4d carry 20 fractional bits (error below 1e-6).
Z_SCALE_BITS = 20
# Scores are bounded: |z| < 2**Z_BOUND_BITS (a logistic model far past that has diverged).
Z_BOUND_BITS = 12
# The slope sigma'(u) of the "local" sigmoid approximation carries 24 fractional bits.
SLOPE_SCALE_BITS = 24
SIGMOIDS = ("local", "taylor")
# Standardized feature values are clipped to +-CLIP before quantization.
CLIP = 8.0


def quantize(values: np.ndarray, scale_bits: int) -> np.ndarray:
    """Round standardized values to signed fixed-point integers (int64)."""
    return np.rint(np.asarray(values, dtype=np.float64) * float(1 << scale_bits)).astype(np.int64)


def residual_scale_bits(sigmoid: str) -> int:
    """The fixed scale of the residual vector [[4d]] for a sigmoid approximation."""
    return Z_SCALE_BITS + (SLOPE_SCALE_BITS if sigmoid == "local" else 0)


def gradient_value_bits(rows: int, max_abs_x: int, residual_scale: int) -> int:
    """A bound, in bits, on |X_int.T @ 4d| for a batch: rows * max|x| * |4d|."""
    row_bits = max(1, math.ceil(math.log2(max(rows, 2))))
    return row_bits + max(1, int(max_abs_x).bit_length()) + residual_scale + Z_BOUND_BITS + 2


def clip_bound(x_scale_bits: int) -> int:
    """The largest |x| of a design column in fixed point: every column is clipped to ±CLIP."""
    return int(CLIP) << x_scale_bits


def largest_batch(train_rows: int, batch_size: int) -> int:
    """The rows of an epoch's largest mini-batch (the last one takes the remainder)."""
    return train_rows - (batch_count(train_rows, batch_size) - 1) * batch_size


def job_gradient_value_bits(
    train_rows: int, batch_size: int, x_scale_bits: int, sigmoid: str
) -> int:
    """The ``value_bits`` of every gradient request of a job, from its settings alone.

    A protocol constant, the same for every party, batch and epoch: sized from the clip bound
    and the largest batch, never from the data. A width taken from a batch's own largest |x|
    told the coordinator which batches held a clipped row (security review F13).
    """
    rows = largest_batch(train_rows, batch_size)
    return gradient_value_bits(rows, clip_bound(x_scale_bits), residual_scale_bits(sigmoid))


def score_value_bits() -> int:
    """A bound, in bits, on a fixed-point score z."""
    return Z_SCALE_BITS + Z_BOUND_BITS + 1


def loss_value_bits(rows: int) -> int:
    """A bound, in bits, on the secure loss's one masked scalar ``Σ (2 r + 4·2^20 y') z``.

    Each score mask ``r`` is below ``2**(score_value_bits() + 41)``, each ``|z|`` below
    ``2**score_value_bits()``; the sum runs over ``rows`` rows.
    """
    return score_value_bits() * 2 + 44 + max(1, rows).bit_length()
