"""The end of a job: score the held-out rows, save every party's model part and the manifest.

The driver receives the lender's metrics and plots (aggregates) and each party's manifest of
its model part (file names and digests); each model part stays with its party.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedcredit import __version__
from fedcredit.driver.context import JobContext
from fedcredit.driver.families import family_driver, parties_of
from fedcredit.driver.schedule import step
from fedcredit.proto.v1 import job_pb2
from fedcredit.protocol.checkpoint import write_json_atomic


def evaluate(ctx: JobContext, epoch: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The lender's metrics on the test rows, and its evaluation files (name -> bytes)."""
    ctx.progress("phase", {"phase": "evaluate", "message": "scoring the held-out customers"})
    _, driver = family_driver(ctx.fed)
    replies: dict[str, Any] = {}
    for who, rpc in driver.evaluation:
        parties = parties_of(who, ctx.lender, ctx.hosts, ctx.parties)
        replies = step(ctx, parties, rpc, epoch + 1, 0, "test")
    reply = replies[ctx.lender]
    return dict(json.loads(reply.metrics_json)), dict(reply.files)


def save_model(
    ctx: JobContext, out_dir: Path, setup: Mapping[str, Any], public_key_json: str
) -> dict[str, Any]:
    """Every party saves its part (local nodes into ``out_dir/model``); writes manifest.json."""
    model_dir = out_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    replies = ctx.call_all(
        ctx.parties,
        lambda s: s.job.SaveModel,
        lambda p: job_pb2.SaveRequest(
            env=ctx.env(), model_dir=str(model_dir) if p in ctx.state_dirs else ""
        ),
    )
    train = ctx.fed.train
    manifest = {
        "fedcredit_version": __version__,
        "federation": ctx.fed.name,
        "job_id": ctx.job_id,
        "lender": ctx.lender,
        "parties": {p: json.loads(r.manifest_json) for p, r in replies.items()},
        "feature_names": {p: list(setup[p].feature_names) for p in ctx.parties},
        "train": {k: getattr(train, k) for k in train.__dataclass_fields__},
    }
    if ctx.fed.trees is not None and ctx.fed.family == "trees":
        manifest["family"] = "trees"
        manifest["trees"] = dataclasses.asdict(ctx.fed.trees)
    write_json_atomic(model_dir / "manifest.json", manifest)
    return manifest
