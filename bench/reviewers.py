"""Simulated reviewers with a known reliability, for the experiment (DESIGN.md, The experiment).

A reviewer looks at one step of the policy (the edit it chose) and answers in one of five kinds:
``accept``, ``reject``, ``edit`` (a correction diff), ``comment`` (text) or ``score`` (1-5).  With
probability ``reliability`` the answer is right, otherwise wrong in the same form:

========  ==========================================  =========================================
kind      right                                       wrong
========  ==========================================  =========================================
verdict   accept a good step, reject a bad one        reject a good step, accept a bad one
edit      the true fix as a diff                      another edit (a decoy) as a diff
comment   praise a good step / name the true fix      run down a good step or name a decoy /
          (its line and change when specific)         praise a bad step
score     4-5 for a good step, 1-2 for a bad one      the inverse
========  ==========================================  =========================================

Every draft also carries its ``polarity``: the reviewer's stance toward the step's chosen edit
(+1 accept, a high score, a praising comment; -1 reject, a low score, a blaming comment, and a
correction that proposes another edit).  In real use the editor's buttons and the reviewer's
words carry it; here it is the simulated reviewer's intent, handed on as data.

Every pool also has a hidden **team style preference** (:class:`TeamPreference`): for each kind
of style refinement (a ruff rule code, or ``format``) whether the team wants it.  It is fixed per
pool and decides, for a style step, what a right reviewer says; the tests cannot see it.

``accept`` and ``reject`` are one form (the verdict): the reviewer's kind weights choose the form
(verdict weight = accept + reject weights) and correctness chooses the polarity.  Comments are
specific (naming a line and a change) with probability ``specificity``, else vague; both come
from several templates.  Every draft records its ground truth ``right``; the learner must only
ever see the other fields.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from trustfix.server.operators import operator_edits
from trustfix.server.proposers import unified_diff

KINDS: tuple[str, ...] = ("accept", "reject", "edit", "comment", "score")
"""Feedback kinds, as in the Feedback event."""
CONDITIONS: tuple[str, ...] = ("high", "mixed", "low")
"""Feedback-quality conditions of the experiment."""


@dataclass(frozen=True)
class Edit:
    """One edit of a unit: the resulting source, its diff from the step's source, title, line."""

    source: str
    diff: str
    title: str
    line: int

    @classmethod
    def between(cls, before: str, after: str, title: str, line: int) -> Edit:
        """The edit turning ``before`` into ``after``."""
        return cls(after, unified_diff(before, after), title, line)


@dataclass(frozen=True)
class Step:
    """What the policy did on one step, as the simulated reviewer sees it, with the truth.

    ``good`` is the ground truth about the chosen edit (it fixes the bug, or reduces style
    violations without breaking tests); ``fix`` is the true fix from the same ``source``;
    ``decoys`` are other plausible edits (e.g. other operator edits) a wrong reviewer may push.
    """

    task_id: str
    source: str
    candidate: Edit
    good: bool
    fix: Edit
    decoys: tuple[Edit, ...] = ()


@dataclass(frozen=True)
class FeedbackDraft:
    """One simulated feedback item; ``right`` is ground truth, never shown to the learner."""

    reviewer: str
    role: str
    kind: str
    text: str
    diff: str | None
    score: int | None
    right: bool
    polarity: int = 1
    """+1 when the feedback is for the chosen edit, -1 when it is against it (a correction
    proposing another edit included)."""


_LINE_SUFFIX = re.compile(r"\s+on line \d+$")

_PRAISE_SPECIFIC = (
    "Good catch: {title} on line {line} is exactly what was wrong.",
    "Yes, line {line} needed this ({title}). The tests should pass now.",
    "This is the fix. The bug sat on line {line}; {title} repairs it.",
    "Right change at line {line}: {title} is what I would have done.",
    "Confirmed: with {title} on line {line} the function behaves as documented.",
    "Line {line} was the culprit and {title} fixes it. Nice.",
)
_PRAISE_VAGUE = (
    "Looks good to me.",
    "Nice, this seems right.",
    "I think this is the fix.",
    "LGTM.",
    "Good change, keep it.",
    "That reads correctly now.",
)
_BLAME_SPECIFIC = (
    "Not this one. The real problem is line {line}: {title}.",
    "This does not fix the bug; on line {line} you want to {title}.",
    "Revert this. Line {line} is the culprit: {title}.",
    "The failing tests point at line {line}: {title}.",
    "Wrong place. Look at line {line} instead and {title}.",
    "I would undo this and {title} on line {line}.",
)
_BLAME_VAGUE = (
    "This doesn't look right.",
    "I don't think that's the bug.",
    "Hmm, the problem is somewhere else.",
    "This change makes it worse, I think.",
    "Not convinced by this one.",
    "Please have another look, this isn't it.",
)


def _short_title(title: str) -> str:
    return _LINE_SUFFIX.sub("", title).strip() or "this change"


@dataclass(frozen=True)
class Reviewer:
    """A simulated reviewer: right with probability ``reliability`` on every step."""

    id: str
    reliability: float
    specificity: float
    kind_weights: Mapping[str, float]
    role: str

    def _form(self, rng: random.Random) -> str:
        forms = ("verdict", "edit", "comment", "score")
        w = self.kind_weights
        weights = (
            w.get("accept", 0) + w.get("reject", 0),
            w.get("edit", 0),
            w.get("comment", 0),
            w.get("score", 0),
        )
        return rng.choices(forms, weights=weights)[0]

    def _decoy(self, step: Step, rng: random.Random) -> Edit | None:
        """A wrong edit: one of the step's decoys, the bad candidate, or another operator edit."""
        decoys = [d for d in step.decoys if d.source not in (step.fix.source, step.source)]
        if step.good:
            decoys = [d for d in decoys if d.source != step.candidate.source]
        elif step.candidate.source not in (step.fix.source, step.source):
            decoys.append(step.candidate)
        if not decoys:
            decoys = [
                Edit.between(step.source, e.source, e.title, e.line)
                for e in operator_edits(step.source, cap=50)
                if e.source not in (step.fix.source, step.candidate.source)
            ]
        return rng.choice(decoys) if decoys else None

    def _comment(self, step: Step, right: bool, rng: random.Random) -> str:
        praise = step.good == right
        specific = rng.random() < self.specificity
        if praise:
            subject: Edit | None = step.candidate
            templates = _PRAISE_SPECIFIC if specific else _PRAISE_VAGUE
        else:
            subject = step.fix if right else self._decoy(step, rng)
            specific = specific and subject is not None
            templates = _BLAME_SPECIFIC if specific else _BLAME_VAGUE
        text = rng.choice(templates)
        if subject is None or not specific:
            return text
        return text.format(title=_short_title(subject.title), line=subject.line)

    def feedback(self, step: Step, rng: random.Random) -> FeedbackDraft:
        """This reviewer's feedback on ``step`` (right with probability ``reliability``)."""
        right = rng.random() < self.reliability
        form = self._form(rng)
        text, diff, score = "", None, None
        if form == "verdict":
            kind = "accept" if step.good == right else "reject"
        elif form == "edit":
            kind = "edit"
            target = step.fix if right else self._decoy(step, rng)
            diff = unified_diff(step.source, target.source if target else step.source)
            for_chosen = target is not None and target.source == step.candidate.source
            return FeedbackDraft(
                self.id, self.role, kind, text, diff, score, right, 1 if for_chosen else -1
            )
        elif form == "comment":
            kind = "comment"
            text = self._comment(step, right, rng)
        else:
            kind = "score"
            high = step.good == right
            score = rng.choice((4, 5)) if high else rng.choice((1, 2))
        return FeedbackDraft(
            self.id, self.role, kind, text, diff, score, right, 1 if step.good == right else -1
        )


@dataclass
class ReviewerPoolConfig:
    """How the simulated reviewer pools of the three conditions are drawn."""

    n: int = 10
    """Reviewers per pool."""
    high: tuple[float, float] = (0.85, 0.95)
    """Reliability range of reliable reviewers (the ``high`` condition, half of ``mixed``)."""
    unreliable: tuple[float, float] = (0.2, 0.6)
    """Reliability range of the unreliable half of the ``mixed`` condition."""
    low: tuple[float, float] = (0.45, 0.65)
    """Reliability range of every reviewer of the ``low`` condition."""
    mixed_reliable_share: float = 0.5
    """Share of reliable reviewers in the ``mixed`` condition."""
    specificity: tuple[float, float] = (0.3, 0.9)
    """Range of the probability that a comment is specific rather than vague."""
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {
            "accept": 0.15,
            "reject": 0.15,
            "edit": 0.2,
            "comment": 0.25,
            "score": 0.25,
        }
    )
    """Base weights of the feedback kinds; each reviewer's are these times U(1 - j, 1 + j)."""
    kind_jitter: float = 0.5
    """j: per-reviewer spread of the kind weights around the base."""
    roles: tuple[str, ...] = ("student", "ta", "developer", "instructor")
    """Roles, drawn uniformly and independently of reliability (so a role is no shortcut)."""
    wanted_share: float = 0.5
    """Share of style-refinement kinds a team wants (the rest it rejects)."""


def style_kind(proposer: str, title: str) -> str | None:
    """The style-refinement kind of a candidate: ``format`` for ruff format, the rule code
    (``W291``, ``UP006``...) for a ruff fix, None for a behaviour edit (an operator)."""
    if proposer == "ruff-format":
        return "format"
    if proposer == "ruff":
        return title.split(":", 1)[0].strip()
    return None


@dataclass(frozen=True)
class TeamPreference:
    """A pool's hidden, consistent style preference: which style kinds the team wants.

    Each kind is wanted or not by a hash of (pool, kind), so the preference covers every kind a
    proposer may produce without a fixed list, and differs between pools and seeds.
    """

    key: str
    wanted_share: float = 0.5

    def wants(self, kind: str) -> bool:
        """True when the team wants refinements of ``kind``."""
        digest = hashlib.sha256(f"trustfix-team:{self.key}:{kind}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.wanted_share


def team_preference(
    condition: str, seed: int = 0, cfg: ReviewerPoolConfig | None = None
) -> TeamPreference:
    """The style preference of the pool ``make_pool(condition, seed=seed)``."""
    cfg = cfg or ReviewerPoolConfig()
    return TeamPreference(f"{seed}:{condition}", cfg.wanted_share)


def _pseudonym(seed: int, condition: str, index: int) -> str:
    digest = hashlib.sha256(f"trustfix-reviewer:{seed}:{condition}:{index}".encode()).hexdigest()
    return f"rv-{digest[:10]}"


def _ranges(condition: str, n: int, cfg: ReviewerPoolConfig) -> list[tuple[float, float]]:
    if condition == "high":
        return [cfg.high] * n
    if condition == "low":
        return [cfg.low] * n
    if condition == "mixed":
        reliable = round(n * cfg.mixed_reliable_share)
        return [cfg.high] * reliable + [cfg.unreliable] * (n - reliable)
    raise ValueError(f"unknown condition {condition!r}; expected one of {CONDITIONS}")


def make_pool(
    condition: str, n: int | None = None, seed: int = 0, cfg: ReviewerPoolConfig | None = None
) -> list[Reviewer]:
    """The reviewer pool of ``condition`` (``high``, ``mixed`` or ``low``), deterministic in seed."""
    cfg = cfg or ReviewerPoolConfig()
    size = cfg.n if n is None else n
    rng = random.Random(f"pool:{seed}:{condition}")
    pool = []
    for i, (lo, hi) in enumerate(_ranges(condition, size, cfg)):
        weights = {
            k: w * rng.uniform(1 - cfg.kind_jitter, 1 + cfg.kind_jitter)
            for k, w in cfg.kind_weights.items()
        }
        total = sum(weights.values())
        pool.append(
            Reviewer(
                id=_pseudonym(seed, condition, i),
                reliability=rng.uniform(lo, hi),
                specificity=rng.uniform(*cfg.specificity),
                kind_weights={k: w / total for k, w in weights.items()},
                role=rng.choice(cfg.roles),
            )
        )
    return pool


def pool_feedback(
    pool: Sequence[Reviewer], step: Step, rng: random.Random, k: int = 1
) -> list[FeedbackDraft]:
    """Feedback on ``step`` from ``k`` reviewers of ``pool`` drawn without replacement."""
    return [r.feedback(step, rng) for r in rng.sample(list(pool), min(k, len(pool)))]
