"""Federated binning, WOE and IV for the scorecard pipeline, as plain state (no gRPC).

A phase before training, with the same shape as a model family (``schedule.BINNING``):

- ``messages``: what travels between the lender and each partner, and who may read it;
- ``bins``: each party's fine bins, fitted on its own training rows (never sent);
- ``partner``: a partner's encrypted per-bin label sums, then the lender's plan applied;
- ``lender``: the lender's key and labels, the decrypted counts, the plans;
- ``plan``: merges, WOE, IV and selection from counts; ``encoder``: the design columns;
- ``report``: the IV report; ``schedule``: the phase's rounds; ``local``: all in one process.

This package re-exports the names other layers use, so ``from fedcredit.protocol.binning
import PartnerBinning`` keeps working; its modules import each other, never this file.
"""

from fedcredit.protocol.binning.bins import (
    BinnedParty,
    FineColumn,
    bin_matrix,
    bins_of,
    fit_columns,
    train_raw,
)
from fedcredit.protocol.binning.encoder import BinEncoder, EncodedColumn, centred_indicators
from fedcredit.protocol.binning.lender import LabelledParty, LenderBinning, open_bin_sums
from fedcredit.protocol.binning.local import BinningResult, run_binning_local
from fedcredit.protocol.binning.messages import ColumnPlan, EncryptedBinSums
from fedcredit.protocol.binning.partner import PartnerBinning, geometric_noise, partner_encoder
from fedcredit.protocol.binning.plan import (
    MAX_CORRELATION,
    ColumnReport,
    ColumnStats,
    plain_stats,
    plan_columns,
)
from fedcredit.protocol.binning.report import (
    REPORT_FIELDS,
    iv_by_column,
    report_csv,
    report_html,
    report_rows,
)
from fedcredit.protocol.categories import (
    category_code,
    category_label,
    label_code,
    with_category_codes,
)

__all__ = [
    "MAX_CORRELATION",
    "REPORT_FIELDS",
    "BinEncoder",
    "BinnedParty",
    "BinningResult",
    "ColumnPlan",
    "ColumnReport",
    "ColumnStats",
    "EncodedColumn",
    "EncryptedBinSums",
    "FineColumn",
    "LabelledParty",
    "LenderBinning",
    "PartnerBinning",
    "bin_matrix",
    "bins_of",
    "category_code",
    "category_label",
    "centred_indicators",
    "fit_columns",
    "geometric_noise",
    "iv_by_column",
    "label_code",
    "open_bin_sums",
    "partner_encoder",
    "plain_stats",
    "plan_columns",
    "report_csv",
    "report_html",
    "report_rows",
    "run_binning_local",
    "train_raw",
    "with_category_codes",
]
