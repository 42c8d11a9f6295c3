"""The federation file, loaded and validated: ``load_federation(path) -> Federation``.

``table`` holds the typed getters (each error names the file, the table and the key),
``federation`` the parties, roles, addresses and certificate pins, ``sections`` the settings
tables, each parsed into the dataclass its owner defines (a model family owns its table).
"""

from fedcredit.config.federation import (
    COORDINATOR,
    LENDER_ROLE,
    MAX_KEY_BITS,
    MIN_KEY_BITS,
    ROLES,
    Endpoint,
    Federation,
    PartyConfig,
    TLSSettings,
    load_federation,
)
from fedcredit.config.sections import UNKNOWN_ID_POLICIES, ScorecardSettings, ScoringSettings

__all__ = [
    "COORDINATOR",
    "LENDER_ROLE",
    "MAX_KEY_BITS",
    "MIN_KEY_BITS",
    "ROLES",
    "UNKNOWN_ID_POLICIES",
    "Endpoint",
    "Federation",
    "PartyConfig",
    "ScorecardSettings",
    "ScoringSettings",
    "TLSSettings",
    "load_federation",
]
