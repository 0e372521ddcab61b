"""UA-TRPO baseline (Queeney, Paschalidis, Cassandras, AAAI 2021) for the ranker's parameters.

The KL trust region shrinks with the uncertainty of the sample estimate of the policy gradient:

1. per-minibatch gradients g_i of the surrogate ``mean(rho_t A_t)`` at the old parameters
   (``torch.func.grad`` over ``functional_call``), their mean g;
2. a rank-r subspace of the Fisher matrix F = E_s[J_s^T diag(pi_s) J_s] (J_s: Jacobian of the
   log-probabilities) by random projection: ``Y = J^T (sqrt(pi) * G) / sqrt(N)`` with G Gaussian
   [rows, r] (r backward passes through one graph, each a Fisher-vector sketch: E[Y Y^T] = r F),
   then the SVD ``Y = U Sigma V^T`` gives F ~= U diag(Sigma^2 / r) U^T;
3. in that subspace: S = sample covariance of the projected g_i scaled to one sample, the radius
   ``Rn2 = (r + 2 sqrt(r log(1/alpha)) + 2 log(1/alpha)) / n`` (n samples), the metric
   ``M = F + c Rn2 S``; direction ``v = M^-1 g``, step ``sqrt(2 delta / v^T M v)``;
4. backtracking line search: accept the first ``0.8^j`` step whose mean KL(pi_old || pi) is at
   most ``1.5 delta v^T F v / (v^T F v + c Rn2 v^T S v)`` and whose surrogate improves;
5. the value head is fitted to the GAE returns by a few Adam steps (the encoder is shared with
   the policy, so only the head moves).

Simplifications, each a documented field: the Fisher sketch uses at most ``fisher_states``
states of the batch; a small damping (``damping`` times the largest Fisher eigenvalue) keeps M
invertible; the step lives in the Fisher subspace (the gradient outside it is dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import functional_call, grad
from torch.nn.attention import SDPBackend, sdpa_kernel
from trustfix.trainer.config import PPOConfig, TrustRegionConfig
from trustfix.trainer.policies.base import Policy
from trustfix.trainer.ppo import (
    PPOLearner,
    RolloutBuffer,
    confidence_bin_diagnostics,
    explained_variance,
    generalized_advantages,
)


@dataclass
class UATRPOConfig:
    """Uncertainty-aware trust region of the UA-TRPO baseline."""

    delta: float = 0.02
    """delta: KL trust-region size."""
    alpha: float = 0.05
    """alpha: the radius Rn2 holds with probability 1 - alpha."""
    c: float = 0.1
    """c: weight of the uncertainty term c Rn2 S in the metric."""
    rank: int = 6
    """r: rank of the Fisher subspace (random projections)."""
    minibatches: int = 8
    """Minibatch gradients per update whose covariance gives S."""
    kl_slack: float = 1.5
    """Factor on the KL bound accepted by the line search."""
    backtrack: float = 0.8
    """Step shrink factor of the line search."""
    max_backtracks: int = 10
    """Line-search tries before the update is skipped."""
    damping: float = 1e-3
    """Damping added to M, relative to the largest Fisher eigenvalue."""
    fisher_states: int = 8
    """States of the batch used for the Fisher sketch."""
    value_epochs: int = 8
    """Adam steps of the value head per update."""
    value_lr: float = 1e-3
    """Learning rate of the value head."""


def uncertainty_radius(rank: int, n: int, alpha: float) -> float:
    """Rn2 = (r + 2 sqrt(r log(1/alpha)) + 2 log(1/alpha)) / n (UA-TRPO's radius)."""
    log_term = math.log(1.0 / alpha)
    return (rank + 2.0 * math.sqrt(rank * log_term) + 2.0 * log_term) / n


def uncertainty_metric(
    fisher_eigs: torch.Tensor, covariance: torch.Tensor, c: float, rn2: float, damping: float
) -> torch.Tensor:
    """M = F + c Rn2 S in the Fisher subspace (F diagonal there), plus damping * I."""
    return torch.diag(fisher_eigs) + c * rn2 * covariance + damping * torch.eye(len(fisher_eigs))


def step_length(v: torch.Tensor, metric: torch.Tensor, delta: float) -> float:
    """sqrt(2 delta / v^T M v): the step that puts the quadratic model on the trust region."""
    return math.sqrt(2.0 * delta / max(float(v @ metric @ v), 1e-12))


def kl_limit(
    v: torch.Tensor,
    fisher_eigs: torch.Tensor,
    covariance: torch.Tensor,
    c: float,
    rn2: float,
    delta: float,
    slack: float,
) -> float:
    """Largest KL the line search accepts: slack delta v^T F v / (v^T F v + c Rn2 v^T S v)."""
    vfv = float(v @ (fisher_eigs * v))
    vsv = float(v @ covariance @ v)
    return slack * delta * vfv / max(vfv + c * rn2 * vsv, 1e-12)


def categorical_kl(old_log_probs: torch.Tensor, new_log_probs: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(pi_old || pi_new), padding (-inf) ignored."""
    finite = torch.isfinite(old_log_probs)
    old = torch.where(finite, old_log_probs, 0.0)
    new = torch.where(finite, new_log_probs, 0.0)
    return (torch.where(finite, old.exp() * (old - new), 0.0)).sum(1).mean()


class UATRPOLearner(PPOLearner):
    """The PPO learner's interface (act, transitions, controller) with a UA-TRPO update."""

    def __init__(
        self,
        policy: Policy,
        ppo: PPOConfig | None = None,
        trust_region: TrustRegionConfig | None = None,
        ua: UATRPOConfig | None = None,
    ) -> None:
        super().__init__(policy, ppo, trust_region)
        self.ua = ua or UATRPOConfig()
        head = getattr(self.policy, "value_head", None)
        if head is None:
            raise ValueError("UA-TRPO needs a policy with a value_head (the ranker)")
        self.value_optimizer = torch.optim.Adam(head.parameters(), lr=self.ua.value_lr)

    def _names(self) -> list[str]:
        return [n for n, p in self.policy.named_parameters() if p.requires_grad]

    def _flat(self, tensors: dict[str, torch.Tensor] | list[torch.Tensor]) -> torch.Tensor:
        items = tensors.values() if isinstance(tensors, dict) else tensors
        return torch.cat([t.reshape(-1) for t in items])

    def _fisher_subspace(
        self, states: list[str], candidates: list[list[str]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(U [d, r], eigenvalues [r]) of F ~= Y Y^T / r (see the module docstring, step 2)."""
        params = [p for p in self.policy.parameters() if p.requires_grad]
        out = self.policy(states, candidates)
        finite = torch.isfinite(out.log_probs)
        logp = torch.where(finite, out.log_probs, 0.0)
        weight = torch.where(finite, out.log_probs.detach().exp().sqrt(), 0.0)
        cols = []
        for j in range(self.ua.rank):
            g = torch.randn(logp.shape, generator=self.generator)
            proj = (logp * weight * g).sum() / math.sqrt(len(states))
            grads = torch.autograd.grad(
                proj, params, retain_graph=j < self.ua.rank - 1, allow_unused=True
            )
            cols.append(
                self._flat(
                    [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]
                )
            )
        u, sigma, _ = torch.linalg.svd(torch.stack(cols, 1), full_matrices=False)
        return u, sigma.pow(2) / self.ua.rank

    def update(self, buffer: RolloutBuffer, last_value: float = 0.0) -> dict[str, float]:
        """One UA-TRPO step on ``buffer``; diagnostics with the PPO learner's keys where they apply."""
        ua, n = self.ua, len(buffer)
        if n == 0:
            raise ValueError("cannot update on an empty rollout buffer")
        samples = buffer.transitions
        states = [t.state for t in samples]
        cands = [t.candidates for t in samples]
        actions = torch.tensor([t.action for t in samples], dtype=torch.long)
        old_values = buffer.column("value")
        advantages, returns = generalized_advantages(
            buffer.column("reward"),
            old_values,
            buffer.column("done"),
            buffer.column("lam"),
            self.cfg.gamma,
            last_value,
        )
        if n > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        theta = buffer.column("theta")
        names = self._names()
        old = {k: v.detach().clone() for k, v in self.policy.named_parameters() if k in names}
        self.policy.eval()

        def surrogate(
            params: dict[str, torch.Tensor], idx: torch.Tensor, old_lp: torch.Tensor
        ) -> torch.Tensor:
            out = functional_call(
                self.policy,
                params,
                ([states[i] for i in idx.tolist()], [cands[i] for i in idx.tolist()]),
            )
            lp = out.log_probs.gather(1, actions[idx].view(-1, 1)).squeeze(1)
            return ((lp - old_lp).exp() * advantages[idx]).mean()

        with sdpa_kernel(SDPBackend.MATH):
            with torch.no_grad():
                old_out = self.policy(states, cands)
            old_all = old_out.log_probs
            old_lp = old_all.gather(1, actions.view(-1, 1)).squeeze(1)
            order = torch.randperm(n, generator=self.generator)
            chunks = [c for c in torch.tensor_split(order, min(ua.minibatches, n)) if len(c)]
            grads = torch.stack([self._flat(grad(surrogate)(old, c, old_lp[c])) for c in chunks])
            sub = order[: ua.fisher_states].tolist()
            basis, eigs = self._fisher_subspace([states[i] for i in sub], [cands[i] for i in sub])
        projected = grads @ basis
        g = projected.mean(0)
        m = n / len(chunks)
        cov = m * torch.cov(projected.T) if len(chunks) > 1 else torch.zeros(len(g), len(g))
        rn2 = uncertainty_radius(len(eigs), n, ua.alpha)
        metric = uncertainty_metric(eigs, cov, ua.c, rn2, ua.damping * float(eigs.max()))
        v = torch.linalg.solve(metric, g)
        beta = step_length(v, metric, ua.delta)
        limit = kl_limit(v, eigs, cov, ua.c, rn2, ua.delta, ua.kl_slack)
        full_step = beta * (basis @ v)
        base_surr = float(advantages.mean())
        accepted, kl, new_all = -1, 0.0, old_all
        for j in range(ua.max_backtracks):
            self._assign(old, full_step * ua.backtrack**j)
            with torch.no_grad():
                trial = self.policy(states, cands).log_probs
            kl = float(categorical_kl(old_all, trial))
            lp = trial.gather(1, actions.view(-1, 1)).squeeze(1)
            surr = float(((lp - old_lp).exp() * advantages).mean())
            if kl <= limit and surr > base_surr:
                accepted, new_all = j, trial
                break
        if accepted < 0:
            self._assign(old, torch.zeros_like(full_step))
            kl = 0.0
        value_loss = self._fit_values(states, cands, returns)
        new_lp = new_all.gather(1, actions.view(-1, 1)).squeeze(1)
        shift = (new_lp - old_lp).abs()
        step_norm = float(full_step.norm()) * (ua.backtrack**accepted if accepted >= 0 else 0.0)
        self.updates += 1
        diagnostics = {
            "update": float(self.updates),
            "samples": float(n),
            "approx_kl": kl,
            "kl_limit": limit,
            "rn2": rn2,
            "step_length": beta,
            "backtracks": float(accepted),
            "value_loss": value_loss,
            "clip_fraction": float("nan"),
            "explained_variance": explained_variance(old_values, returns),
            "mean_theta": float(theta.mean()),
            "mean_delta": ua.delta,
            "mean_gate": 1.0,
            "mean_lambda": float(buffer.column("lam").mean()),
            "update_norm": step_norm,
            "mean_abs_log_ratio": float(shift.mean()),
            "fisher_top_eig": float(eigs.max()),
            "grad_cov_trace": float(torch.trace(cov)),
        }
        diagnostics.update(confidence_bin_diagnostics(theta, shift))
        self.history.append(diagnostics)
        return diagnostics

    def _assign(self, old: dict[str, torch.Tensor], step: torch.Tensor) -> None:
        """Set the parameters to ``old + step`` (step flattened in ``old``'s order)."""
        offset = 0
        params = dict(self.policy.named_parameters())
        with torch.no_grad():
            for name, value in old.items():
                size = value.numel()
                params[name].copy_(value + step[offset : offset + size].view_as(value))
                offset += size

    def _fit_values(
        self, states: list[str], cands: list[list[str]], returns: torch.Tensor
    ) -> float:
        """Adam steps of the value head toward the returns; the last step's loss."""
        with torch.no_grad():
            state_h, _ = self.policy.encode(states, cands)  # type: ignore[attr-defined]
        loss = torch.tensor(float("nan"))
        for _ in range(self.ua.value_epochs):
            loss = 0.5 * (self.policy.value_head(state_h).squeeze(-1) - returns).pow(2).mean()  # type: ignore[attr-defined]
            self.value_optimizer.zero_grad()
            loss.backward()
            self.value_optimizer.step()
        return float(loss.detach())


__all__ = [
    "UATRPOConfig",
    "UATRPOLearner",
    "categorical_kl",
    "kl_limit",
    "step_length",
    "uncertainty_metric",
    "uncertainty_radius",
]
