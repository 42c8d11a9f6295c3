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

from fedcredit.model.trees import FloatArray, IntArray, Tree
from fedcredit.protocol.trees.messages import LeafMasks, SplitBits


@dataclass
class LenderTree:
    """One tree as the lender keeps it: ``own`` holds the lender's splits, the leaf values and
    which nodes exist; ``split_by[j]`` names the party whose split node j is ('' for a leaf);
    ``tokens[j]`` the partner's token (joint). ``owner``: mix, the party whose columns it uses."""

    owner: str
    own: Tree
    split_by: list[str]
    tokens: dict[int, str] = field(default_factory=dict)


def goes_left(b: IntArray, n_regular: int, t: int, dl: bool) -> np.ndarray:
    """Whether rows of bins ``b`` of one column go left at ``(t, dl)``."""
    return np.where(b >= n_regular, dl, b <= t)


@dataclass(frozen=True)
class Explained:
    """Applicants' margins and where they come from, along each tree's path (Saabas):

    ``margins = reference + own.sum(axis=1) + partners``, where ``reference`` is the margin of
    an applicant who goes each way of every split with even odds (the base plus every tree's
    mean of its two children, recursively), ``own[:, f]`` what the lender's splits on its
    column ``f`` moved the margin from there, and ``partners`` what every partner's splits did,
    as one figure (all the lender may say about them)."""

    margins: FloatArray
    reference: float
    own: FloatArray
    partners: FloatArray


def node_means(record: LenderTree) -> FloatArray:
    """Each node's mean outcome with even odds at every split below it (leaf: its value)."""
    tree = record.own
    out = np.zeros(len(tree.feature))
    for j in range(len(out) - 1, -1, -1):
        if not tree.exists[j]:
            continue
        out[j] = (
            tree.value[j] if not record.split_by[j] else 0.5 * (out[2 * j + 1] + out[2 * j + 2])
        )
    return out


def combine(
    model: Sequence[LenderTree],
    name: str,
    base: float,
    bins: IntArray,
    n_regular: Sequence[int],
    answers: dict[str, LeafMasks | SplitBits],
) -> FloatArray:
    """Margins of applicants (the lender's ``bins``) from its trees and the partners' answers."""
    return explain(model, name, base, bins, n_regular, answers).margins


def explain(
    model: Sequence[LenderTree],
    name: str,
    base: float,
    bins: IntArray,
    n_regular: Sequence[int],
    answers: dict[str, LeafMasks | SplitBits],
) -> Explained:
    """``combine``'s margins, with each one's path attribution (``Explained``)."""
    rows = len(bins)
    out = np.full(rows, base)
    own = np.zeros((rows, bins.shape[1] if bins.ndim == 2 else 0))
    partners = np.zeros(rows)
    reference = base
    leaf_sets = {p: _leaf_sets(a) for p, a in answers.items() if isinstance(a, LeafMasks)}
    bits = {p: _bits(a) for p, a in answers.items() if isinstance(a, SplitBits)}
    for t, record in enumerate(model):
        tree, mean = record.own, node_means(record)
        reference += mean[0]
        if record.owner and record.owner != name:
            size = len(tree.feature)
            reach = leaf_sets[record.owner][t][: rows * size].reshape(rows, size)
            value = (reach * tree.value).sum(axis=1) / np.maximum(reach.sum(axis=1), 1)
            out += value
            partners += value - mean[0]
            continue
        node = np.zeros(rows, dtype=np.int64)
        for _ in range(tree.depth):
            for j in np.unique(node).tolist():
                by = record.split_by[j]
                if not by:
                    continue
                at = np.flatnonzero(node == j)
                if by == name:
                    f = int(tree.feature[j])
                    left = goes_left(
                        bins[at, f],
                        n_regular[f],
                        int(tree.threshold[j]),
                        bool(tree.default_left[j]),
                    )
                else:
                    left = bits[by][record.tokens[j]][at]
                node[at] = 2 * j + np.where(left, 1, 2)
                moved = mean[node[at]] - mean[j]
                if by == name:
                    own[at, f] += moved
                else:
                    partners[at] += moved
        out += tree.value[node]
    return Explained(out, reference, own, partners)


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


__all__ = ["Explained", "LenderTree", "combine", "explain", "goes_left", "node_means"]
