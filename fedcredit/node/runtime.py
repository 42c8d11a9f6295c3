"""Running a node process: load and validate data, build the node from its parts (transport,
state, services), serve until stopped."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from fedcredit.config import Federation, PartyConfig
from fedcredit.crypto.djn import set_table_budget
from fedcredit.crypto.executors import use_executor
from fedcredit.crypto.keys import MIN_KEY_BITS
from fedcredit.crypto.stock import set_randomness_stock
from fedcredit.data.loader import PartyData as PartyFile
from fedcredit.data.loader import load_party_csv
from fedcredit.errors import ConfigError
from fedcredit.model.scorecard import Scorecard
from fedcredit.node.debt_node import (
    serve_coordinator_debt,
    serve_lender_debt,
)
from fedcredit.node.decryption import coordinator_gate
from fedcredit.node.services.binning import BinningServicer
from fedcredit.node.services.coordinator import CoordinatorServicer
from fedcredit.node.services.party import add_party_services
from fedcredit.node.state import PartyNode, Role
from fedcredit.node.transport.identity import ServerInterceptorBase
from fedcredit.node.transport.peers import COORDINATOR, Peers
from fedcredit.node.transport.server import NodeServer, build_server
from fedcredit.node.transport.tls import (
    load_channel_credentials,
    load_server_credentials,
    pins_in,
)
from fedcredit.node.trees_state import TreesJob
from fedcredit.proto.v1 import binning_pb2_grpc, coordinator_pb2_grpc
from fedcredit.protocol.categories import with_category_codes
from fedcredit.protocol.columns import PartyData
from fedcredit.protocol.family import get_family
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.trees.columns import TreeColumns
from fedcredit.protocol.trees.lender import TreesLender

log = logging.getLogger("fedcredit.node")

GRACE_SECONDS = 5.0
RPC_WORKERS = 16
BATCHING_RPC_WORKERS = 128
"""The lender's RPC threads when it micro-batches: a call waiting in a batch holds its thread,
so with the default 16 no more than 16 concurrent calls could ever share batches."""


@dataclass(frozen=True)
class NodeOptions:
    """How to run one node (command-line options of ``fedcredit node``)."""

    name: str
    listen: str | None = None
    port_file: Path | None = None
    state_dir: Path | None = None
    model_dir: Path | None = None
    cert_dir: Path | None = None
    insecure: bool = False
    allow_small_keys: bool = False
    peers: tuple[tuple[str, str], ...] = ()


def credentials_for(
    fed: Federation, name: str, cert_dir: Path | None
) -> tuple[grpc.ServerCredentials, grpc.ChannelCredentials]:
    """Server and channel credentials of node ``name`` from --certs or the file's [tls].

    Channels to a party the file pins (``cert_sha256``) trust only that party's certificate,
    read from the same folder as ``name``'s own and checked against the pin.
    """
    if cert_dir is not None:
        ca, cert, key = cert_dir / "ca.pem", cert_dir / f"{name}.pem", cert_dir / f"{name}.key"
    elif fed.tls is not None:
        ca, cert, key = fed.tls.ca, fed.tls.cert(name), fed.tls.key(name)
    else:
        raise ConfigError(
            f"{fed.path.name}: no [tls] table and no --certs folder: mutual TLS needs certificates "
            "(see 'fedcredit certs request', or pass --insecure for local debugging)"
        )
    pins = pins_in(cert.parent, fed.cert_pins())
    unpinned = [n for n in fed.all_names if n not in fed.cert_pins()]
    if fed.tls is not None and unpinned:
        log.warning(
            "%s: no cert_sha256 for %s: whoever holds the CA can act as them (parties/README.md)",
            fed.path.name,
            ", ".join(unpinned),
        )
    return load_server_credentials(ca, cert, key), load_channel_credentials(ca, cert, key, pins)


def build_node(
    fed: Federation,
    options: NodeOptions,
    *,
    interceptors: Sequence[ServerInterceptorBase] = (),
) -> NodeServer:
    """A started-to-be server for node ``options.name`` (a party or the coordinator).

    ``interceptors`` are extra server interceptors, added after the built-in ones
    (``build_server``); tests use them to record what crosses the wire.
    """
    if options.insecure:
        server_creds, channel_creds = None, None
    else:
        server_creds, channel_creds = credentials_for(fed, options.name, options.cert_dir)
    address = options.listen or fed.endpoint(options.name).address
    allowed = set(fed.all_names)
    batching = options.name == fed.lender.name and fed.scoring.batch_wait_ms > 0
    server = build_server(
        address,
        credentials=server_creds,
        allowed_parties=allowed,
        max_workers=BATCHING_RPC_WORKERS if batching else RPC_WORKERS,
        interceptors=interceptors,
        pins=fed.cert_pins(),
    )
    if options.name == COORDINATOR:
        keys = KeyHolder(allow_small_keys=options.allow_small_keys)
        # Its own folder holds the decryption audit log (fedcredit.node.decryption).
        home = options.state_dir if options.state_dir is not None else Path("state-coordinator")
        gate = coordinator_gate(fed, home)
        server.add(
            coordinator_pb2_grpc.add_CoordinatorServicer_to_server, CoordinatorServicer(keys, gate)
        )
        serve_coordinator_debt(
            server,
            fed,
            dict(options.peers),
            channel_creds,
            home,
            allow_small_keys=options.allow_small_keys,
        )
        return server
    # The party's heavy crypto on its thread pool or its Ray cluster (docs/SCALING.md, "A party on a Ray cluster").
    party = fed.party(options.name)
    use_executor(party.executor, party.ray_address)
    node = make_party_node(
        fed,
        options.name,
        channel_creds,
        dict(options.peers),
        options.state_dir,
        allow_small_keys=options.allow_small_keys,
    )
    if options.model_dir is not None:
        node.load_model(options.model_dir)
    # A party with a loans file also serves the loan-stacking check (docs/DEBT.md).
    debt = serve_lender_debt(
        server, fed, node, allow_small_keys=options.allow_small_keys, insecure=options.insecure
    )
    trees = TreesJob(node, threshold=fed.train.threshold) if fed.family == "trees" else None
    add_party_services(server, node, debt=debt, policy=fed.policy, trees=trees)
    binning = BinningServicer(node, fed.binning, fed.party(options.name).categorical)
    server.add(binning_pb2_grpc.add_BinningServicer_to_server, binning)
    return server


def load_columns(config: PartyConfig) -> tuple[PartyFile, np.ndarray, list[str]]:
    """The party's file as its ``[[party]]`` table reads it (DataError names file, row,
    column), and its columns with categories as code columns after the numeric ones."""
    data = load_party_csv(
        config.data,
        id_column=config.id_column,
        label_column=config.label_column,
        features=list(config.features) if config.features else None,
        categorical=config.categorical,
    )
    x, names = with_category_codes(data.X, data.feature_names, data.categorical)
    return data, x, names


def make_party_node(
    fed: Federation,
    name: str,
    credentials: grpc.ChannelCredentials | None,
    overrides: dict[str, str],
    home: Path | None = None,
    *,
    allow_small_keys: bool | None = None,
) -> PartyNode:
    """Load and validate the party's data (DataError names file, row, column) and wrap it.

    ``allow_small_keys`` (the test-only switch) lets the node take peers' keys below 2048 bits;
    None takes it from the file: ``key_bits`` below 2048 loads only with that switch.

    Categorical columns (text columns, and those the ``categorical`` key names) become code
    columns after the numeric ones. With a [binning] table they are binned as categories;
    without one the party one-hot encodes them at alignment (``fedcredit.protocol.logistic.encoding``).
    """
    config = fed.party(name)
    # Process-wide crypto settings of this party's machine (issue 16); the defaults change
    # nothing, so in-process test federations of several parties are unaffected.
    if config.table_mib is not None:
        set_table_budget(config.table_mib)
    if config.randomness_stock:
        set_randomness_stock(config.randomness_stock)
    data, x, names = load_columns(config)
    settings = fed.family_settings
    small_keys = fed.key_bits < MIN_KEY_BITS if allow_small_keys is None else allow_small_keys

    family = get_family(fed.family)

    def factory() -> Role:
        columns = PartyData(name, data.ids, x, names)
        if config.is_lender:
            if data.y is None:
                raise ConfigError(f"party {name!r} names no label column")
            role = family.lender(columns, data.y, settings)
        else:
            role = family.partner(columns, settings)
        if isinstance(role, TreesLender):
            # Mix mode's round robin: the lender, then the partners in federation file order.
            role.partners = [h.name for h in fed.hosts]
        if not isinstance(role, FeatureParty | TreeColumns):
            raise ConfigError(f"model family {fed.family!r} has no node service in this release")
        party = role
        party.categorical = tuple(data.categorical)
        if isinstance(party, FeatureParty):
            party.one_hot_categories = fed.binning is None
            party.release_bits = fed.scoring.precision_bits
        return party

    def peers_factory(addresses: dict[str, str]) -> Peers:
        return Peers(
            addresses,
            fed.lender.name,
            credentials=credentials,
            own_name=name,
            allow_small_keys=small_keys,
        )

    node = PartyNode(name, factory, peers_factory, home, scoring=fed.scoring)
    node.scorecard = Scorecard(**dataclasses.asdict(fed.scorecard))
    node.policy = fed.policy if config.is_lender else None
    node.allow_small_keys = small_keys
    static = {p.name: p.address for p in fed.parties}
    static[COORDINATOR] = fed.coordinator.address
    static.update(overrides)
    node.static_peers = peers_factory(static)
    return node


def serve(fed: Federation, options: NodeOptions) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully (calls in flight finish)."""
    server = build_node(fed, options)
    port = server.start()
    if options.port_file is not None:
        tmp = options.port_file.with_suffix(".tmp")
        tmp.write_text(str(port), encoding="utf-8")
        os.replace(tmp, options.port_file)
    print(f"fedcredit node {options.name!r} serving on port {port}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(GRACE_SECONDS)
