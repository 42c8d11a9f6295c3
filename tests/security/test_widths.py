"""The packing width a party sends for decryption is a protocol constant (security review F13).

The coordinator sees every masked request's ``value_bits``. Sized from the batch's largest
``|x|``, it said per batch whether some row was clipped at 8 standard deviations or lay above 4,
and as every epoch draws new batches from the public seed, comparing epochs located such rows.
These tests build real parties with real (1024-bit) keys, one row 6 standard deviations out
(ordinary enough that the party's own leverage check lets its batch through), and read the
width of every gradient request of an epoch as the coordinator would.
"""

from __future__ import annotations

import numpy as np

from fedcredit.crypto import encrypt_vector
from fedcredit.protocol.fixedpoint import residual_scale_bits
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import TrainSettings

ROWS = 256
OUTLIER = 17
SETTINGS = TrainSettings(
    batch_size=64, test_fraction=0.0, validation_fraction=0.0, seed=3, x_scale_bits=16
)


def aligned_party(keypair, x: np.ndarray, *, lender: bool = False) -> FeatureParty:  # type: ignore[no-untyped-def]
    ids = [f"C{i:04d}" for i in range(len(x))]
    names = [f"x{j}" for j in range(x.shape[1])]
    party: FeatureParty
    if lender:
        y = (np.arange(len(x)) % 3 == 0).astype(np.int64)
        party = LabelParty("lender", ids, x, names, y, SETTINGS)
    else:
        party = FeatureParty("host", ids, x, names, SETTINGS)
    party.public_key = keypair[0]
    party.align(ids)
    return party


def widths_of_epoch(party: FeatureParty, epoch: int) -> dict[int, int]:
    """The ``value_bits`` of each batch's gradient request, by batch (what the coordinator sees)."""
    assert party.public_key is not None
    scale = residual_scale_bits(SETTINGS.sigmoid)
    widths = {}
    for batch in range(party.batches_per_epoch()):
        rows = party.rows_of("train", epoch, batch)
        residual = encrypt_vector(party.public_key, np.zeros(len(rows)), scale)
        packed, _ = party.gradient_request(residual, epoch, batch)
        widths[batch] = packed.value_bits
    return widths


def with_outlier(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(ROWS, 3))
    x[OUTLIER, 0] = 6.0  # beyond 4 standard deviations: a wider max|x| in its batch
    return x


def test_a_batch_holding_a_far_out_row_has_the_width_of_every_other_batch(keypair) -> None:  # type: ignore[no-untyped-def]
    party = aligned_party(keypair, with_outlier(1))
    holder = next(
        b
        for b in range(party.batches_per_epoch())
        if OUTLIER in party.rows_of("train", 0, b).tolist()
    )

    widths = widths_of_epoch(party, 0)

    others = {w for b, w in widths.items() if b != holder}
    assert others == {widths[holder]}, f"batch {holder} (the far-out row) has {widths}"


def test_the_width_is_the_same_in_every_epoch_and_for_every_party_of_the_job(keypair) -> None:  # type: ignore[no-untyped-def]
    host = aligned_party(keypair, with_outlier(1))
    calm = np.random.default_rng(2).normal(size=(ROWS, 2)) * 0.1  # nothing near any bound
    lender = aligned_party(keypair, calm, lender=True)

    seen = {w for epoch in (0, 1, 2) for w in widths_of_epoch(host, epoch).values()}
    seen |= {w for epoch in (0, 1) for w in widths_of_epoch(lender, epoch).values()}

    assert len(seen) == 1, seen
