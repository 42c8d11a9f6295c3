"""Logistic regression's rounds (``fedcredit.protocol.rounds``): who acts, when, what is decrypted.

===========  ==============  ===========  =================================================
step         who             when         the coordinator decrypts (count, width)
===========  ==============  ===========  =================================================
partial      hosts           each batch   nothing (``[[u_h]]`` goes to the lender)
residual     lender          each batch   nothing (``[[4d]]`` goes to every host)
loss         lender          last batch   the batch's rows at the score width, one scalar
train        every party     each batch   its design columns, the job's gradient width
validation   lender          each epoch   the validation rows at the score width
test         lender          once         the test rows at the score width
score        lender          scoring      at most ``max_score_rows`` at the score width
===========  ==============  ===========  =================================================

``fedcredit.protocol.logistic.local`` runs these rounds in one process; the coordinator's
``DecryptionGate`` admits exactly the decryptions they name.
"""

from __future__ import annotations

from typing import Any

from fedcredit.protocol.rounds import Count, Phase, Round, Slots, When, Who, Width

TRAINING = Phase(
    "logistic",
    (
        Round("partial", Who.HOSTS, When.EACH_BATCH),
        Round("residual", Who.LENDER, When.EACH_BATCH),
        Round(
            "loss",
            Who.LENDER,
            When.LAST_BATCH,
            (Slots(Count.BATCH_ROWS, Width.SCORE), Slots(Count.SCALAR, Width.LOSS)),
        ),
        Round(
            "train",
            Who.EVERY_PARTY,
            When.EACH_BATCH,
            (Slots(Count.DESIGN_COLUMNS, Width.GRADIENT),),
        ),
        Round(
            "validation", Who.LENDER, When.EACH_EPOCH, (Slots(Count.VALIDATION_ROWS, Width.SCORE),)
        ),
        Round("test", Who.LENDER, When.ONCE, (Slots(Count.TEST_ROWS, Width.SCORE),)),
        Round("score", Who.LENDER, When.SCORING, (Slots(Count.SCORING_ROWS, Width.SCORE),)),
    ),
)


def schedule(settings: Any = None) -> Phase:
    """Logistic regression's rounds; the same for every job (epochs and rows come later)."""
    return TRAINING


__all__ = ["TRAINING", "schedule"]
