"""Shared fixtures: where the public credit data lives, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared credit data folder ($FEDCREDIT_DATA or ../shared/data), or None."""
    env = os.environ.get("FEDCREDIT_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if (path / "uci_default_credit" / "UCI_Credit_Card.csv").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; the test is skipped with a reason when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared credit data not found: set FEDCREDIT_DATA or place ../shared/data")
    return path
