"""Logistic regression as a model family (``fedcredit.protocol.family.Family``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fedcredit.errors import ProtocolError
from fedcredit.protocol.columns import PartyColumns, PartyData
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.schedule import schedule as logistic_schedule
from fedcredit.protocol.logistic.settings import TrainSettings
from fedcredit.protocol.rounds import Phase


class LogisticFamily:
    """Vertical logistic regression: the lender holds labels and the intercept."""

    name = "logistic"

    @property
    def settings(self) -> type[TrainSettings]:
        """``[train]``, parsed by ``fedcredit.config.sections.parse_train``."""
        return TrainSettings

    def partner(self, data: PartyData, settings: Any) -> FeatureParty:
        return FeatureParty(data.name, data.ids, data.features, data.feature_names, settings)

    def lender(self, data: PartyData, labels: np.ndarray, settings: Any) -> LabelParty:
        return LabelParty(data.name, data.ids, data.features, data.feature_names, labels, settings)

    def schedule(self, settings: Any) -> Phase:
        return logistic_schedule(settings)

    def load_model_part(self, role: PartyColumns, part: Mapping[str, Any]) -> FeatureParty:
        if not isinstance(role, FeatureParty):
            raise ProtocolError(f"party {role.name!r} is not a logistic regression party")
        role.load_model_part(part)
        return role


LOGISTIC = LogisticFamily()

__all__ = ["LOGISTIC", "LogisticFamily"]
