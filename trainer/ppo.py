"""PPO with a confidence-adaptive trust region (eq. 11, 12, 17), readable top to bottom.

A sample carries its own clip radius delta_t, GAE lambda_t and gate q_t, decided by the
:class:`~trustfix.trainer.trust_region.TrustRegionController` from the confidence theta_hat_t
of the feedback that shaped its reward.  Plain PPO and the ablations are the same code with
switches in :class:`~trustfix.trainer.config.PPOConfig`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import PPOConfig, TrustRegionConfig
from .policies.base import Policy
from .trust_region import StepControl, TrustRegionController

log = logging.getLogger(__name__)

CONFIDENCE_BINS = (0.0, 0.25, 0.5, 0.75, 1.0001)
"""Edges of the confidence bins over which clip fractions are reported."""


def confidence_bin_diagnostics(
    theta: torch.Tensor, shift: torch.Tensor, clipped: torch.Tensor | None = None, epochs: int = 1
) -> dict[str, float]:
    """Per bin of :data:`CONFIDENCE_BINS` over the samples' confidence ``theta``: the share of
    epochs in which a sample's ratio left its region (``clipped``: per sample, epochs clipped;
    nan without it) and the mean |log pi_new - log pi_old| (``shift``); nan for an empty bin.
    Keys ``clip_fraction[lo-hi]`` and ``abs_log_ratio[lo-hi]``."""
    bins = torch.bucketize(theta, torch.tensor(CONFIDENCE_BINS[1:-1]), right=True)
    out = {}
    for b in range(len(CONFIDENCE_BINS) - 1):
        in_bin = bins == b
        label = f"{CONFIDENCE_BINS[b]:.2f}-{min(CONFIDENCE_BINS[b + 1], 1.0):.2f}"
        count = int(in_bin.sum())
        out[f"clip_fraction[{label}]"] = (
            float(clipped[in_bin].mean()) / epochs
            if count and clipped is not None
            else float("nan")
        )
        out[f"abs_log_ratio[{label}]"] = float(shift[in_bin].mean()) if count else float("nan")
    return out


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the GPU when one is present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Transition:
    """One step of an episode, as the learner needs it."""

    state: str
    candidates: list[str]
    action: int
    log_prob: float
    """log pi_old(a_t | s_t) when the action was taken."""
    value: float
    """V_old(s_t)."""
    reward: float
    """Shaped reward r'_t (eq. 13)."""
    done: bool
    control: StepControl
    """theta_hat_t and the delta_t, lambda_t, q_t derived from it."""


@dataclass
class RolloutBuffer:
    """Transitions in time order; episodes end where ``done`` is set."""

    transitions: list[Transition] = field(default_factory=list)

    def add(self, transition: Transition) -> None:
        self.transitions.append(transition)

    def __len__(self) -> int:
        return len(self.transitions)

    def clear(self) -> None:
        self.transitions.clear()

    def column(self, name: str) -> torch.Tensor:
        """A numeric field of every transition (or of its control) as a float tensor."""
        if name in ("theta", "delta", "lam", "gate"):
            values = [getattr(t.control, name) for t in self.transitions]
        else:
            values = [float(getattr(t, name)) for t in self.transitions]
        return torch.tensor(values, dtype=torch.float32)


def generalized_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    lambdas: torch.Tensor,
    gamma: float,
    last_value: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE with a per-step lambda_t (eq. 12): A_t = d_t + gamma lambda_t (1 - done_t) A_{t+1}.

    d_t = r_t + gamma (1 - done_t) V_{t+1} - V_t.  Returns (advantages, returns = A + V).
    With every lambda_t equal this is textbook GAE.
    """
    n = rewards.shape[0]
    advantages = torch.zeros(n)
    next_advantage, next_value = 0.0, float(last_value)
    for t in reversed(range(n)):
        nonterminal = 1.0 - float(dones[t])
        delta = rewards[t] + gamma * nonterminal * next_value - values[t]
        next_advantage = delta + gamma * lambdas[t] * nonterminal * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """Per-sample L_t = min(rho_t A_t, clip(rho_t, 1 - delta_t, 1 + delta_t) A_t) (eq. 11)."""
    clipped = torch.clamp(ratio, 1.0 - delta, 1.0 + delta)
    return torch.min(ratio * advantages, clipped * advantages)


def gated_policy_loss(
    surrogate: torch.Tensor, gate: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """Policy loss -mean(q_t L_t): the gate scales each sample's gradient (eq. 17).

    With ``normalize`` the sum is divided by sum(q_t) instead of the sample count: samples are
    weighted against each other while the policy term keeps its scale against the value and
    entropy terms (Adam undoes a uniform scale of the whole loss anyway).
    """
    weighted = gate * surrogate
    if normalize:
        return -weighted.sum() / gate.sum().clamp_min(1e-8)
    return -weighted.mean()


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target); nan when the target is constant."""
    var = float(target.var(unbiased=False))
    return float("nan") if var == 0 else 1.0 - float((target - predicted).var(unbiased=False)) / var


class PPOLearner:
    """Clipped PPO whose clip radius, GAE lambda and gradient gate vary per sample."""

    def __init__(
        self,
        policy: Policy,
        ppo: PPOConfig | None = None,
        trust_region: TrustRegionConfig | None = None,
    ) -> None:
        self.cfg = ppo or PPOConfig()
        self.controller = TrustRegionController(trust_region or TrustRegionConfig(), self.cfg)
        self.device = resolve_device(self.cfg.device)
        self.policy = policy.to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.cfg.lr, eps=1e-5)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.updates = 0
        self.history: list[dict[str, float]] = []

    def update(self, buffer: RolloutBuffer, last_value: float = 0.0) -> dict[str, float]:
        """Run the PPO epochs over ``buffer``; return (and log) the diagnostics."""
        cfg = self.cfg
        n = len(buffer)
        if n == 0:
            raise ValueError("cannot update on an empty rollout buffer")
        samples = buffer.transitions
        old_log_probs = buffer.column("log_prob")
        old_values = buffer.column("value")
        advantages, returns = generalized_advantages(
            buffer.column("reward"),
            old_values,
            buffer.column("done"),
            buffer.column("lam"),
            cfg.gamma,
            last_value,
        )
        delta, gate, theta = buffer.column("delta"), buffer.column("gate"), buffer.column("theta")
        actions = torch.tensor([t.action for t in samples], dtype=torch.long)

        params_before = [p.detach().clone() for p in self.policy.parameters()]
        clipped = torch.zeros(n)  # epochs in which each sample's ratio left its region
        stats: dict[str, list[float]] = {
            k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl")
        }
        self.policy.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=self.generator)
            for idx, weight in self.minibatches(order):
                batch = [samples[i] for i in idx.tolist()]
                log_prob, value, entropy = self.evaluate(
                    [t.state for t in batch],
                    [t.candidates for t in batch],
                    actions[idx].to(self.device),
                )
                log_prob, value, entropy = log_prob.cpu(), value.cpu(), entropy.cpu()
                log_ratio = log_prob - old_log_probs[idx]
                ratio = log_ratio.exp()
                adv = advantages[idx]
                if cfg.normalize_advantages and len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                surrogate = clipped_surrogate(ratio, adv, delta[idx])
                policy_loss = gated_policy_loss(surrogate, gate[idx], cfg.normalize_gate)
                value_loss = 0.5 * (value - returns[idx]).pow(2).mean()
                loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy.mean()

                self.optimizer.zero_grad()
                (weight * loss).backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                if weight == 0.0:  # a stand-in that only keeps collectives in step
                    continue

                with torch.no_grad():
                    outside = (ratio - 1.0).abs() > delta[idx]
                    clipped[idx] += outside.float()
                    stats["approx_kl"].append(float(((ratio - 1.0) - log_ratio).mean()))
                stats["policy_loss"].append(policy_loss.item())
                stats["value_loss"].append(value_loss.item())
                stats["entropy"].append(entropy.mean().item())

        self.policy.eval()
        with torch.no_grad():
            new_log_prob, _, _ = self.policy.evaluate_actions(
                [t.state for t in samples], [t.candidates for t in samples], actions.to(self.device)
            )
            shift = (new_log_prob.cpu() - old_log_probs).abs()
            step_norm = (
                sum(
                    float((p.detach() - b).pow(2).sum())
                    for p, b in zip(self.policy.parameters(), params_before)
                )
                ** 0.5
            )
        self.updates += 1
        diagnostics = {
            "update": float(self.updates),
            "samples": float(n),
            **{k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()},
            "clip_fraction": float(clipped.mean()) / cfg.epochs,
            "explained_variance": explained_variance(old_values, returns),
            "mean_theta": float(theta.mean()),
            "mean_delta": float(delta.mean()),
            "mean_gate": float(gate.mean()),
            "mean_lambda": float(buffer.column("lam").mean()),
            "update_norm": step_norm,
            "mean_abs_log_ratio": float(shift.mean()),
        }
        diagnostics.update(confidence_bin_diagnostics(theta, shift, clipped, cfg.epochs))
        self.history.append(diagnostics)
        log.info(
            "update %d: n=%d kl=%.4f clip=%.3f ev=%.3f delta=%.3f q=%.3f",
            self.updates,
            n,
            diagnostics["approx_kl"],
            diagnostics["clip_fraction"],
            diagnostics["explained_variance"],
            diagnostics["mean_delta"],
            diagnostics["mean_gate"],
        )
        return diagnostics

    def minibatches(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """One epoch's minibatches: (sample indices, weight of their loss); here consecutive
        slices of ``minibatch_size`` of the shuffled ``order``, each with weight 1."""
        for start in range(0, len(order), self.cfg.minibatch_size):
            yield order[start : start + self.cfg.minibatch_size], 1.0

    def evaluate(
        self, states: Sequence[str], candidates: Sequence[list[str]], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-prob, value and entropy of the taken actions, with gradients (the policy's
        ``evaluate_actions``; a data-parallel learner routes it through its wrapper)."""
        return self.policy.evaluate_actions(states, candidates, actions)

    def transitions_from(
        self,
        states: Sequence[str],
        candidates: Sequence[list[str]],
        actions: Sequence[int],
        log_probs: Sequence[float],
        values: Sequence[float],
        rewards: Sequence[float],
        dones: Sequence[bool],
        thetas: Sequence[float | None],
    ) -> RolloutBuffer:
        """Build a buffer, letting the controller decide each sample's delta, lambda and gate."""
        buffer = RolloutBuffer()
        for s, c, a, lp, v, r, d, th in zip(
            states, candidates, actions, log_probs, values, rewards, dones, thetas, strict=True
        ):
            buffer.add(Transition(s, list(c), a, lp, v, r, d, self.controller.control(th)))
        return buffer
