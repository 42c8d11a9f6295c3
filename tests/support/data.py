"""Where the repository and the shared public credit data live."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """The shared credit data folder ($FEDCREDIT_DATA or ../shared/data), or None."""
    env = os.environ.get("FEDCREDIT_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if (path / "uci_default_credit" / "UCI_Credit_Card.csv").is_file():
            return path
    return None
