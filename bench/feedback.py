"""Simulated feedback in one run: who reviews a step and what they say (a function of the seed,
task, state and action only, so every method meets the same feedback in the same situation), and
how an item reaches the estimator, the human signal, the reward model and the feedback log."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

import torch
from trustfix.bench.environment import Environment, digest
from trustfix.bench.hp_ppo import Preference, RewardModel
from trustfix.bench.reviewers import Edit, FeedbackDraft, Reviewer, Step, TeamPreference, style_kind
from trustfix.bench.settings import ROLE_MAP
from trustfix.bench.tasks import Task
from trustfix.server.proposers import Candidate
from trustfix.trainer.confidence import ROLES, ConfidenceEstimator, FeedbackItem
from trustfix.trainer.encoders import Encoder, cosine_similarity
from trustfix.trainer.policies.base import Policy
from trustfix.trainer.trust_region import human_signal


@dataclass
class Experience:
    """One training sample, with what the update needs later."""

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


def review_rng(
    phase: str, condition: str, seed: int, task: Task, source: str, after: str
) -> random.Random:
    """The generator of one review, seeded by (phase, condition, seed, task, state, action)."""
    return random.Random(
        f"trustfix-review:{phase}:{condition}:{seed}:{task.id}:{digest(source)}:{digest(after)}"
    )


def tests_run(seed: int, task: Task, source: str, after: str, fraction: float) -> bool:
    """Whether the tests run after this step: a hash of (seed, task, state, action) below
    ``fraction`` (the same steps for every method)."""
    key = f"trustfix-exec:{seed}:{task.id}:{digest(source)}:{digest(after)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64 < fraction


def estimator_role(role: str) -> str:
    """A simulated reviewer's role as the estimator knows it."""
    mapped = ROLE_MAP.get(role, role)
    return mapped if mapped in ROLES else ROLES[0]


class FeedbackChannel:
    """The reviewers of one run and everything their feedback reaches."""

    def __init__(
        self,
        env: Environment,
        encoder: Encoder,
        pool: list[Reviewer],
        team: TeamPreference,
        condition: str,
        seed: int,
        run_id: str,
        estimator: ConfidenceEstimator,
        rmodel: RewardModel | None = None,
        keep_log: bool = True,
    ) -> None:
        self.env, self.encoder, self.pool, self.team = env, encoder, pool, team
        self.condition, self.seed, self.run_id = condition, seed, run_id
        self.estimator, self.rmodel, self.keep_log = estimator, rmodel, keep_log
        self.reliability = {r.id: r.reliability for r in pool}
        self.log: list[dict[str, Any]] = []
        self.items = 0

    def review(
        self, phase: str, task: Task, source: str, chosen: Candidate, k: int = 1
    ) -> tuple[Step, list[FeedbackDraft]]:
        """The step as reviewers see it and ``k`` reviewers' drafts on it."""
        rng = review_rng(phase, self.condition, self.seed, task, source, chosen.source)
        step = self.env.review_step(task, source, chosen, rng, self.team)
        return step, [r.feedback(step, rng) for r in rng.sample(self.pool, min(k, len(self.pool)))]

    def observe(
        self,
        phase: str,
        step_index: int,
        task: Task,
        source: str,
        chosen: Candidate,
        step: Step,
        draft: FeedbackDraft,
    ) -> FeedbackItem:
        """Turn a draft into a feedback item, give it to the estimator and log it.  The item has
        no location: items are compared (eq. 9) only with items on the same suggestion (the same
        state and action), not with items on other edits of the same line."""
        self.items += 1
        item = FeedbackItem(
            id=f"{self.run_id}:{phase}:{self.items}",
            suggestion_id=f"{task.id}:{digest(source)}:{digest(chosen.source)}",
            reviewer=draft.reviewer,
            role=estimator_role(draft.role),
            kind=draft.kind,
            text=draft.text or None,
            diff=draft.diff,
            score=draft.score,
            location=None,
            time=float(self.items),
        )
        self.estimator.observe(item)
        if self.keep_log:
            kind = style_kind(chosen.proposer, chosen.title)
            self.log.append(
                {
                    "run": self.run_id,
                    "phase": phase,
                    "step": step_index,
                    "item": item.id,
                    "suggestion": item.suggestion_id,
                    "task": task.id,
                    "reviewer": draft.reviewer,
                    "role": draft.role,
                    "reliability": self.reliability[draft.reviewer],
                    "kind": draft.kind,
                    "text": draft.text,
                    "diff": draft.diff,
                    "score": draft.score,
                    "polarity": draft.polarity,
                    "truth": draft.right,
                    "step_good": step.good,
                    "style_kind": kind,
                    "team_wants": None if kind is None else self.team.wants(kind),
                }
            )
        return item

    def deliver(
        self,
        exp: Experience,
        phase: str,
        task: Task,
        source: str,
        cands: list[Candidate],
        step: Step,
        draft: FeedbackDraft,
        run_tests: bool,
        policy: Policy,
    ) -> Experience | None:
        """One item on the step of ``exp``: into the estimator (with execution evidence when the
        tests run), the human signal with its polarity, the reward model's preferences and the
        log.  A correction whose rewrite is among the candidates also gives a sample for that
        rewrite (returned), positive where the corrected action's is negative."""
        chosen = cands[exp.action - 1]
        item = self.observe(phase, exp.step, task, source, chosen, step, draft)
        target = self.env.edit_target(step, draft.diff) if draft.kind == "edit" else None
        if run_tests:
            exp.r_env = self.env.reward(task, source, chosen.source)
            self._evidence(item, task, source, chosen, draft, target)
        words = draft.text or draft.diff or ""
        similarity = None
        if draft.kind in ("comment", "edit"):
            similarity = self._similarity(words, exp.texts[exp.action - 1])
        exp.signal = human_signal(draft.kind, draft.score, similarity, draft.polarity)
        exp.feedback_id = item.id
        extra = self._rewrite_sample(exp, cands, target, words, policy)
        if self.rmodel is not None:
            pref = Preference(exp.state, exp.texts[exp.action - 1], exp.signal)
            if extra is not None:
                self.rmodel.add(
                    Preference(exp.state, extra.texts[extra.action - 1], 1.0), better_than=pref
                )
            self.rmodel.add(pref)
        if self.keep_log:
            self.log[-1].update(executed=run_tests, signal=exp.signal)
        return extra

    def _similarity(self, words: str, action_text: str) -> float:
        vectors = self.encoder.encode([words, action_text])
        return cosine_similarity(vectors[0], vectors[1])

    def _rewrite_sample(
        self,
        exp: Experience,
        cands: list[Candidate],
        target: Edit | None,
        words: str,
        policy: Policy,
    ) -> Experience | None:
        """The sample for a correction's proposed rewrite: same state, the rewrite as action,
        its log-probability under the current policy, h = +cos(CE(diff), CE(rewrite))."""
        if target is None or target.source == cands[exp.action - 1].source:
            return None
        index = next((i for i, c in enumerate(cands, 1) if c.source == target.source), None)
        if index is None:
            return None
        with torch.no_grad():
            log_prob, _, _ = policy.evaluate_actions(
                [exp.state], [exp.texts], torch.tensor([index])
            )
        signal = human_signal("edit", None, self._similarity(words, exp.texts[index - 1]), 1.0)
        return Experience(
            exp.step,
            exp.state,
            exp.texts,
            index,
            float(log_prob[0]),
            exp.value,
            0.0,
            True,
            exp.feedback_id,
            signal,
        )

    def _evidence(
        self,
        item: FeedbackItem,
        task: Task,
        source: str,
        chosen: Candidate,
        draft: FeedbackDraft,
        target: Edit | None,
    ) -> None:
        """Execution evidence: the test run verifies or refutes a verdict, score or comment on
        the chosen edit, or the rewrite a correction proposes; silent when the tests cannot tell
        (the same share passes, e.g. a style refinement)."""
        if draft.kind == "edit":
            if target is None:
                return
            verdict = self.env.test_verdict(task, source, target.source)
        else:
            said = self.env.test_verdict(task, source, chosen.source)
            verdict = None if said is None else said == (draft.polarity > 0)
        if verdict is not None:
            self.estimator.observe_execution(item.id, verified=verdict)
