"""The lender's decision policy: the ``[policy]`` table of the federation file.

``policy_from_table(table, source)`` is the one function the federation file's parser calls; it
returns a frozen ``Policy`` or raises ``ConfigError`` in one line naming the file, the table and
the key, e.g. ``fed.toml: [policy] apr_max: must be at most 0.24 ...``. The defaults suit an
online consumer lender behind an e-commerce platform: credit lines of 5,000 to 50,000, annual
rates from 7.3 % to the regulatory cap of 24 %, 3 to 12 instalments (docs/DECISIONS.md).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fedcredit.errors import ConfigError

TABLE: Final = "[policy]"
#: The highest annual rate a lender may charge (24 %); a policy above it is refused.
REGULATORY_APR_CAP: Final = 0.24
#: Offered rates are whole tenths of a percent: 0.001 as a fraction.
APR_UNIT: Final = 0.001
MIN_INSTALMENTS: Final = 3
MAX_INSTALMENTS: Final = 12
# A rate is compared with the 0.1 % grid to within this, so 0.073 (72.99999... tenths of a
# per mille in binary) counts as 7.3 %.
_GRID_SLACK: Final = 1e-9


@dataclass(frozen=True)
class Policy:
    """How scores become decisions and offers (docs/DECISIONS.md has the table of keys).

    At or above ``approve_score``: approve; at or above ``refer_score`` and below
    ``approve_score``: refer to a person; below: decline. An approved applicant's limit rises
    and rate falls linearly with the score, from ``(limit_min, apr_max)`` at ``approve_score``
    to ``(limit_max, apr_min)`` at ``best_offer_score`` and above. Amounts are in the
    lender's currency units; rates are annual fractions (0.073 is 7.3 %).
    """

    approve_score: float = 600.0  # 50:1 good:bad at the default scorecard: about 2 % risk
    refer_score: float = 560.0  # the floor of grade C: about 7.4 % risk
    best_offer_score: float = 680.0  # the floor of grade A: about 0.12 % risk
    limit_min: int = 5_000
    limit_max: int = 50_000
    limit_step: int = 100  # limits are whole multiples of this (rounded down)
    apr_min: float = 0.073
    apr_max: float = REGULATORY_APR_CAP
    instalments: tuple[int, ...] = (3, 6, 9, 12)
    max_other_lenders: int = 3  # more other lenders than this: decline (loan stacking)
    max_total_outstanding: float = 200_000.0  # owed to other lenders, above this: decline

    def __post_init__(self) -> None:
        problem = _inconsistency(dataclasses.asdict(self))
        if problem is not None:
            raise ConfigError(f"{TABLE} {problem[0]}: {problem[1]}")

    @property
    def apr_range_tenths(self) -> tuple[int, int]:
        """The lowest and highest offered rate in tenths of a percent, both inside
        ``[apr_min, apr_max]`` (so never above the cap)."""
        return _apr_tenths(self.apr_min, self.apr_max)

    def to_dict(self) -> dict[str, Any]:
        """The policy as the ``[policy]`` table would hold it (instalments as a list)."""
        values = dataclasses.asdict(self)
        values["instalments"] = list(self.instalments)
        return values


KEYS: Final = tuple(f.name for f in dataclasses.fields(Policy))


def policy_from_table(table: Mapping[str, Any], source: str) -> Policy:
    """The validated policy of a ``[policy]`` table; absent keys take the defaults.

    ``source`` names the file in errors (``fed.toml``). Raises ``ConfigError`` for an unknown
    key, a value of the wrong type, ``apr_max`` above 0.24, instalments outside 3..12 or not
    increasing, and an inconsistent policy (refer above approve, a minimum above its maximum,
    an empty instalment list); the one-line message names the file, the table and the key.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: {TABLE} must be a table")
    for key in table:
        if key not in KEYS:
            hint = difflib.get_close_matches(str(key), KEYS, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{source}: {TABLE}: unknown key {key!r}{suffix}")
    d = Policy()
    reader = _Reader(source, table)
    values: dict[str, Any] = {
        "approve_score": reader.number("approve_score", d.approve_score),
        "refer_score": reader.number("refer_score", d.refer_score),
        "best_offer_score": reader.number("best_offer_score", d.best_offer_score),
        "limit_min": reader.integer("limit_min", d.limit_min, low=1),
        "limit_max": reader.integer("limit_max", d.limit_max, low=1),
        "limit_step": reader.integer("limit_step", d.limit_step, low=1),
        "apr_min": reader.rate("apr_min", d.apr_min),
        "apr_max": reader.rate("apr_max", d.apr_max),
        "instalments": reader.instalments("instalments", d.instalments),
        "max_other_lenders": reader.integer("max_other_lenders", d.max_other_lenders, low=0),
        "max_total_outstanding": reader.number(
            "max_total_outstanding", d.max_total_outstanding, low=0.0
        ),
    }
    problem = _inconsistency(values)
    if problem is not None:
        raise ConfigError(f"{source}: {TABLE} {problem[0]}: {problem[1]}")
    return Policy(**values)


class _Reader:
    """Typed getters whose errors name the file, the table and the key."""

    def __init__(self, source: str, table: Mapping[str, Any]) -> None:
        self.source = source
        self.table = table

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {TABLE} {key}: {problem}")

    def number(self, key: str, default: float, low: float | None = None) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value!r}")
        if low is not None and value < low:
            raise self.error(key, f"must be at least {low:g}, got {value:g}")
        return float(value)

    def integer(self, key: str, default: int, low: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, got {value!r}")
        if value < low:
            raise self.error(key, f"must be at least {low}, got {value}")
        return value

    def rate(self, key: str, default: float) -> float:
        value = self.number(key, default)
        if value <= 0.0:
            raise self.error(key, f"must be an annual rate above 0 (0.073 is 7.3 %), got {value:g}")
        if value > REGULATORY_APR_CAP:
            raise self.error(
                key,
                f"must be at most {REGULATORY_APR_CAP:g}, the regulatory cap on the annual rate "
                f"(24 %), got {value:g}",
            )
        return value

    def instalments(self, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list | tuple):
            raise self.error(key, f"must be a list of numbers of instalments, got {value!r}")
        if not value:
            raise self.error(
                key, "must list at least one number of instalments, e.g. [3, 6, 9, 12]"
            )
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise self.error(key, f"must list whole numbers, got {item!r}")
            if not MIN_INSTALMENTS <= item <= MAX_INSTALMENTS:
                raise self.error(
                    key,
                    f"must list numbers between {MIN_INSTALMENTS} and {MAX_INSTALMENTS}, got {item}",
                )
        for before, after in itertools.pairwise(value):
            if after <= before:
                raise self.error(key, f"must be strictly increasing, got {after} after {before}")
        return tuple(value)


def _apr_tenths(apr_min: float, apr_max: float) -> tuple[int, int]:
    """The first and last 0.1 % grid points inside ``[apr_min, apr_max]``."""
    low = math.ceil(apr_min / APR_UNIT - _GRID_SLACK)
    high = math.floor(apr_max / APR_UNIT + _GRID_SLACK)
    return low, high


def _inconsistency(v: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first key of a policy whose value contradicts another one, and why; or None.

    Checked both by ``policy_from_table`` (with the file's name) and by ``Policy`` itself, so a
    policy built in code cannot be inconsistent either.
    """
    if v["apr_max"] > REGULATORY_APR_CAP:
        return "apr_max", f"must be at most {REGULATORY_APR_CAP:g}, the regulatory cap (24 %)"
    if not v["instalments"]:
        return "instalments", "must list at least one number of instalments"
    if any(not MIN_INSTALMENTS <= n <= MAX_INSTALMENTS for n in v["instalments"]):
        return "instalments", f"must list numbers between {MIN_INSTALMENTS} and {MAX_INSTALMENTS}"
    if any(b <= a for a, b in zip(v["instalments"], v["instalments"][1:], strict=False)):
        return "instalments", "must be strictly increasing"
    checks = (
        (v["refer_score"] > v["approve_score"], "refer_score",
         f"must be at or below approve_score ({v['approve_score']:g}), got {v['refer_score']:g}"),
        (v["best_offer_score"] <= v["approve_score"], "best_offer_score",
         f"must be above approve_score ({v['approve_score']:g}), got {v['best_offer_score']:g}"),
        (v["limit_min"] > v["limit_max"], "limit_min",
         f"must be at or below limit_max ({v['limit_max']}), got {v['limit_min']}"),
        (v["apr_min"] > v["apr_max"], "apr_min",
         f"must be at or below apr_max ({v['apr_max']:g}), got {v['apr_min']:g}"),
    )  # fmt: skip
    for failed, key, problem in checks:
        if failed:
            return key, problem
    low, high = _apr_tenths(v["apr_min"], v["apr_max"])
    if low > high:
        return "apr_min", (
            f"apr_min {v['apr_min']:g} to apr_max {v['apr_max']:g} hold no rate in whole tenths "
            "of a percent, the unit offers are made in"
        )
    return None


__all__ = ["APR_UNIT", "KEYS", "REGULATORY_APR_CAP", "TABLE", "Policy", "policy_from_table"]
