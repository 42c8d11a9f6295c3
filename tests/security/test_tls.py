"""Attacks on who a node believes it talks to (security review F8 and F16).

Real nodes (``build_node``: a party node with its data, mutual TLS, on 127.0.0.1:0) and real
clients (the channel credentials a node builds from the federation file). The attacker is the
operator who made the federation's certificates: it presents, as "lender", whatever lender key
it holds or can make with the CA it keeps. The certificates are made by the ``fedcredit certs``
commands themselves, as an operator and the institutions would run them.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.cli.demo import write_demo_federation
from fedcredit.cli.main import main
from fedcredit.config import Federation, load_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.driver.job import Driver
from fedcredit.errors import ConfigError
from fedcredit.node.runtime import NodeOptions, build_node, credentials_for
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.peers import PeerStubs
from fedcredit.node.transport.server import NodeServer, build_server
from fedcredit.node.transport.tls import load_channel_credentials, load_server_credentials
from fedcredit.proto.v1 import scoring_pb2

NODES = ("lender", "ecommerce", "coordinator")
ACCEPTED_AS_LENDER = "has no model loaded"  # PartialScore got past its "caller is the lender" check


@dataclass(frozen=True)
class Credential:
    ca: Path
    cert: Path
    key: Path


@dataclass
class Deployment:
    home: Path
    operator: Path  # everything the operator (who made the certificates) keeps
    sites: dict[str, Path]  # each institution's own certificate folder

    def site(self, name: str) -> Credential:
        folder = self.sites[name]
        return Credential(folder / "ca.pem", folder / f"{name}.pem", folder / f"{name}.key")


def certs_cli(*args: str | Path) -> None:
    assert main(["certs", *map(str, args)]) == 0


def deploy(home: Path, nodes: tuple[str, ...] = NODES) -> Deployment:
    """Certificates as parties/README.md says: each institution makes its own key and a request,
    the operator makes the CA and signs the requests; only public files travel."""
    operator = home / "operator"
    certs_cli("ca", "--out", operator / "ca")
    sites = {}
    for name in nodes:
        site = sites[name] = home / name / "certs"
        certs_cli("request", "--party", name, "--out", site)
        (operator / "requests").mkdir(parents=True, exist_ok=True)
        shutil.copy2(site / f"{name}.csr", operator / "requests" / f"{name}.csr")  # sent
        request = operator / "requests" / f"{name}.csr"
        issued = operator / "issued" / f"{name}.pem"
        certs_cli("sign", request, "--ca-dir", operator / "ca", "--out", issued)
    for site in sites.values():  # the CA and every certificate are public: everyone gets them
        shutil.copy2(operator / "ca" / "ca.pem", site / "ca.pem")
        for name in nodes:
            shutil.copy2(operator / "issued" / f"{name}.pem", site / f"{name}.pem")
    return Deployment(home, operator, sites)


def operator_lender_credential(deployment: Deployment) -> Credential:
    """The best "lender" credential the operator has: a lender key it kept, or else one it
    makes now and signs with the CA it keeps (a correctly signed certificate for "lender")."""
    op = deployment.operator
    if (op / "lender.key").exists():
        return Credential(op / "ca.pem", op / "lender.pem", op / "lender.key")
    forged = op / "forged"
    if not (forged / "lender.pem").exists():
        certs_cli("request", "--party", "lender", "--out", forged)
        certs_cli(
            "sign", forged / "lender.csr", "--ca-dir", op / "ca", "--out", forged / "lender.pem"
        )
    return Credential(op / "ca" / "ca.pem", forged / "lender.pem", forged / "lender.key")


def private_keys_under(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
    )


def write_federation(home: Path, pins: dict[str, str] | None = None) -> Federation:
    """Two parties and the coordinator; ``pins`` become ``cert_sha256`` keys of their tables."""
    pins = pins or {}

    def pin(name: str) -> str:
        return f'cert_sha256 = "{pins[name]}"\n' if name in pins else ""

    (home / "lender.csv").write_text(
        "id,default,x\n" + "".join(f"c{i},{i % 2},{i}\n" for i in range(40))
    )
    (home / "ecommerce.csv").write_text("id,y\n" + "".join(f"c{i},{i * 3}\n" for i in range(40)))
    path = home / "federation.toml"
    path.write_text(
        f"""[federation]
name = "f8"
key_bits = 1024

[coordinator]
address = "127.0.0.1:1"
{pin("coordinator")}
[[party]]
name = "lender"
role = "lending"
address = "127.0.0.1:2"
data = "lender.csv"
id_column = "id"
label_column = "default"
{pin("lender")}
[[party]]
name = "ecommerce"
role = "ecommerce"
address = "127.0.0.1:3"
data = "ecommerce.csv"
id_column = "id"
{pin("ecommerce")}"""
    )
    return load_federation(path, allow_small_keys=True)


@dataclass
class Federated:
    fed: Federation
    deployment: Deployment
    operator_keys: list[str]  # private keys in the operator's folder after the deployment
    ecommerce: str  # address of the real ecommerce node


@pytest.fixture(scope="module")
def federated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federated]:
    home = tmp_path_factory.mktemp("f8")
    deployment = deploy(home)
    kept = private_keys_under(deployment.operator)  # before the operator tries anything
    pins = {name: sha256_of(deployment.site(name).cert) for name in NODES}
    fed = write_federation(home, pins)
    options = NodeOptions(
        name="ecommerce",
        listen="127.0.0.1:0",
        cert_dir=deployment.sites["ecommerce"],
        allow_small_keys=True,
        state_dir=home / "ecommerce",
    )
    server = build_node(fed, options)
    try:
        yield Federated(fed, deployment, kept, f"127.0.0.1:{server.start()}")
    finally:
        server.stop(0)


def partial_score_as(credential: Credential, address: str, callee: str) -> tuple[str, str]:
    """Call ``PartialScore`` (lender only) at ``address``; the status code name and details."""
    creds = load_channel_credentials(credential.ca, credential.cert, credential.key)
    channel = open_channel(address, party_name=callee, credentials=creds)
    try:
        PeerStubs(channel).PartialScore(scoring_pb2.ScoreIds(ids=["c1"]), timeout=5)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    finally:
        channel.close()
    return "OK", ""


def serve_health(credential: Credential, allowed: set[str]) -> tuple[NodeServer, str]:
    creds = load_server_credentials(credential.ca, credential.cert, credential.key)
    server = build_server("127.0.0.1:0", credentials=creds, allowed_parties=allowed)
    return server, f"127.0.0.1:{server.start()}"


def reach_as(fed: Federation, name: str, cert_dir: Path, address: str, callee: str) -> str:
    """Node ``name``'s own client credentials reach ``callee`` at ``address``: the status."""
    _, channel_creds = credentials_for(fed, name, cert_dir)
    channel = open_channel(address, party_name=callee, credentials=channel_creds)
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    except grpc.RpcError as exc:
        return exc.code().name
    finally:
        channel.close()
    return "OK"


# -- F8: whoever made the certificates ---------------------------------------------------------


def test_the_operator_keeps_no_party_key(federated: Federated) -> None:
    assert federated.operator_keys == ["ca/ca.key"]


def test_each_institution_keeps_its_key_to_itself(federated: Federated) -> None:
    for name, site in federated.deployment.sites.items():
        assert private_keys_under(site) == [f"{name}.key"]
        assert (site / f"{name}.key").stat().st_mode & 0o777 == 0o600


def test_the_operator_who_made_the_certificates_is_not_accepted_as_the_lender(
    federated: Federated,
) -> None:
    credential = operator_lender_credential(federated.deployment)

    code, details = partial_score_as(credential, federated.ecommerce, "ecommerce")

    assert ACCEPTED_AS_LENDER not in details, "the ecommerce node took the operator for the lender"
    assert code == "UNAUTHENTICATED"


def test_a_node_does_not_reach_the_operator_serving_as_the_lender(federated: Federated) -> None:
    server, address = serve_health(operator_lender_credential(federated.deployment), set(NODES))
    try:
        status = reach_as(
            federated.fed, "ecommerce", federated.deployment.sites["ecommerce"], address, "lender"
        )
    finally:
        server.stop(0)

    assert status == "UNAVAILABLE", "ecommerce would send its partial scores to the operator"


def test_the_real_lender_is_accepted_and_reached(federated: Federated) -> None:
    lender = federated.deployment.site("lender")
    code, details = partial_score_as(lender, federated.ecommerce, "ecommerce")
    server, address = serve_health(lender, set(NODES))
    try:
        status = reach_as(
            federated.fed, "ecommerce", federated.deployment.sites["ecommerce"], address, "lender"
        )
    finally:
        server.stop(0)

    assert (code, ACCEPTED_AS_LENDER in details, status) == ("FAILED_PRECONDITION", True, "OK")


def test_without_a_pin_the_ca_holder_can_still_pose_as_a_party(federated: Federated) -> None:
    # The documented limit: the CA holder can sign any name, so unpinned parties are exposed.
    unpinned = federated.fed.replace_party("lender", cert_sha256=None)
    server, address = serve_health(operator_lender_credential(federated.deployment), set(NODES))
    try:
        status = reach_as(
            unpinned, "ecommerce", federated.deployment.sites["ecommerce"], address, "lender"
        )
    finally:
        server.stop(0)

    assert status == "OK"


def test_certs_init_says_it_is_for_a_local_test_federation_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["certs", "init", "--help"])
    help_text = capsys.readouterr().out

    certs_cli("init", "--out", tmp_path, "--parties", "lender,coordinator")
    output = capsys.readouterr().out

    assert "for a local test federation only" in " ".join(help_text.split())
    assert "Every key made here: for a local test federation only" in output


# -- F16: identity from the SAN, pinned certificates -------------------------------------------


class MiniCA:
    """A federation CA whose key the test keeps, to sign whatever certificate it likes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test federation CA")])
        self.cert = (
            self._builder(name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = folder / "ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name, public: Any) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject if hasattr(self, "cert") else subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(self, file_name: str, common_name: str, dns: list[str]) -> Credential:
        """A CA-signed certificate and its key, as ``<file_name>.pem`` and ``.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            self._builder(subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = self.folder / f"{file_name}.pem", self.folder / f"{file_name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Credential(self.pem, cert_path, key_path)


def sha256_of(cert: Path) -> str:
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    return parsed.fingerprint(hashes.SHA256()).hex()


@dataclass
class Pinned:
    fed: Federation
    ca: MiniCA
    certs: Path  # the ecommerce node's certificate folder (every party's certificate in it)
    lender: Credential  # the real lender's
    ecommerce: str


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pinned]:
    """An ecommerce node of a federation that pins the lender's certificate."""
    home = tmp_path_factory.mktemp("f16")
    ca = MiniCA(home / "certs")
    real = {name: ca.issue(name, name, [name]) for name in NODES}
    fed = write_federation(home, pins={"lender": sha256_of(real["lender"].cert)})
    options = NodeOptions(
        name="ecommerce",
        listen="127.0.0.1:0",
        cert_dir=ca.folder,
        allow_small_keys=True,
        state_dir=home / "ecommerce",
    )
    server = build_node(fed, options)
    try:
        yield Pinned(fed, ca, ca.folder, real["lender"], f"127.0.0.1:{server.start()}")
    finally:
        server.stop(0)


@pytest.mark.parametrize("san", ["coordinator", "outsider"])
def test_a_certificate_whose_common_name_says_lender_but_whose_san_says_otherwise_is_refused(
    pinned: Pinned, san: str
) -> None:
    forged = pinned.ca.issue(f"cn-lender-san-{san}", "lender", [san])

    code, details = partial_score_as(forged, pinned.ecommerce, "ecommerce")

    assert ACCEPTED_AS_LENDER not in details, "the node took the common name for the identity"
    assert code == "UNAUTHENTICATED"


def test_a_node_refuses_a_correctly_signed_lender_certificate_that_is_not_the_pinned_one(
    pinned: Pinned,
) -> None:
    other = pinned.ca.issue("other-lender", "lender", ["lender"])

    code, details = partial_score_as(other, pinned.ecommerce, "ecommerce")

    assert ACCEPTED_AS_LENDER not in details
    assert code == "UNAUTHENTICATED"


def test_a_node_accepts_the_pinned_lender_certificate(pinned: Pinned) -> None:
    code, details = partial_score_as(pinned.lender, pinned.ecommerce, "ecommerce")

    assert (code, ACCEPTED_AS_LENDER in details) == ("FAILED_PRECONDITION", True)


def test_a_client_refuses_a_server_whose_certificate_is_not_the_pinned_one(
    pinned: Pinned,
) -> None:
    other = pinned.ca.issue("other-lender-server", "lender", ["lender"])
    server, address = serve_health(other, set(NODES))
    try:
        status = reach_as(pinned.fed, "ecommerce", pinned.certs, address, "lender")
    finally:
        server.stop(0)

    assert status == "UNAVAILABLE"


def test_a_client_reaches_the_server_with_the_pinned_certificate(pinned: Pinned) -> None:
    server, address = serve_health(pinned.lender, set(NODES))
    try:
        status = reach_as(pinned.fed, "ecommerce", pinned.certs, address, "lender")
    finally:
        server.stop(0)

    assert status == "OK"


def test_a_client_refuses_a_server_whose_san_names_another_party(pinned: Pinned) -> None:
    forged = pinned.ca.issue("cn-coordinator-san-lender", "coordinator", ["lender"])
    server, address = serve_health(forged, set(NODES))
    try:
        status = reach_as(pinned.fed, "ecommerce", pinned.certs, address, "coordinator")
    finally:
        server.stop(0)

    assert status == "UNAVAILABLE"


# -- the certs commands --------------------------------------------------------------------------


def request_for(
    path: Path, attributes: list[x509.NameAttribute], sans: tuple[str, ...] = ()
) -> Path:
    """A certificate request with any subject and requested names (an institution's tool may
    ask for anything)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False
        )
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def cn(name: str) -> x509.NameAttribute:
    return x509.NameAttribute(NameOID.COMMON_NAME, name)


def failing(args: list[str | Path], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a certs command that must fail; its one error line."""
    capsys.readouterr()
    assert main(["certs", *map(str, args)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedcredit: error: "), captured.err
    return lines[0]


@pytest.fixture()
def ca_dir(tmp_path: Path) -> Path:
    certs_cli("ca", "--out", tmp_path / "ca")
    return tmp_path / "ca"


def test_certs_sign_names_the_party_only_without_localhost(federated: Federated) -> None:
    cert = x509.load_pem_x509_certificate(federated.deployment.site("ecommerce").cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert san.get_values_for_type(x509.DNSName) == ["ecommerce"]
    assert san.get_values_for_type(x509.IPAddress) == []
    assert [a.value for a in cert.subject] == ["ecommerce"]


def test_certs_sign_prints_the_fingerprint_to_pin(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs_cli("request", "--party", "payments", "--out", tmp_path / "payments")
    capsys.readouterr()

    csr, cert = tmp_path / "payments" / "payments.csr", tmp_path / "payments.pem"
    certs_cli("sign", csr, "--ca-dir", ca_dir, "--out", cert)
    out = capsys.readouterr().out

    assert f"[[party]] 'payments': cert_sha256 = \"{sha256_of(cert)}\"" in out


def test_certs_sign_ignores_the_names_a_request_asks_for(ca_dir: Path, tmp_path: Path) -> None:
    csr = request_for(tmp_path / "l.csr", [cn("lender")], ("lender", "localhost", "coordinator"))

    certs_cli("sign", csr, "--ca-dir", ca_dir, "--out", tmp_path / "l.pem")

    cert = x509.load_pem_x509_certificate((tmp_path / "l.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["lender"]


@pytest.mark.parametrize("name", ["Lender", "localhost", "a_b", "lender.evil.example", ""])
def test_certs_sign_refuses_a_request_that_names_no_party(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    csr = request_for(tmp_path / "x.csr", [cn(name)] if name else [])

    line = failing(["sign", csr, "--ca-dir", ca_dir, "--out", tmp_path / "x.pem"], capsys)

    assert "x.csr" in line
    assert not (tmp_path / "x.pem").exists()


def test_certs_sign_refuses_a_request_with_more_than_the_party_name(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    organisation = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lender")
    csr = request_for(tmp_path / "x.csr", [cn("lender"), organisation])

    line = failing(["sign", csr, "--ca-dir", ca_dir, "--out", tmp_path / "x.pem"], capsys)

    assert "exactly one party" in line


def test_certs_sign_needs_the_ca_key(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ca_dir / "ca.key").unlink()
    csr = request_for(tmp_path / "x.csr", [cn("lender")])

    line = failing(["sign", csr, "--ca-dir", ca_dir, "--out", tmp_path / "x.pem"], capsys)

    assert "ca.key: cannot read" in line


def test_certs_request_refuses_to_replace_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs_cli("request", "--party", "lender", "--out", tmp_path)
    key = (tmp_path / "lender.key").read_bytes()

    line = failing(["request", "--party", "lender", "--out", tmp_path], capsys)

    assert "lender.key exists" in line
    assert (tmp_path / "lender.key").read_bytes() == key


def test_certs_request_refuses_a_name_that_is_no_party_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = failing(["request", "--party", "Lender", "--out", tmp_path], capsys)

    assert "'Lender' is not a party name" in line
    assert list(tmp_path.iterdir()) == []


def test_certs_ca_keeps_its_key_private_and_refuses_to_replace_it(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = (ca_dir / "ca.key").read_bytes()

    line = failing(["ca", "--out", ca_dir], capsys)

    assert (ca_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    assert "exists" in line and (ca_dir / "ca.key").read_bytes() == key


# -- pins in the federation file -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "z" * 64, "0" * 63])
def test_a_malformed_pin_is_refused_naming_the_table_and_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"\[\[party\]\] #1 'lender' cert_sha256: must be"):
        write_federation(tmp_path, {"lender": value})


def test_a_pin_may_be_written_as_openssl_prints_it(tmp_path: Path) -> None:
    digits = "ab" * 32
    openssl = ":".join(digits[i : i + 2] for i in range(0, 64, 2)).upper()

    fed = write_federation(tmp_path, {"coordinator": openssl})

    assert fed.cert_pins() == {"coordinator": digits}


def test_a_node_whose_own_certificate_is_not_its_pin_refuses_to_start(
    federated: Federated, tmp_path: Path
) -> None:
    wrong = federated.fed.replace_party("ecommerce", cert_sha256="0" * 64)

    with pytest.raises(ConfigError, match=r"ecommerce\.pem: SHA-256 .* pins for party 'ecommerce'"):
        credentials_for(wrong, "ecommerce", federated.deployment.sites["ecommerce"])


def test_a_pinned_certificate_missing_from_the_folder_is_named(
    federated: Federated, tmp_path: Path
) -> None:
    site = tmp_path / "certs"
    shutil.copytree(federated.deployment.sites["ecommerce"], site)
    (site / "lender.pem").unlink()

    with pytest.raises(ConfigError, match=r"lender\.pem: cannot read the certificate of party"):
        credentials_for(federated.fed, "ecommerce", site)


# -- a whole job over pinned certificates ------------------------------------------------------


def test_a_whole_job_runs_over_pinned_certificates_made_by_request_and_sign(
    tmp_path: Path,
) -> None:
    data = write_institutions(tmp_path / "data", 400, seed=5)
    path = write_demo_federation(tmp_path, data, key_bits=1024, epochs=1)
    names = ("lender", "ecommerce", "payments", "coordinator")
    deployment = deploy(tmp_path, names)
    text = path.read_text().replace("batch_size = 4096", "batch_size = 128")
    text = text.replace("[binning]\n", "")  # plain logistic regression: the quickest job
    for name in names:
        table = "[coordinator]\n" if name == "coordinator" else f'name = "{name}"\n'
        pin = f'cert_sha256 = "{sha256_of(deployment.site(name).cert)}"\n'
        text = text.replace(table, table + pin, 1)
    assert text.count("cert_sha256") == 4
    path.write_text(text)
    fed = load_federation(path, allow_small_keys=True)
    # One machine: each node's own folder holds the next one, and the run folder lies inside
    # all of them (a node writes its model part only inside its own folder).
    homes = {name: tmp_path.joinpath(*names[: i + 1]) for i, name in enumerate(names)}
    servers: dict[str, NodeServer] = {}
    addresses: dict[str, str] = {}
    try:
        for name in names:
            options = NodeOptions(
                name=name,
                listen="127.0.0.1:0",
                cert_dir=deployment.sites[name],
                allow_small_keys=True,
                peers=tuple(addresses.items()),
                state_dir=homes[name],
            )
            servers[name] = build_node(fed, options)
            addresses[name] = f"127.0.0.1:{servers[name].start()}"
        _, credentials = credentials_for(fed, "coordinator", deployment.sites["coordinator"])
        driver = Driver(
            fed,
            addresses,
            credentials=credentials,
            progress=lambda *_: None,
            state_dirs={p.name: str(homes[p.name] / "checkpoints") for p in fed.parties},
        )
        try:
            metrics = driver.run(homes["coordinator"] / "run")
        finally:
            driver.peers.close()
    finally:
        for server in servers.values():
            server.stop(0)

    assert metrics["rows_aligned"] > 0 and 0.0 <= metrics["auc"] <= 1.0
