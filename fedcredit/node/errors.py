"""The node's own kinds of refusal, beside ``fedcredit.errors``.

Each maps to one gRPC status in ``fedcredit.node.services.errors`` (the one table); a servicer
never picks a status itself. Nothing here imports grpc.
"""

from __future__ import annotations

from fedcredit.errors import CryptoError, FedCreditError, ProtocolError


class PeerKeyError(CryptoError):
    """A peer's public key fails the key policy (``check_peer_key``).

    Unlike other ``CryptoError``s, its text goes back to the caller: it names the key's owner
    and the rule it breaks (bits, base, small factors), nothing secret.
    """


class InvalidRequest(ProtocolError):
    """A request refused for what it holds (malformed points, a proof that fails, a bad upload),
    as opposed to one that comes out of order (a plain ``ProtocolError``)."""


class CallerRefused(ProtocolError):
    """The authenticated caller may not call this RPC at all (``PERMISSION_DENIED``)."""


class NotServed(ProtocolError):
    """This node's role does not serve the RPC (``UNIMPLEMENTED``): e.g. queries go to the
    coordinator, not to a lender."""


class NotReady(FedCreditError):
    """The node cannot answer yet (a lender's table has not arrived, a lender did not answer);
    asking again later may work (``UNAVAILABLE``)."""
