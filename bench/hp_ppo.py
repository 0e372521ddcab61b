"""HP-PPO baseline (Christiano et al. 2017): a reward model learned from human preferences.

r_psi(s, a) is a small MLP over hashed features of the state text and the candidate text.  It
is trained with the Bradley-Terry loss ``-log sigma(r(s, a+) - r(s, a-))`` on preference pairs
built from the feedback as it arrives: an item with a higher human level is preferred to one
with a lower level (accept > reject, higher score > lower score; comments and correction diffs
enter with their level h in [-1, 1]), and a correction diff whose target is among the offered
candidates also prefers that target to the chosen candidate in the same state.  Every item
counts the same: no confidence.  PPO then runs on ``r_env + lambda(t) * tanh(r_psi(s, a))``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from trustfix.trainer.encoders import Encoder


@dataclass
class RewardModelConfig:
    """Reward model r_psi of the HP-PPO baseline."""

    hidden: int = 64
    """Hidden width of the MLP."""
    lr: float = 1e-3
    """Adam learning rate."""
    min_gap: float = 0.5
    """Smallest difference of human level for two items to form a preference pair."""
    pairs_per_item: int = 4
    """Earlier items each new item is paired with (drawn at random among those that qualify)."""
    epochs: int = 20
    """Passes over the pairs at each refresh."""
    batch: int = 64
    """Pairs per Adam step."""
    max_pairs: int = 4096
    """Most recent pairs kept."""


def bradley_terry_loss(r_preferred: torch.Tensor, r_other: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss -mean log sigma(r(s, a+) - r(s, a-)) over preference pairs."""
    return -nn.functional.logsigmoid(r_preferred - r_other).mean()


@dataclass
class Preference:
    """One labelled (state, candidate) pair and its human level."""

    state: str
    action: str
    level: float


@dataclass
class RewardModel:
    """r_psi(s, a): an MLP over [FE(state), FE(action)] trained on preference pairs."""

    encoder: Encoder
    cfg: RewardModelConfig = field(default_factory=RewardModelConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        dim = self.encoder.dim
        self.net = nn.Sequential(
            nn.Linear(2 * dim, self.cfg.hidden), nn.Tanh(), nn.Linear(self.cfg.hidden, 1)
        )
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr)
        self.items: list[Preference] = []
        self.pairs: list[tuple[Preference, Preference]] = []
        self.rng = random.Random(self.seed)

    def features(self, states: list[str], actions: list[str]) -> torch.Tensor:
        """[FE(state) | FE(action)] rows."""
        enc = self.encoder.encode
        return torch.from_numpy(np.concatenate([enc(states), enc(actions)], axis=1))

    @torch.no_grad()
    def __call__(self, states: list[str], actions: list[str]) -> torch.Tensor:
        """r_psi of each (state, action) pair (no gradient: training uses ``net`` directly)."""
        return self.net(self.features(states, actions)).squeeze(-1)

    def add(self, item: Preference, better_than: Preference | None = None) -> None:
        """Record an item; pair it with earlier items whose level differs by ``min_gap``, and
        with ``better_than`` (a direct preference, e.g. a correction's target over the choice)."""
        if better_than is not None:
            self.pairs.append((item, better_than))
        pool = [p for p in self.items if abs(p.level - item.level) >= self.cfg.min_gap]
        for other in self.rng.sample(pool, min(self.cfg.pairs_per_item, len(pool))):
            self.pairs.append((item, other) if item.level > other.level else (other, item))
        self.items.append(item)
        del self.pairs[: -self.cfg.max_pairs]

    def refresh(self) -> float:
        """Train on the pairs collected so far; return the last epoch's mean loss (nan if none)."""
        if not self.pairs:
            return float("nan")
        good = [p[0] for p in self.pairs]
        bad = [p[1] for p in self.pairs]
        x_good = self.features([p.state for p in good], [p.action for p in good])
        x_bad = self.features([p.state for p in bad], [p.action for p in bad])
        gen = torch.Generator().manual_seed(self.rng.randrange(2**31))
        loss_sum = 0.0
        for _ in range(self.cfg.epochs):
            order = torch.randperm(len(self.pairs), generator=gen)
            loss_sum, steps = 0.0, 0
            for start in range(0, len(order), self.cfg.batch):
                idx = order[start : start + self.cfg.batch]
                loss = bradley_terry_loss(
                    self.net(x_good[idx]).squeeze(-1), self.net(x_bad[idx]).squeeze(-1)
                )
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                loss_sum, steps = loss_sum + loss.item(), steps + 1
            loss_sum /= steps
        return loss_sum

    def signal(self, states: list[str], actions: list[str]) -> list[float]:
        """tanh(r_psi(s, a)) in [-1, 1]: the human signal HP-PPO adds to r_env."""
        return torch.tanh(self(states, actions)).tolist()
