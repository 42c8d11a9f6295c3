"""The lender's side of federated boosted trees: labels, its own key for g and h, every choice.

The lender computes each row's ``g`` and ``h``, encrypts them under a Paillier key of its own
(the coordinator decrypts nothing in this family), decrypts the partners' packed candidate sums,
picks every split and computes every leaf value. It keeps the trees' structure, its own
thresholds and the leaf values; a partner's thresholds stay with the partner.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcredit.crypto.owner import encrypt_owned
from fedcredit.errors import ProtocolError
from fedcredit.model.trees import (
    FloatArray,
    IntArray,
    grow_tree,
    log_loss,
)
from fedcredit.model.treeshap import node_cover
from fedcredit.protocol.trees import store
from fedcredit.protocol.trees.importance import lender_csv, lender_importance, split_gains
from fedcredit.protocol.trees.joint import JointLender
from fedcredit.protocol.trees.messages import (
    Gradients,
    Histograms,
    LeafMasks,
    Leaves,
    MixChoice,
    SplitBits,
)
from fedcredit.protocol.trees.scoring import LenderTree, combine
from fedcredit.protocol.trees.slots import (
    SlotLayout,
    encode_rows,
)


class TreesLender(JointLender):
    """The lender: labels, margins of every aligned row, the trees, its own Paillier key
    (``GrowingLender``); joint mode's steps (``JointLender``); mix mode's and the end of a tree."""

    def own_tree(self) -> None:
        """Mix: the lender's own tree, in plain (no encryption, no message)."""
        grow = self._growing()
        split = self._require_split()
        g, h = self._floats(np.arange(len(split.train)))
        tree = grow_tree(
            self.train_bins, self.n_regular, g, h, self.params, groups=self.group_columns
        )
        grow.record.own = tree
        grow.record.split_by = [self.name if f >= 0 else "" for f in tree.feature.tolist()]
        grow.node = tree.leaf_of(self.bins, self.n_regular)

    # -- mix: a partner's tree ----------------------------------------------------------------
    def mix_gradients(self, tree: int) -> Gradients:
        """Per training row ``[[g, h]]`` in two slots, under the lender's own key."""
        grow, key = self._growing(), self._require_own_key()
        layout = SlotLayout(self.width, 2, 1)
        ints = encode_rows([grow.h, grow.g], np.zeros(len(grow.g), np.int64), layout)
        values = encrypt_owned(key, self._private, ints, 0)
        return Gradients(tree, 0, layout.width, int(self.settings.gh_scale_bits), 1, 1, values)

    def mix_choose(self, message: Histograms) -> MixChoice:
        """The best candidate of each open node (or -1: a leaf), from the partner's sums."""
        grow = self._growing()
        nodes = self.open_nodes(message.level)
        if len(message.counts) != len(nodes):
            raise ProtocolError(f"sums for {len(message.counts)} nodes, {len(nodes)} are open")
        opened = self._open(message, SlotLayout(self.width, 2, 1))
        winners = []
        for j, cands in zip(nodes, opened, strict=True):
            k = self._best_of(cands, grow.totals[j], slots=(1, 0, None))
            winners.append(-1 if k is None else k)
            if k is None:
                grow.record.split_by[j] = ""
                continue
            left = (cands[k][1], cands[k][0], 0)
            self._split(j, message.tree, left, by=grow.record.owner)
        for j in nodes:
            if not grow.record.split_by[j]:
                self._leaf(j)
        return MixChoice(message.tree, message.level, tuple(winners))

    def mix_leaves(self, message: Leaves) -> None:
        """The partner's leaf of every aligned row: the tree's contribution to the margins."""
        grow = self._growing()
        leaves = np.frombuffer(message.leaves, dtype=np.uint8).astype(np.int64)
        tree = grow.record.own
        if len(leaves) != len(self.aligned_rows) or not np.all(
            tree.exists[leaves] & (tree.feature[leaves] < 0)
        ):
            raise ProtocolError("the partner's leaves are not leaves of this tree")
        if any(grow.record.split_by[j] for j in set(leaves.tolist())):
            raise ProtocolError("a row ended in a node that was split")
        grow.node = leaves

    # -- the end of a tree ----------------------------------------------------------------------
    def end_tree(self) -> bool:
        """Leaf values, margins, the validation loss; True when early stopping says stop."""
        grow = self._growing()
        tree = grow.record.own
        split = self._require_split()
        if not (str(self.settings.mode) == "mix" and grow.record.owner == self.name):
            for j in np.flatnonzero(tree.exists).tolist():
                if not grow.record.split_by[j]:
                    self._leaf(j)
        grow.record.cover = node_cover(grow.node[split.train], tree.exists)
        g, h = self._floats(np.arange(len(split.train)))
        l2 = float(self.settings.l2)
        grow.record.gain = split_gains(grow.record, grow.node[split.train], g, h, l2)
        self.margin = self.margin + tree.value[grow.node]
        self.model.append(grow.record)
        self.leaves.append(grow.node)
        self._grow = None
        self.kept = len(self.model)
        rounds = int(self.settings.early_stopping_rounds)
        if not len(split.validation) or not rounds:
            return False
        loss = log_loss(self.labels(split.validation), self.margin[split.validation])
        self.validation_loss.append(loss)
        self.kept = int(np.argmin(self.validation_loss)) + 1
        return len(self.validation_loss) - self.kept >= rounds

    # -- checkpoints, the model and scoring ------------------------------------------------------
    def kept_margins(self, rows: IntArray) -> FloatArray:
        """Margins of aligned ``rows`` from the kept trees only (early stopping's choice)."""
        out = np.full(len(rows), self.base)
        for record, leaves in zip(self.model[: self.kept], self.leaves, strict=False):
            out = out + record.own.value[leaves[rows]]
        return out

    def state(self) -> dict[str, Any]:
        """The checkpoint after a tree (``fedcredit.protocol.trees.store``)."""
        return store.lender_state(self)

    def load_state(self, state: Any) -> None:
        """Back to a checkpoint; a fresh key of its own is made before the next tree."""
        store.load_lender_state(self, state)
        self._grow, self.key, self._private = None, None, None

    def model_part(self) -> dict[str, Any]:
        """The lender's part: its edges, the trees' structure, its thresholds, leaf values."""
        return store.lender_model_part(self)

    def load_model_part(self, part: Any) -> None:
        """The stored part back, for scoring (``store.load_lender_model_part``)."""
        store.load_lender_model_part(self, part)

    def importance_csv(self) -> str:
        """``importance.csv`` of the lender's own folder: its columns, one line per partner."""
        rows = lender_importance(
            self.model[: self.kept], self.name, self.feature_names, self.partners
        )
        return lender_csv(rows)

    def margins(self, raw: np.ndarray, answers: dict[str, LeafMasks | SplitBits]) -> FloatArray:
        """Margins of applicants from the lender's raw columns and the partners' answers."""
        return combine(
            self.model[: self.kept],
            self.name,
            self.base,
            self.bins_for(raw),
            self.n_regular,
            answers,
        )


__all__ = ["LenderTree", "TreesLender"]
