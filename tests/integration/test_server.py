"""Node server, identity and client: real gRPC servers on 127.0.0.1:0 with real mutual TLS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.errors import ConfigError, PartyUnavailableError
from fedcredit.node.transport.client import RemoteCallError, call, open_channel, wait_for_ready
from fedcredit.node.transport.identity import PARTY_METADATA, caller_party
from fedcredit.node.transport.server import NodeServer, build_server
from fedcredit.node.transport.tls import CertPaths, init_certs, load_channel_credentials
from fedcredit.node.transport.tls import load_server_credentials as server_creds

NAMES = ["lender", "ecommerce", "payments", "coordinator", "outsider"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _TestService:
    """A small generic service: a call that blocks until released, an echo of the caller."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.attempts = 0

    def sleep(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.started.set()
        self.release.wait(30)
        return b"done"

    def whoami(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return caller_party(context).encode()

    def fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.attempts += 1
        context.abort(grpc.StatusCode[request.decode()], "failing on purpose")

    def register(self, server: NodeServer) -> None:
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(fn)
            for name, fn in (("Sleep", self.sleep), ("WhoAmI", self.whoami), ("Fail", self.fail))
        }
        server.add_generic_handlers([grpc.method_handlers_generic_handler("test.Test", handlers)])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return init_certs(tmp_path_factory.mktemp("certs"), NAMES)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return init_certs(tmp_path_factory.mktemp("other-ca"), ["ecommerce"])


@pytest.fixture()
def service() -> Iterator[_TestService]:
    svc = _TestService()
    yield svc
    svc.release.set()


@pytest.fixture()
def lender(certs: CertPaths, service: _TestService) -> Iterator[tuple[NodeServer, str]]:
    """The lender's node, serving ecommerce and the coordinator only."""
    creds = server_creds(certs.ca, certs.cert("lender"), certs.key("lender"))
    server = build_server(
        "127.0.0.1:0", credentials=creds, allowed_parties={"ecommerce", "coordinator"}
    )
    service.register(server)
    port = server.start()
    yield server, f"127.0.0.1:{port}"
    server.stop(0)


def _channel(certs: CertPaths, address: str, me: str, expect: str = "lender") -> grpc.Channel:
    creds = load_channel_credentials(certs.ca, certs.cert(me), certs.key(me))
    return open_channel(address, party_name=expect, credentials=creds)


def _check(channel: grpc.Channel) -> Any:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def _code_of(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        _check(channel)
    return info.value.code()  # type: ignore[no-any-return, attr-defined]


def test_allowed_party_gets_serving_health(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    with _channel(certs, lender[1], "ecommerce") as channel:
        reply = _check(channel)
    assert reply.status == SERVING


def test_wait_for_ready_returns_once_the_node_reports_serving(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    server, address = lender
    server.health.set("", NOT_SERVING)
    turned = threading.Event()

    def serve_later() -> None:
        time.sleep(0.3)
        turned.set()
        server.health.set("", SERVING)

    threading.Thread(target=serve_later, daemon=True).start()
    with _channel(certs, address, "coordinator") as channel:
        wait_for_ready(channel, "lender", timeout_s=10)
        returned_after_the_turn = turned.is_set()
        status = _check(channel).status

    assert returned_after_the_turn
    assert status == SERVING


def test_servicer_learns_caller_from_certificate(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    with _channel(certs, lender[1], "ecommerce") as channel:
        # A forged header must not matter under TLS.
        reply = channel.unary_unary("/test.Test/WhoAmI")(
            b"", timeout=5, metadata=[(PARTY_METADATA, "coordinator")]
        )
    assert reply == b"ecommerce"


def test_party_outside_allowed_set_is_refused(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    with _channel(certs, lender[1], "payments") as channel:
        assert _code_of(channel) == grpc.StatusCode.PERMISSION_DENIED


def test_wait_for_ready_reports_refusal_at_once(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    with _channel(certs, lender[1], "outsider") as channel, pytest.raises(RemoteCallError) as info:
        wait_for_ready(channel, "lender", timeout_s=30)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_client_without_certificate_is_refused(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    with open_channel(lender[1], party_name="lender", credentials=creds) as channel:
        assert _code_of(channel) == grpc.StatusCode.UNAVAILABLE


def test_client_certificate_from_another_ca_is_refused(
    certs: CertPaths, other_ca: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    # Trusts the right CA for the server, but presents a certificate the lender's CA never signed.
    creds = load_channel_credentials(
        certs.ca, other_ca.cert("ecommerce"), other_ca.key("ecommerce")
    )
    with open_channel(lender[1], party_name="lender", credentials=creds) as channel:
        assert _code_of(channel) == grpc.StatusCode.UNAVAILABLE


def test_plaintext_to_tls_port_fails(lender: tuple[NodeServer, str]) -> None:
    with open_channel(
        lender[1], party_name="lender", credentials=None, self_name="ecommerce"
    ) as ch:
        assert _code_of(ch) == grpc.StatusCode.UNAVAILABLE


def test_server_with_another_partys_certificate_is_refused_by_client(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    with _channel(certs, lender[1], "ecommerce", expect="payments") as channel:
        assert _code_of(channel) == grpc.StatusCode.UNAVAILABLE


def test_graceful_stop_finishes_in_flight_call_and_refuses_new_ones(
    certs: CertPaths, lender: tuple[NodeServer, str], service: _TestService
) -> None:
    server, address = lender
    with _channel(certs, address, "ecommerce") as channel:
        sleep = channel.unary_unary("/test.Test/Sleep")
        in_flight = sleep.future(b"", timeout=30)
        assert service.started.wait(10)
        with futures.ThreadPoolExecutor(1) as pool:
            stopping = pool.submit(server.stop, 30)
            wait_until_not_serving(channel)
            with pytest.raises(grpc.RpcError) as refused:
                sleep(b"", timeout=5)
            assert not stopping.done()
            service.release.set()
            assert in_flight.result(timeout=10) == b"done"
            stopping.result(timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def wait_until_not_serving(channel: grpc.Channel) -> None:
    """Poll the health service until it reports NOT_SERVING (fails the test after 10 s)."""
    event = threading.Event()
    for _ in range(200):
        if _check(channel).status == NOT_SERVING:
            return
        event.wait(0.05)
    pytest.fail("health never reported NOT_SERVING")


def test_health_watch_sees_not_serving_when_stopping(
    certs: CertPaths, lender: tuple[NodeServer, str], service: _TestService
) -> None:
    server, address = lender
    with _channel(certs, address, "ecommerce") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=20
        )
        assert next(watch).status == SERVING
        in_flight = channel.unary_unary("/test.Test/Sleep").future(b"", timeout=30)
        assert service.started.wait(10)
        with futures.ThreadPoolExecutor(1) as pool:
            stopping = pool.submit(server.stop, 30)
            assert next(watch).status == NOT_SERVING
            service.release.set()
            stopping.result(timeout=10)
        assert in_flight.result(timeout=10) == b"done"


def test_stop_cancels_calls_still_running_after_grace(
    certs: CertPaths, lender: tuple[NodeServer, str], service: _TestService
) -> None:
    server, address = lender
    with _channel(certs, address, "ecommerce") as channel:
        in_flight = channel.unary_unary("/test.Test/Sleep").future(b"", timeout=30)
        assert service.started.wait(10)
        server.stop(0.2)
        with pytest.raises(grpc.RpcError):
            in_flight.result(timeout=10)


def test_wait_for_ready_times_out_on_not_serving_node(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    server, address = lender
    server.health.set("", NOT_SERVING)
    with (
        _channel(certs, address, "ecommerce") as channel,
        pytest.raises(PartyUnavailableError) as info,
    ):
        wait_for_ready(channel, "lender", timeout_s=0.5)
    assert "NOT_SERVING" in str(info.value)


def test_call_retries_idempotent_call_then_reports_party_unavailable(
    certs: CertPaths, lender: tuple[NodeServer, str], service: _TestService
) -> None:
    with _channel(certs, lender[1], "ecommerce") as channel:
        fail = channel.unary_unary("/test.Test/Fail")
        with pytest.raises(PartyUnavailableError, match="'lender'"):
            call(fail, b"UNAVAILABLE", party="lender", timeout_s=5, idempotent=True,
                 retries=2, sleep=lambda _: None)  # fmt: skip
    assert service.attempts == 3


def test_call_does_not_retry_non_idempotent_call(
    certs: CertPaths, lender: tuple[NodeServer, str], service: _TestService
) -> None:
    with _channel(certs, lender[1], "ecommerce") as channel:
        fail = channel.unary_unary("/test.Test/Fail")
        with pytest.raises(PartyUnavailableError):
            call(fail, b"UNAVAILABLE", party="lender", timeout_s=5, sleep=lambda _: None)
    assert service.attempts == 1


def test_call_turns_other_status_into_remote_call_error(
    certs: CertPaths, lender: tuple[NodeServer, str], service: _TestService
) -> None:
    with _channel(certs, lender[1], "ecommerce") as channel:
        fail = channel.unary_unary("/test.Test/Fail")
        with pytest.raises(RemoteCallError) as info:
            call(fail, b"INVALID_ARGUMENT", party="lender", timeout_s=5, idempotent=True)
    assert (info.value.code, service.attempts) == (grpc.StatusCode.INVALID_ARGUMENT, 1)


def test_call_applies_deadline(certs: CertPaths, lender: tuple[NodeServer, str]) -> None:
    with _channel(certs, lender[1], "ecommerce") as channel:
        sleep = channel.unary_unary("/test.Test/Sleep")
        with pytest.raises(PartyUnavailableError, match="DEADLINE_EXCEEDED"):
            call(sleep, b"", party="lender", timeout_s=0.2)


def test_message_above_size_limit_is_refused(certs: CertPaths, service: _TestService) -> None:
    creds = server_creds(certs.ca, certs.cert("lender"), certs.key("lender"))
    server = build_server(
        "127.0.0.1:0", credentials=creds, allowed_parties={"ecommerce"}, max_message_bytes=1024
    )
    service.register(server)
    port = server.start()
    try:
        with _channel(certs, f"127.0.0.1:{port}", "ecommerce") as channel:
            whoami = channel.unary_unary("/test.Test/WhoAmI")
            with pytest.raises(RemoteCallError) as info:
                call(whoami, b"x" * 4096, party="lender", timeout_s=5)
    finally:
        server.stop(0)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_start_on_port_in_use_raises_config_error(
    certs: CertPaths, lender: tuple[NodeServer, str]
) -> None:
    creds = server_creds(certs.ca, certs.cert("lender"), certs.key("lender"))
    second = build_server(lender[1], credentials=creds, allowed_parties={"ecommerce"})
    with pytest.raises(ConfigError, match="cannot listen"):
        second.start()
    second.stop(0)


@pytest.fixture()
def insecure(service: _TestService, capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    server = build_server("127.0.0.1:0", credentials=None, allowed_parties={"ecommerce"})
    service.register(server)
    port = server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_insecure_server_warns_on_stderr(insecure: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "WITHOUT TLS" in capsys.readouterr().err


def test_insecure_mode_takes_caller_from_header(insecure: str) -> None:
    with open_channel(insecure, party_name="lender", credentials=None, self_name="ecommerce") as ch:
        assert ch.unary_unary("/test.Test/WhoAmI")(b"", timeout=5) == b"ecommerce"


def test_insecure_mode_refuses_party_outside_allowed_set(insecure: str) -> None:
    with open_channel(insecure, party_name="lender", credentials=None, self_name="payments") as ch:
        assert _code_of(ch) == grpc.StatusCode.PERMISSION_DENIED


def test_insecure_mode_refuses_caller_without_header(insecure: str) -> None:
    with grpc.insecure_channel(insecure) as channel:
        assert _code_of(channel) == grpc.StatusCode.UNAUTHENTICATED


def test_insecure_channel_needs_own_name() -> None:
    with pytest.raises(ConfigError, match="self_name"):
        open_channel("127.0.0.1:1", party_name="lender", credentials=None)


def test_unreachable_party_is_reported_unavailable(tmp_path: Path) -> None:
    server = build_server("127.0.0.1:0", credentials=None, allowed_parties={"ecommerce"})
    port = server.start()
    server.stop(0)
    channel = open_channel(f"127.0.0.1:{port}", party_name="x", credentials=None, self_name="e")
    with channel, pytest.raises(PartyUnavailableError, match="'lender'"):
        wait_for_ready(channel, "lender", timeout_s=0.5)
