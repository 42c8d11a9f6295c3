"""What the trees roles keep between trees and after the job: checkpoints and model parts.

A checkpoint is written after every tree (``fedcredit.node.state.PartyNode.end_epoch``) and holds
what the next tree needs, so that a resumed job grows the same trees as an uninterrupted one:
the lender's trees, base margin, margins, validation losses and each tree's leaf of every
aligned row; a partner's own trees (mix) or tokens (joint). Edges are not checkpointed: they are
fitted again, identically, from the party's own training rows at alignment.

A model part is what each party keeps of the model: the lender its trees (its own thresholds,
the structure, the leaf values), a partner its edges and its own splits. No part holds another
party's thresholds.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedcredit.errors import ProtocolError
from fedcredit.model.trees import IntArray, Tree
from fedcredit.protocol.trees.scoring import LenderTree

log = logging.getLogger("fedcredit.node")

_ARRAYS = ("feature", "threshold", "default_left", "value", "exists")


def tree_to_dict(tree: Tree) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(tree, k).tolist() for k in _ARRAYS}
    if tree.left_set:
        out["left_set"] = {str(j): m.tolist() for j, m in tree.left_set.items()}
    return out


def tree_from_dict(data: Mapping[str, Any]) -> Tree:
    size = len(data["feature"])
    if any(len(data[k]) != size for k in _ARRAYS if k in data):
        raise ProtocolError("a stored tree's arrays differ in length")
    return Tree(
        np.asarray(data["feature"], dtype=np.int64),
        np.asarray(data["threshold"], dtype=np.int64),
        np.asarray(data["default_left"], dtype=bool),
        np.asarray(data.get("value", [0.0] * size), dtype=np.float64),
        np.asarray(data["exists"], dtype=bool),
        {
            int(j): np.asarray(m, dtype=np.int64)
            for j, m in dict(data.get("left_set", {})).items()
        },
    )


def lender_tree_to_dict(record: LenderTree) -> dict[str, Any]:
    return {
        "owner": record.owner,
        "own": tree_to_dict(record.own),
        "split_by": list(record.split_by),
        "tokens": {str(j): t for j, t in record.tokens.items()},
        **({} if record.cover is None else {"cover": record.cover.tolist()}),
        **({} if record.gain is None else {"gain": record.gain.tolist()}),
    }


def lender_tree_from_dict(data: Mapping[str, Any]) -> LenderTree:
    own = tree_from_dict(data["own"])
    cover = None if "cover" not in data else np.asarray(data["cover"], dtype=np.float64)
    if cover is not None and len(cover) != len(own.feature):
        raise ProtocolError("a stored tree's cover differs in length from its nodes")
    return LenderTree(
        str(data["owner"]),
        own,
        [str(s) for s in data["split_by"]],
        {int(j): str(t) for j, t in data["tokens"].items()},
        cover,
        None if "gain" not in data else np.asarray(data["gain"], dtype=np.float64),
    )


def leaves_to_text(leaves: IntArray) -> str:
    """A tree's leaf of every aligned row, one byte each (depth <= 6: heap index < 127)."""
    return base64.b64encode(np.asarray(leaves, dtype=np.uint8).tobytes()).decode("ascii")


def leaves_from_text(text: str, rows: int) -> IntArray:
    out = np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(np.int64)
    if len(out) != rows:
        raise ProtocolError(f"a checkpoint's leaves cover {len(out)} rows, not {rows}")
    return out


def check_data(state: Mapping[str, Any], name: str, data_hash: str) -> None:
    if state.get("data_hash") != data_hash:
        raise ProtocolError(f"party {name!r}: checkpoint was made on other data")


def lender_state(lender: Any) -> dict[str, Any]:
    """A ``TreesLender``'s checkpoint."""
    return {
        "party": lender.name,
        "epoch": lender.epoch,
        "data_hash": lender.data_hash,
        "trees": [lender_tree_to_dict(r) for r in lender.model],
        "leaves": [leaves_to_text(v) for v in lender.leaves],
        "margin": lender.margin.tolist(),
        "validation_loss": list(lender.validation_loss),
        "kept": lender.kept,
    }


def load_lender_state(lender: Any, state: Mapping[str, Any]) -> None:
    check_data(state, lender.name, lender.data_hash)
    rows = len(lender.aligned_rows)
    lender.epoch = int(state["epoch"])
    lender.model = [lender_tree_from_dict(r) for r in state["trees"]]
    lender.leaves = [leaves_from_text(v, rows) for v in state["leaves"]]
    lender.margin = np.asarray(state["margin"], dtype=np.float64)
    lender.validation_loss = [float(v) for v in state["validation_loss"]]
    lender.kept = int(state["kept"])
    if len(lender.margin) != rows or len(lender.leaves) != len(lender.model):
        raise ProtocolError(f"party {lender.name!r}: the checkpoint does not fit this job")


def lender_model_part(lender: Any) -> dict[str, Any]:
    """A ``TreesLender``'s model part: only the kept trees."""
    return {
        "party": lender.name,
        "family": "trees",
        "has_label": True,
        "feature_names": list(lender.feature_names),
        "data_hash": lender.data_hash,
        **lender.bin_maps(),
        "base": lender.base,
        "kept": lender.kept,
        "trees": [lender_tree_to_dict(r) for r in lender.model[: lender.kept]],
    }


def load_lender_model_part(lender: Any, part: Mapping[str, Any]) -> None:
    """A ``TreesLender``'s stored part back into it, for scoring (its kept trees only)."""
    if part.get("family") != "trees" or not part.get("has_label"):
        raise ProtocolError(f"party {lender.name!r}: its model part is not a trees lender's")
    if list(part["feature_names"]) != list(lender.feature_names):
        raise ProtocolError(f"party {lender.name!r}: its model part names other columns")
    lender.load_bin_maps(part)
    lender.base = float(part["base"])
    lender.model = [lender_tree_from_dict(r) for r in part["trees"]]
    lender.kept = len(lender.model)
    if any(r.cover is None for r in lender.model):
        log.warning(
            "party %r: its trees model was saved without per-node cover; reasons weigh every "
            "split's sides evenly (retrain for cover-weighted TreeSHAP reasons)",
            lender.name,
        )
    if int(part["kept"]) != lender.kept or len(lender.edges) != len(lender.feature_names):
        raise ProtocolError(f"party {lender.name!r}: its model part does not fit its columns")


def partner_state(partner: Any) -> dict[str, Any]:
    """A ``TreesPartner``'s checkpoint: its own trees (mix) and tokens (joint)."""
    part = partner.model_part()
    return {
        "party": partner.name,
        "epoch": partner.epoch,
        "data_hash": partner.data_hash,
        "trees": part["trees"],
        "tokens": part["tokens"],
    }


def load_partner_state(partner: Any, state: Mapping[str, Any]) -> None:
    check_data(state, partner.name, partner.data_hash)
    partner.epoch = int(state["epoch"])
    partner.trees = {int(t): tree_from_dict(v) for t, v in state["trees"].items()}
    partner.tokens = {
        str(tok): (int(v[0]), partner.split_of(int(v[1]), int(v[2]), bool(v[3])))
        for tok, v in state["tokens"].items()
    }


__all__ = [
    "check_data",
    "leaves_from_text",
    "leaves_to_text",
    "lender_model_part",
    "lender_state",
    "lender_tree_from_dict",
    "lender_tree_to_dict",
    "load_lender_model_part",
    "load_lender_state",
    "load_partner_state",
    "partner_state",
    "tree_from_dict",
    "tree_to_dict",
]
