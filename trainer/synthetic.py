"""A contextual bandit with noisy human feedback: the learning core's own testbed and demo.

Each request names an intent word; the candidates are actions naming words; the right action
names the intent.  The environment is mostly silent: only a share ``exec_share`` of the steps
is executed, giving r_env (1 for the right action) and execution evidence about the feedback.
Every step gets feedback from one reviewer of a pool with known reliabilities (right with
probability p), which flows through the same estimator, controller and learner as real use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .confidence import ConfidenceEstimator, FeedbackItem
from .config import ConfidenceConfig, PPOConfig, RankerConfig, TrustRegionConfig
from .encoders import HASHING, make_encoder
from .policies.base import STOP
from .policies.ranker import RankerPolicy
from .ppo import PPOLearner
from .trust_region import human_signal

WORDS = ("sort", "merge", "split", "count", "parse", "strip")
"""Intent vocabulary of the bandit."""

POOLS = {"high": ((0.85, 0.95),), "mixed": ((0.85, 0.95), (0.2, 0.6)), "low": ((0.45, 0.65),)}
"""Reliability ranges of the reviewer pools; a mixed pool is half of each range."""

METHODS: dict[str, dict[str, bool]] = {
    "ours": {},
    "ppo": {"use_confidence": False, "adaptive_trust_region": False, "gate": False},
}
"""Learner switches (PPOConfig fields) per method; 'ppo' is plain PPO with fixed epsilon."""


@dataclass
class BanditConfig:
    """The synthetic task and its reviewers."""

    candidates: int = 4
    """Actions offered per request (besides STOP)."""
    steps: int = 2048
    """Interaction steps (one request, one action, one feedback item each)."""
    batch: int = 64
    """Steps per PPO update."""
    condition: str = "mixed"
    """Reviewer pool: high, mixed or low (see POOLS)."""
    reviewers: int = 10
    """Reviewers in the pool."""
    reliabilities: tuple[float, ...] = ()
    """Explicit true reliabilities (one per reviewer), overriding ``condition`` when given."""
    exec_share: float = 0.2
    """Share of steps that are executed: r_env and execution evidence."""
    score_share: float = 0.2
    """Share of feedback given as a 1-5 score instead of accept/reject."""
    eval_requests: int = 300
    """Fresh requests for the greedy evaluation."""
    lr: float = 1e-3
    """Learning rate of every method on this task (tuned once for plain PPO, shared by all)."""
    minibatch_size: int = 16
    """PPO minibatch of every method on this task."""
    seed: int = 0


@dataclass
class BanditResult:
    """What one training run produced."""

    method: str
    seed: int
    accuracy: list[tuple[int, float]] = field(default_factory=list)
    """(step, greedy accuracy on the evaluation requests) after each update."""
    reviewer_theta: dict[str, float] = field(default_factory=dict)
    reviewer_truth: dict[str, float] = field(default_factory=dict)
    diagnostics: list[dict[str, float]] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1][1]


def make_request(rng: np.random.Generator, n_candidates: int) -> tuple[str, list[str], int]:
    """One request: (state text, candidate texts, action index of the right candidate)."""
    words = rng.choice(len(WORDS), size=n_candidates, replace=False)
    intent = int(words[0])
    order = rng.permutation(n_candidates)
    candidates = [f"apply {WORDS[int(words[i])]} to the input" for i in order]
    right = int(np.flatnonzero(order == 0)[0]) + 1
    return f"request: the user wants to {WORDS[intent]} the data", candidates, right


def reviewer_reliabilities(condition: str, n: int, rng: np.random.Generator) -> list[float]:
    """True reliabilities of a pool: each range of POOLS gets an equal share of reviewers."""
    if condition not in POOLS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {sorted(POOLS)}")
    ranges = POOLS[condition]
    return [float(rng.uniform(*ranges[i * len(ranges) // n])) for i in range(n)]


def evaluate(policy: RankerPolicy, requests: list[tuple[str, list[str], int]]) -> float:
    """Greedy accuracy over fixed requests."""
    with torch.no_grad():
        out = policy([r[0] for r in requests], [r[1] for r in requests])
    chosen = out.log_probs.argmax(1)
    return float(np.mean([int(c) == r[2] for c, r in zip(chosen, requests)]))


def run_bandit(
    method: str,
    cfg: BanditConfig,
    ppo: PPOConfig | None = None,
    trust_region: TrustRegionConfig | None = None,
    confidence: ConfidenceConfig | None = None,
    ranker: RankerConfig | None = None,
    on_step: Callable[[int], None] | None = None,
) -> BanditResult:
    """Train a fresh ranker with ``method``'s switches on the noisy-feedback bandit."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and leaves a core free
    ppo_cfg = replace(
        ppo or PPOConfig(),
        seed=cfg.seed,
        lr=cfg.lr,
        minibatch_size=cfg.minibatch_size,
        **METHODS[method],
    )
    tr_cfg = replace(trust_region or TrustRegionConfig(), total_steps=cfg.steps)
    learner = PPOLearner(RankerPolicy(ranker or RankerConfig()), ppo_cfg, tr_cfg)
    encoder = make_encoder(HASHING)
    estimator = ConfidenceEstimator(
        confidence or ConfidenceConfig(), encoder, encoder, seed=cfg.seed
    )
    truth = list(cfg.reliabilities) or reviewer_reliabilities(cfg.condition, cfg.reviewers, rng)
    names = [f"reviewer-{i:02d}" for i in range(len(truth))]
    eval_rng = np.random.default_rng(10_000 + cfg.seed)
    eval_requests = [make_request(eval_rng, cfg.candidates) for _ in range(cfg.eval_requests)]
    act_gen = torch.Generator().manual_seed(cfg.seed)
    result = BanditResult(method, cfg.seed, reviewer_truth=dict(zip(names, truth)))

    pending: list[tuple[str, list[str], int, float, float, float, str, float]] = []
    for step in range(cfg.steps):
        state, candidates, right = make_request(rng, cfg.candidates)
        action, log_prob, value = learner.policy.act(state, candidates, generator=act_gen)
        correct = action == right
        r = int(rng.integers(len(truth)))
        says_good = correct if rng.random() < truth[r] else not correct
        if rng.random() < cfg.score_share:
            kind, score = "score", int(rng.choice([4, 5]) if says_good else rng.choice([1, 2]))
        else:
            kind, score = ("accept" if says_good else "reject"), None
        intent = candidates[right - 1].split()[1]
        chosen = "STOP" if action == STOP else candidates[action - 1].split()[1]
        item = FeedbackItem(
            id=f"f{step}",
            suggestion_id=f"{intent}->{chosen}",
            reviewer=names[r],
            role="student",
            kind=kind,
            score=score,
            time=float(step),
        )
        estimator.observe(item)
        r_env = 0.0
        if rng.random() < cfg.exec_share:
            r_env = 1.0 if correct else 0.0
            estimator.observe_execution(item.id, verified=says_good == correct)
        pending.append(
            (state, candidates, action, log_prob, value, r_env, item.id, human_signal(kind, score))
        )
        if on_step:
            on_step(step)
        if len(pending) == cfg.batch:
            thetas = [estimator.confidence(p[6]) for p in pending]
            rewards = [
                learner.controller.reward(p[5], step, theta, p[7])
                for p, theta in zip(pending, thetas)
            ]
            buffer = learner.transitions_from(
                [p[0] for p in pending],
                [p[1] for p in pending],
                [p[2] for p in pending],
                [p[3] for p in pending],
                [p[4] for p in pending],
                rewards,
                [True] * len(pending),
                thetas,
            )
            result.diagnostics.append(learner.update(buffer))
            result.accuracy.append((step + 1, evaluate(learner.policy, eval_requests)))
            pending.clear()
    result.reviewer_theta = {n: estimator.reviewer_confidence(n) for n in names}
    return result


def mean_ci(
    values: list[float], level: float = 0.95, lower: float | None = None, upper: float | None = None
) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of ``values``, the interval clipped to
    [``lower``, ``upper``] when given (a rate's interval never leaves [0, 1])."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr)))
    lo, hi = mean - half, mean + half
    if lower is not None:
        lo = max(lo, lower)
    if upper is not None:
        hi = min(hi, upper)
    return mean, lo, hi


def summarize(results: list[BanditResult], n_candidates: int = BanditConfig.candidates) -> dict:
    """Per method: final and mean accuracy over seeds (95% CI) and reviewer-estimate quality."""
    from scipy.stats import spearmanr

    methods: dict[str, dict] = {}
    for method in dict.fromkeys(r.method for r in results):
        runs = [r for r in results if r.method == method]
        final, lo, hi = mean_ci([r.final_accuracy for r in runs], lower=0.0, upper=1.0)
        spearman, mae = [], []
        for r in runs:
            names = sorted(r.reviewer_truth)
            est = [r.reviewer_theta[n] for n in names]
            true = [r.reviewer_truth[n] for n in names]
            spearman.append(float(spearmanr(est, true).statistic))
            mae.append(float(np.mean(np.abs(np.subtract(est, true)))))
        methods[method] = {
            "final_accuracy": final,
            "final_ci": [lo, hi],
            "mean_accuracy": float(np.mean([np.mean([a for _, a in r.accuracy]) for r in runs])),
            "per_seed_final": [r.final_accuracy for r in runs],
            "reviewer_spearman": float(np.mean(spearman)),
            "reviewer_mae": float(np.mean(mae)),
            "curves": [r.accuracy for r in runs],
            "last_diagnostics": [r.diagnostics[-1] for r in runs],
        }
    return {"methods": methods, "random_accuracy": 1.0 / (n_candidates + 1)}
