"""The lender's tree in the growing: its state, its own key, the sums both modes decide with.

``GrowingLender`` holds what both modes share (labels, margins, the lender's own Paillier key,
the tree being grown, its nodes' sums, splits and leaves); ``fedcredit.protocol.trees.joint``
adds joint mode's steps and ``fedcredit.protocol.trees.lender`` mix mode's and the end of a tree.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedcredit.crypto import PrivateKey, PublicKey, decrypt_packed, generate_keypair
from fedcredit.errors import ProtocolError
from fedcredit.model.trees import (
    FloatArray,
    IntArray,
    Tree,
    base_margin,
    best_index,
    gains,
    gradients,
    leaf_value,
)
from fedcredit.protocol.trees.columns import TreeColumns
from fedcredit.protocol.trees.messages import (
    Histograms,
)
from fedcredit.protocol.trees.scoring import LenderTree
from fedcredit.protocol.trees.slots import (
    SlotLayout,
    decode,
    quantize,
    slot_width,
)


@dataclass
class _Growing:
    """The tree being grown: quantized g and h of the training rows, nodes' sums, rows' nodes."""

    record: LenderTree
    g: list[int]
    h: list[int]
    node: IntArray  # heap node of every aligned row (joint; mix: filled at the end)
    totals: dict[int, tuple[int, int, int]]
    pending: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # joint: token -> node (-1 decoy)


class GrowingLender(TreeColumns):
    """The lender: labels, margins of every aligned row, the trees, its own Paillier key."""

    def __init__(
        self,
        name: str,
        ids: list[str],
        features: np.ndarray,
        feature_names: list[str],
        labels: np.ndarray,
        settings: Any,
        *,
        sample_seed: int | None = None,
    ) -> None:
        super().__init__(name, ids, features, feature_names, settings)
        self._y = np.asarray(labels, dtype=np.float64)
        self.partners: list[str] = []
        self.key: PublicKey | None = None
        self._private: PrivateKey | None = None
        self.model: list[LenderTree] = []
        self.base = 0.0
        self.margin = np.zeros(0)
        self.validation_loss: list[float] = []
        self.kept = 0
        self.leaves: list[IntArray] = []  # per tree, the leaf of every aligned row
        # The row sample of each tree is the lender's secret: a seed the partners do not know.
        self._rng = np.random.default_rng(
            secrets.randbits(64) if sample_seed is None else sample_seed
        )
        self._grow: _Growing | None = None

    @property
    def group_columns(self) -> frozenset[int]:
        """The lender's own categorical columns: split by category groups, in plain."""
        return frozenset(self.category_columns)

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """Labels of aligned rows (indices into the shared order)."""
        out: np.ndarray = self._y[self.aligned_rows[rows]]
        return out

    def _aligned(self) -> None:
        super()._aligned()
        split = self._require_split()
        self.base = base_margin(self.labels(split.train))
        self.margin = np.full(len(self.aligned_rows), self.base)

    def make_key(self, bits: int, *, allow_small: bool = False) -> PublicKey:
        """A fresh key pair of the lender's own for this job's g and h."""
        self.key, self._private = generate_keypair(bits, allow_small=allow_small)
        return self.key

    @property
    def params(self) -> Any:
        return self.settings.params

    @property
    def width(self) -> int:
        return slot_width(len(self._require_split().train), int(self.settings.gh_scale_bits))

    def owner_of(self, tree: int) -> str:
        """Mix mode's rule: round robin over the lender, then the partners in federation order."""
        parties = [self.name, *self.partners]
        return parties[tree % len(parties)]

    # -- every tree ------------------------------------------------------------------------------
    def begin_tree(self, tree: int) -> None:
        """This tree's g and h (rounded to the job's scale; rows out of the sample are zero)."""
        split = self._require_split()
        g, h = gradients(self.labels(split.train), self.margin[split.train], None)
        bits = int(self.settings.gh_scale_bits)
        g_int, h_int = np.array(quantize(g, bits)), np.array(quantize(h, bits))
        if float(self.settings.subsample) < 1.0:
            keep = self._rng.random(len(g_int)) < float(self.settings.subsample)
            g_int, h_int = np.where(keep, g_int, 0), np.where(keep, h_int, 0)
        depth = int(self.settings.depth)
        mode = str(self.settings.mode)
        owner = self.owner_of(tree) if mode == "mix" else ""
        record = LenderTree(owner, Tree.empty(depth), [""] * len(Tree.empty(depth).feature))
        node = np.zeros(len(self.aligned_rows), dtype=np.int64)
        totals = {0: (int(g_int.sum()), int(h_int.sum()), len(g_int))}
        self._grow = _Growing(record, g_int.tolist(), h_int.tolist(), node, totals)

    def _growing(self) -> _Growing:
        if self._grow is None:
            raise ProtocolError("no tree is being grown")
        return self._grow

    def _floats(self, rows: IntArray) -> tuple[FloatArray, FloatArray]:
        grow = self._growing()
        unit = float(2 ** int(self.settings.gh_scale_bits))
        return np.asarray(grow.g, np.float64)[rows] / unit, np.asarray(grow.h, np.float64)[
            rows
        ] / unit

    def open_nodes(self, level: int) -> list[int]:
        """Nodes of ``level`` still to split, in heap order (the partner derives the same list)."""
        tree = self._growing().record.own
        return [
            j for j in range(2**level - 1, 2 ** (level + 1) - 1)
            if tree.exists[j] and not self._growing().record.split_by[j]
        ]  # fmt: skip

    def _open(self, message: Histograms, layout: SlotLayout) -> list[list[list[int]]]:
        """Decrypted, decoded slots of every candidate of every group of a partner's message."""
        if self._private is None:
            raise ProtocolError("histograms arrived before the lender made its key")
        out: list[list[list[int]]] = []
        packed = iter(message.sums)
        for count in message.counts:
            out.append(
                [decode(v, layout) for v in decrypt_packed(self._private, next(packed))]
                if count
                else []
            )
            if len(out[-1]) != count:
                raise ProtocolError(f"{len(out[-1])} sums for {count} candidates")
        return out

    def _best_of(
        self,
        cands: Sequence[Sequence[int]],
        total: tuple[int, int, int],
        slots: tuple[int, int, int | None],
    ) -> int | None:
        """The index of the best candidate by gain (slots of g, h and rows in each candidate)."""
        if not cands:
            return None
        gain = self._gains(np.asarray(cands, dtype=object), total, slots)
        return best_index(gain)

    def _gains(
        self, cands: np.ndarray, total: tuple[int, int, int], slots: tuple[int, int, int | None]
    ) -> FloatArray:
        unit = float(2 ** int(self.settings.gh_scale_bits))
        gs, hs, ns = slots
        left_g = np.array([float(v) for v in cands[:, gs]]) / unit
        left_h = np.array([float(v) for v in cands[:, hs]]) / unit
        left_n = None if ns is None else cands[:, ns].astype(np.int64)
        return gains(
            left_g, left_h, left_n, (total[0] / unit, total[1] / unit, total[2]), self.params
        )

    def _split(self, j: int, tree: int, left: tuple[int, int, int], by: str) -> None:
        grow = self._growing()
        g, h, n = grow.totals[j]
        grow.totals[2 * j + 1] = left
        grow.totals[2 * j + 2] = (g - left[0], h - left[1], n - left[2])
        grow.record.split_by[j] = by
        grow.record.own.exists[2 * j + 1] = grow.record.own.exists[2 * j + 2] = True

    def _leaf(self, j: int) -> None:
        grow = self._growing()
        unit = float(2 ** int(self.settings.gh_scale_bits))
        g, h, _ = grow.totals[j]
        grow.record.own.value[j] = leaf_value(g / unit, h / unit, self.params)

    def _set_children(self, j: int, train_node: IntArray) -> None:
        grow = self._growing()
        for child in (2 * j + 1, 2 * j + 2):
            rows = np.flatnonzero(train_node == child)
            g = int(np.asarray(grow.g, dtype=object)[rows].sum()) if len(rows) else 0
            h = int(np.asarray(grow.h, dtype=object)[rows].sum()) if len(rows) else 0
            grow.totals[child] = (g, h, len(rows))
            grow.record.own.exists[child] = True

    def _require_own_key(self) -> PublicKey:
        if self.key is None:
            raise ProtocolError("the lender has not made its key for this job")
        return self.key


__all__ = ["GrowingLender"]
