"""The lender's side of scoring: its trees, its own splits, the partners' answers combined.

Mix mode: a partner's tree is answered by a leaf mask per applicant (the leaves it can reach;
one, since every split of that tree is the partner's; every leaf for an id it does not hold, in
which case the lender averages the reachable leaves). Joint mode: the partner answers the side
of each applicant at each of its tokens, decoys included (it does not know which are used), and
the lender walks the tree; a partner that knew the layout could tell, for a tree whose root is
its split, every training row's side of the root, which joint mode is there to prevent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedcredit.model.trees import FloatArray, IntArray, Tree, split_left
from fedcredit.model.treeshap import even_cover, tree_shap
from fedcredit.protocol.trees.messages import LeafMasks, SplitBits


@dataclass
class LenderTree:
    """One tree as the lender keeps it: ``own`` holds the lender's splits, the leaf values and
    which nodes exist; ``split_by[j]`` names the party whose split node j is ('' for a leaf);
    ``tokens[j]`` the partner's token (joint). ``owner``: mix, the party whose columns it uses.
    ``cover[j]``: the training rows that reached node j (None in a model stored before cover
    was kept; ``fedcredit.model.treeshap.even_cover`` stands in); ``gain[j]`` split j's gain
    (``fedcredit.protocol.trees.importance``)."""

    owner: str
    own: Tree
    split_by: list[str]
    tokens: dict[int, str] = field(default_factory=dict)
    cover: FloatArray | None = None
    gain: FloatArray | None = None


def goes_left(
    b: IntArray, n_regular: int, t: int, dl: bool, left_set: IntArray | None = None
) -> np.ndarray:
    """Whether rows of bins ``b`` of one column go left at ``(t, dl)`` (or at the bins of a
    group split's ``left_set``)."""
    return split_left(b, n_regular, t, dl, left_set)


@dataclass(frozen=True)
class Explained:
    """Applicants' margins and where they come from (path-dependent TreeSHAP, cover-weighted):

    ``margins = reference + own.sum(axis=1) + partners``, where ``reference`` is the expected
    margin over the training rows (the base plus every tree's cover-weighted mean of its
    leaves), ``own[:, f]`` the Shapley value of the lender's column ``f`` and ``partners`` the
    sum of every partner's (each partner's splits are one feature of the game; the lender
    reports them as one figure, all it may say about them)."""

    margins: FloatArray
    reference: float
    own: FloatArray
    partners: FloatArray


def cover_of(record: LenderTree) -> FloatArray:
    """The tree's cover, or the even stand-in for a model stored without one."""
    if record.cover is not None:
        return record.cover
    return even_cover(record.own.exists)


def combine(
    model: Sequence[LenderTree],
    name: str,
    base: float,
    bins: IntArray,
    n_regular: Sequence[int],
    answers: dict[str, LeafMasks | SplitBits],
) -> FloatArray:
    """Margins of applicants (the lender's ``bins``) from its trees and the partners' answers."""
    return explain(model, name, base, bins, n_regular, answers, attribute=False).margins


def explain(
    model: Sequence[LenderTree],
    name: str,
    base: float,
    bins: IntArray,
    n_regular: Sequence[int],
    answers: dict[str, LeafMasks | SplitBits],
    *,
    attribute: bool = True,
) -> Explained:
    """``combine``'s margins, with each one's TreeSHAP attribution (``Explained``)."""
    rows = len(bins)
    n_own = bins.shape[1] if bins.ndim == 2 else 0
    out = np.full(rows, base)
    own = np.zeros((rows, n_own))
    partners = np.zeros(rows)
    reference = base
    leaf_sets = {p: _leaf_sets(a) for p, a in answers.items() if isinstance(a, LeafMasks)}
    bits = {p: _bits(a) for p, a in answers.items() if isinstance(a, SplitBits)}
    for t, record in enumerate(model):
        tree, cover = record.own, cover_of(record)
        leaf = tree.exists & (tree.feature < 0) & np.array([not by for by in record.split_by])
        if record.owner and record.owner != name:
            # Mix: every split is the partner's, so the tree is a game of one player.
            size = len(tree.feature)
            reach = leaf_sets[record.owner][t][: rows * size].reshape(rows, size)
            value = (reach * tree.value).sum(axis=1) / np.maximum(reach.sum(axis=1), 1)
            expected = float((cover * tree.value)[leaf].sum() / max(cover[0], 1e-300))
            out += value
            partners += value - expected
            reference += expected
            continue
        left, feature = _sides(record, name, bins, n_regular, bits)
        node = np.zeros(rows, dtype=np.int64)
        for _ in range(tree.depth):
            inner = feature[node] >= 0
            node = np.where(inner, 2 * node + np.where(left[np.arange(rows), node], 1, 2), node)
        out += tree.value[node]
        if not attribute:
            continue
        players = sorted({int(f) for f in feature if f >= n_own})
        phi, expected = tree_shap(feature, tree.value, cover, left, n_own + len(players))
        reference += expected
        own += phi[:, :n_own]
        partners += phi[:, n_own:].sum(axis=1)
    return Explained(out, reference, own, partners)


def _sides(
    record: LenderTree,
    name: str,
    bins: IntArray,
    n_regular: Sequence[int],
    bits: dict[str, dict[str, np.ndarray]],
) -> tuple[np.ndarray, IntArray]:
    """Each applicant's side at every split of a tree, and the split's player: the lender's
    column, or ``n_own + i`` for the ``i``-th partner (in name order) whose split it is."""
    tree, rows = record.own, len(bins)
    n_own = bins.shape[1] if bins.ndim == 2 else 0
    partners = sorted({by for by in record.split_by if by and by != name})
    feature = np.full(len(tree.feature), -1, dtype=np.int64)
    left = np.zeros((rows, len(tree.feature)), dtype=bool)
    for j, by in enumerate(record.split_by):
        if not by:
            continue
        if by == name:
            f = int(tree.feature[j])
            feature[j] = f
            left[:, j] = goes_left(
                bins[:, f],
                n_regular[f],
                int(tree.threshold[j]),
                bool(tree.default_left[j]),
                tree.left_set.get(j),
            )
        else:
            feature[j] = n_own + partners.index(by)
            left[:, j] = bits[by][record.tokens[j]][:rows]
    return left, feature


def _leaf_sets(answer: LeafMasks) -> dict[int, np.ndarray]:
    out = {}
    for t, m in zip(answer.trees, answer.masks, strict=True):
        out[t] = np.unpackbits(np.frombuffer(m, np.uint8)).astype(bool)
    return out


def _bits(answer: SplitBits) -> dict[str, np.ndarray]:
    return {
        tok: np.unpackbits(np.frombuffer(b, np.uint8))[: answer.rows].astype(bool)
        for tok, b in zip(answer.tokens, answer.bits, strict=True)
    }


__all__ = ["Explained", "LenderTree", "combine", "cover_of", "explain", "goes_left"]
