"""Certificates for mutual TLS between the nodes of one federation.

``init_certs`` makes a throwaway federation CA and, per node, an EC P-256 key and a certificate
whose common name and DNS name are the node's name. A server learns who calls it from the
common name of the client certificate (verified against the CA); a client checks the server's
certificate against the name it expects from the federation file. The CA private key is not
written anywhere: to add a node, make a new set of certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcredit.errors import ConfigError

VALIDITY = datetime.timedelta(days=30)
# Certificates start a little in the past so that small clock differences between the
# machines of a federation do not make a fresh certificate "not yet valid".
_BACKDATE = datetime.timedelta(minutes=5)
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class CertPaths:
    """What ``init_certs`` wrote: the CA certificate and, per node, certificate and key."""

    ca: Path
    certs: dict[str, Path]
    keys: dict[str, Path]

    def cert(self, name: str) -> Path:
        return self.certs[name]

    def key(self, name: str) -> Path:
        return self.keys[name]


def init_certs(
    out_dir: str | Path,
    parties: list[str],
    *,
    overwrite: bool = False,
    now: datetime.datetime | None = None,
) -> CertPaths:
    """Create a CA and a certificate and key per name in ``parties``, valid for 30 days.

    Writes ``ca.pem``, ``<name>.pem`` and ``<name>.key`` (mode 0600) into ``out_dir``, each
    atomically. Pass every node name, ``"coordinator"`` included. Refuses (ConfigError) to
    replace existing files unless ``overwrite``. ``now`` is for tests.
    """
    names = list(parties)
    for name in names:
        if not _NAME_RE.match(name):
            raise ConfigError(f"init_certs: {name!r} is not a lowercase DNS label")
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"init_certs: need distinct names, got {names}")
    out = Path(out_dir)
    targets = [out / "ca.pem"] + [out / f"{n}{ext}" for n in names for ext in (".pem", ".key")]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise ConfigError(f"init_certs: {existing[0]} exists; pass overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)

    start = (now or datetime.datetime.now(datetime.UTC)) - _BACKDATE
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, start)
    paths = CertPaths(ca=out / "ca.pem", certs={}, keys={})
    _write_atomic(paths.ca, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _node_certificate(name, key, ca_key, ca_cert, start)
        paths.keys[name] = out / f"{name}.key"
        paths.certs[name] = out / f"{name}.pem"
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomic(paths.keys[name], key_pem, 0o600)
        _write_atomic(paths.certs[name], cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def load_server_credentials(
    ca: str | Path, cert: str | Path, key: str | Path
) -> grpc.ServerCredentials:
    """Server credentials that require every client to present a certificate from ``ca``."""
    ca_pem, cert_pem, key_pem = _read_checked(ca, cert, key)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def load_channel_credentials(
    ca: str | Path, cert: str | Path, key: str | Path
) -> grpc.ChannelCredentials:
    """Client credentials: trust only ``ca`` and present this node's certificate."""
    ca_pem, cert_pem, key_pem = _read_checked(ca, cert, key)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def certificate_name(cert: str | Path) -> str:
    """The common name in a certificate file: the node name it was issued to."""
    parsed = _parse_cert(Path(cert), _read(cert))
    names = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError(f"{cert}: certificate has no common name")
    return str(names[0].value)


def _ca_certificate(key: ec.EllipticCurvePrivateKey, start: datetime.datetime) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedcredit federation CA")])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _node_certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    start: datetime.datetime,
) -> x509.Certificate:
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(name),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
    ]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Every node is a server to some peers and a client of others.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file in the same folder, then rename it over ``path``.

    The temporary file is created with ``mode`` already set, so a key is never readable by
    others, not even for a moment.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _parse_cert(path: Path, pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate") from exc


def _read_checked(ca: str | Path, cert: str | Path, key: str | Path) -> tuple[bytes, bytes, bytes]:
    """Read the three PEM files and check them here, where errors can name the file.

    gRPC would otherwise report a bad file only as a failed handshake on the first call.
    """
    ca_pem, cert_pem, key_pem = _read(ca), _read(cert), _read(key)
    now = datetime.datetime.now(datetime.UTC)
    for path, pem in ((Path(ca), ca_pem), (Path(cert), cert_pem)):
        parsed = _parse_cert(path, pem)
        if now > parsed.not_valid_after_utc:
            raise ConfigError(
                f"{path}: certificate expired on {parsed.not_valid_after_utc:%Y-%m-%d}; "
                "make new certificates"
            )
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key}: not an unencrypted PEM private key") from exc
    public = _parse_cert(Path(cert), cert_pem).public_key()
    if private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ConfigError(f"{key}: key does not belong to certificate {cert}")
    return ca_pem, cert_pem, key_pem
