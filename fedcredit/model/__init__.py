"""Plaintext model maths: metrics, optimizers, Taylor logistic regression, binning, scorecards.

Nothing here encrypts or talks to a peer; the federated protocol reuses these pieces.
Figures and HTML reports live in ``fedcredit.model.plots`` and ``fedcredit.model.report``.
"""

from fedcredit.model.binning import Binning, fit_bins, merge_chi2, merge_monotonic, merge_small
from fedcredit.model.logistic import (
    FitResult,
    batch_indices,
    fit_plain,
    sigmoid,
    validation_split,
)
from fedcredit.model.metrics import auc, evaluate, ks
from fedcredit.model.optim import SGD, Adam, l2_gradient, make_optimizer
from fedcredit.model.scorecard import Reason, Scorecard
from fedcredit.model.woe import one_hot, select_by_correlation, select_by_iv, woe_iv

__all__ = [
    "SGD",
    "Adam",
    "Binning",
    "FitResult",
    "Reason",
    "Scorecard",
    "auc",
    "batch_indices",
    "evaluate",
    "fit_bins",
    "fit_plain",
    "ks",
    "l2_gradient",
    "make_optimizer",
    "merge_chi2",
    "merge_monotonic",
    "merge_small",
    "one_hot",
    "select_by_correlation",
    "select_by_iv",
    "sigmoid",
    "validation_split",
    "woe_iv",
]
