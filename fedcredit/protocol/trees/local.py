"""Federated boosted trees in one process, for tests and benchmarks.

The same domain objects the nodes will hold call each other directly, round by round of the
mode's schedule (``fedcredit.protocol.trees.schedule``): per tree the ``EACH_EPOCH`` rounds
around the ``EACH_BATCH`` rounds of every level. ``Run.messages`` records every message with its
sender and receiver (the privacy tests read it); ``Run.seconds`` sums the time of each step.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from fedcredit.errors import ProtocolError
from fedcredit.protocol.rounds import Round, When
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.messages import Histograms, SideRequest
from fedcredit.protocol.trees.partner import TreesPartner
from fedcredit.protocol.trees.schedule import schedule


@dataclass
class Run:
    """What one in-process training recorded."""

    messages: list[tuple[str, str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    tree_seconds: list[float] = field(default_factory=list)

    def send(self, sender: str, receiver: str, message: Any) -> Any:
        self.messages.append((sender, receiver, message))
        return message


@dataclass
class _Tree:
    """What the rounds of one tree hand each other."""

    number: int
    level: int = 0
    hist: dict[str, Histograms] = field(default_factory=dict)
    requests: dict[str, SideRequest] = field(default_factory=dict)


class LocalTrees:
    """The lender and its partners, and the rounds between them."""

    def __init__(
        self, lender: TreesLender, partners: Sequence[TreesPartner], *, key_bits: int = 2048,
        allow_small: bool = False,
    ) -> None:  # fmt: skip
        self.lender, self.partners = lender, {p.name: p for p in partners}
        lender.partners = [p.name for p in partners]
        self.key_bits, self.allow_small = key_bits, allow_small
        self.phase = schedule(lender.settings)
        self.run = Run()

    def _timed(self, step: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = work()
        self.run.seconds[step] += time.perf_counter() - start
        return out

    def setup(self) -> None:
        """Round ``key``: the lender's own key to every partner (each checks it)."""
        key = self._timed(
            "key", lambda: self.lender.make_key(self.key_bits, allow_small=self.allow_small)
        )
        for name, p in self.partners.items():
            p.receive_key(self.run.send(self.lender.name, name, key), allow_small=self.allow_small)

    def train(self, trees: int | None = None) -> Run:
        """Every tree (or the first ``trees``) until early stopping; returns the record."""
        self.setup()
        for t in range(int(self.lender.settings.trees) if trees is None else trees):
            start = time.perf_counter()
            stop = self.tree(t)
            self.run.tree_seconds.append(time.perf_counter() - start)
            if stop:
                break
        return self.run

    def tree(self, number: int) -> bool:
        """One tree's rounds; True when early stopping ends the training."""
        lender, state = self.lender, _Tree(number)
        lender.begin_tree(number)
        mix = self.phase.name == "trees-mix"
        if mix and lender.owner_of(number) == lender.name:
            self._timed("own tree", lender.own_tree)
            return bool(self._timed("validation", lender.end_tree))
        per_tree = self.phase.at(When.EACH_EPOCH)
        per_level = self.phase.at(When.EACH_BATCH)
        for round_ in (r for r in per_tree if r.step == "gradients"):
            self._round(round_, state)
        for level in range(int(lender.settings.depth)):
            if not lender.open_nodes(level):
                break
            state.level = level
            for round_ in per_level:
                self._round(round_, state)
        stop = False
        for round_ in (r for r in per_tree if r.step != "gradients"):
            stop = bool(self._round(round_, state)) or stop
        return stop

    def _round(self, round_: Round, state: _Tree) -> Any:
        lender, t, level = self.lender, state.number, state.level
        mix = self.phase.name == "trees-mix"
        owner = self.partners.get(lender.owner_of(t)) if mix else None
        step = round_.step
        if step == "gradients" and mix and owner is not None:
            message = self._timed("encrypt g, h", lambda: lender.mix_gradients(t))
            state.hist[owner.name] = self._timed(
                "histograms",
                lambda: owner.mix_histograms(self.run.send(lender.name, owner.name, message), t, 0),
            )
        elif step == "gradients":
            message = self._timed("encrypt g, h", lambda: lender.joint_gradients(t, level))
            for name, p in self.partners.items():
                sent = self.run.send(lender.name, name, message)
                state.hist[name] = self._timed("histograms", partial(p.joint_histograms, sent))
        elif step == "histograms" and mix and owner is not None:
            if level > 0:
                state.hist[owner.name] = self._timed(
                    "histograms", lambda: owner.mix_histograms(None, t, level)
                )
            self.run.send(owner.name, lender.name, state.hist[owner.name])
        elif step == "histograms":
            for name in self.partners:
                self.run.send(name, lender.name, state.hist[name])
        elif step == "splits" and mix and owner is not None:
            choice = self._timed(
                "decrypt, split", lambda: lender.mix_choose(state.hist[owner.name])
            )
            self._timed(
                "apply", lambda: owner.mix_apply(self.run.send(lender.name, owner.name, choice))
            )
        elif step == "splits":
            state.requests = self._timed(
                "decrypt, split", lambda: lender.joint_choose(level, state.hist)
            )
        elif step == "sides":
            for name, p in self.partners.items():
                request = self.run.send(lender.name, name, state.requests[name])
                sides = self._timed("sides", partial(p.joint_sides, request))
                lender.joint_sides(name, self.run.send(name, lender.name, sides), request)
        elif step == "leaves" and owner is not None:
            leaves = self._timed("leaves", lambda: owner.mix_leaves(t))
            lender.mix_leaves(self.run.send(owner.name, lender.name, leaves))
        elif step == "validation":
            return self._timed("validation", lender.end_tree)
        elif step not in ("leaves",):
            raise ProtocolError(f"the trees family has no step {step!r} here")
        return None

    def score(self, ids: list[str]) -> np.ndarray:
        """Round ``score``: every partner's answer for the applicants, combined by the lender."""
        answers = {
            name: self.run.send(name, self.lender.name, p.answer_ids(ids))
            for name, p in self.partners.items()
        }
        raw, _ = self.lender.raw_for_ids(ids)
        return self.lender.margins(raw, answers)


__all__ = ["LocalTrees", "Run"]
