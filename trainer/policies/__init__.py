"""Policies: state + candidate texts -> log-probs over ``[STOP, candidates]`` and a value.

Importing this package is light: ``transformers`` loads only when a generative policy is built.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..config import RankerConfig, TrustfixConfig, load_config
from .base import STOP, Policy, PolicyOutput
from .checkpoint import (
    POLICY_KINDS,
    CheckpointError,
    CheckpointInfo,
    latest_version,
    load_checkpoint,
    origin_of,
    read_record,
    save_checkpoint,
)
from .generative import GenerativePolicy
from .ranker import RankerPolicy

PRETRAINED = Path(__file__).with_name("pretrained")
"""The shipped checkpoint folder: the ranker made by ``trustfix pretrain`` with the default
settings (package data)."""
STARTS = ("pretrained", "fresh")
"""Where a new policy can start."""

log = logging.getLogger(__name__)


def make_policy(kind: str, cfg: TrustfixConfig) -> Policy:
    """A freshly initialised policy of ``kind`` (``ranker`` or ``generative``) from ``cfg``."""
    if kind == "ranker":
        return RankerPolicy(cfg.ranker)
    if kind == "generative":
        return GenerativePolicy(cfg.generative)
    raise ValueError(f"unknown policy kind {kind!r}; known: {', '.join(POLICY_KINDS)}")


def initial_policy(
    cfg: TrustfixConfig | RankerConfig | None = None, start: str | None = None
) -> RankerPolicy:
    """The ranker every server, ``refine``, trainer and benchmark run starts from.

    ``start``: ``pretrained`` (the shipped checkpoint, hash checked) or ``fresh`` (random, from
    the ranker settings); default ``cfg.pretrain.start`` (with a :class:`RankerConfig` or none,
    the effective configuration's: ``TRUSTFIX_PRETRAIN__START``, ``[tool.trustfix.pretrain]``).
    The pretrained ranker has the settings it was trained with: ranker settings that differ from
    them get a fresh ranker, with a warning.
    """
    if start is None:
        start = (cfg if isinstance(cfg, TrustfixConfig) else load_config()).pretrain.start
    ranker = cfg.ranker if isinstance(cfg, TrustfixConfig) else cfg or RankerConfig()
    if start not in STARTS:
        raise ValueError(f"unknown policy start {start!r}; expected one of {', '.join(STARTS)}")
    if start == "pretrained":
        policy, _ = load_checkpoint(PRETRAINED)
        if isinstance(policy, RankerPolicy) and policy.get_config() == dataclasses.asdict(ranker):
            return policy
        log.warning(
            "the pretrained ranker was trained with other ranker settings (%s); "
            "starting fresh (run `trustfix pretrain` with these settings for a prior)",
            policy.get_config(),
        )
    return RankerPolicy(ranker)


__all__ = [
    "POLICY_KINDS",
    "PRETRAINED",
    "STARTS",
    "STOP",
    "CheckpointError",
    "CheckpointInfo",
    "GenerativePolicy",
    "Policy",
    "PolicyOutput",
    "RankerPolicy",
    "initial_policy",
    "latest_version",
    "load_checkpoint",
    "make_policy",
    "origin_of",
    "read_record",
    "save_checkpoint",
]
