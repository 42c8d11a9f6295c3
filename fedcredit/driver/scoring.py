"""Scoring as the lender's operator: local nodes loaded with a model, and the Score RPC.

``scoring_session`` starts the nodes, gives the coordinator a fresh key (or runs a job's private
alignment, for ``fedcredit invite``) and yields a stub of the lender's node opened with the
lender's own certificate (scores go to the lender only); ``scoring_service`` yields the stub
alone; ``score_chunk`` asks it about a batch of applicants and returns SCORES.csv rows.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc

from fedcredit.config import Federation
from fedcredit.driver.context import Progress
from fedcredit.driver.job import Driver
from fedcredit.driver.launcher import (
    LocalNodes,
    channel_credentials,
    local_names,
    prepare_certs,
    wait_all,
)
from fedcredit.node.transport.client import call, open_channel
from fedcredit.node.transport.peers import COORDINATOR, Peers, PeerStubs
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2,
    scoring_pb2,
)

SCORE_TIMEOUT_S: Final = 600.0
SCORE_COLUMNS: Final = ("id", "probability", "score", "grade", "reasons", "error")
DEBT_COLUMNS: Final = ("other_lenders", "total_outstanding", "debt_reason")


@dataclass(frozen=True)
class ScoringSession:
    """Local scoring nodes, as the lender's operator sees them: a stub of the lender's node
    (opened with the lender's certificate), every node's address and the lender's channel
    credentials (for calls the lender makes to a partner, e.g. ``DeliverInvitations``)."""

    stub: PeerStubs
    addresses: dict[str, str]
    credentials: grpc.ChannelCredentials | None
    lender: str

    def call_as_lender(
        self, party: str, rpc: Callable[[PeerStubs], Any], request: Any, **options: Any
    ) -> Any:
        """``rpc`` of ``party``'s node, called as the lender (its own node through ``stub``,
        a partner over a channel opened with the lender's certificate for this one call);
        ``options`` go to ``fedcredit.node.transport.client.call``."""
        if party == self.lender:
            return call(rpc(self.stub), request, party=party, **options)
        channel = open_channel(
            self.addresses[party],
            party_name=party,
            credentials=self.credentials,
            self_name=self.lender,
        )
        try:
            return call(rpc(PeerStubs(channel)), request, party=party, **options)
        finally:
            channel.close()


@contextlib.contextmanager
def scoring_session(
    fed: Federation,
    model_dir: Path,
    run_dir: Path,
    *,
    align: bool = False,
    insecure: bool = False,
    allow_small_keys: bool = False,
    progress: Progress | None = None,
) -> Iterator[ScoringSession]:
    """Local nodes loaded with a model and a fresh coordinator key; with ``align`` the key is
    a job's whose private alignment has run (the lender then knows the common customers)."""
    cert_dir = prepare_certs(fed, model_dir.parent, insecure=insecure)
    names = local_names(fed)
    lender = fed.lender.name
    with LocalNodes(
        fed.path,
        names,
        run_dir,
        cert_dir=cert_dir,
        insecure=insecure,
        allow_small_keys=allow_small_keys,
        model_dir=model_dir,
    ) as nodes:
        addresses = {n: fed.endpoint(n).address for n in fed.all_names}
        addresses.update(nodes.start(last=lender))
        coord_creds = channel_credentials(fed, cert_dir, COORDINATOR)
        wait_all(addresses, coord_creds, COORDINATOR)
        if align:
            driver = Driver(
                fed,
                addresses,
                credentials=coord_creds,
                progress=progress or (lambda *_: None),
                state_dirs={n: str(nodes.state_dir(n)) for n in names if n != COORDINATOR},
                liveness=nodes.check_alive,
            )
            try:
                driver.align_only()
            finally:
                driver.peers.close()
        else:
            operator = Peers(addresses, lender, credentials=coord_creds, own_name=COORDINATOR)
            env = common_pb2.Envelope(job_id=f"scoring-{uuid.uuid4().hex[:8]}", seq=1)
            operator.call(
                COORDINATOR,
                lambda s: s.coordinator.StartJob,
                coordinator_pb2.StartJobRequest(env=env, key_bits=fed.key_bits),
                120.0,
            )
            operator.close()
        credentials = channel_credentials(fed, cert_dir, lender)
        channel = open_channel(
            addresses[lender], party_name=lender, credentials=credentials, self_name=lender
        )
        try:
            yield ScoringSession(PeerStubs(channel), dict(addresses), credentials, lender)
        finally:
            channel.close()


@contextlib.contextmanager
def scoring_service(
    fed: Federation,
    model_dir: Path,
    run_dir: Path,
    *,
    insecure: bool = False,
    allow_small_keys: bool = False,
) -> Iterator[PeerStubs]:
    """Local nodes loaded with a model, a fresh coordinator key, and a stub of the lender's
    Score RPC opened with the lender's own certificate (scores go to the lender only)."""
    with scoring_session(
        fed, model_dir, run_dir, insecure=insecure, allow_small_keys=allow_small_keys
    ) as session:
        yield session.stub


def score_header(debt: bool) -> list[str]:
    """SCORES.csv's header; the debt columns only when ``debt``."""
    return [*SCORE_COLUMNS, *(DEBT_COLUMNS if debt else ())]


def score_chunk(
    stub: PeerStubs, ids: Sequence[str], *, lender: str, debt: bool | None
) -> tuple[bool, list[list[str]]]:
    """Score ``ids`` through the lender's Score RPC; returns ``(debt, rows)``.

    ``debt`` says whether the rows carry the debt columns: given, or (None, the first chunk)
    whether the lender's node answered the loan-stacking check for any applicant.
    """
    reply = call(
        stub.Score, scoring_pb2.ScoreRequest(ids=list(ids)), party=lender, timeout_s=SCORE_TIMEOUT_S
    )
    if debt is None:
        debt = any(has_debt(item) for item in reply.applicants)
    return debt, [score_row(item, debt) for item in reply.applicants]


def has_debt(item: scoring_pb2.ScoredApplicant) -> bool:
    """Whether the lender's node ran (or tried) the loan-stacking check for this applicant."""
    return item.HasField("other_lenders") or bool(item.debt_reason)


def score_row(item: scoring_pb2.ScoredApplicant, debt: bool) -> list[str]:
    """One SCORES.csv row; the debt columns only when ``debt``."""
    if item.error:
        row = [item.id, "", "", "", "", item.error]
    else:
        row = [
            item.id,
            f"{item.probability:.12g}",
            f"{item.score:.1f}",
            item.grade,
            item.reasons,
            "",
        ]
    if debt:
        lenders = str(item.other_lenders) if item.HasField("other_lenders") else ""
        total = item.total_outstanding if item.HasField("total_outstanding") else ""
        row += [lenders, total, item.debt_reason]
    return row
