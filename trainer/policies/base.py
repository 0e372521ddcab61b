"""The one interface every policy implements: state + candidates -> log-probs (STOP first) + value."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

STOP = 0
"""Action index of STOP; candidate i is action i + 1."""


@dataclass
class PolicyOutput:
    """Log-probabilities over ``[STOP, candidate_0, ...]`` (``-inf`` on padding) and values."""

    log_probs: torch.Tensor
    """Shape [B, 1 + max candidates]."""
    values: torch.Tensor
    """Shape [B]."""


def select_action(
    log_probs: torch.Tensor, greedy: bool = False, generator: torch.Generator | None = None
) -> int:
    """The argmax of one row of log-probabilities, or a sample from it."""
    if greedy:
        return int(torch.argmax(log_probs))
    return int(torch.multinomial(log_probs.exp().cpu(), 1, generator=generator))


class Policy(nn.Module, abc.ABC):
    """Base class: subclasses implement ``forward`` and ``get_config``."""

    kind: ClassVar[str]

    @abc.abstractmethod
    def forward(self, states: Sequence[str], candidates: Sequence[Sequence[str]]) -> PolicyOutput:
        """Log-probabilities over [STOP, candidates...] and values for a batch of states."""

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (saved beside the weights)."""

    def evaluate_actions(
        self,
        states: Sequence[str],
        candidates: Sequence[Sequence[str]],
        actions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-prob of each taken action, value and entropy, each shape [B] (for PPO)."""
        out = self(states, candidates)
        log_probs = out.log_probs
        logp = log_probs.gather(1, actions.view(-1, 1)).squeeze(1)
        probs = log_probs.exp()
        entropy = -(probs * log_probs.masked_fill(~torch.isfinite(log_probs), 0.0)).sum(1)
        return logp, out.values, entropy

    @torch.no_grad()
    def act(
        self,
        state: str,
        candidates: Sequence[str],
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[int, float, float]:
        """Choose an action for one state: (action index, its log-prob, value)."""
        out = self([state], [list(candidates)])
        action = select_action(out.log_probs[0], greedy, generator)
        return action, float(out.log_probs[0, action]), float(out.values[0])
