"""Policies: state + candidate texts -> log-probs over ``[STOP, candidates]`` and a value.

Importing this package is light: ``transformers`` loads only when a generative policy is built.
"""

from __future__ import annotations

from ..config import TrustfixConfig
from .base import STOP, Policy, PolicyOutput
from .checkpoint import (
    POLICY_KINDS,
    CheckpointError,
    CheckpointInfo,
    latest_version,
    load_checkpoint,
    save_checkpoint,
)
from .generative import GenerativePolicy
from .ranker import RankerPolicy


def make_policy(kind: str, cfg: TrustfixConfig) -> Policy:
    """A freshly initialised policy of ``kind`` (``ranker`` or ``generative``) from ``cfg``."""
    if kind == "ranker":
        return RankerPolicy(cfg.ranker)
    if kind == "generative":
        return GenerativePolicy(cfg.generative)
    raise ValueError(f"unknown policy kind {kind!r}; known: {', '.join(POLICY_KINDS)}")


__all__ = [
    "POLICY_KINDS",
    "STOP",
    "CheckpointError",
    "CheckpointInfo",
    "GenerativePolicy",
    "Policy",
    "PolicyOutput",
    "RankerPolicy",
    "latest_version",
    "load_checkpoint",
    "make_policy",
    "save_checkpoint",
]
