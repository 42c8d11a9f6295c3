"""A party's own gradient must not isolate one row's residual (security review F10).

Every party learns its own gradient ``X_b' d / B`` in the clear. When its design columns single
out a row of a batch (a column that takes an unusual value on that row alone, or two columns
that differ only there), that one equation gives the row's residual ``d_t``: for the lender
``d_t`` holds the partners' partial score ``u_H,t`` (``4 d_t = s_t u_H,t + 4 (sigma(u_t) -
y_t)``, everything but ``u_H,t`` known to it); for a partner it holds the label. The lender
below is semi-honest: it runs the protocol as it is, with columns of its own choosing (one
indicator per target customer), and reads its own unmasked gradient.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from fedcredit.crypto import unmask
from fedcredit.errors import DataError
from fedcredit.protocol.fixedpoint import SLOPE_SCALE_BITS
from fedcredit.protocol.isolation import leverages
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty, PendingMasks
from fedcredit.protocol.logistic.settings import TrainSettings
from tests.support.keys import KeyPair

N = 600
TARGETS = 6  # customers the lender singles out with one indicator column each
SETTINGS = TrainSettings(batch_size=200, test_fraction=0.2, seed=3, x_scale_bits=16)


@pytest.fixture(scope="module")
def keys(keypair: KeyPair) -> KeyHolder:
    holder = KeyHolder(allow_small_keys=True)
    holder.use_keypair("test-job", *keypair)
    return holder


class RecordingLender(LabelParty):
    """The lender, unchanged, keeping a copy of its own unmasked gradient of each batch."""

    gradients: list[np.ndarray]

    def apply_gradient(self, slots: list[int], pending: PendingMasks, epoch: int) -> None:
        self.gradients.append(unmask(slots, pending.masks, pending.scale_bits))
        super().apply_gradient(slots, pending, epoch)


def parties(
    keys: KeyHolder, lender_columns: np.ndarray, host_columns: np.ndarray
) -> tuple[RecordingLender, FeatureParty]:
    rng = np.random.default_rng(5)
    ids = [f"C{i:04d}" for i in range(N)]
    y = (rng.random(N) < 0.3).astype(np.int8)
    names = [f"g{j}" for j in range(lender_columns.shape[1])]
    lender = RecordingLender("lender", ids, lender_columns, names, y, SETTINGS)
    lender.gradients = []
    host_names = [f"h{j}" for j in range(host_columns.shape[1])]
    host = FeatureParty("host", ids, host_columns, host_names, SETTINGS)
    for party in (lender, host):
        party.public_key = keys.public_key()
        party.align(ids)
        party.weights = rng.normal(0.0, 0.7, party.n_weights)
    return lender, host


def crafted_columns(targets: list[int]) -> np.ndarray:
    """Two ordinary columns, then one indicator column per target customer."""
    rng = np.random.default_rng(6)
    indicators = np.zeros((N, len(targets)))
    for k, row in enumerate(targets):
        indicators[row, k] = 1.0
    return np.hstack([rng.normal(size=(N, 2)), indicators])


def one_batch(
    lender: RecordingLender, host: FeatureParty, keys: KeyHolder, batch: int
) -> np.ndarray:
    """One training batch as the nodes run it; returns the lender's gradient (times 4B)."""
    partials = {host.name: host.partial("train", 0, batch)}
    z = lender.encrypted_scores("train", 0, batch, partials)
    residual = lender.residual(z, "train", 0, batch)
    for party in (lender, host):
        packed, pending = party.gradient_request(residual, 0, batch)
        party.apply_gradient(keys.decrypt_masked(packed), pending, 0)
    return lender.gradients[-1]


def read_partner_scores(lender: LabelParty, g4: np.ndarray, batch: int) -> dict[int, float]:
    """``u_H,t`` of every batch row an indicator column singles out, from ``g4`` alone.

    Column k is ``a_k`` on its customer and ``c_k`` elsewhere (standardized, fixed point), the
    intercept column is 1: ``g4_k = a_k 4d_t + c_k (g4_int - 4d_t)``.
    """
    rows = lender.rows_of("train", 0, batch)
    x = lender._x_int[rows].astype(np.float64) / float(1 << lender.x_scale_bits)
    found = {}
    for k in range(2, x.shape[1] - 1):
        column = x[:, k]
        values, counts = np.unique(column, return_counts=True)
        if len(values) != 2 or counts.min() != 1:
            continue  # its customer is not in this batch
        a, c = values[np.argmin(counts)], values[np.argmax(counts)]
        t = int(np.flatnonzero(column == a)[0])
        d4 = (g4[k] - c * g4[-1]) / (a - c)
        own = float(x[t] @ lender.weights_before)
        p = 1.0 / (1.0 + np.exp(-own))
        slope = np.rint(4.0 * p * (1.0 - p) * (1 << SLOPE_SCALE_BITS)) / (1 << SLOPE_SCALE_BITS)
        label = float(lender.labels(rows[t : t + 1])[0])
        found[int(rows[t])] = (d4 - 4.0 * (p - label)) / slope
    return found


def test_the_lender_cannot_read_partner_scores_through_crafted_columns(keys: KeyHolder) -> None:
    targets = list(range(0, N, N // TARGETS))[:TARGETS]
    host_x = np.random.default_rng(7).normal(size=(N, 3))
    lender, host = parties(keys, crafted_columns(targets), host_x)
    batches = lender.batches_per_epoch()

    read: dict[int, tuple[float, float]] = {}
    refused: DataError | None = None
    try:
        for batch in range(batches):
            rows = lender.rows_of("train", 0, batch)
            truth = host.linear(host._x_int[rows])
            lender.weights_before = lender.weights.copy()  # type: ignore[attr-defined]
            g4 = one_batch(lender, host, keys, batch)
            for row, value in read_partner_scores(lender, g4, batch).items():
                read[row] = (value, float(truth[list(rows).index(row)]))
    except DataError as exc:
        refused = exc

    errors = [abs(value - truth) for value, truth in read.values()]
    assert not read, (
        f"the lender read the partner's partial score of {len(read)} chosen customers "
        f"(largest error {max(errors):.1e}): {read}"
    )
    assert refused is not None
    message = str(refused)
    assert "'lender'" in message and "batch" in message
    assert re.search(r"'g[2-7]'", message), message


def test_ordinary_columns_train_as_before(keys: KeyHolder) -> None:
    rng = np.random.default_rng(8)
    lender, host = parties(keys, rng.normal(size=(N, 4)), rng.normal(size=(N, 3)))
    for batch in range(lender.batches_per_epoch()):
        lender.weights_before = lender.weights.copy()  # type: ignore[attr-defined]
        one_batch(lender, host, keys, batch)
    assert len(lender.gradients) == lender.batches_per_epoch()


def test_a_partner_cannot_single_out_a_row_by_two_columns_that_differ_only_there(
    keys: KeyHolder,
) -> None:
    # Each column holds half the customers (no rare value), but their difference is one
    # customer: the partner's gradient would give that customer's residual, so its label.
    rng = np.random.default_rng(9)
    half = (rng.random(N) < 0.5).astype(np.float64)
    target = int(np.flatnonzero(half == 0)[0])
    plus_one = half.copy()
    plus_one[target] = 1.0
    lender, host = parties(keys, rng.normal(size=(N, 3)), np.column_stack([half, plus_one]))
    batch = next(
        b for b in range(lender.batches_per_epoch()) if target in lender.rows_of("train", 0, b)
    )
    partials = {host.name: host.partial("train", 0, batch)}
    z = lender.encrypted_scores("train", 0, batch, partials)
    residual = lender.residual(z, "train", 0, batch)

    with pytest.raises(DataError) as refused:
        host.gradient_request(residual, 0, batch)

    message = str(refused.value)
    assert "party 'host'" in message and re.search(r"column 'h[01]'", message), message


def test_leverages_are_the_diagonal_of_the_hat_matrix() -> None:
    rng = np.random.default_rng(10)
    x = rng.normal(size=(50, 4))
    x[:, 3] = x[:, 0] + x[:, 1]  # a rank-deficient design is allowed
    design = np.hstack([x, np.ones((50, 1))])
    hat = design @ np.linalg.pinv(design)

    assert np.allclose(leverages(x), np.diag(hat), atol=1e-8)
    assert leverages(np.eye(50)[:, :1])[0] == pytest.approx(1.0)
