"""A party's answer to the lender's ``Stability`` query: the CSI of each of its own columns.

``fedcredit monitor`` asks every party (the lender's own node included) how far the raw columns
of a list of applicants have moved from the party's training rows. The party bins the
applicants' values with its stored reference (``fedcredit.protocol.reference``, in its own model
part) and returns one characteristic stability index per column: no edge, category or count.

At a partner the query is about those ids, so it is treated like ``PartialScore``
(``fedcredit.node.partner``): the lender only, counted in the lender's daily scoring quota and
written in the scoring audit log (``"query": "stability"``). Two more rules:

- at least ``MIN_STABILITY_IDS`` applicants per query: with a handful of ids the index would
  say which bins they fall in;
- an applicant the partner does not hold is treated as ``unknown_ids`` says, as in scoring:
  ``sample`` (the default) counts the raw row of the customer whose partial score it would
  answer with (the same keyed choice), so a stranger moves the index exactly as a customer
  does; ``mean`` leaves strangers out (that policy already tells the lender who they are);
  ``refuse`` refuses the query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from fedcredit.decision.stability import FeatureStability, feature_stability
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.node.secret import keyed_int
from fedcredit.protocol.columns import PartyColumns
from fedcredit.protocol.disclosure import UnknownAnswers
from fedcredit.protocol.reference import StabilityReference

MIN_STABILITY_IDS: Final = 100
"""Fewer applicants than this in one query are refused (the index would place them in bins)."""

QUERY: Final = "stability"
"""What the audit log's line names the query."""

UnknownRows = Callable[[list[str]], np.ndarray]
"""Raw row indices standing for applicants the party does not hold."""


@dataclass(frozen=True)
class StabilityQuery:
    """Who asks (from its certificate), the federation's lender, the job it names, the ids."""

    caller: str
    lender: str
    job: str
    ids: tuple[str, ...]


def load_reference(data: object, party: str) -> StabilityReference:
    """The reference stored in a party's model part; ``ConfigError`` for a model saved without
    one (trained before ``fedcredit monitor`` existed)."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"party {party!r}: its model part has no stability reference (the model was saved "
            "before fedcredit monitor existed): train it again with fedcredit run"
        )
    return StabilityReference.from_dict(data)


def columns_stability(
    party: PartyColumns,
    reference: StabilityReference,
    ids: Sequence[str],
    unknown: UnknownRows | None,
) -> list[FeatureStability]:
    """The CSI of each of ``party``'s raw columns on ``ids`` against ``reference``."""
    if [c.feature for c in reference.columns] != party.column_names:
        raise ConfigError(
            f"party {party.name!r}: the stability reference's columns differ from the data's"
        )
    rows = rows_for(party, ids, unknown)
    if rows.size == 0:
        raise ProtocolError(f"party {party.name!r} holds none of the applicants asked about")
    raw = party.raw[rows]
    return [
        feature_stability(party.name, column.feature, column.counts, column.bin_counts(raw[:, j]))
        for j, column in enumerate(reference.columns)
    ]


def rows_for(party: PartyColumns, ids: Sequence[str], unknown: UnknownRows | None) -> np.ndarray:
    """Raw row indices for ``ids``: the party's own rows, and ``unknown``'s for the others
    (left out without it)."""
    position = {cid: i for i, cid in enumerate(party.ids)}
    found = [position.get(cid, -1) for cid in ids]
    rows = [r for r in found if r >= 0]
    strangers = [cid for cid, r in zip(ids, found, strict=True) if r < 0]
    if strangers and unknown is not None:
        rows += [int(r) for r in unknown(strangers)]
    return np.asarray(rows, dtype=np.int64)


def check_query(name: str, ids: Sequence[str]) -> None:
    """``ProtocolError`` for a query about too few applicants."""
    if len(ids) < MIN_STABILITY_IDS:
        raise ProtocolError(
            f"party {name!r}: a stability query needs at least {MIN_STABILITY_IDS} applicants, "
            f"got {len(ids)} (with fewer the index would tell which bins they fall in)"
        )


class SampledRows:
    """``unknown_ids = "sample"`` for row indices: a stranger stands for the customer whose
    partial score ``PartialScore`` answers for it (same keyed hash, same ring)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._lock = threading.Lock()
        self._cache: tuple[PartyColumns, UnknownAnswers] | None = None

    def for_party(self, party: PartyColumns) -> UnknownRows:
        with self._lock:
            if self._cache is None or self._cache[0] is not party:
                secret = self._secret
                answers = UnknownAnswers(
                    "sample",
                    party.ids,
                    np.arange(len(party.ids), dtype=np.float64),
                    lambda purpose, text: keyed_int(secret, purpose, text),
                )
                self._cache = (party, answers)
            answer = self._cache[1].answer
        return lambda strangers: np.asarray(answer(strangers), dtype=np.int64)


__all__ = [
    "MIN_STABILITY_IDS",
    "QUERY",
    "SampledRows",
    "StabilityQuery",
    "check_query",
    "columns_stability",
    "load_reference",
    "rows_for",
]
