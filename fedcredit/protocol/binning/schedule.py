"""Binning's rounds (``fedcredit.protocol.rounds``): a phase before training, once per job.

==========  ========  ====  =============================================================
step        who       when  what happens
==========  ========  ====  =============================================================
labels      lender    once  its training labels under its own fresh key, to every partner
bin_sums    hosts     once  each partner's encrypted per-bin label sums, to the lender
select      lender    once  the lender decrypts them with its own key, plans every column
apply_plan  hosts     once  each partner encodes its kept columns; reports its width
==========  ========  ====  =============================================================

The coordinator decrypts nothing in this phase: the lender opens the sums under a key of its
own (``fedcredit.protocol.binning.lender``), so no round names a decryption.
"""

from __future__ import annotations

from typing import Any

from fedcredit.protocol.rounds import Phase, Round, When, Who

BINNING = Phase(
    "binning",
    (
        Round("labels", Who.LENDER, When.ONCE),
        Round("bin_sums", Who.HOSTS, When.ONCE),
        Round("select", Who.LENDER, When.ONCE),
        Round("apply_plan", Who.HOSTS, When.ONCE),
    ),
)


def schedule(settings: Any = None) -> Phase:
    """Binning's rounds; the same for every job."""
    return BINNING


__all__ = ["BINNING", "schedule"]
