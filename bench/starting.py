"""The policy every run of the experiment starts from: the shipped pretrained checkpoint
(``trainer/policies/pretrained``) or, with ``--policy fresh`` or when no checkpoint is there, a
freshly initialised ranker (with a logged warning)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from trustfix.trainer.config import RankerConfig
from trustfix.trainer.policies import PRETRAINED, RankerPolicy, latest_version, load_checkpoint

log = logging.getLogger(__name__)

POLICY_CHOICES = ("pretrained", "fresh")
"""Values of ``--policy``."""


@dataclass(frozen=True)
class StartingPolicy:
    """What every run starts from: the ranker's config and weights (None: fresh) and a label."""

    config: RankerConfig
    weights: dict[str, torch.Tensor] | None
    label: str

    def build(self, seed: int) -> RankerPolicy:
        """A new ranker for one run: the checkpoint's weights, or fresh weights from ``seed``."""
        torch.manual_seed(seed)
        policy = RankerPolicy(self.config)
        if self.weights is not None:
            policy.load_state_dict(self.weights)
        return policy


def resolve_starting_policy(
    choice: str, ranker: RankerConfig, directory: Path = PRETRAINED
) -> StartingPolicy:
    """The starting policy for ``choice`` (``pretrained`` or ``fresh``); ``pretrained`` falls back
    to a fresh ranker, with a warning, when ``directory`` holds no checkpoint."""
    if choice not in POLICY_CHOICES:
        raise ValueError(f"unknown starting policy {choice!r}; expected one of {POLICY_CHOICES}")
    if choice == "pretrained":
        version = latest_version(directory)
        if version is not None:
            policy, info = load_checkpoint(directory, version)
            if not isinstance(policy, RankerPolicy):
                raise ValueError(f"{info.path}: the experiment needs a ranker, got {policy.kind}")
            state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
            return StartingPolicy(policy.cfg, state, f"pretrained v{version} ({info.sha256[:12]})")
        log.warning(
            "no pretrained checkpoint in %s: every run starts from a fresh ranker", directory
        )
        return StartingPolicy(ranker, None, f"fresh (no checkpoint in {directory})")
    return StartingPolicy(ranker, None, "fresh")
