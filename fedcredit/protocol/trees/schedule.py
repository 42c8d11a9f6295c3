"""The trees family's rounds (``fedcredit.protocol.rounds``): who acts, when, what is decrypted.

``fedcredit.protocol.rounds.When`` names batches and epochs; for trees an *epoch* is one tree and
a *batch* is one level of it (``EACH_EPOCH``: once per tree, ``EACH_BATCH``: once per level).
The coordinator decrypts nothing in this family: the lender opens every sum under a key of its
own, so no round names a decryption and the ``DecryptionGate`` admits none.

Mode ``"mix"`` (a partner's tree; the lender's own trees have no round but ``validation``):

===========  ===========  =====  ===================================================
step         who          when   what travels
===========  ===========  =====  ===================================================
key          lender       once   the lender's own public key, to every partner
gradients    lender       tree   ``Gradients``: ``[[g, h]]`` of the training rows
histograms   hosts        level  ``Histograms`` of the tree's partner
splits       lender       level  ``MixChoice``: the winner (or a leaf) of each open node
leaves       hosts        tree   ``Leaves``: the leaf of every aligned row
validation   lender       tree   nothing (the lender's early-stopping check)
score        hosts        score  ``LeafMasks`` for the applicants
===========  ===========  =====  ===================================================

Mode ``"joint"``:

===========  ===========  =====  ===================================================
key          lender       once   the lender's own public key, to every partner
gradients    lender       level  ``Gradients``: ``(1, h, g)`` in the slots of each row's node
histograms   hosts        level  ``Histograms`` of every partner, every node at once
splits       lender       level  ``SideRequest``: ``2**level`` picks to every partner
sides        hosts        level  ``Sides``: the left bit of every aligned row per pick
validation   lender       tree   nothing
score        hosts        score  ``SplitBits`` for the applicants
===========  ===========  =====  ===================================================
"""

from __future__ import annotations

from typing import Any

from fedcredit.protocol.rounds import Phase, Round, When, Who

MIX = Phase(
    "trees-mix",
    (
        Round("key", Who.LENDER, When.ONCE),
        Round("gradients", Who.LENDER, When.EACH_EPOCH),
        Round("histograms", Who.HOSTS, When.EACH_BATCH),
        Round("splits", Who.LENDER, When.EACH_BATCH),
        Round("leaves", Who.HOSTS, When.EACH_EPOCH),
        Round("validation", Who.LENDER, When.EACH_EPOCH),
        Round("score", Who.HOSTS, When.SCORING),
    ),
)

JOINT = Phase(
    "trees-joint",
    (
        Round("key", Who.LENDER, When.ONCE),
        Round("gradients", Who.LENDER, When.EACH_BATCH),
        Round("histograms", Who.HOSTS, When.EACH_BATCH),
        Round("splits", Who.LENDER, When.EACH_BATCH),
        Round("sides", Who.HOSTS, When.EACH_BATCH),
        Round("validation", Who.LENDER, When.EACH_EPOCH),
        Round("score", Who.HOSTS, When.SCORING),
    ),
)


def schedule(settings: Any = None) -> Phase:
    """The rounds of the settings' mode (``"mix"`` when none are given)."""
    return JOINT if getattr(settings, "mode", "mix") == "joint" else MIX


__all__ = ["JOINT", "MIX", "schedule"]
