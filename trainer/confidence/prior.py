"""The prior of a feedback item (eq. 5): f_phi over the item's text and metadata, plus the
reviewer's history weighted by rho."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..encoders import Encoder
from .beta import KINDS, ROLES, FeedbackItem, feedback_content

META_DIM = len(KINDS) + 4 + len(ROLES)
"""Width of the metadata part of f_phi's input: kind, score, has-score, has-code, log length, role."""


def feedback_meta(item: FeedbackItem) -> np.ndarray:
    """Metadata part of f_phi's input (eq. 5): kind one-hot, score, has-score, has-code,
    log length, role one-hot."""
    meta = np.zeros(META_DIM, dtype=np.float32)
    meta[KINDS.index(item.kind)] = 1.0
    k = len(KINDS)
    if item.score is not None:
        meta[k] = (item.score - 3) / 2
        meta[k + 1] = 1.0
    meta[k + 2] = 1.0 if item.diff else 0.0
    meta[k + 3] = math.log1p(len(feedback_content(item))) / 10.0
    meta[k + 4 + ROLES.index(item.role)] = 1.0
    return meta


def feedback_features(item: FeedbackItem, text_encoder: Encoder) -> np.ndarray:
    """f_phi's input (eq. 5): FE(text ⊕ diff) ⊕ meta; FE part zero when the item has no text."""
    content = feedback_content(item)
    if content:
        embedded = text_encoder.encode([content])[0]
    else:
        embedded = np.zeros(text_encoder.dim, dtype=np.float32)
    return np.concatenate([embedded.astype(np.float32), feedback_meta(item)])


class PriorNetwork(nn.Module):
    """f_phi (eq. 5): a 2-layer MLP, softplus outputs plus 1, total mass bounded by prior_scale."""

    def __init__(self, in_dim: int, hidden: int, prior_scale: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        self.prior_scale = prior_scale

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return prior_parameters(self.layers(features), self.prior_scale)


def prior_parameters(
    outputs: torch.Tensor, prior_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha0, beta0) = 1 + softplus(outputs) (eq. 5), both softplus terms scaled down together
    so that ``alpha0 + beta0 - 2 <= prior_scale`` (a prior never outweighs a few observations)."""
    raw = nn.functional.softplus(outputs)
    total = raw.sum(dim=-1, keepdim=True)
    raw = raw * (prior_scale / torch.clamp(total, min=prior_scale))
    return 1.0 + raw[..., 0], 1.0 + raw[..., 1]


def prior_with_history(
    alpha_phi: float,
    beta_phi: float,
    reviewer_alpha: float,
    reviewer_beta: float,
    reviewer_prior: tuple[float, float],
    rho: float,
) -> tuple[float, float]:
    """Item prior (eq. 5 plus history): f_phi's (alpha, beta) plus rho times the evidence the
    reviewer has gathered beyond their initial ``reviewer_prior``."""
    return (
        alpha_phi + rho * (reviewer_alpha - reviewer_prior[0]),
        beta_phi + rho * (reviewer_beta - reviewer_prior[1]),
    )


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch ops on one intra-op thread: f_phi is far too small to gain from more, and on a
    busy CPU the thread pool's synchronisation makes each step 10-100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
