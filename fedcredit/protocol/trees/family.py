"""Gradient-boosted trees as a model family (``fedcredit.protocol.family.Family``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fedcredit.errors import ProtocolError
from fedcredit.protocol.columns import PartyColumns, PartyData
from fedcredit.protocol.rounds import Phase
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.partner import TreesPartner
from fedcredit.protocol.trees.schedule import schedule as trees_schedule
from fedcredit.protocol.trees.settings import TreeSettings


class TreesFamily:
    """Vertical XGBoost-style trees: the lender holds labels, its own key and the structure."""

    name = "trees"

    @property
    def settings(self) -> type[Any]:
        return TreeSettings

    def partner(self, data: PartyData, settings: Any) -> TreesPartner:
        return TreesPartner(data.name, data.ids, data.features, data.feature_names, settings)

    def lender(self, data: PartyData, labels: np.ndarray, settings: Any) -> TreesLender:
        return TreesLender(data.name, data.ids, data.features, data.feature_names, labels, settings)

    def schedule(self, settings: Any) -> Phase:
        return trees_schedule(settings)

    def load_model_part(self, role: PartyColumns, part: Mapping[str, Any]) -> TreesPartner:
        """A partner's stored part (its edges, trees or tokens) loaded into its role, for scoring
        (the lender's part is its ``LenderTree`` list, held by the lender's node)."""
        if not isinstance(role, TreesPartner):
            raise ProtocolError(f"party {role.name!r} is not a trees partner")
        role.load_model_part(part)
        return role


TREES = TreesFamily()

__all__ = ["TREES", "TreesFamily"]
