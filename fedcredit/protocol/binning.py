"""Federated binning, WOE and IV for the scorecard pipeline, as plain state (no gRPC).

Every party bins its own columns on its own training rows (``fedcredit.model.binning``); no
value and no bin edge leaves it. The lender makes a Paillier key pair of its own for the job,
encrypts its training labels (one ciphertext per row, scale 0) and sends them to each partner.
A partner sums them per fine bin of each of its columns (``X_onehot.T @ [[y]]``), adds exact
two-sided geometric noise (on by default), packs the sums several to a ciphertext,
re-randomizes them and sends them back with its per-bin row counts. The lender decrypts per-bin
event counts, computes WOE and IV of every column, keeps the columns whose IV reaches the
threshold (and, among its own columns, drops the weaker of highly correlated pairs), merges fine
bins into groups of monotonic event rate (``merge_monotonic``) and tells each partner only which
columns to keep, which fine bins to merge and which merged bins are too small for a design
column. What each side learns is stated in docs/BINNING.md.

Encoding for training: partners encode their merged bins one-hot (one reference bin per column
dropped). Sending WOE values back would tell a partner the label statistics of its bins; one-hot
weights are learned by the model and never leave it. The lender encodes its own columns by WOE.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import random
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.crypto import (
    EncryptedVector,
    PackedCiphertexts,
    PrivateKey,
    PublicKey,
    decrypt_packed,
    encrypt_vector,
    generate_keypair,
    matvec_t,
    weighted_sum,
)
from fedcredit.crypto.keys import MIN_KEY_BITS, check_peer_key
from fedcredit.crypto.packing import SLOT_EXTRA_BITS, slots_per_ciphertext
from fedcredit.crypto.vector import concat
from fedcredit.errors import ConfigError, DataError, ProtocolError
from fedcredit.model.binning import Binning, bin_counts, fit_bins, group_counts, merge_monotonic
from fedcredit.model.noise import two_sided_geometric
from fedcredit.model.scorecard import Scorecard
from fedcredit.model.woe import apply_woe, select_by_correlation, woe_iv
from fedcredit.protocol.design_floor import columned_levels, total_floor
from fedcredit.protocol.lender import LabelParty
from fedcredit.protocol.party import FeatureParty

IntArray = npt.NDArray[np.int64]

#: Value bits of a packed per-bin event sum; every sum travels as ``sum + 2**(bits - 1)``.
EVENT_VALUE_BITS = 48
EVENT_OFFSET = 1 << (EVENT_VALUE_BITS - 1)
#: Geometric noise is clipped here (reached with probability below 1e-9 for epsilon >= 1e-4).
NOISE_CLIP = 1 << 40
#: L1 change of one column's per-bin rows and events when one customer moves between its bins.
NOISE_SENSITIVITY = 4
#: Among the lender's own columns, the weaker of a pair correlated beyond this is dropped.
MAX_CORRELATION = 0.9
MISSING_CODE = 0.0
_CODE_BYTES = 6
_HASHED = 7


# -- categorical columns as numbers ---------------------------------------------------------------
def category_code(text: str) -> float:
    """An exact float code for a category: its bytes when short, else a 48-bit hash; 0 = missing.

    The code is stable across files (no per-file vocabulary), so a model part fitted on one file
    scores rows of another; ``category_label`` reads a short code back.
    """
    value = text.strip()
    if not value:
        return MISSING_CODE
    raw = value.encode("utf-8")
    if len(raw) <= _CODE_BYTES:
        return float((len(raw) << 48) | int.from_bytes(raw, "big"))
    digest = int.from_bytes(hashlib.sha256(raw).digest()[:_CODE_BYTES], "big")
    return float((_HASHED << 48) | digest)


def category_label(code: float) -> str:
    """The category a code stands for (``#`` and 12 hex digits for a long, hashed one)."""
    number = int(code)
    length, body = number >> 48, number & ((1 << 48) - 1)
    if length == _HASHED:
        return f"#{body:012x}"
    return body.to_bytes(length, "big").decode("utf-8", errors="replace") if length else ""


def label_code(label: str) -> float:
    """Inverse of ``category_label``."""
    if len(label) == 13 and label.startswith("#") and len(label.encode("utf-8")) > _CODE_BYTES:
        return float((_HASHED << 48) | int(label[1:], 16))
    return category_code(label)


def with_category_codes(
    x: np.ndarray, names: Sequence[str], categorical: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, list[str]]:
    """Append the categorical columns (strings) as code columns after the numeric ones."""
    if not categorical:
        return x, list(names)
    codes = np.column_stack(
        [
            np.array([category_code(v) for v in cells], dtype=np.float64)
            for cells in categorical.values()
        ]
    )
    return np.hstack([np.asarray(x, dtype=np.float64).reshape(len(codes), -1), codes]), [
        *names,
        *categorical,
    ]


# -- fine bins at each party --------------------------------------------------------------------
@dataclass(frozen=True)
class FineColumn:
    """One column's fine bins at its own party (never sent anywhere)."""

    name: str
    index: int
    binning: Binning
    categorical: bool

    def bins_of(self, raw: np.ndarray) -> IntArray:
        return _bins(self.binning, raw[:, self.index], self.categorical)


def _bins(binning: Binning, column: np.ndarray, categorical: bool) -> IntArray:
    if not categorical:
        return binning.transform(column)
    lookup = {label_code(c): k for k, group in enumerate(binning.groups) for c in group}
    out = [
        binning.missing_bin if v == MISSING_CODE else lookup.get(float(v), binning.other_bin)
        for v in column.tolist()
    ]
    return np.asarray(out, dtype=np.int64)


def train_raw(party: FeatureParty) -> np.ndarray:
    """The party's raw training rows in the shared aligned order."""
    return np.asarray(party.raw[party.aligned_rows[_train_rows(party)]], dtype=np.float64)


def _train_rows(party: FeatureParty) -> np.ndarray:
    if party.split is None:
        raise ProtocolError(f"party {party.name!r} bins only after alignment")
    return party.split.train


def fit_columns(
    party: FeatureParty, settings: Any, categorical: Collection[str]
) -> list[FineColumn]:
    """Fit fine bins of every raw column of ``party`` on its training rows, without labels."""
    raw = train_raw(party)
    unknown = sorted(set(categorical) - set(party.feature_names))
    if unknown:
        raise ConfigError(
            f"party {party.name!r}: categorical columns {unknown} are not in its data"
        )
    columns = []
    for index, name in enumerate(party.feature_names):
        is_cat = name in categorical
        values: npt.ArrayLike = (
            np.array(
                [category_label(v) if v != MISSING_CODE else "" for v in raw[:, index]],
                dtype=object,
            )
            if is_cat
            else raw[:, index]
        )
        method = "categorical" if is_cat else str(settings.method)
        binning = fit_bins(values, method, int(settings.bins), float(settings.min_bin_share))
        columns.append(FineColumn(name, index, binning, is_cat))
    return columns


def bin_matrix(raw: np.ndarray, columns: Sequence[FineColumn]) -> IntArray:
    """Fine bin index of every row (rows) and column (columns)."""
    return np.column_stack([c.bins_of(raw) for c in columns]).astype(np.int64)


# -- the lender's labels -------------------------------------------------------------------------
def encrypt_train_labels(
    lender: LabelParty, key_bits: int, *, allow_small: bool = False
) -> tuple[PublicKey, PrivateKey, EncryptedVector]:
    """A fresh key pair of the lender's own and its training labels encrypted under it.

    A partner receiving the vector learns its length (the training rows, which it knows).
    """
    if lender.split is None:
        raise ProtocolError("the lender encrypts labels only after alignment")
    public, private = generate_keypair(key_bits, allow_small=allow_small)
    labels = lender.labels(lender.split.train).astype(np.float64)
    return public, private, encrypt_vector(public, labels, 0)


# -- a partner's encrypted per-bin sums ------------------------------------------------------------
@dataclass(frozen=True)
class EncryptedBinSums:
    """What a partner sends the lender: names, per-bin rows, packed per-bin event sums."""

    names: tuple[str, ...]
    rows: tuple[tuple[int, ...], ...]
    events: PackedCiphertexts
    noisy: bool
    unordered: tuple[bool, ...] = ()  # categorical columns: bins have no order to merge along


def geometric_noise(size: int, epsilon: float, rng: random.Random | None = None) -> IntArray:
    """Exact two-sided geometric (discrete Laplace) noise, ``P(k) ~ exp(-epsilon |k| / 4)``,
    sampled with integers only (``fedcredit.model.noise``), clipped at ``NOISE_CLIP``.

    The scale fits the L1 sensitivity 4 of one column's per-bin rows and events (BINNING.md,
    "The noise option"). Without ``rng`` the draws come fresh from ``secrets.SystemRandom``, so
    two runs never share noise that a difference of their counts would cancel.
    """
    return two_sided_geometric(size, epsilon, NOISE_SENSITIVITY, rng, clip=NOISE_CLIP)


def compute_bin_sums(
    party: FeatureParty,
    columns: Sequence[FineColumn],
    labels: EncryptedVector,
    *,
    noise_epsilon: float = 0.0,
    rng: random.Random | None = None,
) -> EncryptedBinSums:
    """Per fine bin: rows (plain) and ``[[sum of labels]]`` (packed, re-randomized).

    The re-randomization matters: the lender knows the randomness of each label ciphertext and,
    from an unrandomized product, could test which rows fall in a bin.
    """
    raw = train_raw(party)
    if len(labels) != len(raw):
        raise ProtocolError(f"{len(labels)} encrypted labels for {len(raw)} training rows")
    if labels.scale_bits != 0:
        raise ProtocolError("encrypted labels must be at scale 0")
    index = bin_matrix(raw, columns)
    sizes = [c.binning.n_bins for c in columns]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    onehot = np.zeros((len(raw), sum(sizes)), dtype=np.int64)
    rows_at = np.arange(len(raw))
    for j, start in enumerate(starts.tolist()):
        onehot[rows_at, start + index[:, j]] = 1
    rows = onehot.sum(axis=0).astype(np.int64)
    sums = matvec_t(onehot, 0, labels)
    extra = np.zeros(len(rows), dtype=np.int64)
    noisy = noise_epsilon > 0
    if noisy:
        # Fresh draws from the operating system's generator unless a test passes ``rng``.
        source = rng or secrets.SystemRandom()
        rows = np.maximum(rows + geometric_noise(len(rows), noise_epsilon, source), 0)
        extra = geometric_noise(len(rows), noise_epsilon, source)
    packed = _pack(sums.add_plain_ints([int(v) + EVENT_OFFSET for v in extra.tolist()]))
    per_column = np.split(rows, np.cumsum(sizes)[:-1])
    return EncryptedBinSums(
        tuple(c.name for c in columns),
        tuple(tuple(int(v) for v in r) for r in per_column),
        packed,
        noisy,
        tuple(c.categorical for c in columns),
    )


def _pack(values: EncryptedVector) -> PackedCiphertexts:
    """Slots of EVENT_VALUE_BITS + 42 bits, first slot high, like ``mask_and_pack`` (no masks)."""
    key = values.public_key
    slot_bits = EVENT_VALUE_BITS + SLOT_EXTRA_BITS
    per = slots_per_ciphertext(key.bits, slot_bits)
    parts = []
    for start in range(0, len(values), per):
        group = values.take(list(range(start, min(start + per, len(values)))))
        weights = [1 << (slot_bits * (len(group) - 1 - i)) for i in range(len(group))]
        parts.append(weighted_sum(group, weights))
    # The lender owns the key and decrypts these: textbook randomness, not its hs (review F6).
    packed = concat(parts[0], *parts[1:]).rerandomize_for_owner() if parts else values
    return PackedCiphertexts(
        key.fingerprint, slot_bits, EVENT_VALUE_BITS, len(values), tuple(packed.ciphertexts)
    )


# -- the lender opens the sums -----------------------------------------------------------------
@dataclass(frozen=True)
class ColumnStats:
    """Rows and events per fine bin of one column (missing bin last), as the lender sees them."""

    party: str
    name: str
    rows: IntArray
    events: IntArray


def open_bin_sums(
    private_key: PrivateKey, party: str, sums: EncryptedBinSums, train_rows: int
) -> list[ColumnStats]:
    """Decrypt a partner's per-bin event sums; ProtocolError when they are inconsistent."""
    names = len(sums.names)
    if len(sums.rows) != names or len(sums.unordered) != names or len(set(sums.names)) != names:
        raise ProtocolError(f"bin sums of {party!r}: names and counts do not match")
    if any(len(r) < 2 for r in sums.rows) or sum(len(r) for r in sums.rows) != sums.events.count:
        raise ProtocolError(f"bin sums of {party!r}: {sums.events.count} sums for the bins sent")
    slots = decrypt_packed(private_key, sums.events)
    events = np.array([s - EVENT_OFFSET for s in slots], dtype=np.int64)
    out: list[ColumnStats] = []
    at = 0
    for name, counts in zip(sums.names, sums.rows, strict=True):
        rows = np.array(counts, dtype=np.int64)
        ev = events[at : at + len(rows)]
        at += len(rows)
        if sums.noisy:
            rows = np.maximum(rows, 0)
            ev = np.clip(ev, 0, rows)
        elif int(rows.sum()) != train_rows or np.any(ev < 0) or np.any(ev > rows):
            raise ProtocolError(f"bin sums of {party!r}, column {name!r}: counts out of range")
        out.append(ColumnStats(party, name, rows, ev.astype(np.int64)))
    return out


def plain_stats(
    party: str, raw: np.ndarray, y: np.ndarray, columns: Sequence[FineColumn]
) -> list[ColumnStats]:
    """The lender's own columns: counts straight from its rows and labels."""
    index = bin_matrix(raw, columns)
    out = []
    for j, column in enumerate(columns):
        rows, events = bin_counts(index[:, j], y, column.binning.n_bins)
        out.append(ColumnStats(party, column.name, rows, events))
    return out


# -- WOE, IV, selection and merges -------------------------------------------------------------
@dataclass(frozen=True)
class ColumnPlan:
    """The lender's decision for one column: keep it, and the groups of its regular fine bins.

    ``fold``: merged bins (the missing bin is the last) that get no design column and score
    like the reference, because they hold too few training rows (``design_floor``).
    """

    name: str
    keep: bool
    groups: tuple[tuple[int, ...], ...]
    fold: tuple[int, ...] = ()


@dataclass(frozen=True)
class ColumnReport:
    """One row of the IV report (aggregates only)."""

    party: str
    column: str
    iv: float
    iv_fine: float
    fine_bins: int
    bins: int
    kept: bool
    woe: tuple[float, ...]


def merge_column(
    stats: ColumnStats, categorical: bool
) -> tuple[tuple[tuple[int, ...], ...], IntArray, IntArray]:
    """Monotonic groups of the regular bins (categories are not ordered: left alone)."""
    regular_rows, regular_events = stats.rows[:-1], stats.events[:-1]
    if categorical or regular_rows.sum() == 0:
        groups = [[k] for k in range(len(regular_rows))]
    else:
        groups = merge_monotonic(regular_rows, regular_events)
    rows = np.append(group_counts(regular_rows, groups), stats.rows[-1])
    events = np.append(group_counts(regular_events, groups), stats.events[-1])
    return tuple(tuple(g) for g in groups), rows, events


def _iv(rows: IntArray, events: IntArray) -> tuple[np.ndarray, float]:
    if events.sum() == 0 or events.sum() == rows.sum():
        return np.zeros(len(rows)), 0.0
    return woe_iv(rows, events)


def plan_columns(
    stats: Sequence[ColumnStats],
    categorical: Collection[str],
    threshold: float,
    min_rows: int = 0,
) -> tuple[list[ColumnPlan], list[ColumnReport]]:
    """Merge, WOE and IV of every column of one party; keep the columns at or above
    ``threshold`` (the best one always, so no party is left without a column). Merged bins
    (missing and ``other`` included) with fewer than ``min_rows`` rows are folded."""
    plans, reports = [], []
    for s in stats:
        groups, rows, events = merge_column(s, s.name in categorical)
        woe, iv = _iv(rows, events)
        _, iv_fine = _iv(s.rows, s.events)
        fold = tuple(k for k, r in enumerate(rows.tolist()) if r < min_rows)
        plans.append(ColumnPlan(s.name, iv >= threshold, groups, fold))
        reports.append(
            ColumnReport(
                s.party,
                s.name,
                iv,
                iv_fine,
                len(s.rows),
                len(rows),
                iv >= threshold,
                tuple(woe.tolist()),
            )
        )
    if reports and not any(r.kept for r in reports):
        best = max(range(len(reports)), key=lambda i: reports[i].iv)
        plans[best] = dataclasses.replace(plans[best], keep=True)
        reports[best] = _replace_kept(reports[best], True)
    return plans, reports


def _replace_kept(report: ColumnReport, kept: bool) -> ColumnReport:
    return ColumnReport(
        report.party,
        report.column,
        report.iv,
        report.iv_fine,
        report.fine_bins,
        report.bins,
        kept,
        report.woe,
    )


# -- the encoder the parties train with ------------------------------------------------------------
@dataclass(frozen=True)
class EncodedColumn:
    """A kept column: merged bins and how they become design columns."""

    name: str
    index: int
    binning: Binning
    categorical: bool
    mode: str  # "onehot" or "woe"
    woe: tuple[float, ...] = ()
    active: tuple[int, ...] = ()  # one-hot: bins with a design column (reference and empty: none)
    # One-hot: each active column's share of the training rows, subtracted so the columns are
    # centred. The model is the same (the intercept absorbs the shift); the party's Newton
    # steps then no longer fight the lender's intercept (docs/BINNING.md, "Encoding").
    centre: tuple[float, ...] = ()


def centred_indicators(
    levels: np.ndarray, active: Sequence[int], centre: Sequence[float]
) -> np.ndarray:
    """One indicator column per ``active`` level, minus its training share (``centre``; none
    for a model part saved before columns were centred)."""
    onehot = (levels[:, None] == np.asarray(active, dtype=np.int64)[None, :]).astype(np.float64)
    shift = np.asarray(centre if centre else [0.0] * len(active), dtype=np.float64)
    centred: np.ndarray = onehot - shift[None, :]
    return centred


class BinEncoder:
    """Raw columns -> one-hot or WOE design columns (``FeatureParty.set_encoder``)."""

    def __init__(self, columns: Sequence[EncodedColumn], n_raw: int) -> None:
        self.columns = list(columns)
        self.n_raw = n_raw
        self._weights: Callable[[], np.ndarray] | None = None
        self._has_intercept = False

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for c in self.columns:
            if c.mode == "woe":
                names.append(f"{c.name}:woe")
            else:
                labels = c.binning.labels()
                names.extend(f"{c.name}={labels[k]}" for k in c.active)
        return names

    def transform(self, raw: np.ndarray) -> np.ndarray:
        data = np.asarray(raw, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.n_raw:
            raise DataError(f"encoder expects {self.n_raw} raw columns, got shape {data.shape}")
        parts = []
        for c in self.columns:
            bins = _bins(c.binning, data[:, c.index], c.categorical)
            if c.mode == "woe":
                parts.append(apply_woe(bins, np.asarray(c.woe))[:, None])
            else:
                parts.append(centred_indicators(bins, c.active, c.centre))
        return np.hstack(parts) if parts else np.zeros((len(data), 0))

    def bind_weights(self, source: Callable[[], np.ndarray], *, has_intercept: bool) -> None:
        """Let ``to_dict`` add the points table of the party's current weights."""
        self._weights, self._has_intercept = source, has_intercept

    def points(
        self, weights: np.ndarray, scorecard: Scorecard, intercept: float = 0.0
    ) -> dict[str, Any]:
        """Points per bin of every kept column (and the base points, with the intercept)."""
        logits: dict[str, list[float]] = {}
        at = 0
        for c in self.columns:
            if c.mode == "woe":
                logits[c.name] = [float(weights[at]) * w for w in c.woe]
                at += 1
            else:
                shares = c.centre or (0.0,) * len(c.active)
                column = weights[at : at + len(c.active)]
                shift = float(np.dot(column, shares))
                values = [-shift] * c.binning.n_bins
                for k, w in zip(c.active, column.tolist(), strict=True):
                    values[k] = float(w) - shift
                at += len(c.active)
                logits[c.name] = values
        table = scorecard.points_table(intercept, logits)
        rows = [
            {
                "column": c.name,
                "bin": k,
                "label": label,
                "points": round(float(table.points[c.name][k]), 4),
            }
            for c in self.columns
            for k, label in enumerate(c.binning.labels())
        ]
        return {"base": round(table.base, 4), "rows": rows}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "bins",
            "n_raw": self.n_raw,
            "columns": [
                {
                    "name": c.name,
                    "index": c.index,
                    "binning": c.binning.to_dict(),
                    "categorical": c.categorical,
                    "mode": c.mode,
                    "woe": list(c.woe),
                    "active": list(c.active),
                    "centre": list(c.centre),
                }
                for c in self.columns
            ],
        }
        if self._weights is not None:
            weights = np.asarray(self._weights(), dtype=np.float64)
            intercept = float(weights[-1]) if self._has_intercept else 0.0
            table = self.points(weights, Scorecard(), intercept)
            if not self._has_intercept:
                table.pop("base")
            out["points"] = table
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinEncoder:
        """Rebuild from ``to_dict`` output (ConfigError when malformed)."""
        try:
            columns = [
                EncodedColumn(
                    str(c["name"]),
                    int(c["index"]),
                    Binning.from_dict(c["binning"]),
                    bool(c["categorical"]),
                    str(c["mode"]),
                    tuple(float(w) for w in c["woe"]),
                    tuple(int(k) for k in c["active"]),
                    tuple(float(v) for v in c.get("centre", ())),
                )
                for c in data["columns"]
            ]
            return cls(columns, int(data["n_raw"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed bin encoder in the model part: {exc!r}") from exc


def partner_encoder(
    party: FeatureParty,
    columns: Sequence[FineColumn],
    plans: Sequence[ColumnPlan],
    min_share: float = 0.0,
) -> BinEncoder:
    """One-hot encoder of a partner's kept columns; the largest merged bin is the reference.

    A merged bin gets a design column only when the plan does not fold it and it holds enough
    training rows, in all and in every mini-batch of the job (``design_floor``, ``min_share``
    being the job's ``min_bin_share``); the others score like the reference.
    """
    by_name = {p.name: p for p in plans}
    if sorted(by_name) != sorted(c.name for c in columns) or len(by_name) != len(plans):
        raise ProtocolError(f"party {party.name!r}: the bin plan does not name exactly its columns")
    raw = train_raw(party)
    encoded = []
    for c in columns:
        plan = by_name[c.name]
        if not plan.keep:
            continue
        try:
            merged = c.binning.regroup(plan.groups)
        except ConfigError as exc:
            raise ProtocolError(
                f"party {party.name!r}, column {c.name!r}: bad merge: {exc}"
            ) from exc
        if any(not 0 <= k < merged.n_bins for k in plan.fold):
            raise ProtocolError(f"party {party.name!r}, column {c.name!r}: bad fold {plan.fold}")
        bins = _bins(merged, raw[:, c.index], c.categorical)
        counts = np.bincount(bins, minlength=merged.n_bins)
        reference = int(np.argmax(counts))
        active = columned_levels(
            bins,
            merged.n_bins,
            reference,
            min_share=min_share,
            settings=party.settings,
            exclude=plan.fold,
        )
        shares = tuple(float(counts[k]) / max(1, len(raw)) for k in active)
        encoded.append(
            EncodedColumn(c.name, c.index, merged, c.categorical, "onehot", (), active, shares)
        )
    return BinEncoder(encoded, int(party.raw.shape[1]))


# -- each side's state for one job ----------------------------------------------------------------
class PartnerBinning:
    """A partner's side: fine bins, encrypted label sums, then the lender's plan applied."""

    def __init__(
        self, party: FeatureParty, settings: Any, categorical: Collection[str] = ()
    ) -> None:
        self.party = party
        self.settings = settings
        # The party's own categorical columns (text columns found in its file) count too.
        self.categorical = frozenset(categorical) | frozenset(party.categorical)
        self.columns: list[FineColumn] = []
        self.labels: EncryptedVector | None = None

    def receive_labels(self, labels: EncryptedVector, *, allow_small: bool = False) -> None:
        """Keep the lender's encrypted labels; refuses a key weaker than the job's, and one that
        fails the key policy (``check_peer_key``, CryptoError naming the lender)."""
        job_key = self.party.public_key
        if job_key is not None and labels.public_key.bits < job_key.bits:
            raise ProtocolError(
                f"the lender's label key has {labels.public_key.bits} bits, "
                f"below the job's {job_key.bits}"
            )
        # The job key passed the same policy at setup: one below 2048 bits means a test run.
        small = allow_small or (job_key is not None and job_key.bits < MIN_KEY_BITS)
        check_peer_key(labels.public_key, allow_small=small, party="the lender")
        rows = len(train_raw(self.party))
        if len(labels) != rows or labels.scale_bits != 0:
            raise ProtocolError(f"expected {rows} encrypted labels at scale 0, got {len(labels)}")
        self.labels = labels

    @property
    def label_key(self) -> PublicKey:
        """The lender's key of this job's labels."""
        if self.labels is None:
            raise ProtocolError(f"party {self.party.name!r} has no encrypted labels yet")
        return self.labels.public_key

    def bin_sums(self, rng: random.Random | None = None) -> EncryptedBinSums:
        if self.labels is None:
            raise ProtocolError(f"party {self.party.name!r} has no encrypted labels yet")
        self.columns = fit_columns(self.party, self.settings, self.categorical)
        epsilon = float(getattr(self.settings, "noise_epsilon", 0.0))
        return compute_bin_sums(
            self.party, self.columns, self.labels, noise_epsilon=epsilon, rng=rng
        )

    def apply_plan(self, plans: Sequence[ColumnPlan]) -> int:
        """Encode the kept columns one-hot for training; returns the design column count."""
        if not self.columns:
            raise ProtocolError(f"party {self.party.name!r} has no bins to apply a plan to")
        min_share = float(self.settings.min_bin_share)
        encoder = partner_encoder(self.party, self.columns, plans, min_share)
        self.party.set_encoder(encoder)
        party = self.party
        encoder.bind_weights(lambda: party.weights, has_intercept=False)
        return len(encoder.feature_names)


class LenderBinning:
    """The lender's side: its key and labels, the partners' decrypted counts, the decisions."""

    def __init__(
        self, lender: LabelParty, settings: Any, categorical: Collection[str] = ()
    ) -> None:
        self.lender = lender
        self.settings = settings
        self.categorical = frozenset(categorical) | frozenset(lender.categorical)
        self._private: PrivateKey | None = None
        self._labels: EncryptedVector | None = None
        self.stats: dict[str, tuple[list[ColumnStats], frozenset[str]]] = {}

    def encrypt_labels(self, key_bits: int, *, allow_small: bool = False) -> EncryptedVector:
        """The training labels under the lender's own fresh key (made once per job)."""
        if self._labels is None:
            _, self._private, self._labels = encrypt_train_labels(
                self.lender, key_bits, allow_small=allow_small
            )
        return self._labels

    @property
    def public_key(self) -> PublicKey:
        """The lender's own key of this job (after ``encrypt_labels``)."""
        if self._labels is None:
            raise ProtocolError("the lender has not encrypted its labels yet")
        return self._labels.public_key

    def receive_sums(self, partner: str, sums: EncryptedBinSums) -> None:
        if self._private is None or self.lender.split is None:
            raise ProtocolError("bin sums arrived before the lender sent its labels")
        stats = open_bin_sums(self._private, partner, sums, len(self.lender.split.train))
        unordered = frozenset(n for n, u in zip(sums.names, sums.unordered, strict=True) if u)
        self.stats[partner] = (stats, unordered)

    def select(
        self, partners: Sequence[str]
    ) -> tuple[dict[str, list[ColumnPlan]], list[ColumnReport], int]:
        """Plans for every partner, the IV report, and the lender's own encoder (applied)."""
        missing = sorted(set(partners) - set(self.stats))
        if missing:
            raise ProtocolError(f"no bin sums from {', '.join(missing)}")
        threshold = float(self.settings.iv_threshold)
        # The label owner folds a partner's small merged bins itself (the partner's encoder
        # applies the batch floors on top); it can judge only from the counts it was sent.
        train_rows = len(_train_rows(self.lender))
        min_rows = total_floor(float(self.settings.min_bin_share), train_rows)
        plans: dict[str, list[ColumnPlan]] = {}
        reports: list[ColumnReport] = []
        for partner in partners:
            stats, unordered = self.stats[partner]
            plans[partner], rows = plan_columns(stats, unordered, threshold, min_rows)
            reports.extend(rows)
        own_reports, features = self._own_columns(threshold)
        return plans, own_reports + reports, features

    def _own_columns(self, threshold: float) -> tuple[list[ColumnReport], int]:
        lender = self.lender
        columns = fit_columns(lender, self.settings, self.categorical)
        raw = train_raw(lender)
        y = lender.labels(_train_rows(lender))
        stats = plain_stats(lender.name, raw, y, columns)
        plans, reports = plan_columns(stats, self.categorical, threshold)
        encoded = []
        for c, plan, report in zip(columns, plans, reports, strict=True):
            if plan.keep:
                merged = c.binning.regroup(plan.groups)
                encoded.append(
                    EncodedColumn(c.name, c.index, merged, c.categorical, "woe", report.woe)
                )
        encoder = BinEncoder(encoded, int(raw.shape[1]))
        if len(encoded) > 1:
            x = encoder.transform(raw)
            iv = {
                c.name: r.iv for c, r in zip(encoded, [r for r in reports if r.kept], strict=True)
            }
            kept = set(select_by_correlation(x, [c.name for c in encoded], iv, MAX_CORRELATION))
            encoder = BinEncoder([c for c in encoded if c.name in kept], int(raw.shape[1]))
            reports = [_replace_kept(r, r.kept and r.column in kept) for r in reports]
        lender.set_encoder(encoder)
        encoder.bind_weights(lambda: lender.weights, has_intercept=True)
        return reports, len(encoder.feature_names)


# -- the report --------------------------------------------------------------------------------
REPORT_FIELDS = ("party", "column", "iv", "iv_fine", "fine_bins", "bins", "kept")


def report_rows(reports: Sequence[ColumnReport]) -> list[dict[str, Any]]:
    """What leaves the lender: per column IV and bin counts (no per-bin figure), best first."""
    rows = [
        {
            "party": r.party,
            "column": r.column,
            "iv": round(r.iv, 6),
            "iv_fine": round(r.iv_fine, 6),
            "fine_bins": r.fine_bins,
            "bins": r.bins,
            "kept": r.kept,
        }
        for r in reports
    ]
    return sorted(rows, key=lambda row: (-float(row["iv"]), str(row["party"]), str(row["column"])))


# A text cell starting with one of these is run as a formula by spreadsheets (OWASP, CSV
# injection). Column names are the partners' own text and the rows come from the lender.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is text a spreadsheet would run; numbers stay."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def report_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The IV report as CSV; every text cell is defused against formula injection.

    Lines end in CRLF (RFC 4180), so the csv module quotes any cell holding a CR or LF.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(REPORT_FIELDS), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row[k]) for k in REPORT_FIELDS})
    return buffer.getvalue()


def report_html(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in REPORT_FIELDS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[k]))}</td>" for k in REPORT_FIELDS) + "</tr>"
        for row in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Information value</title></head>"
        f"<body><h1>Information value by column</h1><img src='iv.png' alt='IV chart'>"
        f"<table border='1'><tr>{head}</tr>{body}</table></body></html>\n"
    )


def iv_by_column(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Column -> IV for the chart; a column name used by two parties is prefixed by the party."""
    names = [str(r["column"]) for r in rows]
    return {
        (
            str(r["column"])
            if names.count(str(r["column"])) == 1
            else f"{r['party']}:{r['column']}"
        ): float(r["iv"])
        for r in rows
    }


# -- everything in one process, for tests and benchmarks ----------------------------------------
@dataclass(frozen=True)
class BinningResult:
    report: list[dict[str, Any]]
    features: dict[str, int]


def run_binning_local(
    lender: LabelParty,
    hosts: Sequence[FeatureParty],
    settings: Any,
    *,
    categorical: Mapping[str, Collection[str]] | None = None,
    key_bits: int = 2048,
    allow_small: bool = False,
    rng: random.Random | None = None,
) -> BinningResult:
    """The node protocol's steps with the same domain objects calling each other directly."""
    cats = categorical or {}
    lender_side = LenderBinning(lender, settings, cats.get(lender.name, ()))
    labels = lender_side.encrypt_labels(key_bits, allow_small=allow_small)
    partners = {h.name: PartnerBinning(h, settings, cats.get(h.name, ())) for h in hosts}
    for name, partner in partners.items():
        partner.receive_labels(labels, allow_small=allow_small)
        lender_side.receive_sums(name, partner.bin_sums(rng))
    plans, reports, own = lender_side.select(list(partners))
    features = {lender.name: own}
    for name, partner in partners.items():
        features[name] = partner.apply_plan(plans[name])
    return BinningResult(report_rows(reports), features)
