"""Settings of the experiment: its size (:class:`BenchConfig`), the methods and the ablations."""

from __future__ import annotations

from dataclasses import dataclass, replace

from trustfix.trainer.encoders import HASHING

PLAIN_PPO = {"use_confidence": False, "adaptive_trust_region": False, "gate": False}
"""PPOConfig switches of plain PPO (fixed epsilon, theta_hat == 1, no gate)."""
METHODS: dict[str, dict[str, bool]] = {
    "ours": {},
    "ppo": PLAIN_PPO,
    "hp-ppo": PLAIN_PPO,
    "ua-trpo": PLAIN_PPO,
}
"""Learner switches per method; hp-ppo adds the reward model, ua-trpo its own update."""
ABLATIONS: dict[str, dict[str, bool]] = {
    "ours w/o estimator": {"use_confidence": False},
    "ours w/o adaptive trust region": {"adaptive_trust_region": False},
    "ours w/o confidence weighting": {"confidence_weighted_reward": False},
    "ours w/o gate": {"gate": False},
    "ours w/o smoothing": {"smoothing": False},
}
"""The five ablations of ``ours`` (Table 2), run on the mixed condition."""
ROLE_MAP = {"ta": "instructor"}
"""Simulated reviewer roles the estimator does not know, mapped to one it does."""
PROPOSERS = ("ruff", "ruff-format", "operator")
"""Proposers of the experiment (semgrep's are asynchronous in the server; left out here)."""


@dataclass
class BenchConfig:
    """Size and settings of one experiment (every method gets the same)."""

    conditions: tuple[str, ...] = ("high", "mixed", "low")
    """Reviewer conditions of Table 1."""
    methods: tuple[str, ...] = ("ours", "ppo", "hp-ppo", "ua-trpo")
    """Methods of Table 1."""
    ablations: bool = False
    """Also run the five ablations of ``ours`` on the mixed condition (Table 2)."""
    seeds: int = 8
    """Seeds per (method, condition); every method meets the same task order and feedback."""
    steps: int = 2048
    """Training steps per run (a step is one policy action, STOP included)."""
    batch: int = 64
    """Steps collected before each update (the update waits for the episode to end)."""
    horizon: int = 3
    """H: refinement steps per episode."""
    policy: str = "pretrained"
    """Starting policy of every run: ``pretrained`` (the shipped checkpoint in
    ``trainer/policies/pretrained``; a fresh ranker, with a warning, when there is none) or
    ``fresh``."""
    exec_fraction: float = 0.2
    """Share of training steps after which the tests run (r_env and execution evidence); on
    the others the reviewers are the only signal, as in an editor where most edits are not
    followed by a test run.  Which steps: a hash of (seed, task, state, action)."""
    anneal_steps: int = 0
    """T of eq. 15 in the experiment: steps over which the human term anneals to zero; 0 (the
    default): no decay within a run, because here the feedback is the only signal on most steps
    and the team preference is only in the feedback, so annealing it away would leave a method
    nothing to learn it from in the second half of a run."""
    bug_seeds: int = 4
    """Task sets (each injects other bugs and style into every problem), from ``task_seed`` on
    (a seed whose set does not build is skipped): the held-out set is every set's held-out
    problems (about 4 x 42 = 168 tasks)."""
    train_tasks: int = 0
    """Train tasks used (the first of the split, all bug seeds; 0: all)."""
    test_tasks: int = 0
    """Held-out tasks evaluated (0: all)."""
    task_seed: int = 0
    """First seed of the task sets (bugs and style injections)."""
    max_candidates: int = 32
    """Candidates per state (after deduplication, in the proposers' order)."""
    reviewers: int = 10
    """Reviewers per pool."""
    probe_reviewers: int = 3
    """Reviewers giving feedback on each held-out probe (the first one's is learned from and
    scored for HFU/NRR; all go into the feedback log, several reviewers on one item)."""
    follow_margin: float = 0.01
    """Change of log pi(a|s) (nats) after the probe update that counts as following a probe's
    feedback (toward the action it recommends, away from the one it rejects)."""
    eval_points: int = 2
    """Held-out CCS evaluations per run (for the curves; the last one is the final evaluation)."""
    style_weight: float = 0.2
    """w: weight of the normalised style-violation change in r_env."""
    lr: float = 1e-3
    """Learning rate of every PPO-based method."""
    minibatch_size: int = 16
    """PPO minibatch of every PPO-based method."""
    encoder: str = HASHING
    """Text and code encoder of the estimator and the human signal (``embedded`` or ``hashing``);
    its vectors are cached per worker (the encoder's LRU), so repeated texts are encoded once."""
    feedback_log: bool = True
    """Keep every feedback item for feedback.jsonl."""


def quick_config(cfg: BenchConfig) -> BenchConfig:
    """The CI smoke-test size of ``cfg``: few tasks, few steps, one seed, and only the mixed
    condition when all three were asked for."""
    conditions = ("mixed",) if len(cfg.conditions) > 1 else cfg.conditions
    return replace(
        cfg,
        conditions=conditions,
        seeds=1,
        steps=32,
        batch=16,
        train_tasks=6,
        test_tasks=4,
        bug_seeds=1,
        eval_points=2,
        minibatch_size=8,
        reviewers=6,
        probe_reviewers=2,
    )
