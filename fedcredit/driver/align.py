"""Private ID alignment over the nodes: ring PSI, then every party keeps the common rows.

PSI lists pass through the driver, blinded by scalars it does not know; it learns the set
sizes and the aligned row counts, nothing about which customers they are.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fedcredit.driver.context import JobContext, Rpc, StepClock
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.proto.v1 import psi_pb2
from fedcredit.protocol.split import check_batch_rule
from fedcredit.psi import POINT_BYTES, PointBuffer, intersect
from fedcredit.psi import SUITE as PSI_SUITE


def align(ctx: JobContext) -> dict[str, int]:
    """Ring PSI: every party's blinded list goes round the others and back to its owner.

    Returns the aligned row counts (``common``, ``train``, ``validation``, ``test``); sets
    ``ctx.aligned_features`` and the ``align_*`` timings.
    """
    parties = ctx.parties
    ctx.progress(
        "phase",
        {"phase": "align", "message": f"private ID alignment across {len(parties)} parties"},
    )

    # Every party blinds its own ids (and so makes its PSI key) before any ring starts: a
    # ring passes through the other parties, which need their key to apply it.
    # Steps: every party blinds its list, each list makes m - 1 hops and comes home.
    clock = StepClock(ctx.progress, "align_step", len(parties) * (len(parties) + 1))
    started = time.monotonic()
    blinded = ctx.call_all(
        parties,
        lambda s: s.psi.PsiBlind,
        lambda p: psi_pb2.PsiRequest(env=ctx.env(), chunk=ctx.psi_chunk_points),
    )
    clock.advance(len(parties))
    for party, reply in blinded.items():
        if reply.suite != PSI_SUITE:
            theirs = repr(reply.suite) if reply.suite else "version 1 (ristretto255)"
            raise ProtocolError(
                f"party {party!r} runs PSI {theirs}, this coordinator {PSI_SUITE!r}: "
                "no customer could match; every party needs the same fedcredit release"
            )
    ctx.timings["align_blind"] = (now := time.monotonic()) - started

    def ring(owner: str) -> PointBuffer:
        points = receive(ctx, owner, "PsiBlind", owner, blinded[owner])
        start = parties.index(owner)
        for hop in range(1, len(parties)):
            holder = parties[(start + hop) % len(parties)]
            reply = send(ctx, holder, lambda s: s.psi.PsiApply, owner, points)
            points = receive(ctx, holder, "PsiApply", owner, reply)
            clock.advance()
        reply = send(ctx, owner, lambda s: s.psi.PsiFinish, owner, points)
        data = receive(ctx, owner, "PsiFinish", owner, reply)
        clock.advance()
        return PointBuffer(data)  # one buffer, not a bytes object a point (issue 16)

    f_sets = ctx.map(ring, parties)
    ctx.timings["align_rings"] = (started := time.monotonic()) - now
    common = intersect(f_sets)
    ctx.timings["align_intersect"] = (now := time.monotonic()) - started
    blob = PointBuffer.of(common).tobytes()
    replies = dict(
        zip(
            parties,
            ctx.map(lambda p: send(ctx, p, lambda s: s.psi.PsiAlign, p, blob), parties),
            strict=True,
        )
    )
    ctx.timings["align_resolve"] = time.monotonic() - now
    ctx.aligned_features = {p: int(r.features) for p, r in replies.items()}
    first = replies[parties[0]]
    if any(r.common != first.common or r.test != first.test for r in replies.values()):
        raise ProtocolError("parties disagree on the aligned rows")
    ctx.progress(
        "aligned",
        {
            "common": first.common,
            "sizes": {p: len(s) for p, s in zip(parties, f_sets, strict=True)},
        },
    )
    return {
        "common": first.common,
        "train": first.train,
        "validation": first.validation,
        "test": first.test,
    }


def send(ctx: JobContext, party: str, rpc: Rpc, owner: str, blob: bytes) -> Any:
    """Hand ``party`` ``owner``'s list (points concatenated): in one message when it fits in
    ``ctx.psi_chunk_points``, else chunk by chunk; the reply to the last message."""
    chunk, total = ctx.psi_chunk_points, len(blob) // POINT_BYTES
    if total <= chunk:
        message = psi_pb2.PsiPoints(
            env=ctx.env(), owner=owner, points=blob, count=total, chunk=chunk
        )
        return ctx.call(party, rpc, message)
    reply = None
    for offset in range(0, total, chunk):
        part = blob[offset * POINT_BYTES : (offset + chunk) * POINT_BYTES]
        message = psi_pb2.PsiPoints(
            env=ctx.env(),
            owner=owner,
            points=part,
            count=len(part) // POINT_BYTES,
            offset=offset,
            total=total,
            chunk=chunk,
        )
        reply = ctx.call(party, rpc, message)
    return reply


def receive(ctx: JobContext, party: str, step: str, owner: str, reply: Any) -> bytes:
    """The whole list ``party`` answered ``step`` with: the reply's points, then every chunk
    after them (``PsiFetch``) up to the reply's total."""
    parts, got = [bytes(reply.points)], int(reply.count)
    while got < reply.total:
        request = psi_pb2.PsiFetchRequest(
            env=ctx.env(), step=step, owner=owner, offset=got, chunk=ctx.psi_chunk_points
        )
        more = ctx.call(party, lambda s: s.psi.PsiFetch, request)
        if more.count == 0 or more.offset != got or more.total != reply.total:
            raise ProtocolError(
                f"party {party!r} answered point {got} of {owner!r}'s {step} list out of order"
            )
        parts.append(bytes(more.points))
        got += int(more.count)
    return b"".join(parts)


def check_sizes(ctx: JobContext, setup: Mapping[str, Any], aligned: Mapping[str, int]) -> None:
    """Enough common customers, and mini-batches larger than every party's feature count."""
    fed = ctx.fed
    if aligned["common"] == 0:
        raise ConfigError(
            "no customer is common to all parties: check that every party's id column "
            "holds the same customer ids"
        )
    if aligned["common"] < fed.min_overlap:
        raise ConfigError(
            f"only {aligned['common']} customers are common to all parties; the federation "
            f"requires at least {fed.min_overlap} (min_overlap in [federation])"
        )
    # The larger of the counts at setup and after alignment, where one-hot encoded text
    # columns add weights (a node of an older release reports 0 after alignment).
    counts = {p: max(int(r.features), ctx.aligned_features.get(p, 0)) for p, r in setup.items()}
    check_batches(ctx, aligned["train"], counts, "features")


def check_batches(ctx: JobContext, train_rows: int, weights: Mapping[str, int], what: str) -> None:
    """The batch-size privacy rule for the job's ``train_rows``, every batch the last included.

    A party learns ``X_h.T @ d`` per mini-batch; with no more rows than its ``what`` (weights)
    it could solve for the residuals, and so for the labels.
    """
    ctx.fed.check_batch_size(dict(weights))
    check_batch_rule(weights, train_rows, ctx.fed.train.batch_size, what=what)
