"""A data party's services, registered together: Job, Psi, Logistic and Scoring share one
``DriverSteps`` (one sequence guard per node)."""

from __future__ import annotations

from fedcredit.decision import Policy
from fedcredit.node.scoring import DebtCheck
from fedcredit.node.services.job import JobServicer
from fedcredit.node.services.logistic import LogisticServicer
from fedcredit.node.services.psi import PsiServicer
from fedcredit.node.services.scoring import ScoringServicer
from fedcredit.node.services.steps import DriverSteps
from fedcredit.node.services.trees import TreesServicer
from fedcredit.node.state import PartyNode
from fedcredit.node.transport.server import NodeServer
from fedcredit.node.trees_state import TreesJob
from fedcredit.proto.v1 import (
    job_pb2_grpc,
    logistic_pb2_grpc,
    psi_pb2_grpc,
    scoring_pb2_grpc,
    trees_pb2_grpc,
)


def add_party_services(
    server: NodeServer,
    node: PartyNode,
    *,
    debt: DebtCheck | None = None,
    driver: str = "coordinator",
    policy: Policy | None = None,
    trees: TreesJob | None = None,
) -> DriverSteps:
    """Add the four party services of ``node`` to ``server`` (and the Trees service when the
    job's family is trees: ``trees`` holds its rounds); their shared steps."""
    steps = DriverSteps(node, driver)
    server.add(job_pb2_grpc.add_JobServicer_to_server, JobServicer(steps))
    server.add(psi_pb2_grpc.add_PsiServicer_to_server, PsiServicer(steps))
    server.add(logistic_pb2_grpc.add_LogisticServicer_to_server, LogisticServicer(steps))
    server.add(scoring_pb2_grpc.add_ScoringServicer_to_server, ScoringServicer(node, debt, policy))
    if trees is not None:
        server.add(trees_pb2_grpc.add_TreesServicer_to_server, TreesServicer(steps, trees))
    return steps
