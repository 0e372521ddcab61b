"""Saving and loading a confidence estimator as plain tables (no pickle): one JSON-able row per
item, reviewer, increment, execution and f_phi tensor (base64, little-endian), so that every
confidence comes back exactly (the trainer's store keeps them, :mod:`trustfix.trainer.store`)."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import numpy as np
import torch

from ..config import ConfidenceConfig
from ..encoders import Encoder
from .beta import FeedbackItem
from .estimator import ConfidenceEstimator
from .state import ItemState, ReviewerState, Update


def _tensor_row(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    array = tensor.detach().cpu().contiguous().numpy()
    return {
        "name": name,
        "shape": json.dumps(list(array.shape)),
        "dtype": str(array.dtype),
        "data": base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode(),
    }


def _row_tensor(row: dict[str, Any]) -> torch.Tensor:
    dtype = np.dtype(row["dtype"]).newbyteorder("<")
    array = np.frombuffer(base64.b64decode(row["data"]), dtype=dtype)
    shape = json.loads(row["shape"]) if isinstance(row["shape"], str) else row["shape"]
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")).reshape(shape).copy())


def to_rows(estimator: ConfidenceEstimator) -> dict[str, list[dict[str, Any]]]:
    """An estimator as plain tables (no pickle): meta, items, reviewers, updates, executions,
    f_phi, and the distributed shares (remote, unsynced)."""
    with estimator.lock:
        state = estimator.state
        items = []
        for s in state.items.values():
            row = dataclasses.asdict(s.item)
            row.update(
                seq=s.seq,
                alpha_phi=s.alpha_phi,
                beta_phi=s.beta_phi,
                alpha_history=s.alpha_history,
                beta_history=s.beta_history,
                alpha=s.alpha,
                beta=s.beta,
            )
            items.append(row)
        reviewers = [
            {
                "reviewer": name,
                "alpha": r.alpha,
                "beta": r.beta,
                "count": r.count,
                "buffer": json.dumps(r.buffer),
            }
            for name, r in state.reviewers.items()
        ]
        updates = [dataclasses.asdict(u) for ups in state.updates.values() for u in ups]
        updates.sort(key=lambda u: u["seq"])
        executions = [
            {"seq": seq, "item_id": fid, "verified": ok} for seq, fid, ok in state.executions
        ]
        f_phi = [_tensor_row(name, p) for name, p in state.prior_net.state_dict().items()]
        for index, param_state in state.optimizer.state_dict()["state"].items():
            for key, value in param_state.items():
                f_phi.append(_tensor_row(f"adam.{index}.{key}", torch.as_tensor(value)))
        shares = {
            table: [
                {"reviewer": name, "alpha": a, "beta": b, "count": n}
                for name, (a, b, n) in source.items()
            ]
            for table, source in (("remote", state.remote), ("unsynced", state.unsynced))
        }
        meta = [
            {"key": "seed", "value": json.dumps(estimator.seed)},
            {"key": "next_seq", "value": json.dumps(state.seq)},
            {"key": "pending", "value": json.dumps(state.pending)},
        ]
        return {
            "meta": meta,
            "items": items,
            "reviewers": reviewers,
            "updates": updates,
            "executions": executions,
            "f_phi": f_phi,
            **shares,
        }


def from_rows(
    rows: dict[str, list[dict[str, Any]]],
    cfg: ConfidenceConfig,
    text_encoder: Encoder,
    code_encoder: Encoder,
) -> ConfidenceEstimator:
    """An estimator rebuilt from :func:`to_rows` tables; every confidence comes back exactly."""
    meta = {row["key"]: json.loads(row["value"]) for row in rows["meta"]}
    est = ConfidenceEstimator(cfg, text_encoder, code_encoder, seed=int(meta["seed"]))
    state = est.state
    item_fields = [f.name for f in dataclasses.fields(FeedbackItem)]
    for row in sorted(rows["items"], key=lambda r: r["seq"]):
        item = FeedbackItem(**{name: row[name] for name in item_fields})
        state.items[item.id] = ItemState(
            item,
            int(row["seq"]),
            float(row["alpha_phi"]),
            float(row["beta_phi"]),
            float(row["alpha_history"]),
            float(row["beta_history"]),
            float(row["alpha"]),
            float(row["beta"]),
        )
        state.by_suggestion.setdefault(item.suggestion_id, []).append(item.id)
        if item.location:
            state.by_location.setdefault(item.location, []).append(item.id)
    for row in rows["reviewers"]:
        buffer = json.loads(row["buffer"]) if isinstance(row["buffer"], str) else row["buffer"]
        state.reviewers[row["reviewer"]] = ReviewerState(
            float(row["alpha"]), float(row["beta"]), int(row["count"]), list(buffer)
        )
    for row in sorted(rows["updates"], key=lambda r: r["seq"]):
        update = Update(**{f.name: row[f.name] for f in dataclasses.fields(Update)})
        update = dataclasses.replace(update, consistent=bool(update.consistent))
        state.updates.setdefault(update.item_id, []).append(update)
    state.executions = [
        (int(r["seq"]), r["item_id"], bool(r["verified"]))
        for r in sorted(rows["executions"], key=lambda r: r["seq"])
    ]
    tensors = {row["name"]: _row_tensor(row) for row in rows["f_phi"]}
    state.prior_net.load_state_dict({name: tensors[name] for name in state.prior_net.state_dict()})
    opt_state = state.optimizer.state_dict()
    for name, tensor in tensors.items():
        if name.startswith("adam."):
            _, index, key = name.split(".", 2)
            opt_state["state"].setdefault(int(index), {})[key] = tensor
    state.optimizer.load_state_dict(opt_state)
    state.seq = int(meta["next_seq"])
    state.pending = list(meta["pending"])
    for table, target in (("remote", state.remote), ("unsynced", state.unsynced)):
        for row in rows.get(table, []):  # absent in stores written before distributed training
            target[row["reviewer"]] = [float(row["alpha"]), float(row["beta"]), float(row["count"])]
    return est
