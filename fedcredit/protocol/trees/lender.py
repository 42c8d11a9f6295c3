"""The lender's side of federated boosted trees: labels, its own key for g and h, every choice.

The lender computes each row's ``g`` and ``h``, encrypts them under a Paillier key of its own
(the coordinator decrypts nothing in this family), decrypts the partners' packed candidate sums,
picks every split and computes every leaf value. It keeps the trees' structure, its own
thresholds and the leaf values; a partner's thresholds stay with the partner.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedcredit.crypto import PrivateKey, PublicKey, decrypt_packed, generate_keypair
from fedcredit.crypto.owner import encrypt_owned
from fedcredit.errors import ProtocolError
from fedcredit.model.trees import (
    FloatArray,
    IntArray,
    Tree,
    base_margin,
    best_index,
    candidates,
    gains,
    gradients,
    grow_tree,
    histogram,
    leaf_value,
    log_loss,
)
from fedcredit.protocol.trees import store
from fedcredit.protocol.trees.columns import TreeColumns
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
from fedcredit.protocol.trees.scoring import LenderTree, combine, goes_left
from fedcredit.protocol.trees.slots import (
    SlotLayout,
    decode,
    encode_rows,
    nodes_per_plaintext,
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


class TreesLender(TreeColumns):
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

    def own_tree(self) -> None:
        """Mix: the lender's own tree, in plain (no encryption, no message)."""
        grow = self._growing()
        split = self._require_split()
        g, h = self._floats(np.arange(len(split.train)))
        tree = grow_tree(self.train_bins, self.n_regular, g, h, self.params)
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

    # -- joint: every party's columns in every tree --------------------------------------------
    def joint_layout(self, level: int) -> tuple[SlotLayout, int]:
        key = self._require_own_key()
        per = nodes_per_plaintext(key.bits, self.width, 3)
        positions = 2**level
        return SlotLayout(self.width, 3, min(per, positions)), -(-positions // per)

    def joint_gradients(self, tree: int, level: int) -> Gradients:
        """Per training row and plaintext group, ``(1, h, g)`` in the slots of the row's node
        only: a partner's sums over any rows are every node's sums, and it sees no node."""
        grow, key = self._growing(), self._require_own_key()
        layout, groups = self.joint_layout(level)
        split = self._require_split()
        node = grow.node[split.train]
        opened = set(self.open_nodes(level))
        position = np.where(np.isin(node, list(opened)), node - (2**level - 1), -1)
        ints: list[int] = []
        ones = [1] * len(grow.g)
        for group in range(groups):
            local = position - group * layout.nodes
            slot = np.where((position >= 0) & (local >= 0) & (local < layout.nodes), local, -1)
            ints.extend(encode_rows([ones, grow.h, grow.g], slot, layout))
        values = encrypt_owned(key, self._private, ints, 0)
        return Gradients(
            tree,
            level,
            layout.width,
            int(self.settings.gh_scale_bits),
            groups,
            layout.nodes,
            values,
        )

    def joint_choose(self, level: int, messages: dict[str, Histograms]) -> dict[str, SideRequest]:
        """The best split of every open node over every party's columns; the lender's own
        splits applied at once, each partner asked for exactly ``2**level`` sides."""
        grow, split = self._growing(), self._require_split()
        layout, _ = self.joint_layout(level)
        opened = {p: self._open(messages[p], layout) for p in self.partners}
        best_at: dict[str, dict[int, int]] = {p: {} for p in self.partners}
        train_node = grow.node[split.train]
        for j in self.open_nodes(level):
            rows = np.flatnonzero(train_node == j)
            g, h = self._floats(rows)
            total = grow.totals[j]
            unit = float(2 ** int(self.settings.gh_scale_bits))
            ftotal = (total[0] / unit, total[1] / unit, total[2])
            win: tuple[float, str, Any] | None = None
            own = self._own_best(rows, g, h, ftotal)
            if own is not None:
                win = (own[0], self.name, own[1:])
            pos = j - (2**level - 1)
            group, within = divmod(pos, layout.nodes)
            for p in self.partners:
                cands = opened[p][group]
                if not cands:
                    continue
                cut = np.asarray(cands, dtype=object)[:, 3 * within : 3 * within + 3]
                gain = self._gains(cut, total, slots=(2, 1, 0))
                k = best_index(gain)
                if k is None:
                    continue
                best_at[p][pos] = k
                if win is None or gain[k] > win[0]:
                    win = (float(gain[k]), p, (k, tuple(int(v) for v in cut[k])))
            if win is None:
                continue
            if win[1] == self.name:
                self._own_split(j, *win[2])
            else:
                k, (n_l, h_l, g_l) = win[2]
                self._split(j, 0, (g_l, h_l, n_l), by=win[1])
                grow.pending.setdefault(win[1], {})[f"real:{j}"] = k
        return {p: self._side_request(p, level, best_at[p], messages[p]) for p in self.partners}

    def _own_best(
        self, rows: IntArray, g: FloatArray, h: FloatArray, total: tuple[float, float, int]
    ) -> tuple[float, int, int, bool] | None:
        """The lender's best split of its own columns over ``rows`` (gain first)."""
        bins = self.train_bins
        best: tuple[float, int, int, bool] | None = None
        for f in range(bins.shape[1]):
            c = candidates(histogram(bins[rows, f], g, h, self.n_regular[f] + 1), self.n_regular[f])
            gain = gains(c.g, c.h, c.n, total, self.params)
            k = best_index(gain)
            if k is not None and (best is None or gain[k] > best[0]):
                best = (float(gain[k]), f, int(c.threshold[k]), bool(c.default_left[k]))
        return best

    def _own_split(self, j: int, f: int, t: int, dl: bool) -> None:
        grow, split = self._growing(), self._require_split()
        tree = grow.record.own
        tree.feature[j], tree.threshold[j], tree.default_left[j] = f, t, dl
        rows = np.flatnonzero(grow.node == j)
        left = goes_left(self.bins[rows, f], self.n_regular[f], t, dl)
        grow.node[rows] = 2 * j + np.where(left, 1, 2)
        train_node = grow.node[split.train]
        self._set_children(j, train_node)
        grow.record.split_by[j] = self.name

    def _set_children(self, j: int, train_node: IntArray) -> None:
        grow = self._growing()
        for child in (2 * j + 1, 2 * j + 2):
            rows = np.flatnonzero(train_node == child)
            g = int(np.asarray(grow.g, dtype=object)[rows].sum()) if len(rows) else 0
            h = int(np.asarray(grow.h, dtype=object)[rows].sum()) if len(rows) else 0
            grow.totals[child] = (g, h, len(rows))
            grow.record.own.exists[child] = True

    def _side_request(
        self, p: str, level: int, best: dict[int, int], message: Histograms
    ) -> SideRequest:
        """``2**level`` picks: the real one where ``p`` won, its best candidate (a decoy) at every
        other node position, a random candidate where it had none; tokens random, order shuffled."""
        grow = self._growing()
        real = grow.pending.pop(p, {})
        count = message.counts[0] if message.counts else 0
        picks: list[tuple[str, int]] = []
        mapping: dict[str, int] = {}
        source = secrets.SystemRandom()
        for pos in range(2**level):
            j = pos + 2**level - 1
            token = secrets.token_hex(8)
            if f"real:{j}" in real:
                k, mapping[token] = real[f"real:{j}"], j
            elif pos in best:
                k, mapping[token] = best[pos], -1
            elif count:
                k, mapping[token] = source.randrange(count), -1
            else:
                continue
            picks.append((token, k))
        source.shuffle(picks)
        grow.pending[p] = mapping
        return SideRequest(message.tree, level, tuple(picks))

    def joint_sides(self, party: str, message: Sides, request: SideRequest) -> None:
        """A partner's sides for its picks: the real ones move the rows of their nodes."""
        grow, split = self._growing(), self._require_split()
        mapping = grow.pending.get(party, {})
        if len(message.sides) != len(request.picks):
            raise ProtocolError(f"{len(message.sides)} sides for {len(request.picks)} picks")
        for (token, _), bits in zip(request.picks, message.sides, strict=True):
            j = mapping.get(token, -1)
            if j < 0:
                continue
            left = np.unpackbits(np.frombuffer(bits, np.uint8))[: len(self.aligned_rows)].astype(
                bool
            )
            rows = np.flatnonzero(grow.node == j)
            grow.node[rows] = 2 * j + np.where(left[rows], 1, 2)
            grow.record.tokens[j] = token
            self._set_children(j, grow.node[split.train])

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

    def _require_own_key(self) -> PublicKey:
        if self.key is None:
            raise ProtocolError("the lender has not made its key for this job")
        return self.key

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
