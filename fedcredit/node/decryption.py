"""The coordinator node's decryption schedule: rules from the federation file (tickets from
messages are ``fedcredit.node.serde.keys``; ``fedcredit.protocol.schedule`` decides).

The audit log is ``decryption-audit.jsonl`` in the coordinator's own folder (``--state-dir``,
else ``./state-coordinator``): one JSON line per request, allowed or refused.
"""

from __future__ import annotations

import math
from pathlib import Path

from fedcredit.config import Federation, PartyConfig
from fedcredit.node.scoring import MAX_SCORE_BATCH
from fedcredit.protocol.family import get_family
from fedcredit.protocol.logistic.encoding import MIN_LEVEL_SHARE
from fedcredit.protocol.schedule import AuditLog, DecryptionGate, JobRules

AUDIT_FILE = "decryption-audit.jsonl"


def width_cap(fed: Federation, party: PartyConfig) -> int | None:
    """The most design columns the party's ``features`` in the file can make (None: unlisted).

    A numeric column makes one; a text column one-hot encoded at most ``1 / MIN_LEVEL_SHARE``
    (each level holds 5% of the rows); binned, a partner's column at most its bins plus the
    missing and ``other`` bins, and the lender's one WOE column. The lender adds its intercept.
    """
    if party.features is None:
        return None
    if fed.binning is None:
        per_column = math.floor(1.0 / MIN_LEVEL_SHARE)
    elif party.is_lender:
        per_column = 1
    else:
        categories = math.ceil(1.0 / fed.binning.min_bin_share)
        per_column = max(fed.binning.bins, categories) + 2
    return len(party.features) * per_column + (1 if party.is_lender else 0)


def job_rules(fed: Federation) -> JobRules:
    """What the coordinator takes from its own federation file about every training job."""
    return JobRules(
        lender=fed.lender.name,
        hosts=tuple(p.name for p in fed.hosts),
        batch_size=fed.train.batch_size,
        epochs=fed.train.epochs,
        x_scale_bits=fed.train.x_scale_bits,
        sigmoid=fed.train.sigmoid,
        width_caps={p.name: width_cap(fed, p) for p in fed.parties},
        max_score_rows=MAX_SCORE_BATCH,
    )


def coordinator_gate(fed: Federation, home: Path) -> DecryptionGate:
    """The gate of the coordinator node whose folder is ``home``: it admits the decryptions the
    federation's model family names in its rounds (a trees family names none)."""
    phase = get_family(fed.family).schedule(fed.family_settings)
    return DecryptionGate(job_rules(fed), AuditLog(home / AUDIT_FILE), phase=phase)
