"""A partner's side of federated boosted trees: encrypted histograms of its own columns.

The partner never decrypts anything (the lender owns the key) and never sends a threshold, an
edge or a value: it sends candidates' encrypted sums, shuffled; then, for the candidates the
lender names, the side of every aligned row (joint) or the leaf of every aligned row in its own
tree (mix). What each side learns is in ``messages`` and docs/TREES.md.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedcredit.crypto import (
    EncryptedVector,
    PackedCiphertexts,
    PublicKey,
    bin_sums,
    check_peer_key,
)
from fedcredit.crypto.packing import pack_for_owner
from fedcredit.errors import ProtocolError
from fedcredit.model.trees import IntArray, Tree
from fedcredit.protocol.trees import store
from fedcredit.protocol.trees.columns import TreeColumns
from fedcredit.protocol.trees.importance import partner_csv, partner_importance
from fedcredit.protocol.trees.messages import (
    Gradients,
    Histograms,
    LeafMasks,
    Leaves,
    MixChoice,
    SideRequest,
    Sides,
    SplitBits,
)
from fedcredit.protocol.trees.slots import SlotLayout


@dataclass(frozen=True)
class Split:
    """One of a partner's candidates: column, last bin on the left, where missing values go."""

    feature: int
    threshold: int
    default_left: bool


def column_sums(
    values: EncryptedVector, rows: IntArray, bins: IntArray, n_regular: Sequence[int]
) -> list[EncryptedVector]:
    """Per column ``[[sum of values]]`` over ``rows`` in each bin (the regular ones, then the
    missing bin), on this party's executor (``fedcredit.crypto.bin_sums``: threads, processes
    or its Ray cluster; the same bits on each)."""
    return bin_sums(values, rows, bins, [n + 1 for n in n_regular])


def prefix_candidates(
    sums: EncryptedVector, n_regular: int, keep: Sequence[tuple[int, bool]]
) -> list[EncryptedVector]:
    """Left sums ``[[bins 0..t (+ missing)]]`` of the candidates ``keep`` of one column."""
    prefix = [sums.take([0])]
    for t in range(1, n_regular):
        prefix.append(prefix[-1].add(sums.take([t])))
    missing = sums.take([n_regular])
    return [prefix[t].add(missing) if dl else prefix[t] for t, dl in keep]


def admissible(
    counts: np.ndarray, n_regular: int, floor: int, dedupe: bool
) -> list[tuple[int, bool]]:
    """Candidates ``(t, default_left)`` of one column whose two sides both hold ``floor`` rows
    (of the rows this party can count); ``dedupe`` drops twins of an earlier candidate."""
    total = int(counts.sum())
    missing = int(counts[n_regular])
    left = np.cumsum(counts[:n_regular])
    out = []
    for t in range(n_regular):
        for dl in (False, True):
            if dl and missing == 0:
                continue
            if dedupe and t > 0 and counts[t] == 0:
                continue
            n_left = int(left[t]) + (missing if dl else 0)
            if n_left >= floor and total - n_left >= floor:
                out.append((t, dl))
    return out


def pack(candidates: list[EncryptedVector], layout: SlotLayout) -> PackedCiphertexts:
    """Offset, pack several to a ciphertext and re-randomize with ``r**n`` (the lender owns the
    key: never its own DJN base, security review F6)."""
    joined = candidates[0].concat(*candidates[1:])
    return pack_for_owner(joined.add_plain_ints([layout.offset] * len(joined)), layout.bits)


class TreesPartner(TreeColumns):
    """A partner: its binned columns, the lender's key, the splits it keeps for scoring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key: PublicKey | None = None
        self.trees: dict[int, Tree] = {}  # mix: its own trees, by tree number
        self.tokens: dict[str, tuple[int, Split]] = {}  # joint: token -> (tree, split)
        self._values: EncryptedVector | None = None
        self._node = np.zeros(0, dtype=np.int64)
        self._hist: dict[int, list[EncryptedVector]] = {}
        self._offered: dict[int, list[Split]] = {}
        self._width = 0

    @staticmethod
    def split_of(feature: int, threshold: int, default_left: bool) -> Split:
        return Split(feature, threshold, default_left)

    def state(self) -> dict[str, Any]:
        """The checkpoint after a tree (``fedcredit.protocol.trees.store``)."""
        return store.partner_state(self)

    def load_state(self, state: Any) -> None:
        store.load_partner_state(self, state)
        self._values, self._hist, self._offered = None, {}, {}

    def receive_key(self, key: PublicKey, *, allow_small: bool = False) -> None:
        """The lender's own key for g and h; refused (CryptoError) unless it meets the policy."""
        self.key = check_peer_key(key, allow_small=allow_small, party="the lender")

    def _check(self, message: Gradients) -> None:
        if self.key is None or message.public_key != self.key:
            raise ProtocolError("gradients under a key the lender did not announce")
        expected = len(self._require_split().train) * message.groups
        if len(message.values) != expected:
            raise ProtocolError(f"{len(message.values)} gradient ciphertexts, expected {expected}")

    @property
    def _floor(self) -> int:
        return max(int(self.settings.min_rows), 1)

    # -- mix: a tree on this partner's columns ----------------------------------------------------
    def mix_histograms(self, message: Gradients | None, tree: int, level: int) -> Histograms:
        """The left sums of every admissible candidate of every open node of ``level``."""
        if message is not None:
            self._check(message)
            self._values = message.values
            self._node = np.zeros(len(self._require_split().train), dtype=np.int64)
            self.trees[tree] = Tree.empty(int(self.settings.depth))
            self._hist = {}
        if self._values is None:
            raise ProtocolError("histograms asked before the tree's gradients")
        layout = SlotLayout(message.width if message else self._width, 2, 1)
        self._width = layout.width
        bins = self.train_bins
        current = self.trees[tree]
        counts, sums, offered = [], [], {}
        for j in range(2**level - 1, 2 ** (level + 1) - 1):
            if not (current.exists[j] and current.feature[j] < 0 and level < current.depth):
                continue
            hist = self._node_hist(j, bins)
            rows = np.flatnonzero(self._node == j)
            cands: list[EncryptedVector] = []
            keep_all: list[Split] = []
            for f, s in enumerate(hist):
                n = np.bincount(bins[rows, f], minlength=self.n_regular[f] + 1)
                keep = admissible(n, self.n_regular[f], self._floor, dedupe=True)
                cands.extend(prefix_candidates(s, self.n_regular[f], keep))
                keep_all.extend(Split(f, t, dl) for t, dl in keep)
            order = _shuffled(len(cands))
            offered[j] = [keep_all[k] for k in order]
            counts.append(len(cands))
            if cands:
                sums.append(pack([cands[k] for k in order], layout))
        self._offered = offered
        return Histograms(tree, level, tuple(counts), tuple(sums))

    def _node_hist(self, j: int, bins: IntArray) -> list[EncryptedVector]:
        """Per column the node's bin sums: the smaller sibling summed, the larger by difference."""
        assert self._values is not None
        if j == 0 or (j - 1) // 2 not in self._hist:
            rows = np.flatnonzero(self._node == j)
            self._hist[j] = column_sums(self._values, rows, bins, self.n_regular)
            return self._hist[j]
        parent, sibling = (j - 1) // 2, j + 1 if j % 2 else j - 1
        if sibling in self._hist:
            self._hist[j] = [
                p.sub(s) for p, s in zip(self._hist[parent], self._hist[sibling], strict=True)
            ]
            return self._hist[j]
        mine, theirs = (np.flatnonzero(self._node == k) for k in (j, sibling))
        small = j if len(mine) <= len(theirs) else sibling
        self._hist[small] = column_sums(
            self._values, mine if small == j else theirs, bins, self.n_regular
        )
        if small != j:
            self._hist[j] = [
                p.sub(s) for p, s in zip(self._hist[parent], self._hist[small], strict=True)
            ]
        return self._hist[j]

    def mix_apply(self, choice: MixChoice) -> None:
        """Split the open nodes as the lender chose (or make them leaves)."""
        current = self.trees[choice.tree]
        if len(choice.winners) != len(self._offered):
            raise ProtocolError(f"{len(choice.winners)} choices for {len(self._offered)} nodes")
        bins = self.train_bins
        for j, k in zip(sorted(self._offered), choice.winners, strict=True):
            if k < 0:
                continue
            if k >= len(self._offered[j]):
                raise ProtocolError(f"candidate {k} was not offered at this node")
            s = self._offered[j][k]
            current.feature[j], current.threshold[j], current.default_left[j] = (
                s.feature, s.threshold, s.default_left,
            )  # fmt: skip
            current.exists[2 * j + 1] = current.exists[2 * j + 2] = True
            rows = np.flatnonzero(self._node == j)
            self._node[rows] = 2 * j + np.where(self._left(bins[rows], s), 1, 2)

    def mix_leaves(self, tree: int) -> Leaves:
        """The leaf of every aligned row in this partner's tree (the tree ends here)."""
        self._values, self._hist = None, {}
        leaves = self.trees[tree].leaf_of(self.bins, self.n_regular)
        return Leaves(tree, leaves.astype(np.uint8).tobytes())

    def _left(self, bins: IntArray, s: Split) -> np.ndarray:
        b = bins[:, s.feature]
        return np.where(b >= self.n_regular[s.feature], s.default_left, b <= s.threshold)

    # -- joint: every node at once, no row's node known -----------------------------------------
    def joint_histograms(self, message: Gradients) -> Histograms:
        """Per candidate of its columns (fixed, globally admissible) the sums of every node."""
        self._check(message)
        layout = SlotLayout(message.width, 3, message.nodes)
        bins = self.train_bins
        rows_all = np.arange(len(bins))
        candidates: list[Split] = []
        for f in range(bins.shape[1]):
            n = np.bincount(bins[:, f], minlength=self.n_regular[f] + 1)
            keep = admissible(n, self.n_regular[f], self._floor, dedupe=True)
            candidates.extend(Split(f, t, dl) for t, dl in keep)
        order = _shuffled(len(candidates))
        self._offered = {0: [candidates[k] for k in order]}
        count = len(bins)
        sums = []
        for group in range(message.groups):
            part = message.values.take(list(range(group * count, (group + 1) * count)))
            hist = column_sums(part, rows_all, bins, self.n_regular)
            cands: list[EncryptedVector] = []
            for f, s in enumerate(hist):
                n = np.bincount(bins[:, f], minlength=self.n_regular[f] + 1)
                keep = admissible(n, self.n_regular[f], self._floor, dedupe=True)
                cands.extend(prefix_candidates(s, self.n_regular[f], keep))
            if cands:
                sums.append(pack([cands[k] for k in order], layout))
        counts = tuple(len(candidates) for _ in range(message.groups))
        return Histograms(message.tree, message.level, counts, tuple(sums))

    def joint_sides(self, request: SideRequest) -> Sides:
        """The side of every aligned row for each requested candidate; keeps each under its token
        (this partner cannot tell which of them the lender uses)."""
        offered = self._offered.get(0, [])
        out = []
        for token, k in request.picks:
            if not 0 <= k < len(offered) or token in self.tokens:
                raise ProtocolError(f"bad side request ({token!r}, {k})")
            split = offered[k]
            self.tokens[token] = (request.tree, split)
            out.append(np.packbits(self._left(self.bins, split)).tobytes())
        return Sides(request.tree, request.level, tuple(out))

    # -- the model part and scoring ----------------------------------------------------------------
    def model_part(self) -> dict[str, Any]:
        """What this partner stores: its edges, its trees (mix), its tokens' splits (joint)."""
        return {
            "party": self.name,
            "family": "trees",
            "has_label": False,
            "feature_names": list(self.feature_names),
            "data_hash": self.data_hash,
            **self.bin_maps(),
            "trees": {
                str(t): {
                    k: getattr(tr, k).tolist()
                    for k in ("feature", "threshold", "default_left", "exists")
                }
                for t, tr in self.trees.items()
            },
            "tokens": {
                tok: [t, s.feature, s.threshold, s.default_left]
                for tok, (t, s) in self.tokens.items()
            },
        }

    def importance_csv(self) -> str:
        """``importance.csv`` of this partner's own folder: counts only, no gain."""
        return partner_csv(*partner_importance(self))

    def load_model_part(self, part: Any) -> None:
        self.load_bin_maps(part)
        self.trees = {}
        for t, arrays in part["trees"].items():
            size = len(arrays["feature"])
            self.trees[int(t)] = Tree(
                np.asarray(arrays["feature"], np.int64), np.asarray(arrays["threshold"], np.int64),
                np.asarray(arrays["default_left"], bool), np.zeros(size), np.asarray(arrays["exists"], bool),
            )  # fmt: skip
        self.tokens = {
            tok: (int(v[0]), Split(int(v[1]), int(v[2]), bool(v[3])))
            for tok, v in part["tokens"].items()
        }

    def leaf_masks(self, raw: np.ndarray) -> LeafMasks:
        """Mix: per tree of this partner, per applicant, the leaves it can reach (one, here)."""
        bins = self.bins_for(raw)
        masks = []
        for t in sorted(self.trees):
            tree = self.trees[t]
            onehot = np.zeros((len(bins), len(tree.feature)), dtype=bool)
            onehot[np.arange(len(bins)), tree.leaf_of(bins, self.n_regular)] = True
            masks.append(np.packbits(onehot).tobytes())
        return LeafMasks(tuple(sorted(self.trees)), tuple(masks), len(bins))

    def split_bits(self, raw: np.ndarray) -> SplitBits:
        """Joint: the side of every applicant at each of this partner's tokens."""
        bins = self.bins_for(raw)
        tokens = tuple(sorted(self.tokens))
        bits = tuple(np.packbits(self._left(bins, self.tokens[t][1])).tobytes() for t in tokens)
        return SplitBits(tokens, bits, len(bins))

    def answer_ids(self, ids: list[str]) -> LeafMasks | SplitBits:
        """The scoring answer for applicants by id (an unknown id reaches every leaf: all bits set)."""
        raw, unknown = self.raw_for_ids(ids)
        # An id it does not hold is a row of missing values, never another customer's row.
        raw = np.array(raw, dtype=np.float64, copy=True)
        raw[unknown] = np.nan
        answer = self.leaf_masks(raw) if self.trees else self.split_bits(raw)
        if unknown and isinstance(answer, LeafMasks):
            masks = []
            for t, m in zip(answer.trees, answer.masks, strict=True):
                bits = np.unpackbits(np.frombuffer(m, np.uint8))[
                    : len(ids) * len(self.trees[t].feature)
                ]
                grid = bits.reshape(len(ids), -1).astype(bool)
                grid[unknown] = self.trees[t].exists & (self.trees[t].feature < 0)
                masks.append(np.packbits(grid).tobytes())
            answer = LeafMasks(answer.trees, tuple(masks), answer.rows)
        return answer

    def partial_for_ids(
        self, ids: list[str], unknown: Any = None
    ) -> tuple[EncryptedVector, list[int]]:
        """Not a logistic partial score: trees answer leaf masks (``answer_ids``)."""
        raise ProtocolError("a trees partner answers leaf masks or split bits, not partial scores")


def _shuffled(count: int) -> list[int]:
    """A uniformly random order of ``count`` candidates (the operating system's generator)."""
    order = list(range(count))
    secrets.SystemRandom().shuffle(order)
    return order


__all__ = [
    "Split",
    "TreesPartner",
    "admissible",
    "column_sums",
    "pack",
    "prefix_candidates",
]
