"""Atomic writes of a party's job state (checkpoints, model parts, evaluation, importance).

A write goes through a temporary file and a rename, so a crash leaves the old file whole.
Moved here from the logistic participant, which never used them; their natural home is
``fedcredit.files`` (the error root's neighbour), once that module is free to change.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedcredit.errors import StorageError


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a crash leaves the old file."""
    write_text_atomic(path, json.dumps(payload))


def write_importance(role: object, folder: Path) -> None:
    """``importance.csv`` in a party's own ``folder``, for a family role that reports feature
    importance (``importance_csv``: its own columns only); nothing for any other role."""
    importance = getattr(role, "importance_csv", None)
    if callable(importance):
        write_text_atomic(folder / "importance.csv", str(importance()))


def write_text_atomic(path: Path, text: str) -> None:
    """Write text through a temporary file and a rename, so a crash leaves the old file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        # When the folder itself is gone or unwritable, nothing was left in it.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


__all__ = ["write_json_atomic", "write_text_atomic"]
