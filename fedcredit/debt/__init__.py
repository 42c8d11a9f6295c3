"""Loan stacking (多头借贷): how many other lenders have lent to an applicant, and how much.

A querying lender learns, per applicant, the count of other lenders with an outstanding
balance and (when the count reaches a threshold, 2 by default) the total; other lenders learn
nothing about the query; the coordinator sees tags and ciphertexts only. See docs/DEBT.md.
"""

from fedcredit.debt.coordinator import DebtCoordinator, PreparedQuery
from fedcredit.debt.lender import DebtLender, PendingUpload
from fedcredit.debt.local import LocalFederation, Transcript, run_local_query, upload
from fedcredit.debt.messages import (
    DebtResult,
    LenderTags,
    MaskedBatch,
    OPRFAnswer,
    OPRFRequest,
    QueryAnswer,
    QueryRequest,
    SealedShares,
    UploadTable,
)
from fedcredit.debt.querier import DebtQuery

__all__ = [
    "DebtCoordinator",
    "DebtLender",
    "DebtQuery",
    "DebtResult",
    "LenderTags",
    "LocalFederation",
    "MaskedBatch",
    "OPRFAnswer",
    "OPRFRequest",
    "PendingUpload",
    "PreparedQuery",
    "QueryAnswer",
    "QueryRequest",
    "SealedShares",
    "Transcript",
    "UploadTable",
    "run_local_query",
    "upload",
]
