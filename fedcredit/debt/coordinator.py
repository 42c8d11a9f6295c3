"""The coordinator's side: it holds the lenders' tagged, encrypted tables and answers queries.

What the coordinator learns: per lender the number of customers and, per query, which lenders'
tables hold each applicant's tag (so the count, and whether the same tag was asked before). It
never sees an identifier (only tags under keys it does not have), never a balance (only
ciphertexts under the lenders' keys) and never a masked value (lenders seal them to the querier).

The count-1 rule is enforced here, not only in the querier's output: for an applicant matched
by fewer than ``min_count_for_total`` lenders the coordinator substitutes an encryption of the
bare match indicator for each matched row, so the querier never receives a lone balance.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fedcredit.debt.binding import verified_tags
from fedcredit.debt.cipher import (
    EncryptedVector,
    PublicKey,
    check_peer_key,
    encrypt_values_for_owner,
    group_size,
    mask_selected,
)
from fedcredit.debt.dleq import check_public_key
from fedcredit.debt.encoding import (
    MATCH_WITHHELD,
    MAX_LENDERS,
    NO_MATCH,
    SUM_BYTES,
    split_groups,
)
from fedcredit.debt.lender import MAX_BATCH
from fedcredit.debt.messages import (
    MaskedBatch,
    QueryAnswer,
    QueryRequest,
    SealedShares,
    UploadTable,
)
from fedcredit.debt.oprf import TAG_BYTES
from fedcredit.errors import CryptoError, ProtocolError

SEAL_OVERHEAD = 48
"""Bytes a libsodium sealed box adds (ephemeral public key and MAC)."""


class StaleTableError(ProtocolError):
    """A lender's table is missing or no longer the one a query was made for: asking again
    (after the lender's upload) may succeed, unlike any other refusal of a query."""


@dataclass(frozen=True)
class LenderTable:
    """One lender's current upload: tag -> row, and the rows plus Enc(0), Enc(1) at the end."""

    lender: str
    epoch: int
    public_key: PublicKey
    index: Mapping[bytes, int] = field(repr=False)
    rows: EncryptedVector = field(repr=False)
    oprf_key: bytes = b""
    """``K = k G`` of the upload's OPRF key: every answer of this lender is checked against it."""

    @property
    def customers(self) -> int:
        return len(self.index)


@dataclass(frozen=True)
class PreparedQuery:
    """The masked batches to send to each lender and what to answer once they reply."""

    caller: str
    size: int
    batches: Mapping[str, MaskedBatch] = field(repr=False)
    mask_sums: tuple[int, ...] = field(repr=False)
    min_count_for_total: int
    group_size: int

    def answer(self, shares: Mapping[str, SealedShares]) -> QueryAnswer:
        """Check every lender replied with a box of the right size, shuffle them, answer."""
        if set(shares) != set(self.batches):
            missing = ", ".join(sorted(set(self.batches) - set(shares))) or "none"
            raise ProtocolError(f"masked shares missing from lender(s): {missing}")
        expected = SEAL_OVERHEAD + SUM_BYTES * self.size
        boxes = [shares[name].box for name in sorted(shares)]
        if any(len(box) != expected for box in boxes):
            raise ProtocolError(f"a lender's sealed shares are not {expected} bytes long")
        secrets.SystemRandom().shuffle(boxes)
        return QueryAnswer(tuple(boxes), self.mask_sums, self.min_count_for_total, self.group_size)


class DebtCoordinator:
    """The aggregator: tables per lender, and the selection and masking step of a query."""

    def __init__(
        self,
        min_count_floor: int = 2,
        *,
        allow_small_keys: bool = False,
        admit: Callable[[str, int], None] | None = None,
    ) -> None:
        """``admit(caller, applicants)`` sees every well-formed query before any work and may
        refuse it by raising (the node's audit log and daily quota, security review F14)."""
        if min_count_floor < 1:
            raise ProtocolError("the minimum count for a total must be at least 1")
        self.min_count_floor = min_count_floor
        # The test-only switch: lenders' keys of 512 to 2047 bits are taken too.
        self.allow_small_keys = allow_small_keys
        self._admit = admit
        self._tables: dict[str, LenderTable] = {}

    @property
    def lenders(self) -> list[str]:
        """The lenders whose tables are loaded, sorted."""
        return sorted(self._tables)

    def table(self, lender: str) -> LenderTable:
        """The current table of one lender."""
        try:
            return self._tables[lender]
        except KeyError as exc:
            raise StaleTableError(f"lender {lender!r} has not uploaded its table") from exc

    def check_key(self, lender: str, key: PublicKey) -> None:
        """ProtocolError naming ``lender`` unless its key meets the key policy
        (``check_peer_key``): a key under 162 bits would hold no applicant per ciphertext."""
        try:
            check_peer_key(key, allow_small=self.allow_small_keys, party=f"lender {lender!r}")
        except CryptoError as exc:
            raise ProtocolError(str(exc)) from exc

    def accept_upload(self, lender: str, upload: UploadTable) -> LenderTable:
        """Replace ``lender``'s table (the caller's name comes from its TLS certificate)."""
        self.check_key(lender, upload.public_key)
        if len(upload.tags) != len(upload.ciphertexts):
            raise ProtocolError("an upload must hold as many ciphertexts as tags")
        if any(len(tag) != TAG_BYTES for tag in upload.tags):
            raise ProtocolError(f"every tag in an upload must be {TAG_BYTES} bytes")
        oprf_key = check_public_key(upload.oprf_key, f"lender {lender!r}")
        index = {tag: row for row, tag in enumerate(upload.tags)}
        if len(index) != len(upload.tags):
            raise ProtocolError("an upload holds the same tag twice")
        if lender not in self._tables and len(self._tables) >= MAX_LENDERS:
            raise ProtocolError(f"a consortium may hold at most {MAX_LENDERS} lenders")
        # Made here, sent (packed) to the key's owner: textbook randomness, not its base (F6).
        extras = encrypt_values_for_owner(upload.public_key, [NO_MATCH, MATCH_WITHHELD])
        rows = upload.ciphertexts.concat(extras)
        table = LenderTable(lender, upload.epoch, upload.public_key, index, rows, oprf_key)
        self._tables[lender] = table
        return table

    def _check(self, caller: str, request: QueryRequest) -> dict[str, tuple[bytes, ...]]:
        if not 0 < request.size <= MAX_BATCH:
            raise ProtocolError(f"a query must hold 1 to {MAX_BATCH} applicants")
        if len(request.recipient_key) != 32:
            raise ProtocolError("the querier's one-time key must be 32 bytes")
        asked = {entry.lender: entry for entry in request.lenders}
        expected = set(self._tables) - {caller}
        if len(asked) != len(request.lenders) or set(asked) != expected:
            raise ProtocolError(
                "a query must carry tags for exactly the other lenders: "
                + ", ".join(sorted(expected))
            )
        for name, entry in asked.items():
            if entry.epoch != self._tables[name].epoch:
                raise StaleTableError(f"lender {name!r} changed its key (stale epoch); ask again")
        # One person per slot for every lender (F5): the proofs, then the tags from the points.
        return verified_tags(request, {name: self._tables[name].oprf_key for name in asked})

    def prepare(self, caller: str, request: QueryRequest) -> PreparedQuery:
        """Select each lender's matched rows (or Enc(0)), pack and mask them, sum the masks."""
        tags = self._check(caller, request)
        if self._admit is not None:
            self._admit(caller, request.size)
        matches = {
            name: [self._tables[name].index.get(tag) for tag in lender_tags]
            for name, lender_tags in tags.items()
        }
        counts = [sum(m[i] is not None for m in matches.values()) for i in range(request.size)]
        threshold = max(request.min_count_for_total, self.min_count_floor)
        batches: dict[str, MaskedBatch] = {}
        # Every lender packs the same groups, so that the querier can add the lenders' numbers.
        group = group_size(self._tables[name].public_key for name in matches)
        mask_sums = [0] * -(-request.size // group)
        for name, rows in matches.items():
            table = self._tables[name]
            zero, withheld = len(table.index), len(table.index) + 1
            indices = [
                zero if row is None else (row if counts[i] >= threshold else withheld)
                for i, row in enumerate(rows)
            ]
            packed, masks = mask_selected(table.rows, indices, group)
            mask_sums = [s + m for s, m in zip(mask_sums, masks, strict=True)]
            batches[name] = MaskedBatch(request.size, request.recipient_key, packed)
        digits = split_groups(mask_sums, request.size, group)
        return PreparedQuery(caller, request.size, batches, tuple(digits), threshold, group)
