"""A node's own secret, kept in its folder, and the keyed tags made with it.

The secret never leaves the node. It keys what the node shows others of values they could
otherwise test guesses against: the applicant ids in its audit log, the fingerprint of its
data it hands the driver, the choice of answer for an applicant it does not hold. It is made
once (32 random bytes, file mode 0600) and kept, so these tags stay the same across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from fedcredit.errors import StorageError

SECRET_FILE = "node-secret"
SECRET_BYTES = 32


def node_secret(home: Path, name: str = "") -> bytes:
    """The secret of node ``name`` in ``home`` (made there on first use); StorageError when
    unreadable.

    Each node has its own file (local nodes share one home), and a new secret is written to a
    temporary file and linked into place, so a node starting next to another never reads a
    half-written one.
    """
    path = home / (f"{SECRET_FILE}-{name}" if name else SECRET_FILE)
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = home / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # atomic, and never replaces a secret another made first
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read or make the node secret {path}: {exc}") from exc
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != SECRET_BYTES:
        raise StorageError(
            f"{path} is not a node secret ({2 * SECRET_BYTES} hex digits); remove it to make "
            "a new one (this changes the node's audit tags and its answers for unknown ids)"
        )
    return secret


def keyed_tag(secret: bytes, purpose: str, text: str, chars: int = 32) -> str:
    """HMAC-SHA256 of ``text`` under ``secret``, separated by ``purpose``, as hex."""
    message = purpose.encode() + b"\0" + text.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:chars]


def keyed_int(secret: bytes, purpose: str, text: str) -> int:
    """The first 8 bytes of the keyed tag of ``text`` as an unsigned integer."""
    return int(keyed_tag(secret, purpose, text, chars=16), 16)
