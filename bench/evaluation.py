"""Held-out evaluation of one run's policy: CCS and SIR of greedy episodes, preference agreement,
CCS in use (reviewers present, their feedback acted on) and HFU/NRR (probe feedback learned from,
then checked whether the policy follows it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from trustfix.bench.environment import Environment, candidate_text
from trustfix.bench.feedback import Experience, FeedbackChannel, review_rng
from trustfix.bench.metrics import ccs, follow_rates, sir
from trustfix.bench.reviewers import TeamPreference, style_kind
from trustfix.bench.tasks import Task
from trustfix.trainer.confidence import ConfidenceEstimator
from trustfix.trainer.policies.base import STOP, Policy

Chooser = Callable[[list[str], list[list[str]]], list[int]]
"""Batched action choice: (states, candidate texts) -> one action index per state."""


def log_probs(
    policy: Policy, states: list[str], texts: list[list[str]], chunk: int = 8
) -> list[torch.Tensor]:
    """log pi(. | s) over [STOP, candidates] of each state, without gradients, ``chunk`` at a time."""
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for i in range(0, len(states), chunk):
            lp = policy(states[i : i + chunk], texts[i : i + chunk]).log_probs.cpu()
            out.extend(lp[j, : len(texts[i + j]) + 1] for j in range(len(lp)))
    return out


def greedy(policy: Policy) -> Chooser:
    """The greedy chooser of ``policy``."""
    return lambda states, texts: [int(lp.argmax()) for lp in log_probs(policy, states, texts)]


def episodes(env: Environment, choose: Chooser, tasks: Sequence[Task], horizon: int) -> list[str]:
    """Final programs of one episode per task with a batched chooser (no feedback)."""
    sources = [t.buggy for t in tasks]
    active = list(range(len(tasks)))
    for _ in range(horizon):
        if not active:
            break
        cands = [env.candidates(tasks[i], sources[i]) for i in active]
        actions = choose(
            [env.state(tasks[i], sources[i]) for i in active],
            [[candidate_text(c) for c in cs] for cs in cands],
        )
        still = []
        for i, cs, a in zip(active, cands, actions, strict=True):
            if a != STOP:
                sources[i] = cs[a - 1].source
                still.append(i)
        active = still
    return sources


def ccs_sir(env: Environment, tasks: Sequence[Task], finals: Sequence[str]) -> tuple[float, float]:
    """(CCS, SIR) of the final programs."""
    passed = [env.run(t, s).all_passed for t, s in zip(tasks, finals)]
    return ccs(passed), sir([t.violations for t in tasks], [env.style(s) for s in finals])


def preference_decisions(
    env: Environment, policy: Policy, tasks: Sequence[Task], team: TeamPreference
) -> list[bool]:
    """The style decisions on the held-out tasks' bug-free programs (``fixed``: the style
    injections still in): for each style refinement offered, whether the policy prefers it to
    STOP exactly when the team wants it."""
    cands = [env.candidates(t, t.fixed) for t in tasks]
    lps = log_probs(
        policy,
        [env.state(t, t.fixed) for t in tasks],
        [[candidate_text(c) for c in cs] for cs in cands],
    )
    decisions = []
    for cs, lp in zip(cands, lps):
        for i, c in enumerate(cs, 1):
            kind = style_kind(c.proposer, c.title)
            if kind is not None:
                decisions.append(bool(lp[i] > lp[STOP]) == team.wants(kind))
    return decisions


def ccs_in_use(
    env: Environment,
    policy: Policy,
    tasks: Sequence[Task],
    horizon: int,
    channel: FeedbackChannel,
    estimator: ConfidenceEstimator,
    threshold: float | None,
    smoothed: bool,
) -> float:
    """CCS with the condition's reviewers present: after each greedy step a reviewer reviews it;
    the system acts on the item when its confidence is at least ``threshold`` (None: on every
    item, for methods without an estimator).  Acting on negative feedback undoes the step (the
    policy then picks among the other actions), on a correction applies its rewrite."""
    passed = []
    for task in tasks:
        source, banned = task.buggy, set()
        for _ in range(horizon):
            cands = env.candidates(task, source)
            lp = log_probs(policy, [env.state(task, source)], [[candidate_text(c) for c in cands]])[
                0
            ]
            for b in banned:
                lp[b] = float("-inf")
            action = int(lp.argmax())
            if action == STOP:
                break
            chosen = cands[action - 1]
            step, (draft,) = channel.review("use", task, source, chosen)
            item = channel.observe("use", -1, task, source, chosen, step, draft)
            trusted = (
                threshold is None or estimator.confidence(item.id, smoothed=smoothed) >= threshold
            )
            if trusted and draft.polarity < 0:
                target = env.edit_target(step, draft.diff) if draft.kind == "edit" else None
                if target is not None and target.source != source:
                    source, banned = target.source, set()
                else:
                    banned.add(action)
                continue
            source, banned = chosen.source, set()
        passed.append(env.run(task, source).all_passed)
    return ccs(passed)


def follow_probes(
    env: Environment,
    policy: Policy,
    tasks: Sequence[Task],
    channel: FeedbackChannel,
    reviewers: int,
    margin: float,
    update: Callable[[list[Experience]], object],
) -> tuple[float, float]:
    """(HFU, NRR) as defined: on each held-out start state a probe edit (the true fix half of
    the time, else a random candidate) gets ``reviewers`` reviewers' feedback; the first one's is
    delivered and learned from in one update over all probes (``update``: the method's own), the
    others are logged.  Feedback is followed when log pi of the action it recommends rose (of the
    one it rejects fell) by more than ``margin`` nats."""
    probes, samples = [], []
    for n, task in enumerate(tasks):
        cands = env.candidates(task, task.buggy)
        if not cands:
            continue
        rng = review_rng("probe-choice", channel.condition, channel.seed, task, task.buggy, "")
        fix = env.true_fix(task, task.buggy, channel.team)
        probe = fix if fix is not None and rng.random() < 0.5 else rng.choice(cands)
        index = next(i for i, c in enumerate(cands, 1) if c.source == probe.source)
        step, drafts = channel.review("probe", task, task.buggy, probe, reviewers)
        state, texts = env.state(task, task.buggy), [candidate_text(c) for c in cands]
        with torch.no_grad():
            log_prob, value, _ = policy.evaluate_actions([state], [texts], torch.tensor([index]))
        exp = Experience(n, state, texts, index, float(log_prob[0]), float(value[0]), 0.0, True)
        extra = channel.deliver(
            exp, "probe", task, task.buggy, cands, step, drafts[0], False, policy
        )
        for other in drafts[1:]:
            channel.observe("probe", n, task, task.buggy, probe, step, other)
        target = env.edit_target(step, drafts[0].diff) if drafts[0].kind == "edit" else None
        if extra is not None:
            named, direction = extra.action, 1.0
        elif target is not None and target.source == probe.source:
            named, direction = index, 1.0
        else:
            named, direction = index, float(drafts[0].polarity)
        probes.append((state, texts, named, direction, drafts[0].right))
        samples += [exp] if extra is None else [exp, extra]
    if not probes:
        return float("nan"), float("nan")
    states, texts = [p[0] for p in probes], [p[1] for p in probes]
    before = log_probs(policy, states, texts)
    update(samples)
    after = log_probs(policy, states, texts)
    followed = [
        d * float(a[k] - b[k]) > margin for (_, _, k, d, _), b, a in zip(probes, before, after)
    ]
    return follow_rates(followed, [p[4] for p in probes])
