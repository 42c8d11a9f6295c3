"""Certificates made by init_certs: what they contain, how they are written, how they load."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.errors import ConfigError
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.server import build_server
from fedcredit.node.transport.tls import (
    CertPaths,
    certificate_name,
    init_certs,
    load_channel_credentials,
    load_server_credentials,
)

NAMES = ["lender", "ecommerce", "coordinator"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return init_certs(tmp_path_factory.mktemp("certs"), NAMES)


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_writes_ca_and_one_certificate_and_key_per_name(certs: CertPaths) -> None:
    files = sorted(p.name for p in certs.ca.parent.iterdir())
    assert files == sorted(["ca.pem"] + [f"{n}{e}" for n in NAMES for e in (".pem", ".key")])


def test_key_files_are_private(certs: CertPaths) -> None:
    modes = {stat.S_IMODE(certs.key(n).stat().st_mode) for n in NAMES}
    assert modes == {0o600}


def test_ca_is_a_ca_valid_for_thirty_days(certs: CertPaths) -> None:
    ca = _load(certs.ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert (constraints.critical, constraints.value.ca, lifetime.days) == (True, True, 30)


def test_party_certificate_names_the_party(certs: CertPaths) -> None:
    cert = _load(certs.cert("ecommerce"))
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert cn == "ecommerce"
    assert san.get_values_for_type(x509.DNSName) == ["ecommerce", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("127.0.0.1")]


def test_party_certificate_is_signed_by_the_ca_and_not_a_ca(certs: CertPaths) -> None:
    ca, cert = _load(certs.ca), _load(certs.cert("lender"))
    cert.verify_directly_issued_by(ca)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_party_certificate_serves_as_client_and_server(certs: CertPaths) -> None:
    usage = _load(certs.cert("lender")).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert set(usage.value) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_keys_are_p256(certs: CertPaths) -> None:
    key = _load(certs.cert("lender")).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_certificate_name_reads_common_name(certs: CertPaths) -> None:
    assert certificate_name(certs.cert("coordinator")) == "coordinator"


def test_refuses_to_overwrite_existing_certificates(certs: CertPaths) -> None:
    with pytest.raises(ConfigError, match="exists"):
        init_certs(certs.ca.parent, ["lender"])


def test_overwrite_replaces_certificates(tmp_path: Path) -> None:
    first = init_certs(tmp_path, ["lender"])
    old = first.cert("lender").read_bytes()
    second = init_certs(tmp_path, ["lender"], overwrite=True)
    assert second.cert("lender").read_bytes() != old
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("names", [["Lender"], ["a_b"], ["lender", "lender"], []])
def test_rejects_names_unfit_for_certificates(tmp_path: Path, names: list[str]) -> None:
    with pytest.raises(ConfigError):
        init_certs(tmp_path, names)


def test_loaded_credentials_carry_a_mutual_tls_call(certs: CertPaths) -> None:
    server_creds = load_server_credentials(certs.ca, certs.cert("lender"), certs.key("lender"))
    channel_creds = load_channel_credentials(
        certs.ca, certs.cert("ecommerce"), certs.key("ecommerce")
    )
    # Only ecommerce may call: a reply proves the channel presented ecommerce's certificate
    # and the client accepted the lender's.
    server = build_server("127.0.0.1:0", credentials=server_creds, allowed_parties={"ecommerce"})
    port = server.start()
    try:
        channel = open_channel(f"127.0.0.1:{port}", party_name="lender", credentials=channel_creds)
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
    finally:
        server.stop(0)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_mismatched_key_is_refused_naming_the_file(certs: CertPaths) -> None:
    with pytest.raises(ConfigError, match=r"lender\.key: key does not belong"):
        load_server_credentials(certs.ca, certs.cert("ecommerce"), certs.key("lender"))


def test_missing_file_is_refused_naming_the_file(certs: CertPaths, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=r"nope\.pem: cannot read"):
        load_channel_credentials(certs.ca, missing, certs.key("lender"))


def test_garbage_certificate_is_refused(certs: CertPaths, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"bad\.pem: not a PEM certificate"):
        load_server_credentials(bad, certs.cert("lender"), certs.key("lender"))


def test_expired_certificate_is_refused(tmp_path: Path) -> None:
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=60)
    paths = init_certs(tmp_path, ["lender"], now=old)
    with pytest.raises(ConfigError, match="expired"):
        load_server_credentials(paths.ca, paths.cert("lender"), paths.key("lender"))
