"""Confidence-adaptive trust region controller and reward shaping (eq. 10, 12-16).

Every function works on floats and on tensors alike, so the learner can apply them per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import torch

from .config import PPOConfig, TrustRegionConfig

Num = TypeVar("Num", float, torch.Tensor)

FEEDBACK_KINDS = ("accept", "reject", "edit", "comment", "score", "ignore")


def _tanh(x: Num) -> Num:
    return torch.tanh(x) if isinstance(x, torch.Tensor) else math.tanh(x)


def _sigmoid(x: Num) -> Num:
    return torch.sigmoid(x) if isinstance(x, torch.Tensor) else 1.0 / (1.0 + math.exp(-x))


def trust_region_radius(theta: Num, delta_base: float = 0.2, gamma: float = 3.0) -> Num:
    """Clip radius delta_t = delta_base * tanh(gamma * theta_t) (eq. 10)."""
    return delta_base * _tanh(gamma * theta)


def gae_lambda(theta: Num, lambda_base: float = 0.95) -> Num:
    """Per-step GAE lambda_t = lambda_base * theta_t (eq. 12)."""
    return lambda_base * theta


def shaping_coefficient(step: int, total_steps: int, shaping_max: float = 0.5) -> float:
    """Annealed weight of the human signal lambda(t) = lambda_max * (1 - t/T)^2 (eq. 15).

    Steps past T keep the weight at zero; ``total_steps`` <= 0 means no annealing (lambda_max
    throughout), for runs where the feedback stays the main signal to the end.
    """
    if total_steps <= 0:
        return shaping_max
    progress = min(max(step / total_steps, 0.0), 1.0)
    return shaping_max * (1.0 - progress) ** 2


def update_gate(theta: Num, sharpness: float = 10.0, threshold: float = 0.7) -> Num:
    """Gate on a sample's policy-gradient contribution q_t = sigma(k (theta_t - tau)) (eq. 16)."""
    return _sigmoid(sharpness * (theta - threshold))


def human_signal(
    kind: str, score: int | None = None, similarity: float | None = None, polarity: float = 1.0
) -> float:
    """Human signal h(f_t, a_t) in [-1, 1] (eq. 14 as DESIGN.md defines it).

    accept +1, reject -1, ignore (an offer expired unused) -0.25, score s -> (s - 3) / 2,
    comment or correction diff -> polarity * cos(CE(f_t), CE(a_t)), the cosine passed in as
    ``similarity``.  ``polarity`` is the feedback's stance toward the action a_t, given as data
    by whoever knows it: +1 for praise and for the rewrite a correction proposes, -1 for blame
    and for the action a correction corrects (the default +1 keeps the bare similarity).
    """
    if kind == "accept":
        return 1.0
    if kind == "reject":
        return -1.0
    if kind == "ignore":
        return -0.25
    if kind == "score":
        if score is None or not 1 <= score <= 5:
            raise ValueError(f"a score feedback needs a score in 1..5, got {score!r}")
        return (score - 3) / 2
    if kind in ("comment", "edit"):
        if similarity is None:
            raise ValueError(f"a {kind} feedback needs the similarity of its text to the action")
        if polarity not in (-1.0, 1.0):
            raise ValueError(f"polarity must be +1 or -1, got {polarity!r}")
        return max(-1.0, min(1.0, polarity * similarity))
    raise ValueError(f"unknown feedback kind {kind!r}; expected one of {FEEDBACK_KINDS}")


def shaped_reward(r_env: float, coefficient: float, theta: float, signal: float) -> float:
    """Shaped reward r'_t = r_env_t + lambda(t) * theta_t * h(f_t, a_t) (eq. 13)."""
    return r_env + coefficient * theta * signal


@dataclass
class StepControl:
    """What the controller decides for one sample."""

    theta: float
    """theta_hat as used by the learner (1.0 when the estimator is ablated)."""
    delta: float
    """Clip radius (eq. 10), or epsilon when the adaptive trust region is off."""
    lam: float
    """GAE lambda (eq. 12), or lambda_base when the adaptive trust region is off."""
    gate: float
    """Gate q_t (eq. 16), or 1 when the gate is off."""


class TrustRegionController:
    """Turns a confidence into the per-sample delta, lambda and gate, honouring the ablations."""

    def __init__(self, cfg: TrustRegionConfig, switches: PPOConfig) -> None:
        self.cfg = cfg
        self.switches = switches

    def control(self, theta: float | None) -> StepControl:
        """Per-sample controls for confidence ``theta`` (None: no feedback, full confidence)."""
        cfg, sw = self.cfg, self.switches
        t = 1.0 if theta is None or not sw.use_confidence else float(theta)
        if sw.adaptive_trust_region:
            delta = trust_region_radius(t, cfg.delta_base, cfg.gamma_sensitivity)
            lam = gae_lambda(t, cfg.lambda_base)
        else:
            delta, lam = cfg.fixed_clip, cfg.lambda_base
        gate = update_gate(t, cfg.gate_sharpness, cfg.gate_threshold) if sw.gate else 1.0
        return StepControl(theta=t, delta=delta, lam=lam, gate=gate)

    def reward(self, r_env: float, step: int, theta: float | None, signal: float | None) -> float:
        """Shaped reward for one step; without feedback the environment reward alone."""
        if signal is None:
            return r_env
        weight = (
            1.0
            if theta is None
            or not (self.switches.use_confidence and self.switches.confidence_weighted_reward)
            else float(theta)
        )
        coefficient = shaping_coefficient(step, self.cfg.total_steps, self.cfg.shaping_max)
        return shaped_reward(r_env, coefficient, weight, signal)
