"""A party node's trees job: the lender's rounds, asked for by the driver, and a partner's
answers, asked for by the lender (``fedcredit.protocol.trees``; docs/TREES.md).

The driver names a tree (the envelope's epoch) and a level (its batch) and sees
acknowledgements, the validation loss and the stop flag. Every message with ciphertexts goes
straight from the lender's node to a partner's and back, under the lender's own key; the
coordinator decrypts nothing. Domain values only: the servicer converts the protobuf.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fedcredit.crypto import PublicKey
from fedcredit.errors import ProtocolError
from fedcredit.node.results import Evaluation
from fedcredit.node.serde import trees as serde
from fedcredit.node.serde.common import envelope
from fedcredit.node.state import PartyNode
from fedcredit.protocol.guard import Header
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.messages import (
    Gradients,
    Histograms,
    Leaves,
    MixChoice,
    SideRequest,
    Sides,
)
from fedcredit.protocol.trees.partner import TreesPartner
from fedcredit.protocol.trees.slots import SlotLayout

#: A partner's histograms over every training row take longest (about 30 s per tree on UCI at
#: 2048 bits on a loaded machine, docs/TREES.md).
TREES_TIMEOUT_S = 900.0

LoadGradients = Callable[[PublicKey | None, serde.Expected], Gradients | None]


def _own_key(key: PublicKey | None) -> PublicKey:
    if key is None:
        raise ProtocolError("no trees key for this job yet")
    return key


@dataclass(frozen=True)
class TreeEnd:
    """What the driver learns when a tree ends: stop or not, the validation loss, trees kept."""

    stop: bool
    validation_loss: float | None
    kept: int


@dataclass
class TreesJob:
    """The trees rounds of ``node``'s current job; ``threshold`` is the evaluation's cut-off."""

    node: PartyNode
    threshold: float = 0.5
    _hist: dict[str, Histograms] = field(default_factory=dict)

    # -- roles ----------------------------------------------------------------------------------
    def lender(self) -> TreesLender:
        party = self.node.job.party
        if not isinstance(party, TreesLender):
            raise ProtocolError(f"party {self.node.name!r} is not the lender of a trees job")
        return party

    def partner(self, caller: str) -> TreesPartner:
        party = self.node.job.party
        if not isinstance(party, TreesPartner):
            raise ProtocolError(f"party {self.node.name!r} is not a partner of a trees job")
        if caller != self.node.job.peers.lender:
            raise ProtocolError(f"trees messages from {caller!r}, which is not the lender")
        return party

    # -- the lender's rounds (the driver asks) --------------------------------------------------
    def _ensure_key(self, lender: TreesLender, header: Header) -> None:
        """The lender's own key for this job, made before its first tree (or after a restore)
        and sent to every partner, which checks it."""
        if lender.key is not None:
            return
        # As long as the job's key (the federation's key_bits).
        bits = _own_key(self.node.job.party.public_key).bits
        key = lender.make_key(bits, allow_small=self.node.allow_small_keys)
        env = envelope(self.node.next_header(header))
        self.node.job.peers.fan_out(
            lender.partners,
            lambda s: s.trees.SetTreesKey,
            lambda _: serde.key_message(env, key),
            TREES_TIMEOUT_S,
        )

    def gradients(self, header: Header) -> None:
        """Round ``gradients``: mix, per tree (the lender's own tree grown here, in plain);
        joint, per level. The partners' histograms come back in the reply and wait here."""
        lender, tree, level = self.lender(), header.epoch, header.batch
        mix = str(lender.settings.mode) == "mix"
        if mix or level == 0:
            lender.begin_tree(tree)
        self._ensure_key(lender, header)
        self._hist = {}
        if mix and lender.owner_of(tree) == lender.name:
            lender.own_tree()
            return
        if not mix and not lender.open_nodes(level):
            return
        message = lender.mix_gradients(tree) if mix else lender.joint_gradients(tree, level)
        names = [lender.owner_of(tree)] if mix else list(lender.partners)
        env = envelope(self.node.next_header(header))
        replies = self.node.job.peers.fan_out(
            names,
            lambda s: s.trees.BuildHistograms,
            lambda _: serde.gradients_message(env, message),
            TREES_TIMEOUT_S,
        )
        bits, key = self._value_bits(lender, level), _own_key(lender.key)
        self._hist = {
            p: serde.histograms_of(r, key, tree=tree, level=level, value_bits=bits)
            for p, r in replies.items()
        }

    @staticmethod
    def _value_bits(lender: TreesLender, level: int) -> int:
        if str(lender.settings.mode) == "mix":
            return SlotLayout(lender.width, 2, 1).bits
        return lender.joint_layout(level)[0].bits

    def splits(self, header: Header) -> None:
        """Round ``splits``: mix, the partner's histograms of the level and the winners sent
        back; joint, the best split of every node and each partner's ``2**level`` sides."""
        lender, tree, level = self.lender(), header.epoch, header.batch
        peers, mix = self.node.job.peers, str(lender.settings.mode) == "mix"
        owner = lender.owner_of(tree) if mix else ""
        if owner == lender.name or not lender.open_nodes(level):
            return
        if mix:
            if level > 0:
                env = envelope(self.node.next_header(header))
                reply = peers.call(
                    owner, lambda s: s.trees.BuildHistograms,
                    serde.level_message(env, tree, level), TREES_TIMEOUT_S,
                )  # fmt: skip
                bits, key = self._value_bits(lender, level), _own_key(lender.key)
                self._hist[owner] = serde.histograms_of(
                    reply, key, tree=tree, level=level, value_bits=bits
                )
            choice = lender.mix_choose(self._hist.pop(owner))
            env = envelope(self.node.next_header(header))
            peers.call(
                owner, lambda s: s.trees.ApplySplits, serde.choice_message(env, choice),
                TREES_TIMEOUT_S,
            )  # fmt: skip
            return
        requests = lender.joint_choose(level, self._hist)
        env = envelope(self.node.next_header(header))
        replies = peers.fan_out(
            list(requests),
            lambda s: s.trees.Sides,
            lambda p: serde.side_request_message(env, requests[p]),
            TREES_TIMEOUT_S,
        )
        rows = len(lender.aligned_rows)
        for p in lender.partners:
            lender.joint_sides(p, serde.sides_of(replies[p], requests[p], rows=rows), requests[p])

    def end_tree(self, header: Header) -> TreeEnd:
        """Round ``validation``: mix, the partner's leaves first; then leaf values, margins,
        the validation loss and the lender's early-stopping rule."""
        lender, tree = self.lender(), header.epoch
        owner = lender.owner_of(tree) if str(lender.settings.mode) == "mix" else lender.name
        if owner != lender.name:
            env = envelope(self.node.next_header(header))
            reply = self.node.job.peers.call(
                owner, lambda s: s.trees.TreeLeaves, serde.tree_ref(env, tree), TREES_TIMEOUT_S
            )
            lender.mix_leaves(serde.leaves_of(reply, tree=tree, rows=len(lender.aligned_rows)))
        trees_before = len(lender.validation_loss)
        stop = lender.end_tree()
        loss = lender.validation_loss[-1] if len(lender.validation_loss) > trees_before else None
        return TreeEnd(stop, loss, lender.kept)

    def evaluate(self, header: Header) -> Evaluation:
        """Metrics on the test rows from the kept trees (the lender holds every aligned row's
        leaf in every tree: no partner is asked)."""
        lender = self.lender()
        rows = lender.rows_of("test", 0, 0)
        margins = lender.kept_margins(rows)
        grown = {"trees_grown": len(lender.model), "trees_kept": lender.kept}
        y = lender.labels(rows)
        return self.node.evaluation(lender, rows, y, margins, self.threshold, grown)

    # -- a partner's answers (the lender asks) --------------------------------------------------
    def set_key(self, caller: str, key: PublicKey) -> None:
        self.partner(caller).receive_key(key, allow_small=self.node.allow_small_keys)

    def histograms(
        self, caller: str, tree: int, level: int, load: LoadGradients
    ) -> tuple[Histograms, PublicKey]:
        """This partner's packed candidate sums of ``level``, and the key they are under."""
        partner = self.partner(caller)
        settings = partner.settings
        expected = serde.Expected(
            len(partner.train_bins), int(settings.gh_scale_bits), str(settings.mode)
        )
        message = load(partner.key, expected)
        if message is not None and (message.tree, message.level) != (tree, level):
            raise ProtocolError("gradients of another tree or level")
        if expected.mode == "joint" and message is not None:
            answer = partner.joint_histograms(message)
        elif expected.mode == "joint":
            raise ProtocolError("joint gradients without ciphertexts")
        else:
            answer = partner.mix_histograms(message, tree, level)
        return answer, _own_key(partner.key)

    def apply_splits(self, caller: str, choice: MixChoice) -> None:
        partner = self.partner(caller)
        if choice.tree not in partner.trees:
            raise ProtocolError(f"tree {choice.tree} is not one of this partner's")
        partner.mix_apply(choice)

    def leaves(self, caller: str, tree: int) -> Leaves:
        partner = self.partner(caller)
        if tree not in partner.trees:
            raise ProtocolError(f"tree {tree} is not one of this partner's")
        return partner.mix_leaves(tree)

    def sides(self, caller: str, request: SideRequest) -> Sides:
        return self.partner(caller).joint_sides(request)


__all__ = ["TREES_TIMEOUT_S", "TreeEnd", "TreesJob"]
