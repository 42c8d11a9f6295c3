"""Online and batch scoring at the lender: partners' encrypted parts, one masked decryption.

The lender asks each partner for its encrypted partial scores, adds its own, masks the sum and
has the coordinator decrypt the masked slots. It learns the final score and, per applicant, the
partners' contribution as one aggregate (never per partner). A partner that does not hold an
applicant answers the mean (zero) silently, so the lender does not learn who is its customer.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fedcredit.errors import ProtocolError
from fedcredit.node import convert
from fedcredit.node.party_node import PartyNode
from fedcredit.proto.v1 import common_pb2, party_pb2
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS
from fedcredit.protocol.lender import LabelParty

SCORE_TIMEOUT_S = 30.0
MAX_SCORE_BATCH = 100_000


def score_applicants(node: PartyNode, ids: list[str]) -> party_pb2.ScoreReply:
    """Probability, score, grade and reasons for each applicant, in the order given."""
    if not ids:
        return party_pb2.ScoreReply()
    if len(ids) > MAX_SCORE_BATCH:
        raise ProtocolError(f"at most {MAX_SCORE_BATCH} applicants per call, got {len(ids)}")
    lender = node.scoring_party()
    if not isinstance(lender, LabelParty):
        raise ProtocolError(f"party {node.name!r} is not the lender: it does not score")
    peers = node.scoring_peers()
    key = peers.coordinator_key()
    lender.public_key = key
    own, contributions, missing = lender.own_scores_for_ids(ids)
    env = common_pb2.Envelope(job_id=peers.coordinator_job)
    request = party_pb2.ScoreIds(env=env, ids=ids)
    with ThreadPoolExecutor(max_workers=max(1, len(peers.hosts))) as pool:
        replies = list(
            pool.map(
                lambda h: (h, peers.call_party(h, "PartialScore", request, SCORE_TIMEOUT_S)),
                peers.hosts,
            )
        )
    z_enc = own
    for _host, reply in replies:
        z_enc = z_enc.add(
            convert.vector_from_proto(reply.vector, key, scale_bits=Z_SCALE_BITS, count=len(ids))
        )
    packed, pending = LabelParty.score_request(z_enc)
    decrypted = peers.decrypt_masked(env, packed)
    z = LabelParty.finish_scores(decrypted, pending)
    own_z = contributions.sum(axis=1)
    p = 1.0 / (1.0 + np.exp(-z))
    scores = node.scorecard.score_from_logit(z)
    grades = node.scorecard.grade(scores)
    names = [*lender.feature_names, "intercept"]
    unknown = set(missing)
    reply = party_pb2.ScoreReply()
    for i, applicant in enumerate(ids):
        item = reply.applicants.add(id=applicant)
        if i in unknown:
            item.error = "not in the lender's data"
            continue
        row = {name: float(v) for name, v in zip(names[:-1], contributions[i, :-1], strict=True)}
        reasons = node.scorecard.reasons(row, float(z[i] - own_z[i]))
        item.probability = float(p[i])
        item.score = float(scores[i])
        item.grade = str(grades[i])
        item.reasons = ";".join(r.name for r in reasons)
    return reply
