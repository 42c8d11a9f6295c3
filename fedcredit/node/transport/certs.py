"""Making the certificates for mutual TLS between the nodes of one federation.

In a deployment every institution makes its own key, and only public things travel:

- whoever holds the federation CA runs ``make_ca`` (``fedcredit certs ca``) once and keeps
  ``ca.key``;
- each institution runs ``request_certificate`` (``fedcredit certs request``): its private key
  stays in its own folder, the certificate request (CSR) goes to the CA holder;
- the CA holder runs ``sign_request`` (``fedcredit certs sign``), which checks the name,
  issues a certificate for that party name only and gives its SHA-256 fingerprint. The
  fingerprints go into the federation file (``cert_sha256``), which every party reviews.

A CA holder can still sign a second certificate for any name; the pins are what stop it from
posing as a party (``fedcredit.node.transport.identity`` and ``fedcredit.node.transport.tls``).

``init_certs`` makes a CA and every node's key in one place, for a local test federation only:
whoever runs it holds every party's key. Its certificates are also valid for ``localhost`` and
127.0.0.1; those made by ``sign_request`` name the party only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcredit.errors import ConfigError
from fedcredit.node.transport.identity import LOCAL_NAMES, certificate_sha256

VALIDITY = datetime.timedelta(days=30)  # init_certs: a local test federation
CA_DAYS = 1825
CERT_DAYS = 365
# Certificates start a little in the past so that small clock differences between the
# machines of a federation do not make a fresh certificate "not yet valid".
_BACKDATE = datetime.timedelta(minutes=5)
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_EC_CURVES = ("secp256r1", "secp384r1")
_MIN_RSA_BITS = 2048


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


@dataclass(frozen=True)
class CAPaths:
    """What ``make_ca`` wrote: the CA certificate (public) and its key (kept by the CA holder)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class RequestPaths:
    """What ``request_certificate`` wrote: the party's private key and its request."""

    key: Path
    csr: Path


@dataclass(frozen=True)
class Signed:
    """A certificate ``sign_request`` issued: its file, party, fingerprint and expiry."""

    cert: Path
    party: str
    sha256: str
    not_after: datetime.datetime


def init_certs(
    out_dir: str | Path,
    parties: list[str],
    *,
    overwrite: bool = False,
    now: datetime.datetime | None = None,
) -> CertPaths:
    """For a local test federation only: a CA and a certificate and key per name, 30 days.

    Every key is made here, so whoever runs this can act as any party; the CA key is thrown
    away. Writes ``ca.pem``, ``<name>.pem`` and ``<name>.key`` (mode 0600) into ``out_dir``,
    each atomically; the certificates are also valid for ``localhost`` and 127.0.0.1. Pass
    every node name, ``"coordinator"`` included. Refuses (ConfigError) to replace existing
    files unless ``overwrite``. ``now`` is for tests. A deployment uses ``make_ca``,
    ``request_certificate`` and ``sign_request`` instead.
    """
    names = list(parties)
    for name in names:
        _check_name(name, "init_certs")
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"init_certs: need distinct names, got {names}")
    out = Path(out_dir)
    targets = [out / "ca.pem"] + [out / f"{n}{ext}" for n in names for ext in (".pem", ".key")]
    _refuse_existing(targets, overwrite, "init_certs")
    out.mkdir(parents=True, exist_ok=True)

    start = (now or datetime.datetime.now(datetime.UTC)) - _BACKDATE
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, start, start + VALIDITY)
    paths = CertPaths(ca=out / "ca.pem", certs={}, keys={})
    _write_atomic(paths.ca, _cert_pem(ca_cert), 0o644)
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _node_certificate(
            name, key.public_key(), ca_key, ca_cert, (start, start + VALIDITY), local=True
        )
        paths.keys[name] = out / f"{name}.key"
        paths.certs[name] = out / f"{name}.pem"
        _write_atomic(paths.keys[name], _key_pem(key), 0o600)
        _write_atomic(paths.certs[name], _cert_pem(cert), 0o644)
    return paths


def make_ca(
    out_dir: str | Path, *, days: int = CA_DAYS, now: datetime.datetime | None = None
) -> CAPaths:
    """A federation CA: ``ca.pem`` (hand it to every party) and ``ca.key`` (mode 0600, kept by
    the CA holder to sign requests). Refuses (ConfigError) to replace either file."""
    if days < 1:
        raise ConfigError(f"make_ca: days must be at least 1, got {days}")
    out = Path(out_dir)
    paths = CAPaths(cert=out / "ca.pem", key=out / "ca.key")
    _refuse_existing([paths.cert, paths.key], False, "make_ca")
    _make_private_folder(out)
    start = (now or datetime.datetime.now(datetime.UTC)) - _BACKDATE
    key = ec.generate_private_key(ec.SECP256R1())
    _write_atomic(paths.key, _key_pem(key), 0o600)
    _write_atomic(paths.cert, _cert_pem(_ca_certificate(key, start, start + _days(days))), 0o644)
    return paths


def request_certificate(out_dir: str | Path, party: str) -> RequestPaths:
    """At the institution: a new private key ``<party>.key`` (mode 0600, never sent anywhere)
    and a certificate request ``<party>.csr`` for the CA holder. Refuses to replace a key."""
    _check_name(party, "certs request")
    out = Path(out_dir)
    paths = RequestPaths(key=out / f"{party}.key", csr=out / f"{party}.csr")
    _refuse_existing([paths.key, paths.csr], False, "certs request")
    _make_private_folder(out)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .sign(key, hashes.SHA256())
    )
    _write_atomic(paths.key, _key_pem(key), 0o600)
    _write_atomic(paths.csr, csr.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def sign_request(
    ca_dir: str | Path,
    csr_file: str | Path,
    out: str | Path,
    *,
    days: int = CERT_DAYS,
    now: datetime.datetime | None = None,
) -> Signed:
    """At the CA holder: a certificate for the party a request names, written to ``out``.

    The request must carry a valid signature, one common name that is a party name and an
    EC P-256/P-384 or RSA >= 2048 key. Whatever extensions it asks for are ignored: the
    certificate names the party (CN and DNS SAN) and nothing else, no ``localhost``, and
    expires after ``days`` or with the CA, whichever comes first. ConfigError names the file.
    """
    if days < 1:
        raise ConfigError(f"certs sign: days must be at least 1, got {days}")
    ca_path, key_path = Path(ca_dir) / "ca.pem", Path(ca_dir) / "ca.key"
    ca_cert = parse_certificate(ca_path, read_pem(ca_path))
    ca_key = _load_key(key_path)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not _same_key(ca_key, ca_cert):
        raise ConfigError(f"{key_path}: not the key of the CA certificate {ca_path}")
    party, public = _check_request(Path(csr_file))
    start = (now or datetime.datetime.now(datetime.UTC)) - _BACKDATE
    end = min(start + _days(days), ca_cert.not_valid_after_utc)
    if end <= start + _BACKDATE:
        raise ConfigError(f"{ca_path}: the CA has expired; make a new one with 'certs ca'")
    target = Path(out)
    _refuse_existing([target], False, "certs sign")
    cert = _node_certificate(party, public, ca_key, ca_cert, (start, end), local=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(target, _cert_pem(cert), 0o644)
    return Signed(target, party, certificate_sha256(cert), end)


def certificate_fingerprint(cert: str | Path) -> str:
    """The SHA-256 fingerprint of a certificate file: 64 lowercase hex digits (``cert_sha256``)."""
    return certificate_sha256(parse_certificate(Path(cert), read_pem(cert)))


def read_credentials(
    ca: str | Path, cert: str | Path, key: str | Path
) -> tuple[bytes, bytes, bytes]:
    """Read the three PEM files and check them here, where errors can name the file.

    gRPC would otherwise report a bad file only as a failed handshake on the first call.
    """
    ca_pem, cert_pem, key_pem = read_pem(ca), read_pem(cert), read_pem(key)
    for path, pem in ((Path(ca), ca_pem), (Path(cert), cert_pem)):
        check_not_expired(path, parse_certificate(path, pem))
    if not _same_key(_load_key(Path(key)), parse_certificate(Path(cert), cert_pem)):
        raise ConfigError(f"{key}: key does not belong to certificate {cert}")
    return ca_pem, cert_pem, key_pem


def _check_name(name: str, where: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in LOCAL_NAMES:
        raise ConfigError(
            f"{where}: {name!r} is not a party name (a lowercase DNS label: a-z, 0-9, '-')"
        )


def _check_request(path: Path) -> tuple[str, ec.EllipticCurvePublicKey | rsa.RSAPublicKey]:
    """The party name and public key of a certificate request, after every check."""
    try:
        csr = x509.load_pem_x509_csr(read_pem(path))
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate request (CSR)") from exc
    if not csr.is_signature_valid:
        raise ConfigError(f"{path}: the request's signature does not verify")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or len(csr.subject) != 1:
        raise ConfigError(f"{path}: a request must name exactly one party, as its only subject")
    name = str(names[0].value)
    _check_name(name, str(path))
    public = csr.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _EC_CURVES:
        return name, public
    if isinstance(public, rsa.RSAPublicKey) and public.key_size >= _MIN_RSA_BITS:
        return name, public
    raise ConfigError(f"{path}: the key must be EC P-256 or P-384, or RSA of 2048 bits or more")


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, start: datetime.datetime, end: datetime.datetime
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedcredit federation CA")])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _node_certificate(
    name: str,
    public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    period: tuple[datetime.datetime, datetime.datetime],
    *,
    local: bool,
) -> x509.Certificate:
    """A node certificate naming ``name``; ``local`` (init_certs only) adds localhost names."""
    alt_names: list[x509.GeneralName] = [x509.DNSName(name)]
    if local:
        alt_names += [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        ]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(period[0])
        .not_valid_after(period[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        # Every node is a server to some peers and a client of others.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """A CA signs certificates; a node signs TLS handshakes (ECDHE: nothing else)."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _days(days: int) -> datetime.timedelta:
    return datetime.timedelta(days=days) + _BACKDATE


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _refuse_existing(targets: Sequence[Path], overwrite: bool, where: str) -> None:
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        hint = "; pass overwrite to replace it" if where == "init_certs" else ""
        raise ConfigError(f"{where}: {existing[0]} exists{hint}")


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` readable by its owner only (an existing folder is left as it is)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


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


def read_pem(path: str | Path) -> bytes:
    """The bytes of a PEM file; ConfigError naming the file when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def parse_certificate(path: Path, pem: bytes) -> x509.Certificate:
    """``pem`` as a certificate; ConfigError naming ``path`` when it is none."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate") from exc


def check_not_expired(path: Path, cert: x509.Certificate) -> None:
    """ConfigError naming ``path`` when ``cert`` has expired."""
    if datetime.datetime.now(datetime.UTC) > cert.not_valid_after_utc:
        raise ConfigError(
            f"{path}: certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
            "make new certificates"
        )


def _load_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(read_pem(path), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key") from exc


def _same_key(private: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """Whether ``private`` is the key of ``cert`` (compared as SubjectPublicKeyInfo DER)."""
    der, info = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return private.public_key().public_bytes(der, info) == cert.public_key().public_bytes(der, info)
