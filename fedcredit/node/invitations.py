"""A partner's side of ``fedcredit invite --deliver-to``: the lender's invitation list, stored.

An e-commerce platform shows the loan entry to exactly the users a licensed lender has
pre-approved. The lender sends the platform's node the invited ids and nothing else: no score,
grade, limit or rate (``DeliverInvitations``, scoring.proto). The node accepts them from the
federation's lender only and writes them, one id per line under an ``id`` header, to
``<its folder>/invitations/invitations-<lender>-<UTC time>-<digest>.csv`` through a temporary
file and a rename, so a reader never sees half a list. The digest (of the ids) makes a
repeated delivery of the same list land in the same file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fedcredit.node.errors import CallerRefused, InvalidRequest
from fedcredit.protocol.checkpoint import write_text_atomic

FOLDER: Final = "invitations"
MAX_INVITATIONS: Final = 1_000_000
MAX_ID_CHARS: Final = 256

_lock = threading.Lock()


def check_ids(ids: Sequence[str]) -> list[str]:
    """The ids, duplicates dropped (first kept); ``InvalidRequest`` for an empty, overlong or
    control-character id, or too many."""
    if len(ids) > MAX_INVITATIONS:
        raise InvalidRequest(f"at most {MAX_INVITATIONS} invitations per list, got {len(ids)}")
    for index, value in enumerate(ids):
        if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
            raise InvalidRequest(
                f"invitation #{index + 1}: an id must be 1-{MAX_ID_CHARS} printable characters"
            )
    return list(dict.fromkeys(ids))


def store_invitations(home: Path, caller: str, lender: str, ids: Sequence[str]) -> tuple[Path, int]:
    """Write the lender's invitation list inside ``home``; the file and the distinct ids.

    ``caller`` is the authenticated party (from its certificate); only ``lender`` may invite.
    """
    if caller != lender:
        raise CallerRefused(f"only the lender {lender!r} sends invitations, not {caller!r}")
    unique = check_ids(ids)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id"])
    writer.writerows([pid] for pid in unique)
    text = buffer.getvalue()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = home / FOLDER
    with _lock:
        existing = sorted(folder.glob(f"invitations-{lender}-*-{digest}.csv"))
        path = existing[0] if existing else folder / f"invitations-{lender}-{stamp}-{digest}.csv"
        write_text_atomic(path, text)
    return path, len(unique)


__all__ = ["FOLDER", "MAX_INVITATIONS", "check_ids", "store_invitations"]
