"""Private alignment through real nodes when one party is slow to start its PSI."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from test_hardening_wire import start_federation

from fedcredit.node.identity import Handler, HandlerInterceptor, guard_handler

SLOW_S = 1.5


class SlowPsiBlind(HandlerInterceptor):
    """Holds each PsiBlind call back before the node serves it (a party on a slow machine)."""

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, handler: Handler, method: str) -> Handler:
        if not method.endswith("/PsiBlind"):
            return handler
        return guard_handler(handler, self._wait)

    def _wait(self, context: grpc.ServicerContext) -> None:
        self.calls += 1
        time.sleep(SLOW_S)


def test_a_party_slow_to_blind_its_own_ids_does_not_break_the_other_rings(tmp_path: Path) -> None:
    # Every ring passes through every party: a relay reaching the slow party before its own
    # blinding made its PSI key used to fail with "PSI was not started".
    slow = SlowPsiBlind()
    federation = start_federation(tmp_path, interceptors={"payments": [slow]})
    try:
        assert slow.calls == 1
        common = federation.aligned["common"]
        assert 0 < common < 400
    finally:
        federation.close()
