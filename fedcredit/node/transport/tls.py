"""Credentials for mutual TLS between the nodes of one federation, and certificate pins.

A server asks every client for a certificate from the federation CA; a client checks that the
server's certificate names the party it means to reach (``client.open_channel``). Where the
federation file pins a party's certificate (``cert_sha256``), only that exact certificate is
that party: a client trusts it alone for channels to that party (``PinnedChannelCredentials``)
and a server refuses any other (``identity.IdentityInterceptor``). Making certificates is
``fedcredit.node.transport.certs``; its public names are also importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from fedcredit.errors import ConfigError
from fedcredit.node.transport.certs import (
    CertPaths,
    certificate_fingerprint,
    check_not_expired,
    init_certs,
    make_ca,
    parse_certificate,
    read_credentials,
    read_pem,
    request_certificate,
    sign_request,
)
from fedcredit.node.transport.identity import certificate_party, certificate_sha256

__all__ = [
    "CertPaths",
    "Pin",
    "PinnedChannelCredentials",
    "certificate_fingerprint",
    "certificate_name",
    "init_certs",
    "load_channel_credentials",
    "load_server_credentials",
    "make_ca",
    "pins_in",
    "request_certificate",
    "sign_request",
]


@dataclass(frozen=True)
class Pin:
    """The federation file's fingerprint of a party's certificate, and where this node keeps
    a copy of that (public) certificate."""

    party: str
    sha256: str
    cert: Path


def pins_in(folder: str | Path, fingerprints: Mapping[str, str]) -> tuple[Pin, ...]:
    """One ``Pin`` per pinned party, its certificate expected at ``<folder>/<party>.pem``."""
    return tuple(Pin(name, sha, Path(folder) / f"{name}.pem") for name, sha in fingerprints.items())


class PinnedChannelCredentials(grpc.ChannelCredentials):
    """Channel credentials with one trust anchor per pinned party: its own certificate.

    A channel to a pinned party trusts that exact certificate and nothing else (gRPC accepts
    a certificate in the trust store as the end of the chain), so a certificate the CA signed
    for the same name is refused in the handshake. Only ``fedcredit.node.transport.client.open_channel``
    can use these (it picks ``for_party``); handed to gRPC directly they fail, never unpinned.
    """

    def __init__(
        self, default: grpc.ChannelCredentials, pinned: Mapping[str, grpc.ChannelCredentials]
    ) -> None:
        self._default = default
        self._pinned = dict(pinned)

    def for_party(self, name: str) -> grpc.ChannelCredentials:
        """The credentials for a channel to ``name``: its pin when it has one."""
        return self._pinned.get(name, self._default)


def load_server_credentials(
    ca: str | Path, cert: str | Path, key: str | Path
) -> grpc.ServerCredentials:
    """Server credentials that require every client to present a certificate from ``ca``.

    Pinned callers are checked after the handshake, by ``identity.IdentityInterceptor``.
    """
    ca_pem, cert_pem, key_pem = read_credentials(ca, cert, key)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def load_channel_credentials(
    ca: str | Path, cert: str | Path, key: str | Path, pins: Sequence[Pin] = ()
) -> grpc.ChannelCredentials:
    """Client credentials: present this node's certificate; trust ``ca``, or for a pinned
    party only its pinned certificate (``PinnedChannelCredentials``).

    Each pinned certificate file is checked against its fingerprint here (ConfigError naming
    the file and the party), this node's own included.
    """
    ca_pem, cert_pem, key_pem = read_credentials(ca, cert, key)
    default = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )
    if not pins:
        return default
    pinned = {
        pin.party: grpc.ssl_channel_credentials(
            root_certificates=_pinned_pem(pin), private_key=key_pem, certificate_chain=cert_pem
        )
        for pin in pins
    }
    return PinnedChannelCredentials(default, pinned)


def certificate_name(cert: str | Path) -> str:
    """The party a certificate file was issued to: its DNS SAN (``identity.certificate_party``)."""
    name = certificate_party(parse_certificate(Path(cert), read_pem(cert)))
    if name is None:
        raise ConfigError(f"{cert}: certificate names no single party in its DNS SAN")
    return name


def _pinned_pem(pin: Pin) -> bytes:
    try:
        pem = pin.cert.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{pin.cert}: cannot read the certificate of party {pin.party!r}, which the "
            f"federation file pins (cert_sha256): {exc.strerror}; copy that party's "
            "certificate (it is public) there"
        ) from exc
    parsed = parse_certificate(pin.cert, pem)
    actual = certificate_sha256(parsed)
    if actual != pin.sha256:
        raise ConfigError(
            f"{pin.cert}: SHA-256 {actual} is not the certificate the federation file pins "
            f"for party {pin.party!r} (cert_sha256 = {pin.sha256!r})"
        )
    check_not_expired(pin.cert, parsed)
    return pem
