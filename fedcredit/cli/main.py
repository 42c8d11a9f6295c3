"""The ``fedcredit`` command: demo, run, node, certs, score, decide, invite, monitor,
debt-check, selfcheck.

Every ``FedCreditError`` becomes one line on stderr and exit code 2; no traceback for user errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedcredit.errors import FedCreditError

EXIT_USER_ERROR = 2


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine output on stdout, no progress")
    parser.add_argument(
        "--insecure", action="store_true", help="plaintext gRPC (local debugging only)"
    )
    parser.add_argument(
        "--allow-small-keys",
        action="store_true",
        help="accept Paillier keys below 2048 bits (tests and quick trials only)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedcredit", description="Vertical federated credit scoring."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the whole story on one machine with synthetic institutions")
    demo.add_argument(
        "--customers", type=int, default=30000, help="synthetic customers (default 30000)"
    )
    demo.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    demo.add_argument("--key-bits", type=int, default=2048, help="Paillier key size (default 2048)")
    demo.add_argument("--out", type=Path, default=None, help="keep the demo's files here")
    _add_common(demo)

    run = sub.add_parser("run", help="align, train and evaluate a federation")
    run.add_argument("federation", type=Path, help="the federation file (TOML)")
    run.add_argument(
        "--out", type=Path, required=True, help="folder for metrics.json, the model and plots"
    )
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    _add_common(run)

    node = sub.add_parser("node", help="run one node (a party or the coordinator)")
    node.add_argument("--federation", type=Path, required=True, help="the federation file (TOML)")
    node.add_argument(
        "--party", required=True, help="this node's name in the file (or 'coordinator')"
    )
    node.add_argument("--listen", default=None, help="host:port (default: the file's address)")
    node.add_argument(
        "--port-file", type=Path, default=None, help="write the bound port here once serving"
    )
    node.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the node's own folder: checkpoints and its model part go inside it, and a folder"
        " the run names outside it is refused (default ./state-NAME)",
    )
    node.add_argument("--model", type=Path, default=None, help="model folder to score with")
    node.add_argument(
        "--certs", type=Path, default=None, help="folder with ca.pem, NAME.pem, NAME.key"
    )
    node.add_argument("--peer", action="append", default=[], help="NAME=HOST:PORT override")
    _add_common(node)

    _add_certs(sub)

    score = sub.add_parser("score", help="batch scoring with a trained model")
    score.add_argument("federation", type=Path, help="the federation file (TOML)")
    score.add_argument("--model", type=Path, required=True, help=MODEL_HELP)
    score.add_argument("--ids", type=Path, required=True, help=IDS_HELP)
    score.add_argument("--out", type=Path, required=True, help="SCORES.csv to write")
    _add_common(score)

    _add_decisions(sub)
    _add_monitor(sub)

    debt = sub.add_parser(
        "debt-check", help="how many other lenders an applicant owes, and how much"
    )
    debt.add_argument("federation", type=Path, help="the federation file, with loans files")
    debt.add_argument("--lender", required=True, help="the lending party that asks")
    debt.add_argument(
        "--applicants", type=Path, required=True, help="CSV of applicant ids ('id' column)"
    )
    debt.add_argument("--out", type=Path, default=None, help="CSV to write (default: stdout)")
    debt.add_argument(
        "--min-count-for-total",
        type=int,
        default=2,
        help="report a total only with at least this many other lenders (default 2)",
    )
    _add_common(debt)

    check = sub.add_parser("selfcheck", help="check the Paillier engine against phe")
    check.add_argument(
        "--key-bits", type=int, default=2048, help="Paillier key size (default 2048)"
    )
    return parser


MODEL_HELP = "the model folder 'fedcredit run' wrote (OUT/model)"
IDS_HELP = "CSV of applicant ids: its 'id' column, or the first column"


def _add_decisions(sub: Any) -> None:
    decide = sub.add_parser(
        "decide",
        help="credit decisions with a trained model and the file's [policy]",
        description="Score each applicant, check its debts at other lenders (when the lender "
        "has a loans file) and apply the federation file's [policy]: one row per applicant in "
        "input order (id, score, grade, decision, limit, apr, instalments, reasons).",
    )
    decide.add_argument("federation", type=Path, help="the federation file, with a [policy]")
    decide.add_argument("--model", type=Path, required=True, help=MODEL_HELP)
    decide.add_argument("--ids", type=Path, required=True, help=IDS_HELP)
    decide.add_argument(
        "--out", type=Path, required=True, help="DECISIONS.csv to write (atomically)"
    )
    _add_common(decide)
    invite = sub.add_parser(
        "invite",
        help="the pre-approved customers, with their offers",
        description="Decide the customers the lender has in common with every partner (found "
        "by private alignment) or the given ids, and write the approved ones with their "
        "offers. With --deliver-to, that partner's node receives the invited ids and nothing "
        "else, and writes them inside its own folder (invitations/).",
    )
    invite.add_argument("federation", type=Path, help="the federation file, with a [policy]")
    invite.add_argument("--model", type=Path, required=True, help=MODEL_HELP)
    invite.add_argument(
        "--out", type=Path, required=True, help="INVITES.csv to write (approved applicants only)"
    )
    invite.add_argument(
        "--ids", type=Path, default=None, help=IDS_HELP + " (default: the common customers)"
    )
    invite.add_argument(
        "--deliver-to",
        default=None,
        metavar="PARTY",
        help="a partner's name: its node receives the invited ids only (no score or offer)",
    )
    _add_common(invite)


def _add_monitor(sub: Any) -> None:
    monitor = sub.add_parser(
        "monitor",
        help="is the population being scored still the one the model was trained on?",
        description="Score the given ids and compare them with the training population: the "
        "score's population stability index on the 10 bins stored with the model, and each "
        "party's characteristic stability index of its own columns, computed at that party "
        "(only the index leaves it). Writes OUT/monitor.json, a PNG of the two score "
        "distributions and an HTML page; 0.1 and 0.25 separate stable, watch and act.",
    )
    monitor.add_argument("federation", type=Path, help="the federation file (TOML)")
    monitor.add_argument("--model", type=Path, required=True, help=MODEL_HELP)
    monitor.add_argument(
        "--ids", type=Path, required=True, help=IDS_HELP + " (the population to compare)"
    )
    monitor.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for monitor.json, monitor.html and score_distribution.png",
    )
    _add_common(monitor)


def _add_certs(sub: Any) -> None:
    certs = sub.add_parser("certs", help="certificates for mutual TLS")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    request = certs_sub.add_parser(
        "request", help="at an institution: make its private key and a certificate request"
    )
    request.add_argument("--party", required=True, help="this node's name in the federation file")
    request.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for NAME.key (private, mode 0600, never leaves it) and NAME.csr",
    )
    ca = certs_sub.add_parser("ca", help="at whoever signs: make the federation CA")
    ca.add_argument(
        "--out", type=Path, required=True, help="folder for ca.pem (public) and ca.key (0600)"
    )
    ca.add_argument("--days", type=int, default=None, help="validity in days (default 1825)")
    sign = certs_sub.add_parser(
        "sign", help="at the CA holder: sign a request and print the certificate's SHA-256"
    )
    sign.add_argument("csr", type=Path, help="the NAME.csr an institution sent")
    sign.add_argument(
        "--ca-dir", type=Path, required=True, help="folder with ca.pem and ca.key ('certs ca')"
    )
    sign.add_argument("--out", type=Path, required=True, help="certificate file to write")
    sign.add_argument("--days", type=int, default=None, help="validity in days (default 365)")
    init = certs_sub.add_parser(
        "init",
        help="every key made here: for a local test federation only",
        description="A CA and every node's key and certificate, made here: for a local test "
        "federation only, since whoever runs it can act as any party. A deployment uses "
        "'certs request' at each institution and 'certs sign' at the CA holder.",
    )
    init.add_argument(
        "--out", type=Path, required=True, help="folder for every key and certificate"
    )
    init.add_argument(
        "--parties", required=True, help="comma-separated names, coordinator included"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from fedcredit.cli.jobs import run_job
    from fedcredit.config import load_federation

    fed = load_federation(args.federation, allow_small_keys=args.allow_small_keys)
    metrics = run_job(
        fed,
        args.out,
        resume=args.resume,
        quiet=args.json,
        insecure=args.insecure,
        allow_small_keys=args.allow_small_keys,
    )
    _report(metrics, args.json)
    return 0


def _report(metrics: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(metrics))
        return
    from fedcredit.model.metrics import format_interval

    print(
        f"AUC {metrics['auc']:.4f}{format_interval(metrics.get('auc_ci95'))}  "
        f"KS {metrics['ks']:.4f}{format_interval(metrics.get('ks_ci95'))}  "
        f"on {metrics['rows_test']:,} held-out "
        f"customers ({metrics['rows_aligned']:,} aligned, {metrics['epochs']} epochs, "
        f"{metrics['seconds']:.0f} s)"
    )


def _cmd_node(args: argparse.Namespace) -> int:
    from fedcredit.config import load_federation
    from fedcredit.errors import ConfigError
    from fedcredit.node.runtime import NodeOptions, serve

    fed = load_federation(args.federation, allow_small_keys=args.allow_small_keys)
    peers = []
    for item in args.peer:
        name, sep, address = item.partition("=")
        if not sep:
            raise ConfigError(f"--peer {item!r}: expected NAME=HOST:PORT")
        peers.append((name, address))
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {args.party} %(levelname)s %(message)s"
    )
    serve(
        fed,
        NodeOptions(
            name=args.party,
            listen=args.listen,
            port_file=args.port_file,
            state_dir=args.state_dir,
            model_dir=args.model,
            cert_dir=args.certs,
            insecure=args.insecure,
            allow_small_keys=args.allow_small_keys,
            peers=tuple(peers),
        ),
    )
    return 0


def _cmd_certs(args: argparse.Namespace) -> int:
    from fedcredit.node.transport import certs

    days = {} if getattr(args, "days", None) is None else {"days": args.days}
    if args.certs_command == "request":
        request = certs.request_certificate(args.out, args.party)
        print(
            f"wrote {request.key} (private: it never leaves {args.out}) and {request.csr}: "
            "send the .csr to whoever holds the federation CA"
        )
    elif args.certs_command == "ca":
        ca = certs.make_ca(args.out, **days)
        print(f"wrote {ca.cert} (give it to every node) and {ca.key} (private: keep it here)")
    elif args.certs_command == "sign":
        signed = certs.sign_request(args.ca_dir, args.csr, args.out, **days)
        table = "[coordinator]" if signed.party == "coordinator" else f"[[party]] {signed.party!r}"
        print(f"signed {signed.cert} for {signed.party!r}, valid until {signed.not_after:%Y-%m-%d}")
        print(f"SHA-256 {signed.sha256}")
        print(f'federation file, {table}: cert_sha256 = "{signed.sha256}"')
    else:
        names = [n.strip() for n in args.parties.split(",") if n.strip()]
        paths = certs.init_certs(args.out, names)
        print(
            f"wrote a CA ({paths.ca}) and certificates for {', '.join(names)} in {args.out}. "
            "Every key made here: for a local test federation only (whoever ran this can act "
            "as any party; a deployment uses 'certs request' and 'certs sign')"
        )
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from fedcredit.cli.jobs import read_ids, score_batch
    from fedcredit.config import load_federation

    fed = load_federation(args.federation, allow_small_keys=args.allow_small_keys)
    ids = read_ids(args.ids)
    count = score_batch(
        fed,
        args.model,
        ids,
        args.out,
        quiet=args.json,
        insecure=args.insecure,
        allow_small_keys=args.allow_small_keys,
    )
    if args.json:
        print(json.dumps({"scored": count, "out": str(args.out)}))
    else:
        print(f"scored {count:,} applicants into {args.out}")
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    from fedcredit.cli.decisions import NodeRun, decide_batch, read_applicant_ids
    from fedcredit.config import load_federation
    from fedcredit.decision import DECISIONS, decisions_json

    fed = load_federation(args.federation, allow_small_keys=args.allow_small_keys)
    ids = read_applicant_ids(args.ids)
    run = NodeRun(args.json, args.insecure, args.allow_small_keys)
    decisions = decide_batch(fed, args.model, ids, args.out, run)
    if args.json:
        print(decisions_json(decisions))
    else:
        mix = ", ".join(f"{sum(d.decision == k for d in decisions):,} {k}" for k in DECISIONS)
        print(f"decided {len(decisions):,} applicants ({mix}) into {args.out}")
    return 0


def _cmd_invite(args: argparse.Namespace) -> int:
    from fedcredit.cli.decisions import NodeRun, invite_batch, read_applicant_ids
    from fedcredit.config import load_federation

    fed = load_federation(args.federation, allow_small_keys=args.allow_small_keys)
    ids = read_applicant_ids(args.ids) if args.ids is not None else None
    run = NodeRun(args.json, args.insecure, args.allow_small_keys)
    summary = invite_batch(fed, args.model, ids, args.out, run, args.deliver_to)
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"invited {summary['invited']:,} of {summary['decided']:,} applicants into {args.out}"
        )
        if args.deliver_to:
            print(
                f"{args.deliver_to} received {summary['delivered']:,} ids (no score or offer), "
                f"written by its node to {summary['delivered_file']}"
            )
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    from fedcredit.cli.decisions import NodeRun, read_applicant_ids
    from fedcredit.cli.monitor import monitor_batch
    from fedcredit.config import load_federation

    fed = load_federation(args.federation, allow_small_keys=args.allow_small_keys)
    ids = read_applicant_ids(args.ids)
    run = NodeRun(args.json, args.insecure, args.allow_small_keys)
    content = monitor_batch(fed, args.model, ids, args.out, run)
    if args.json:
        print(json.dumps(content))
    else:
        flagged = [f for f in content["csi"] if f["status"] != "stable"]
        print(
            f"score PSI {content['score_psi']:.4f} ({content['score_status']}) on "
            f"{content['scored']:,} applicants; {len(flagged)} of {len(content['csi'])} columns "
            f"not stable; overall {content['status']}: {args.out / 'monitor.html'}"
        )
    return 0


def _cmd_debt(args: argparse.Namespace) -> int:
    from fedcredit.cli.debt import debt_check

    return int(
        debt_check(
            args.federation,
            args.lender,
            args.applicants,
            args.out,
            args.json,
            min_count_for_total=args.min_count_for_total,
        )
        or 0
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from fedcredit.cli.demo import run_demo

    run_demo(
        customers=args.customers,
        epochs=args.epochs,
        key_bits=args.key_bits,
        out=args.out,
        as_json=args.json,
        allow_small_keys=args.allow_small_keys,
    )
    return 0


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    from fedcredit.cli.selfcheck import selfcheck

    selfcheck(args.key_bits)
    return 0


COMMANDS = {
    "run": _cmd_run,
    "node": _cmd_node,
    "certs": _cmd_certs,
    "score": _cmd_score,
    "decide": _cmd_decide,
    "invite": _cmd_invite,
    "monitor": _cmd_monitor,
    "debt-check": _cmd_debt,
    "demo": _cmd_demo,
    "selfcheck": _cmd_selfcheck,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except FedCreditError as exc:
        print(f"fedcredit: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("fedcredit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
