"""The settings tables of the federation file, each parsed into the dataclass that owns it.

A model family owns its table's dataclass (``[train]``: ``fedcredit.protocol.logistic.settings``;
``[binning]``: ``fedcredit.protocol.binning.settings``); the scorecard and the scoring answers
are the nodes' and live here. Every parser takes the file's label (for errors) and the raw
TOML value, and names the file, the table and the key in each error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from fedcredit.config.table import Table
from fedcredit.errors import ConfigError
from fedcredit.protocol.binning.settings import BINNING_METHODS, BinningSettings
from fedcredit.protocol.logistic.settings import DEFAULT_LR, OPTIMIZERS, SIGMOIDS, TrainSettings
from fedcredit.protocol.trees import settings as trees_settings
from fedcredit.protocol.trees.settings import TreeSettings

UNKNOWN_ID_POLICIES: Final = ("sample", "mean", "refuse")


@dataclass(frozen=True)
class ScorecardSettings:
    """Score = offset - factor * ln(odds of default); see fedcredit.model.scorecard."""

    base_score: float = 600.0
    base_odds: float = 50.0  # good:bad odds at the base score
    pdo: float = 20.0  # points to double the odds
    min_score: float = 350.0
    max_score: float = 950.0


@dataclass(frozen=True)
class ScoringSettings:
    """What each partner answers the lender's scoring requests (docs/THREAT-MODEL.md, F1, F2)."""

    # With one partner the final score gives the lender that partner's partial score.
    allow_single_partner: bool = False
    # An id the partner does not hold: "sample" answers a customer's partial score chosen by a
    # keyed hash of the id (indistinguishable), "mean" the mean, "refuse" fails the request.
    unknown_ids: str = "sample"
    quota_per_day: int = 100_000  # applicants per lender in any 24 hours, per partner
    precision_bits: int = 6  # partial scores the lender decrypts are rounded to 2^-bits
    # The lender's node only: concurrent Score and Decide calls arriving within this many
    # milliseconds share one partner round and one decryption (0 turns batching off) ...
    batch_wait_ms: float = 5.0
    # ... up to this many applicants per shared round.
    batch_max_applicants: int = 256


TRAIN_KEYS: Final = tuple(f.name for f in dataclasses.fields(TrainSettings))
BINNING_KEYS: Final = tuple(f.name for f in dataclasses.fields(BinningSettings))
SCORING_KEYS: Final = tuple(f.name for f in dataclasses.fields(ScoringSettings))
SCORECARD_KEYS: Final = ("base_score", "base_odds", "pdo", "min_score", "max_score")


def parse_train(file: str, raw: Any) -> TrainSettings:
    """``[train]``: the logistic family's training settings."""
    t = Table(file, "[train]", raw, TRAIN_KEYS)
    d = TrainSettings()
    optimizer = t.choice("optimizer", OPTIMIZERS, d.optimizer)
    settings = TrainSettings(
        epochs=t.integer("epochs", d.epochs, low=1),
        batch_size=t.integer("batch_size", d.batch_size, low=1),
        learning_rate=t.number(
            "learning_rate", DEFAULT_LR.get(optimizer, 0.15), 0.0, low_open=True
        ),
        l2=t.number("l2", d.l2, 0.0),
        test_fraction=t.number("test_fraction", d.test_fraction, 0.0, 1.0, high_open=True),
        validation_fraction=t.number(
            "validation_fraction", d.validation_fraction, 0.0, 1.0, high_open=True
        ),
        optimizer=optimizer,
        momentum=t.number("momentum", d.momentum, 0.0, 1.0, high_open=True),
        decay=t.number("decay", d.decay, 0.0),
        tol=t.number("tol", d.tol, 0.0),
        early_stopping_rounds=t.integer("early_stopping_rounds", d.early_stopping_rounds, 0),
        seed=t.integer("seed", d.seed, low=0),
        x_scale_bits=t.integer("x_scale_bits", d.x_scale_bits, low=1, high=48),
        sigmoid=t.choice("sigmoid", SIGMOIDS, d.sigmoid),
        threshold=t.number("threshold", d.threshold, 0.0, 1.0, low_open=True, high_open=True),
    )
    if settings.test_fraction + settings.validation_fraction >= 1.0:
        raise t.error("validation_fraction", "test_fraction + validation_fraction must be below 1")
    return settings


def parse_binning(file: str, raw: Any) -> BinningSettings:
    """``[binning]``: the binning phase's settings (the phase runs only when the table exists)."""
    b = Table(file, "[binning]", raw, BINNING_KEYS)
    d = BinningSettings()
    return BinningSettings(
        method=b.choice("method", BINNING_METHODS, d.method),
        bins=b.integer("bins", d.bins, low=2, high=1000),
        min_bin_share=b.number("min_bin_share", d.min_bin_share, 0.0, 0.5, low_open=True),
        iv_threshold=b.number("iv_threshold", d.iv_threshold, 0.0),
        noise_epsilon=b.number("noise_epsilon", d.noise_epsilon, 0.0),
    )


def parse_scorecard(file: str, raw: Any) -> ScorecardSettings:
    """``[scorecard]``: how a probability of default becomes points."""
    t = Table(file, "[scorecard]", raw, SCORECARD_KEYS)
    d = ScorecardSettings()
    settings = ScorecardSettings(
        base_score=t.number("base_score", d.base_score, -1e6, 1e6),
        base_odds=t.number("base_odds", d.base_odds, 0.0, low_open=True),
        pdo=t.number("pdo", d.pdo, 0.0, low_open=True),
        min_score=t.number("min_score", d.min_score, -1e6, 1e6),
        max_score=t.number("max_score", d.max_score, -1e6, 1e6),
    )
    if settings.min_score >= settings.max_score:
        raise t.error("max_score", "must be above min_score")
    return settings


def parse_scoring(file: str, raw: Any) -> ScoringSettings:
    """``[scoring]``: what each partner answers the lender's scoring requests."""
    t = Table(file, "[scoring]", raw, SCORING_KEYS)
    d = ScoringSettings()
    return ScoringSettings(
        allow_single_partner=t.flag("allow_single_partner", d.allow_single_partner),
        unknown_ids=t.choice("unknown_ids", UNKNOWN_ID_POLICIES, d.unknown_ids),
        quota_per_day=t.integer("quota_per_day", d.quota_per_day, low=1),
        # 20 bits is the score scale itself (fedcredit.protocol.fixedpoint.Z_SCALE_BITS).
        precision_bits=t.integer("precision_bits", d.precision_bits, low=0, high=20),
        batch_wait_ms=t.number("batch_wait_ms", d.batch_wait_ms, 0.0, 1000.0),
        batch_max_applicants=t.integer(
            "batch_max_applicants", d.batch_max_applicants, low=1, high=100_000
        ),
    )


def parse_trees(file: str, doc: dict[str, Any], family: str) -> TreeSettings | None:
    """``[trees]`` (with ``[train]``'s seed, fractions and early stopping) for
    ``[model] family = "trees"``; None for another family, which may not have the table."""
    if family != "trees":
        if "trees" in doc:
            raise ConfigError(f'{file}: [trees] applies to [model] family = "trees" only')
        return None
    if "binning" in doc:
        raise ConfigError(
            f"{file}: [binning] applies to the logistic family; trees bin their own columns "
            "([trees] bins, min_rows)"
        )
    return trees_settings.from_table(doc.get("trees"), file, doc.get("train", {}))
