"""What a partner's partial scores disclose when the lender decrypts their sum (F1, F2).

At evaluation, on the validation rows and at scoring the lender decrypts ``z`` and knows its
own part, so it learns the partners' part ``sum_h u_h`` of each row; with one partner, that
partner's partial score. Two things here limit what that tells it:

- **precision**: a partner rounds each partial score it contributes to such a sum to a
  multiple of ``2^-bits`` ([scoring] ``precision_bits``, 6 by default: at most 1/128 of a
  logit, a quarter of a scorecard point at the default 20 points to double the odds). The
  lender then never holds a partner's exact value, only the nearest grid point;
- **unknown applicants**: a partner that does not hold an applicant must answer something.
  Any fixed answer (the old 0, or the mean) is recognisable, and tells the lender who is not
  the partner's customer. ``sample`` (the default) answers the partial score of one of the
  partner's own customers, chosen by a keyed hash of the applicant's id (consistent hashing
  over the customers' keyed hashes, so the choice stays when customers come and go): the
  answer is drawn from exactly the distribution of its customers' answers, is the same every
  time the id is asked, and is rounded like theirs. The cost is accuracy: such an applicant's
  score carries a random customer's part instead of the best guess. ``mean`` gives the mean
  (which reveals non-customers); ``refuse`` refuses a request holding any id the partner
  does not hold (which tells the lender that one of them is not its customer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

KeyedInt = Callable[[str, str], int]
"""``(purpose, text) -> 64-bit integer``: a keyed hash under the partner's secret."""


def round_partial(u: np.ndarray, bits: int | None) -> np.ndarray:
    """``u`` rounded to the nearest multiple of ``2^-bits`` (unchanged when ``bits`` is None)."""
    if bits is None:
        return u
    step = float(1 << bits)
    rounded: np.ndarray = np.rint(np.asarray(u, dtype=np.float64) * step) / step
    return rounded


class UnknownAnswers:
    """The partial scores a partner gives for applicants it does not hold, under a policy."""

    def __init__(
        self, policy: str, ids: Sequence[str], partials: np.ndarray, keyed: KeyedInt
    ) -> None:
        if policy not in ("sample", "mean"):
            raise ValueError(f"no answers for unknown ids under policy {policy!r}")
        partials = np.asarray(partials, dtype=np.float64)
        if not len(ids) or len(ids) != len(partials):
            raise ValueError("unknown-id answers need the partner's customers and their scores")
        self.policy = policy
        self._keyed = keyed
        self._mean = float(partials.mean())
        ring = np.array([keyed("customer", cid) for cid in ids], dtype=np.uint64)
        order = np.argsort(ring, kind="stable")
        self._ring = ring[order]
        self._partials = partials[order]

    def answer(self, unknown: Sequence[str]) -> np.ndarray:
        """One partial score per id in ``unknown``, the same for an id every time."""
        if self.policy == "mean":
            return np.full(len(unknown), self._mean)
        points = np.array([self._keyed("applicant", cid) for cid in unknown], dtype=np.uint64)
        at = np.searchsorted(self._ring, points) % len(self._ring)
        answers: np.ndarray = self._partials[at]
        return answers
