"""What the lender learns from the secure training loss (security review F15).

The Taylor loss of a batch is ``log 2 + (Σz² − 4 Σy'z) / 8m``. The lender must learn that figure
and nothing else about the batch's scores; the coordinator's answer used to hand it ``Σz²`` and
``Σy'z`` apart. Real parties, a real (1024-bit) key and the coordinator's real decryption: two
batches with the same labels and the same loss but different ``Σz²`` must look the same to the
lender. Its own masks are made equal in both (the same seeded source), so any difference left in
the coordinator's answer is information about the scores.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import fedcredit.crypto.packing as packing
from fedcredit.crypto import encrypt_vector
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.settings import TrainSettings

ROWS = 40


@pytest.fixture()
def lender(keypair) -> LabelParty:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    ids = [f"C{i:03d}" for i in range(ROWS)]
    y = (rng.random(ROWS) < 0.3).astype(np.int64)
    settings = TrainSettings(batch_size=ROWS, test_fraction=0.0, validation_fraction=0.0)
    party = LabelParty("lender", ids, rng.normal(size=(ROWS, 2)), ["a", "b"], y, settings)
    party.public_key = keypair[0]
    party.align(ids)
    return party


def coordinator_answer(keypair, lender: LabelParty, z: np.ndarray, monkeypatch) -> object:  # type: ignore[no-untyped-def]
    """What the coordinator returns to the lender's loss request for scores ``z``."""
    # The same masks for every call: the lender's own randomness is then no difference.
    monkeypatch.setattr(packing, "system_random", lambda: random.Random(1234))
    keys = KeyHolder(allow_small_keys=True)
    keys.use_keypair("loss", *keypair)
    scores = encrypt_vector(keypair[0], z, Z_SCALE_BITS)
    request, _ = lender.loss_request(scores, "train", 0, 0)
    return keys.decrypt_loss(request.masked_scores, request.masked_sums)


def taylor_loss(y: np.ndarray, z: np.ndarray) -> float:
    signed = 2.0 * y - 1.0
    return float(np.mean(np.log(2.0) - 0.5 * signed * z + z * z / 8.0))


def test_two_batches_with_the_same_loss_look_the_same_to_the_lender(  # type: ignore[no-untyped-def]
    keypair, lender: LabelParty, monkeypatch
) -> None:
    y = lender.labels(lender.rows_of("train", 0, 0))
    signed = 2.0 * y - 1.0
    z = np.random.default_rng(5).uniform(-2.0, 2.0, ROWS)
    # Row by row z² − 4y'z is unchanged by z -> 4y' − z: the same loss, another Σz² and Σy'z.
    other = 4.0 * signed - z
    assert taylor_loss(y, z) == pytest.approx(taylor_loss(y, other), abs=1e-9)
    assert abs(float(np.sum(z * z) - np.sum(other * other))) > 1.0

    first = coordinator_answer(keypair, lender, z, monkeypatch)
    second = coordinator_answer(keypair, lender, other, monkeypatch)

    assert first == second, "the lender tells apart two batches of the same loss"
