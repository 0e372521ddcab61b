"""One run of the experiment: train a ranker with one method under one reviewer condition, from
the starting policy, and evaluate it on the held-out tasks (see :mod:`trustfix.bench.experiment`).

An episode starts from a task's buggy program and takes up to ``horizon`` steps or STOP.  Every
step that changes the program gets one reviewer's feedback (a function of seed, task, state and
action); the tests run after a share ``exec_fraction`` of the steps (r_env and execution evidence),
elsewhere the feedback is the only signal.  The task order of a seed is drawn in advance, so
every method and condition meets the same tasks.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from trustfix.bench.environment import Environment, candidate_text
from trustfix.bench.evaluation import (
    ccs_in_use,
    ccs_sir,
    episodes,
    follow_probes,
    greedy,
    preference_decisions,
)
from trustfix.bench.feedback import Experience, FeedbackChannel, tests_run
from trustfix.bench.hp_ppo import RewardModel, RewardModelConfig
from trustfix.bench.metrics import ccs, estimate_bias, preference_agreement, reviewer_quality
from trustfix.bench.reviewers import make_pool, team_preference
from trustfix.bench.settings import METHODS, BenchConfig
from trustfix.bench.starting import resolve_starting_policy
from trustfix.bench.tasks import Task, make_tasks, oracle, split_tasks
from trustfix.bench.ua_trpo import UATRPOConfig, UATRPOLearner
from trustfix.server.sandbox import Sandbox, SandboxConfig
from trustfix.trainer.confidence import ConfidenceEstimator
from trustfix.trainer.config import ConfidenceConfig, PPOConfig, RankerConfig, TrustRegionConfig
from trustfix.trainer.encoders import HASHING, Encoder, get_encoder, make_encoder
from trustfix.trainer.policies.base import STOP
from trustfix.trainer.ppo import PPOLearner

log = logging.getLogger(__name__)


def task_sets(first: int, count: int, tries: int = 4) -> list[list[Task]]:
    """``count`` task sets from seed ``first`` on; a seed whose set fails to build (an injection
    that yields invalid code) is skipped with a warning, up to ``tries`` extra seeds."""
    sets: list[list[Task]] = []
    seed = first
    while len(sets) < count and seed < first + count + tries:
        try:
            sets.append(make_tasks(seed))
        except SyntaxError as exc:
            log.warning("task seed %d does not build (%s); skipped", seed, exc.msg)
        seed += 1
    if len(sets) < count:
        raise RuntimeError(f"only {len(sets)} of {count} task seeds from {first} build")
    return sets


@dataclass
class RunOutcome:
    """What one (method, condition, seed) run produced."""

    method: str
    condition: str
    seed: int
    policy: str = ""
    """The starting policy (pretrained version or fresh)."""
    ccs: float = float("nan")
    sir: float = float("nan")
    preference: float = float("nan")
    """Preference agreement (%) on the held-out tasks."""
    hfu: float = float("nan")
    nrr: float = float("nan")
    ccs_in_use: float = float("nan")
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(training step, held-out CCS) at each evaluation point."""
    spearman: float = float("nan")
    mae: float = float("nan")
    bias: float = float("nan")
    reviewer_theta: dict[str, float] = field(default_factory=dict)
    reviewer_truth: dict[str, float] = field(default_factory=dict)
    reviewer_items: dict[str, int] = field(default_factory=dict)
    diagnostics: list[dict[str, float]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self, with_feedback: bool = False) -> dict[str, Any]:
        """Plain-dict form (the feedback log only when asked)."""
        data = dataclasses.asdict(self)
        if not with_feedback:
            data.pop("feedback")
        return data


class Runner:
    """Runs the experiment's training and evaluation on a shared environment."""

    def __init__(
        self,
        cfg: BenchConfig,
        ppo: PPOConfig | None = None,
        trust_region: TrustRegionConfig | None = None,
        confidence: ConfidenceConfig | None = None,
        ranker: RankerConfig | None = None,
        ua: UATRPOConfig | None = None,
        reward_model: RewardModelConfig | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.cfg = cfg
        self.ppo = ppo or PPOConfig()
        self.trust_region = trust_region or TrustRegionConfig()
        self.confidence_cfg = confidence or ConfidenceConfig()
        self.ua = ua or UATRPOConfig()
        self.reward_model_cfg = reward_model or RewardModelConfig()
        self.start = resolve_starting_policy(cfg.policy, ranker or RankerConfig())
        self.sandbox = sandbox or Sandbox(SandboxConfig(cpu_seconds=1, wall_timeout=3.0))
        self.env = Environment(self.sandbox, cfg.max_candidates, cfg.style_weight)
        train: list[Task] = []
        test: list[Task] = []
        for tasks in task_sets(cfg.task_seed, cfg.bug_seeds):
            tr, te = split_tasks(tasks)
            train += tr
            test += te
        by_problem = sorted(test, key=lambda t: (t.problem_id, t.id))  # every problem early
        self.train = train[: cfg.train_tasks or None]
        self.test = by_problem[: cfg.test_tasks or None]
        self._oracle: float | None = None
        self.encoder: Encoder = (
            make_encoder(HASHING) if cfg.encoder == HASHING else get_encoder(cfg.encoder)
        )

    def task_order(self, seed: int) -> list[Task]:
        """The train tasks of seed ``seed``'s episodes, drawn in advance (one per step at most)."""
        return random.Random(f"trustfix-order:{seed}").choices(self.train, k=self.cfg.steps)

    # ----------------------------------------------------------------------- bounds

    def bounds(self, seed: int) -> dict[str, float]:
        """No refinement, random policy, oracle (verifies every candidate with the tests) and
        the starting policy without feedback (CCS, SIR, preference agreement per condition)."""
        cfg = self.cfg
        none = ccs([self.env.run(t, t.buggy).all_passed for t in self.test])
        rng = random.Random(f"random-policy:{seed}")
        finals = episodes(
            self.env,
            lambda s, texts: [rng.randrange(len(t) + 1) for t in texts],
            self.test,
            cfg.horizon,
        )
        rand = ccs_sir(self.env, self.test, finals)[0]

        def propose_fn(task: Task) -> Callable[[str], list[str]]:
            return lambda source: [c.source for c in self.env.candidates(task, source)]

        if self._oracle is None:  # the same for every seed: once per worker
            best = [oracle(t, propose_fn(t), self.sandbox, cfg.horizon) for t in self.test]
            self._oracle = ccs([o.solved for o in best])
        policy = self.start.build(seed)
        start_ccs, start_sir = ccs_sir(
            self.env, self.test, episodes(self.env, greedy(policy), self.test, cfg.horizon)
        )
        out = {
            "no_refinement": none,
            "random": rand,
            "oracle": self._oracle,
            "pretrained": start_ccs,
            "pretrained_sir": start_sir,
        }
        for condition in cfg.conditions:
            team = team_preference(condition, seed)
            out[f"pretrained_preference[{condition}]"] = preference_agreement(
                preference_decisions(self.env, policy, self.test, team)
            )
        return out

    # ----------------------------------------------------------------------- one run

    def run(
        self,
        method: str,
        condition: str,
        seed: int,
        switches: dict[str, bool] | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> RunOutcome:
        """Train the starting policy with ``method`` (or ``switches`` of ``ours``), evaluate it."""
        started = time.perf_counter()
        cfg, env = self.cfg, self.env
        torch.set_num_threads(1)  # tiny models: one thread is fastest on a small machine
        base = "ours" if switches is not None else method
        ppo_cfg = replace(
            self.ppo,
            seed=seed,
            lr=cfg.lr,
            minibatch_size=cfg.minibatch_size,
            **(switches if switches is not None else METHODS[method]),
        )
        tr_cfg = replace(self.trust_region, total_steps=cfg.anneal_steps)
        policy = self.start.build(seed)
        learner = (
            UATRPOLearner(policy, ppo_cfg, tr_cfg, self.ua)
            if base == "ua-trpo"
            else PPOLearner(policy, ppo_cfg, tr_cfg)
        )
        estimator = ConfidenceEstimator(self.confidence_cfg, self.encoder, self.encoder, seed=seed)
        rmodel = (
            RewardModel(self.encoder, self.reward_model_cfg, seed) if base == "hp-ppo" else None
        )
        pool = make_pool(condition, cfg.reviewers, seed)
        team = team_preference(condition, seed)
        run_id = f"{method}:{condition}:{seed}"
        channel = FeedbackChannel(
            env,
            self.encoder,
            pool,
            team,
            condition,
            seed,
            run_id,
            estimator,
            rmodel,
            cfg.feedback_log,
        )
        truth = {r.id: r.reliability for r in pool}
        result = RunOutcome(method, condition, seed, policy=self.start.label, reviewer_truth=truth)
        act_gen = torch.Generator().manual_seed(seed)
        eval_at = {round(cfg.steps * (k + 1) / cfg.eval_points) for k in range(cfg.eval_points)}

        def update(samples: list[Experience]) -> dict[str, float]:
            return self._update(learner, samples, estimator, rmodel, ppo_cfg)

        pending: list[Experience] = []
        extras: list[Experience] = []
        step = 0
        for task in self.task_order(seed):
            if step >= cfg.steps:
                break
            source = task.buggy
            for depth in range(cfg.horizon):
                state = env.state(task, source)
                cands = env.candidates(task, source)
                texts = [candidate_text(c) for c in cands]
                action, log_prob, value = learner.policy.act(state, texts, generator=act_gen)
                done = action == STOP or depth == cfg.horizon - 1
                exp = Experience(step, state, texts, action, log_prob, value, 0.0, done)
                if action != STOP:
                    chosen = cands[action - 1]
                    review, (draft,) = channel.review("train", task, source, chosen)
                    ran = tests_run(seed, task, source, chosen.source, cfg.exec_fraction)
                    extra = channel.deliver(
                        exp, "train", task, source, cands, review, draft, ran, learner.policy
                    )
                    extras += [extra] if extra is not None else []
                    source = chosen.source
                pending.append(exp)
                step += 1
                if on_step:
                    on_step()
                if step in eval_at and step < cfg.steps:
                    result.curve.append((step, self._ccs(learner)))
                if done or step >= cfg.steps:
                    pending[-1].done = True
                    break
            if len(pending) >= cfg.batch or step >= cfg.steps:
                result.diagnostics.append(update(pending + extras))
                pending, extras = [], []

        policy = learner.policy
        policy.eval()
        finals = episodes(env, greedy(policy), self.test, cfg.horizon)
        result.ccs, result.sir = ccs_sir(env, self.test, finals)
        result.curve.append((cfg.steps, result.ccs))
        result.preference = preference_agreement(preference_decisions(env, policy, self.test, team))
        self._reviewer_estimates(result, estimator, channel, truth, ppo_cfg.smoothing)
        threshold = tr_cfg.gate_threshold if ppo_cfg.use_confidence else None
        result.ccs_in_use = ccs_in_use(
            env, policy, self.test, cfg.horizon, channel, estimator, threshold, ppo_cfg.smoothing
        )
        result.hfu, result.nrr = follow_probes(
            env, policy, self.test, channel, cfg.probe_reviewers, cfg.follow_margin, update
        )
        result.feedback = channel.log if cfg.feedback_log else []
        result.wall_s = time.perf_counter() - started
        return result

    def _ccs(self, learner: PPOLearner) -> float:
        """Held-out CCS of the learner's greedy policy now."""
        finals = episodes(self.env, greedy(learner.policy), self.test, self.cfg.horizon)
        return ccs_sir(self.env, self.test, finals)[0]

    @staticmethod
    def _reviewer_estimates(
        result: RunOutcome,
        estimator: ConfidenceEstimator,
        channel: FeedbackChannel,
        truth: dict[str, float],
        smoothed: bool,
    ) -> None:
        """Final theta_r of every reviewer seen in training against the truth; each training
        item's final theta into the log."""
        counts: dict[str, int] = {}
        for item in channel.log:
            counts[item["reviewer"]] = counts.get(item["reviewer"], 0) + 1
        seen = [r for r in truth if r in estimator.reviewers()]
        result.reviewer_theta = {r: estimator.reviewer_confidence(r) for r in seen}
        result.reviewer_items = {r: counts.get(r, 0) for r in seen}
        estimated, true = [result.reviewer_theta[r] for r in seen], [truth[r] for r in seen]
        result.spearman, result.mae = reviewer_quality(estimated, true)
        result.bias = estimate_bias(estimated, true)
        for item in channel.log:
            item["theta_final"] = estimator.confidence(item["item"], smoothed=smoothed)

    def _update(
        self,
        learner: PPOLearner,
        pending: list[Experience],
        estimator: ConfidenceEstimator,
        rmodel: RewardModel | None,
        ppo_cfg: PPOConfig,
    ) -> dict[str, float]:
        """Thetas at update time -> shaped rewards -> buffer -> one update."""
        thetas = [
            None
            if e.feedback_id is None
            else estimator.confidence(e.feedback_id, smoothed=ppo_cfg.smoothing)
            for e in pending
        ]
        signals = [e.signal for e in pending]
        extra: dict[str, float] = {}
        if rmodel is not None:
            extra["reward_model_loss"] = rmodel.refresh()
            acted = [i for i, e in enumerate(pending) if e.action != STOP]
            values = rmodel.signal(
                [pending[i].state for i in acted],
                [pending[i].texts[pending[i].action - 1] for i in acted],
            )
            signals = [None] * len(pending)
            for i, v in zip(acted, values):
                signals[i] = v
        rewards = [
            learner.controller.reward(e.r_env, e.step, th, s)
            for e, th, s in zip(pending, thetas, signals)
        ]
        buffer = learner.transitions_from(
            [e.state for e in pending],
            [e.texts for e in pending],
            [e.action for e in pending],
            [e.log_prob for e in pending],
            [e.value for e in pending],
            rewards,
            [e.done for e in pending],
            thetas,
        )
        diag = learner.update(buffer)
        raw = [t for t in thetas if t is not None]
        diag.update(
            extra,
            step=float(pending[-1].step + 1),
            mean_raw_theta=float(np.mean(raw)) if raw else float("nan"),
            mean_reward=float(np.mean(rewards)),
        )
        return diag

    def close(self) -> None:
        """Stop the sandbox's workers."""
        self.sandbox.close()
