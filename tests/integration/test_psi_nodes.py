"""Private alignment through real nodes when one party is slow to start its PSI."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from fedcredit.cli.progress import Progress
from fedcredit.errors import ProtocolError
from fedcredit.node.serde import psi as psi_serde
from fedcredit.node.transport.identity import Handler, HandlerInterceptor, guard_handler
from tests.support.federation import start_federation

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


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_alignment_reports_every_step_with_the_time_left(tmp_path: Path) -> None:
    federation = start_federation(tmp_path)
    try:
        events: list[tuple[str, dict[str, Any]]] = []
        federation.driver.progress = lambda kind, info: events.append((kind, dict(info)))
        # A party blinds its ids once per job (security review F11): set the job up again.
        federation.driver.setup(federation.driver.start_job(), False)
        again = federation.driver.align()
    finally:
        federation.close()
    steps = [info for kind, info in events if kind == "align_step"]
    # Three parties: three blindings at once, then two hops and a return for each list.
    assert sorted(step["done"] for step in steps) == list(range(3, 13))
    assert {step["steps"] for step in steps} == {12}
    assert min(steps, key=lambda s: s["done"])["seconds_left"] > 0
    assert max(steps, key=lambda s: s["done"])["seconds_left"] == 0
    assert again["common"] == federation.aligned["common"]

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        show = Progress(quiet=False, stream=stream)
        for step in steps:
            show("align_step", step)
    assert "alignment step 12/12" in terminal.getvalue()
    assert "s left" in terminal.getvalue()
    assert log.getvalue() == ""  # not a terminal: no carriage-return lines in a log file


def test_a_party_running_another_psi_suite_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    federation = start_federation(tmp_path)
    try:
        # The nodes run in this process: every one now answers as an older release would.
        monkeypatch.setattr(psi_serde, "PSI_SUITE", "")
        federation.driver.setup(federation.driver.start_job(), False)  # a fresh alignment
        with pytest.raises(ProtocolError) as info:
            federation.driver.align()
    finally:
        federation.close()
    message = str(info.value)
    assert re.search(
        r"party '(lender|ecommerce|payments)' runs PSI version 1 \(ristretto255\)", message
    )
    assert "the same fedcredit release" in message
