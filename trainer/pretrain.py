"""Supervised pretraining of a policy: cross-entropy over ``[STOP, candidates]``.

An example is a state, candidate texts and the set of actions that are right (0 is STOP).
Nothing here knows what the texts are; :mod:`trustfix.bench.pretrain_data` makes them from
corrupted code.  The loss of an example is ``-log sum_{a in right} pi(a | s)`` (the set's
cross-entropy: with one right action, the ordinary one).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from .config import PretrainConfig
from .policies.base import Policy


@dataclass(frozen=True)
class Example:
    """One supervised decision."""

    state: str
    candidates: list[str]
    right: tuple[int, ...]
    """Right actions: 0 is STOP, i + 1 is candidate i."""
    kind: str = ""
    """What made it (e.g. ``repair``, ``stop``, ``style``): reported per kind."""
    family: str = ""
    """Finer origin (e.g. the corrupting operator family): reported per family."""
    source: str = ""
    """Key of what it was made from (for splits and audits)."""


@dataclass
class PretrainResult:
    """What one pretraining run did."""

    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    """Mean training loss per logging window."""
    heldout: dict[str, float] = field(default_factory=dict)
    """Held-out top-1 / top-5 accuracy and loss, and uniform choice's expected top-1 / top-5."""


def kept_candidates(
    n: int, right: Sequence[int], limit: int, rng: random.Random
) -> tuple[list[int], tuple[int, ...]]:
    """Which of ``n`` candidates to keep, at most ``limit``: every right one (actions in
    ``right``; 0 is STOP) and a uniform sample of the others, in their order; and the right
    actions renumbered over the kept candidates."""
    if n <= limit:
        return list(range(n)), tuple(right)
    must = {a - 1 for a in right if a > 0}
    others = [i for i in range(n) if i not in must]
    kept = sorted(must | set(rng.sample(others, max(0, limit - len(must)))))[:limit]
    renumbered = tuple(j + 1 for j, i in enumerate(kept) if i + 1 in right)
    return kept, renumbered + ((0,) if 0 in right else ())


def sampled(example: Example, limit: int, rng: random.Random) -> Example:
    """``example`` with at most ``limit`` candidates (:func:`kept_candidates`)."""
    if len(example.candidates) <= limit:
        return example
    kept, right = kept_candidates(len(example.candidates), example.right, limit, rng)
    return replace(example, candidates=[example.candidates[i] for i in kept], right=right)


def set_cross_entropy(log_probs: torch.Tensor, right: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean over rows of ``-log sum_{a in right_i} exp(log_probs[i, a])`` (the probability of
    choosing any right action)."""
    mask = torch.zeros_like(log_probs, dtype=torch.bool)
    for i, actions in enumerate(right):
        mask[i, list(actions)] = True
    chosen = log_probs.masked_fill(~mask, -math.inf)
    return -torch.logsumexp(chosen, dim=1).mean()


def uniform_top_k(options: int, right: int, k: int) -> float:
    """Probability that ``k`` of ``options`` actions drawn uniformly without replacement include
    one of the ``right`` ones: ``1 - C(options - right, k) / C(options, k)``."""
    if k >= options:
        return 1.0
    return 1.0 - math.comb(options - right, k) / math.comb(options, k)


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then linear decay to zero at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


@torch.no_grad()
def evaluate(
    policy: Policy, examples: Sequence[Example], batch_size: int = 32, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracy (a right action among the k most probable), mean loss, and uniform
    choice's expected top-k, over ``examples``; also top-1 per example kind."""
    was_training = policy.training
    policy.eval()
    hits = {k: 0.0 for k in ks}
    chance = {k: 0.0 for k in ks}
    loss = 0.0
    per_kind: dict[str, list[int]] = {}
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        out = policy([e.state for e in batch], [e.candidates for e in batch])
        loss += float(set_cross_entropy(out.log_probs, [e.right for e in batch])) * len(batch)
        order = out.log_probs.argsort(dim=1, descending=True)
        for row, ex in enumerate(batch):
            options = 1 + len(ex.candidates)
            ranked = order[row, :options].tolist()
            for k in ks:
                hits[k] += any(a in ex.right for a in ranked[:k])
                chance[k] += uniform_top_k(options, len(set(ex.right)), k)
            per_kind.setdefault(ex.kind, []).append(int(ranked[0] in ex.right))
    policy.train(was_training)
    n = max(1, len(examples))
    report = {f"top{k}": hits[k] / n for k in ks}
    report.update({f"uniform_top{k}": chance[k] / n for k in ks})
    report["loss"] = loss / n
    report.update({f"top1_{kind}": sum(v) / len(v) for kind, v in sorted(per_kind.items())})
    return report


def pretrain(
    policy: Policy,
    train: Sequence[Example],
    heldout: Sequence[Example],
    cfg: PretrainConfig,
    on_step: Callable[[int, float], None] | None = None,
    log_every: int = 50,
) -> PretrainResult:
    """Train ``policy`` on ``train`` with AdamW (``cfg``: epochs, batch size, learning-rate
    schedule, clipping, seed; each step ranks at most ``cfg.train_candidates`` candidates of an
    example, the right ones among them), then evaluate it on ``heldout`` (all candidates).  ``on_step(step, loss)`` after
    every optimiser step.  The policy is left in eval mode."""
    started = time.perf_counter()
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(total * cfg.warmup_share))
    optimiser = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = PretrainResult()
    window: list[float] = []
    policy.train()
    order = list(range(len(train)))
    step = 0
    for _ in range(cfg.epochs):
        rng.shuffle(order)
        for i in range(0, len(order), cfg.batch_size):
            batch = [
                sampled(train[j], cfg.train_candidates, rng) for j in order[i : i + cfg.batch_size]
            ]
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(step, total, cfg.lr, warmup)
            out = policy([e.state for e in batch], [e.candidates for e in batch])
            loss = set_cross_entropy(out.log_probs, [e.right for e in batch])
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimiser.step()
            step += 1
            window.append(float(loss.detach()))
            if len(window) == log_every:
                result.losses.append(sum(window) / len(window))
                window = []
            if on_step:
                on_step(step, window[-1] if window else result.losses[-1])
    if window:
        result.losses.append(sum(window) / len(window))
    result.steps = step
    result.heldout = evaluate(policy, heldout) if heldout else {}
    policy.eval()
    result.seconds = time.perf_counter() - started
    return result
