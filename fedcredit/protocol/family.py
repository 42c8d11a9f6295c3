"""The family seam: what a model family declares, and the registry of the families there are.

A family (logistic regression now, gradient-boosted trees next) declares its settings type,
constructors of its two roles over a party's aligned columns, its schedule as data (rounds of
``fedcredit.protocol.rounds``) and how a stored model part is loaded for scoring. One runner
executes a schedule in process (``protocol/<family>/local.py``), one over gRPC (the driver);
the coordinator holds every caller to it (``fedcredit.protocol.schedule.DecryptionGate``).

Adding a family means a package ``fedcredit/protocol/<name>/`` with its settings, messages,
partner, lender, schedule, local and family modules, and one line in ``FAMILIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from fedcredit.crypto import EncryptedVector
from fedcredit.errors import ConfigError
from fedcredit.protocol.columns import PartyColumns, PartyData
from fedcredit.protocol.logistic.family import LOGISTIC
from fedcredit.protocol.rounds import Phase
from fedcredit.protocol.trees.family import TREES


class Scorer(Protocol):
    """A party's loaded model part: encrypted partial scores for applicants it may hold."""

    def partial_for_ids(
        self, ids: list[str], unknown: Callable[[list[str]], np.ndarray] | None = None
    ) -> tuple[EncryptedVector, list[int]]: ...


class Family(Protocol):
    """A model family as a plug-in (``name`` is also its TOML table's name)."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> type[Any]:
        """The frozen dataclass of the family's table, parsed by the config layer."""
        ...

    def partner(self, data: PartyData, settings: Any) -> PartyColumns:
        """A partner's role over its own columns."""
        ...

    def lender(self, data: PartyData, labels: np.ndarray, settings: Any) -> PartyColumns:
        """The lender's role over its columns and the default labels."""
        ...

    def schedule(self, settings: Any) -> Phase:
        """The family's rounds: who acts, when, and what the coordinator may decrypt."""
        ...

    def load_model_part(self, role: PartyColumns, part: Mapping[str, Any]) -> Scorer:
        """``role`` (made by ``partner`` or ``lender``) with a stored model part, for scoring."""
        ...


FAMILIES: Mapping[str, Family] = {LOGISTIC.name: LOGISTIC, TREES.name: TREES}


def get_family(name: str) -> Family:
    """The family called ``name``; ConfigError naming it, and the known ones, otherwise."""
    family = FAMILIES.get(name)
    if family is None:
        known = ", ".join(repr(n) for n in sorted(FAMILIES))
        raise ConfigError(f"unknown model family {name!r} (this release knows {known})")
    return family


__all__ = ["FAMILIES", "Family", "Scorer", "get_family"]
