"""Joint mode on the lender's side: every party's columns in every tree.

The lender encrypts each row's ``(1, h, g)`` into the slots of the node it sits in, so a
partner's sums cover every node at once; it picks the best split of every open node over every
party's columns, applies its own at once and asks each partner for ``2**level`` sides (the real
ones among decoys).
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from fedcredit.crypto.owner import encrypt_owned
from fedcredit.errors import ProtocolError
from fedcredit.model.trees import (
    FloatArray,
    IntArray,
    Split,
    best_gain_split,
    best_index,
    split_left,
)
from fedcredit.protocol.trees.growing import GrowingLender
from fedcredit.protocol.trees.messages import (
    Gradients,
    Histograms,
    SideRequest,
    Sides,
)
from fedcredit.protocol.trees.slots import (
    SlotLayout,
    encode_rows,
    nodes_per_plaintext,
)


class JointLender(GrowingLender):
    """The lender's joint-mode steps (``GrowingLender`` holds the state)."""

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
                win = (own[0], self.name, own[1])
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
    ) -> tuple[float, Split] | None:
        """The lender's best split of its own columns over ``rows`` (gain first); its
        categorical columns by category groups, as in its own trees."""
        bins = self.train_bins[rows]
        cols = range(bins.shape[1])
        return best_gain_split(
            bins, self.n_regular, g, h, total, self.params, cols, self.group_columns
        )

    def _own_split(self, j: int, f: int, t: int, dl: bool, members: IntArray | None) -> None:
        grow, split = self._growing(), self._require_split()
        tree = grow.record.own
        tree.feature[j], tree.threshold[j], tree.default_left[j] = f, t, dl
        if members is not None:
            tree.left_set[j] = members
        rows = np.flatnonzero(grow.node == j)
        left = split_left(self.bins[rows, f], self.n_regular[f], t, dl, members)
        grow.node[rows] = 2 * j + np.where(left, 1, 2)
        train_node = grow.node[split.train]
        self._set_children(j, train_node)
        grow.record.split_by[j] = self.name

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


__all__ = ["JointLender"]
