"""The experiment of DESIGN.md ("The experiment"): methods x reviewer conditions x seeds.

One run trains a fresh ranker with one method on the train tasks for ``steps`` refinement steps.
An episode starts from a task's buggy program and takes up to ``horizon`` steps or STOP; the
candidates come from the operator and ruff proposers (capped, cached per source); the chosen
program's tests run in the sandbox (cached), and

    r_env = delta(share of tests passed) + w * delta(normalised style violations) + delta[all pass]

(the style term counts a reduction as positive, normalised by the task's starting violations).
Every step that changes the program gets one feedback item from a reviewer of the condition's
pool; it flows through the same confidence estimator, controller and learner as real use
(execution evidence when the step's test run verifies or refutes a verdict or score, or when
the program a correction proposes is run).  Evaluation on held-out tasks uses the greedy policy
and no feedback: CCS, SIR, and on probe steps (one per reviewer per held-out task, the probed
edit being the true fix half of the time) HFU and NRR; beside them no refinement, a random
policy and the oracle.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import difflib
import gc
import hashlib
import multiprocessing
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from trustfix.bench.hp_ppo import Preference, RewardModel, RewardModelConfig
from trustfix.bench.reviewers import Edit, FeedbackDraft, Reviewer, Step, make_pool, unified_diff
from trustfix.bench.tasks import Task, make_tasks, oracle, split_tasks, style_counts
from trustfix.bench.ua_trpo import UATRPOConfig, UATRPOLearner
from trustfix.server.findings import LRUCache, ruff_findings
from trustfix.server.proposers import Candidate, propose
from trustfix.server.sandbox import RunResult, Sandbox, SandboxConfig
from trustfix.server.state import TestTrace, state_text
from trustfix.server.units import Unit, units
from trustfix.trainer.confidence import ROLES, ConfidenceEstimator, FeedbackItem, polarity
from trustfix.trainer.config import ConfidenceConfig, PPOConfig, RankerConfig, TrustRegionConfig
from trustfix.trainer.encoders import HASHING, Encoder, cosine_similarity, get_encoder, make_encoder
from trustfix.trainer.events import candidate_text as policy_candidate_text
from trustfix.trainer.policies import initial_policy
from trustfix.trainer.policies.base import STOP
from trustfix.trainer.policies.ranker import RankerPolicy
from trustfix.trainer.ppo import PPOLearner
from trustfix.trainer.trust_region import human_signal

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
    seeds: int = 5
    """Seeds per (method, condition)."""
    steps: int = 384
    """Training steps per run (a step is one policy action, STOP included)."""
    batch: int = 32
    """Steps collected before each update (the update waits for the episode to end): 12
    updates per run at the default ``steps``."""
    horizon: int = 3
    """H: refinement steps per episode."""
    train_tasks: int = 0
    """Train tasks used (the first of the split; 0: all 114)."""
    test_tasks: int = 0
    """Held-out tasks evaluated (0: all 42)."""
    task_seed: int = 0
    """Seed of the task set (bugs and style injections)."""
    max_candidates: int = 32
    """Candidates per state (after deduplication, in the proposers' order)."""
    reviewers: int = 10
    """Reviewers per pool."""
    eval_points: int = 3
    """Held-out CCS evaluations per run (for the curves; the last one is final)."""
    style_weight: float = 0.2
    """w: weight of the normalised style-violation change in r_env."""
    lr: float = 1e-3
    """Learning rate of every PPO-based method."""
    minibatch_size: int = 16
    """PPO minibatch of every PPO-based method."""
    encoder: str = HASHING
    """Text and code encoder of the estimator and the human signal (``embedded`` or ``hashing``)."""
    feedback_log: bool = True
    """Keep every feedback item for feedback.jsonl."""


def quick_config(cfg: BenchConfig) -> BenchConfig:
    """The CI smoke-test size of ``cfg``: few tasks, few steps, one seed, and only the mixed
    condition when all three were asked for."""
    conditions = ("mixed",) if len(cfg.conditions) > 1 else cfg.conditions
    return replace(cfg, conditions=conditions, seeds=1, steps=48, batch=16, train_tasks=8,
                   test_tasks=6, eval_points=2, minibatch_size=8, reviewers=6)  # fmt: skip


def environment_reward(
    share_before: float,
    share_after: float,
    style_before: int,
    style_after: int,
    style_start: int,
    passed_before: bool,
    passed_after: bool,
    style_weight: float = 0.2,
) -> float:
    """r_env = delta share of tests passed + w * delta normalised style violations + delta[all pass].

    The style term is ``(style_before - style_after) / max(style_start, 1)`` (a reduction is
    positive); the last term is +1 when a step makes every test pass (and -1 when it breaks that).
    """
    style = (style_before - style_after) / max(style_start, 1)
    return (share_after - share_before) + style_weight * style + (float(passed_after) - float(passed_before))


def ccs(passed: Sequence[bool]) -> float:
    """CCS: percentage of tasks whose refined program passes all tests."""
    return 100.0 * float(np.mean(passed)) if len(passed) else float("nan")


def sir(starts: Sequence[int], finals: Sequence[int]) -> float:
    """SIR: mean style-violation reduction ratio (start - final) / start over tasks with start > 0."""
    ratios = [(s - f) / s for s, f in zip(starts, finals, strict=True) if s > 0]
    return float(np.mean(ratios)) if ratios else float("nan")


def follow_rates(followed: Sequence[bool], right: Sequence[bool]) -> tuple[float, float]:
    """(HFU, NRR): share of right feedback followed, share of wrong feedback not followed."""
    f, r = np.asarray(followed, bool), np.asarray(right, bool)
    hfu = float(f[r].mean()) if r.any() else float("nan")
    nrr = float((~f[~r]).mean()) if (~r).any() else float("nan")
    return hfu, nrr


def reviewer_quality(estimated: Sequence[float], truth: Sequence[float]) -> tuple[float, float]:
    """(Spearman rank correlation, mean absolute error) of estimated against true reliability."""
    if len(truth) < 2:
        return float("nan"), float("nan")
    rho = float(spearmanr(estimated, truth).statistic)
    return rho, float(np.mean(np.abs(np.subtract(estimated, truth))))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _changed_lines(a: str, b: str) -> int:
    return sum(1 for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---"))  # fmt: skip


_TOKEN = re.compile(r"\w+|[^\w\s]|\n")
"""The ranker's token split (words, single punctuation marks, newlines)."""


def candidate_text(candidate: Candidate, max_tokens: int | None = None) -> str:
    """What the policy reads of one candidate: title and diff, cut after ``max_tokens`` tokens.

    The experiment cuts every candidate to what the ranker keeps beside a full-length state, so
    a candidate reads the same whatever its state's length (and a batch mixing short and long
    states stays within the ranker's rotary table).
    """
    text = policy_candidate_text(candidate.title, candidate.diff)
    if max_tokens is None:
        return text
    for i, match in enumerate(_TOKEN.finditer(text)):
        if i == max_tokens - 1:
            return text[: match.end()]
    return text


class Environment:
    """Candidates, test runs, style counts and states of the refinement tasks, cached by source
    (candidates and states in LRU caches of ``cache_entries``; style counts are small ints)."""

    def __init__(
        self, sandbox: Sandbox, max_candidates: int, style_weight: float, cache_entries: int = 4096
    ) -> None:
        self.sandbox = sandbox
        self.max_candidates = max_candidates
        self.style_weight = style_weight
        self._candidates = LRUCache(cache_entries)
        self._style: dict[str, int] = {}
        self._states = LRUCache(cache_entries)

    def unit(self, task: Task, source: str) -> Unit:
        """The task's function in ``source``."""
        for unit in units(source):
            if unit.qualname == task.entry_point:
                return unit
        raise ValueError(f"{task.id}: no function {task.entry_point} in the program")

    def candidates(self, task: Task, source: str) -> list[Candidate]:
        """The capped candidates of ``source`` (their style counts computed in one ruff call)."""
        key = (task.id, source)
        found = self._candidates.get(key)
        if found is None:
            found = propose(source, self.unit(task, source), proposers=PROPOSERS,
                            cap=self.max_candidates)  # fmt: skip
            self._candidates.put(key, found)
            todo = [c.source for c in found if c.source not in self._style]
            self._style.update(zip(todo, style_counts(todo)))
        return found

    def style(self, source: str) -> int:
        """ruff E/W violations of ``source``."""
        if source not in self._style:
            self._style[source] = style_counts([source])[0]
        return self._style[source]

    def run(self, task: Task, source: str) -> RunResult:
        """The task's tests on ``source`` (the sandbox caches by content)."""
        return self.sandbox.run(source, task.tests, task.entry_point)

    def state(self, task: Task, source: str) -> str:
        """The policy's view: numbered unit, nodes, findings, and the last test run's trace."""
        key = (task.id, source)
        state = self._states.get(key)
        if state is None:
            result = self.run(task, source)
            failures = tuple((t.name, t.exception or "", t.line) for t in result.tests
                             if not t.passed)[:5]  # fmt: skip
            trace = TestTrace(result.passed, result.failed, failures)
            state = state_text(self.unit(task, source), ruff_findings(source), trace)
            self._states.put(key, state)
        return state

    def reward(self, task: Task, before: str, after: str) -> float:
        """r_env of the step ``before`` -> ``after`` (see :func:`environment_reward`)."""
        rb, ra = self.run(task, before), self.run(task, after)
        return environment_reward(rb.share_passed, ra.share_passed, self.style(before),
                                  self.style(after), task.violations, rb.all_passed,
                                  ra.all_passed, self.style_weight)  # fmt: skip

    def is_good(self, task: Task, before: str, after: str) -> bool:
        """Ground truth of a step: no test lost and r_env > 0."""
        rb, ra = self.run(task, before), self.run(task, after)
        return ra.share_passed >= rb.share_passed and self.reward(task, before, after) > 0

    def true_fix(self, task: Task, source: str) -> Candidate:
        """The candidate closest (changed lines) to the bug-free program while a test fails, and
        to the canonical program (no injected style) once all pass."""
        ideal = task.original if self.run(task, source).all_passed else task.fixed
        return min(self.candidates(task, source), key=lambda c: _changed_lines(c.source, ideal))

    def review_step(self, task: Task, source: str, chosen: Candidate, rng: random.Random) -> Step:
        """What a reviewer sees: the chosen edit, its truth, the true fix and up to 3 decoys."""
        cands = self.candidates(task, source)
        fix = self.true_fix(task, source)
        others = [c for c in cands if c.source not in (fix.source, chosen.source)]
        decoys = rng.sample(others, min(3, len(others)))

        def edit(c: Candidate) -> Edit:
            return Edit.between(source, c.source, c.title, c.line)

        return Step(task.id, source, edit(chosen), self.is_good(task, source, chosen.source),
                    edit(fix), tuple(edit(d) for d in decoys))  # fmt: skip

    def edit_target(self, step: Step, diff: str | None) -> Edit | None:
        """The edit a correction diff proposes, when it is one of the step's edits."""
        for e in (step.fix, step.candidate, *step.decoys):
            if diff and unified_diff(step.source, e.source) == diff:
                return e
        return None


@dataclass
class Experience:
    """One training step, with what the update needs later."""

    step: int
    state: str
    texts: list[str]
    action: int
    log_prob: float
    value: float
    r_env: float
    done: bool
    feedback_id: str | None = None
    signal: float | None = None


@dataclass
class RunOutcome:
    """What one (method, condition, seed) run produced."""

    method: str
    condition: str
    seed: int
    ccs: float = float("nan")
    sir: float = float("nan")
    hfu: float = float("nan")
    nrr: float = float("nan")
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(training step, held-out CCS) at each evaluation point."""
    spearman: float = float("nan")
    mae: float = float("nan")
    reviewer_theta: dict[str, float] = field(default_factory=dict)
    reviewer_truth: dict[str, float] = field(default_factory=dict)
    diagnostics: list[dict[str, float]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self, with_feedback: bool = False) -> dict[str, Any]:
        """Plain-dict form (the feedback log only when asked)."""
        data = dataclasses.asdict(self)
        if not with_feedback:
            data.pop("feedback")
        return data


def _role(role: str) -> str:
    mapped = ROLE_MAP.get(role, role)
    return mapped if mapped in ROLES else ROLES[0]


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
        self.ranker = ranker or RankerConfig()
        self.ua = ua or UATRPOConfig()
        self.reward_model_cfg = reward_model or RewardModelConfig()
        self.sandbox = sandbox or Sandbox(SandboxConfig(cpu_seconds=1, wall_timeout=3.0))
        self.env = Environment(self.sandbox, cfg.max_candidates, cfg.style_weight)
        train, test = split_tasks(make_tasks(cfg.task_seed))
        self.train = train[: cfg.train_tasks or None]
        self.test = test[: cfg.test_tasks or None]
        self.encoder: Encoder = (make_encoder(HASHING) if cfg.encoder == HASHING
                                 else get_encoder(cfg.encoder))  # fmt: skip
        self.candidate_tokens = min(self.ranker.candidate_tokens,
                                    self.ranker.max_tokens - self.ranker.state_tokens - 2)
        self._probes: dict[tuple[str, int], list[tuple[Task, str, Step, FeedbackDraft, int | None]]] = {}

    # ----------------------------------------------------------------------- bounds

    def bounds(self, seed: int) -> dict[str, float]:
        """No-refinement, random-policy and oracle CCS on the held-out tasks."""
        none = ccs([self.env.run(t, t.buggy).all_passed for t in self.test])
        rng = random.Random(f"random-policy:{seed}")
        finals = self.episodes(lambda states, texts: [rng.randrange(len(t) + 1) for t in texts],
                               self.test)  # fmt: skip
        rand = ccs([self.env.run(t, s).all_passed for t, s in zip(self.test, finals)])

        def propose_fn(task: Task) -> Callable[[str], list[str]]:
            return lambda source: [c.source for c in self.env.candidates(task, source)]

        best = [oracle(t, propose_fn(t), self.sandbox, self.cfg.horizon) for t in self.test]
        return {"no_refinement": none, "random": rand, "oracle": ccs([o.solved for o in best])}

    # ----------------------------------------------------------------------- evaluation

    def episodes(
        self, choose: Callable[[list[str], list[list[str]]], list[int]], tasks: Sequence[Task]
    ) -> list[str]:
        """Final programs of one episode per task with a batched chooser (no feedback)."""
        sources = [t.buggy for t in tasks]
        active = list(range(len(tasks)))
        for _ in range(self.cfg.horizon):
            if not active:
                break
            states = [self.env.state(tasks[i], sources[i]) for i in active]
            cands = [self.env.candidates(tasks[i], sources[i]) for i in active]
            texts = [[candidate_text(c, self.candidate_tokens) for c in cs] for cs in cands]
            actions = choose(states, texts)
            still = []
            for i, cs, a in zip(active, cands, actions, strict=True):
                if a != STOP:
                    sources[i] = cs[a - 1].source
                    still.append(i)
            active = still
        return sources

    @staticmethod
    def greedy(policy: RankerPolicy, chunk: int = 8) -> Callable[[list[str], list[list[str]]], list[int]]:
        """Batched greedy chooser of ``policy``."""

        def choose(states: list[str], texts: list[list[str]]) -> list[int]:
            out: list[int] = []
            with torch.no_grad():
                for i in range(0, len(states), chunk):
                    lp = policy(states[i : i + chunk], texts[i : i + chunk]).log_probs
                    out.extend(int(a) for a in lp.argmax(1))
            return out

        return choose

    def probes(self, condition: str, seed: int) -> list[tuple[Task, str, Step, FeedbackDraft, int | None]]:
        """Held-out probe feedback: each reviewer on each held-out start state, on the true fix
        half of the time, else on a random candidate; with the action that follows it (None:
        the feedback says "not this one")."""
        key = (condition, seed)
        if key in self._probes:
            return self._probes[key]
        rng = random.Random(f"probes:{condition}:{seed}")
        out = []
        for task in self.test:
            cands = self.env.candidates(task, task.buggy)
            if not cands:
                continue
            for reviewer in make_pool(condition, self.cfg.reviewers, seed):
                fix = self.env.true_fix(task, task.buggy)
                probe = fix if rng.random() < 0.5 else rng.choice(cands)
                step = self.env.review_step(task, task.buggy, probe, rng)
                draft = reviewer.feedback(step, rng)
                out.append((task, task.buggy, step, draft, self._recommended(step, draft, cands)))
        self._probes[key] = out
        return out

    def _recommended(self, step: Step, draft: FeedbackDraft, cands: list[Candidate]) -> int | None:
        """Action index the feedback asks for; -(index) when it asks *not* to take that action;
        None for a correction whose target is not a candidate.  A comment is read by its ground
        truth (praise or blame: its text says which; the evaluation does not parse it)."""
        chosen = next(i for i, c in enumerate(cands, 1) if c.source == step.candidate.source)
        if draft.kind == "edit":
            target = self.env.edit_target(step, draft.diff)
            match = [i for i, c in enumerate(cands, 1) if target and c.source == target.source]
            return match[0] if match else None
        positive = (step.good == draft.right) if draft.kind == "comment" else polarity(
            FeedbackItem("p", "p", draft.reviewer, "student", draft.kind, score=draft.score)) > 0
        return chosen if positive else -chosen

    def follow(self, policy: RankerPolicy, condition: str, seed: int) -> tuple[float, float]:
        """(HFU, NRR) of the greedy policy on the held-out probes."""
        probes = [p for p in self.probes(condition, seed) if p[4] is not None]
        tasks = list(dict.fromkeys(p[0].id for p in probes))
        by_id = {t.id: t for t in self.test}
        states = [self.env.state(by_id[t], by_id[t].buggy) for t in tasks]
        texts = [[candidate_text(c, self.candidate_tokens)
                  for c in self.env.candidates(by_id[t], by_id[t].buggy)] for t in tasks]
        greedy = dict(zip(tasks, self.greedy(policy)(states, texts)))
        followed = [greedy[p[0].id] == p[4] if p[4] > 0 else greedy[p[0].id] != -p[4] for p in probes]
        return follow_rates(followed, [p[3].right for p in probes])

    def evaluate(self, policy: RankerPolicy) -> tuple[float, float]:
        """(CCS, SIR) of the greedy policy on the held-out tasks."""
        finals = self.episodes(self.greedy(policy), self.test)
        passed = [self.env.run(t, s).all_passed for t, s in zip(self.test, finals)]
        return ccs(passed), sir([t.violations for t in self.test], [self.env.style(s) for s in finals])

    # ----------------------------------------------------------------------- training

    def run(
        self, method: str, condition: str, seed: int, switches: dict[str, bool] | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> RunOutcome:
        """Train one fresh ranker with ``method`` (or ``switches`` of ``ours``) and evaluate it."""
        started = time.perf_counter()
        cfg = self.cfg
        torch.manual_seed(seed)
        torch.set_num_threads(1)  # tiny models: one thread is fastest on a small machine
        base = "ours" if switches is not None else method
        ppo_cfg = replace(self.ppo, seed=seed, lr=cfg.lr, minibatch_size=cfg.minibatch_size,
                          **(switches if switches is not None else METHODS[method]))  # fmt: skip
        tr_cfg = replace(self.trust_region, total_steps=cfg.steps)
        policy = initial_policy(self.ranker)
        learner = (UATRPOLearner(policy, ppo_cfg, tr_cfg, self.ua) if base == "ua-trpo"
                   else PPOLearner(policy, ppo_cfg, tr_cfg))  # fmt: skip
        estimator = ConfidenceEstimator(self.confidence_cfg, self.encoder, self.encoder, seed=seed)
        rmodel = (RewardModel(self.encoder, self.reward_model_cfg, seed) if base == "hp-ppo"
                  else None)  # fmt: skip
        pool = make_pool(condition, cfg.reviewers, seed)
        truth = {r.id: r.reliability for r in pool}
        rng = random.Random(f"bench:{condition}:{seed}")
        act_gen = torch.Generator().manual_seed(seed)
        result = RunOutcome(method, condition, seed, reviewer_truth=truth)
        eval_at = {round(cfg.steps * (k + 1) / cfg.eval_points) for k in range(cfg.eval_points)}
        pending: list[Experience] = []
        step = 0
        while step < cfg.steps:
            task = rng.choice(self.train)
            source = task.buggy
            for depth in range(cfg.horizon):
                state = self.env.state(task, source)
                cands = self.env.candidates(task, source)
                texts = [candidate_text(c, self.candidate_tokens) for c in cands]
                action, log_prob, value = learner.policy.act(state, texts, generator=act_gen)
                done = action == STOP or depth == cfg.horizon - 1
                exp = Experience(step, state, texts, action, log_prob, value, 0.0, done)
                if action != STOP:
                    chosen = cands[action - 1]
                    exp.r_env = self.env.reward(task, source, chosen.source)
                    self._feedback(exp, task, source, chosen, pool, rng, estimator, rmodel,
                                   run_id=f"{method}:{condition}:{seed}", result=result)  # fmt: skip
                    source = chosen.source
                pending.append(exp)
                step += 1
                if on_step:
                    on_step()
                if step in eval_at:
                    result.curve.append((step, self.evaluate(learner.policy)[0]))
                if done or step >= cfg.steps:
                    pending[-1].done = True
                    break
            if len(pending) >= cfg.batch or step >= cfg.steps:
                result.diagnostics.append(self._update(learner, pending, estimator, rmodel, ppo_cfg))
                pending = []
        result.ccs, result.sir = self.evaluate(learner.policy)
        result.hfu, result.nrr = self.follow(learner.policy, condition, seed)
        seen = [r for r in truth if r in estimator.reviewers()]
        result.reviewer_theta = {r: estimator.reviewer_confidence(r) for r in seen}
        result.spearman, result.mae = reviewer_quality(
            [result.reviewer_theta[r] for r in seen], [truth[r] for r in seen])
        for item in result.feedback:
            item["theta_final"] = estimator.confidence(item["item"], smoothed=ppo_cfg.smoothing)
        if not cfg.feedback_log:
            result.feedback = []
        result.wall_s = time.perf_counter() - started
        return result

    def _feedback(
        self, exp: Experience, task: Task, source: str, chosen: Candidate, pool: list[Reviewer],
        rng: random.Random, estimator: ConfidenceEstimator, rmodel: RewardModel | None,
        run_id: str, result: RunOutcome,
    ) -> None:
        """One reviewer's feedback on the step: into the estimator (with execution evidence),
        the human signal, the reward model's preferences and the log."""
        step = self.env.review_step(task, source, chosen, rng)
        reviewer = rng.choice(pool)
        draft = reviewer.feedback(step, rng)
        item = FeedbackItem(
            id=f"{run_id}:{exp.step}",
            suggestion_id=f"{task.id}:{_digest(source)}:{_digest(chosen.source)}",
            reviewer=draft.reviewer, role=_role(draft.role), kind=draft.kind,
            text=draft.text or None, diff=draft.diff, score=draft.score,
            location=f"{task.id}:{chosen.line}", time=float(exp.step),
        )
        estimator.observe(item)
        target = self.env.edit_target(step, draft.diff) if draft.kind == "edit" else None
        if draft.kind in ("accept", "reject", "score"):
            estimator.observe_execution(item.id, verified=(polarity(item) > 0) == step.good)
        elif target is not None:
            estimator.observe_execution(item.id, verified=self.env.is_good(task, source, target.source))
        similarity = None
        if draft.kind in ("comment", "edit"):
            vectors = self.encoder.encode([draft.text or draft.diff or "", exp.texts[exp.action - 1]])
            similarity = cosine_similarity(vectors[0], vectors[1])
        exp.signal = human_signal(draft.kind, draft.score, similarity)
        exp.feedback_id = item.id
        if rmodel is not None:
            pref = Preference(exp.state, exp.texts[exp.action - 1], exp.signal)
            if target is not None and target.source != chosen.source:
                match = [c for c in self.env.candidates(task, source) if c.source == target.source]
                if match:
                    text = candidate_text(match[0], self.candidate_tokens)
                    rmodel.add(Preference(exp.state, text, 1.0), better_than=pref)
            rmodel.add(pref)
        if self.cfg.feedback_log:
            result.feedback.append({
                "run": run_id, "step": exp.step, "item": item.id, "suggestion": item.suggestion_id,
                "reviewer": draft.reviewer, "role": draft.role, "reliability": reviewer.reliability,
                "kind": draft.kind, "text": draft.text, "diff": draft.diff, "score": draft.score,
                "truth": draft.right, "step_good": step.good, "signal": exp.signal,
            })  # fmt: skip

    def _update(
        self, learner: PPOLearner, pending: list[Experience], estimator: ConfidenceEstimator,
        rmodel: RewardModel | None, ppo_cfg: PPOConfig,
    ) -> dict[str, float]:
        """Thetas at update time -> shaped rewards -> buffer -> one update."""
        thetas = [None if e.feedback_id is None
                  else estimator.confidence(e.feedback_id, smoothed=ppo_cfg.smoothing)
                  for e in pending]  # fmt: skip
        signals = [e.signal for e in pending]
        extra: dict[str, float] = {}
        if rmodel is not None:
            extra["reward_model_loss"] = rmodel.refresh()
            acted = [i for i, e in enumerate(pending) if e.action != STOP]
            values = rmodel.signal([pending[i].state for i in acted],
                                   [pending[i].texts[pending[i].action - 1] for i in acted])  # fmt: skip
            signals = [None] * len(pending)
            for i, v in zip(acted, values):
                signals[i] = v
        rewards = [learner.controller.reward(e.r_env, e.step, th, s)
                   for e, th, s in zip(pending, thetas, signals)]  # fmt: skip
        buffer = learner.transitions_from(
            [e.state for e in pending], [e.texts for e in pending], [e.action for e in pending],
            [e.log_prob for e in pending], [e.value for e in pending], rewards,
            [e.done for e in pending], thetas,
        )
        diag = learner.update(buffer)
        raw = [t for t in thetas if t is not None]
        diag.update(extra, step=float(pending[-1].step + 1),
                    mean_raw_theta=float(np.mean(raw)) if raw else float("nan"),
                    mean_reward=float(np.mean(rewards)))  # fmt: skip
        return diag

    def close(self) -> None:
        """Stop the sandbox's workers."""
        self.sandbox.close()


Job = tuple[str, str, int, "dict[str, bool] | None"]
"""One run of the plan: (method, condition, seed, ablation switches or None)."""

_WORKER: dict[str, Any] = {}
"""The pool worker's Runner and tick queue (set by :func:`_start_worker`)."""


def experiment_plan(cfg: BenchConfig) -> list[Job]:
    """Every (method, condition, seed) run, then the ablations on the mixed condition."""
    plan: list[Job] = [
        (m, c, s, None) for c in cfg.conditions for s in range(cfg.seeds) for m in cfg.methods
    ]
    if cfg.ablations:
        plan += [(name, "mixed", s, sw) for s in range(cfg.seeds) for name, sw in ABLATIONS.items()]
    return plan


def release_memory() -> None:
    """Hand the heap freed by a run back to the OS (glibc's ``malloc_trim``): the update's many
    differently-shaped tensors fragment the heap, and without this a worker's resident memory
    grew by ~0.3 GB a run (1.25 GB vs 0.42 GB after two runs).  A no-op without glibc."""
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def _start_worker(make_runner: Callable[[], Runner], ticks: Any) -> None:
    """Pool initializer: one Runner (sandbox, caches) per worker process, closed at exit."""
    runner = make_runner()
    atexit.register(runner.close)
    _WORKER.update(runner=runner, ticks=ticks)


def _run_job(job: Job) -> RunOutcome:
    """One run in a pool worker; a tick per training step goes to the parent's progress bar."""
    ticks = _WORKER["ticks"]
    outcome = _WORKER["runner"].run(*job, on_step=lambda: ticks.put(1))
    release_memory()
    return outcome


def _bounds_job(seed: int) -> dict[str, float]:
    return _WORKER["runner"].bounds(seed)


def run_experiment(
    cfg: BenchConfig,
    make_runner: Callable[[], Runner],
    workers: int = 1,
    on_step: Callable[[], None] | None = None,
    on_run: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every run of :func:`experiment_plan` and the bounds; plain data, in plan order.

    With ``workers`` > 1 the runs spread over that many spawned processes, each with its own
    Runner (``make_runner`` must be picklable, e.g. a ``functools.partial`` of :class:`Runner`).
    A run's outcome depends only on its (method, condition, seed): each run seeds its own
    generators and every cache is a pure function of its key, so the split changes no number.
    """
    plan = experiment_plan(cfg)
    if workers <= 1:
        runner = make_runner()
        try:
            runs = []
            for method, condition, seed, switches in plan:
                if on_run:
                    on_run(f"{method} / {condition} / seed {seed}")
                runs.append(runner.run(method, condition, seed, switches, on_step))
                release_memory()
            if on_run:
                on_run("bounds")
            bounds = {str(s): runner.bounds(s) for s in range(cfg.seeds)}
        finally:
            runner.close()
        return {"runs": runs, "bounds": bounds}
    context = multiprocessing.get_context("spawn")
    ticks = context.SimpleQueue()
    with ProcessPoolExecutor(workers, context, _start_worker, (make_runner, ticks)) as pool:
        futures = [pool.submit(_run_job, job) for job in plan]
        bound_futures = {s: pool.submit(_bounds_job, s) for s in range(cfg.seeds)}
        pending = set(futures) | set(bound_futures.values())
        while pending:
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while not ticks.empty():
                ticks.get()
                if on_step:
                    on_step()
            if on_run:
                done = sum(f.done() for f in futures)
                on_run(f"{done}/{len(plan)} runs done ({workers} workers)")
        runs = [f.result() for f in futures]
        bounds = {str(s): f.result() for s, f in bound_futures.items()}
    return {"runs": runs, "bounds": bounds}


def plan_steps(cfg: BenchConfig) -> int:
    """Training steps the whole experiment takes (for a progress bar)."""
    return len(experiment_plan(cfg)) * cfg.steps


__all__ = [
    "ABLATIONS",
    "METHODS",
    "BenchConfig",
    "Environment",
    "RunOutcome",
    "Runner",
    "ccs",
    "environment_reward",
    "experiment_plan",
    "follow_rates",
    "plan_steps",
    "quick_config",
    "reviewer_quality",
    "run_experiment",
    "sir",
]
