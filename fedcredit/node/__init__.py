"""fedcredit.node: a node process in layers, each importing only those before it.

``transport`` (server, channels, identity, TLS, typed calls to peers) -> ``serde`` (protobuf to
domain values and back) -> ``state`` with ``scoring``, ``partner``, ``binning_job``, ``debt_job``
(a node's domain side, no protobuf) -> ``services`` (one thin servicer per proto service, one
``@rpc`` and one error-to-status table) -> ``runtime`` (``build_node``).
"""
