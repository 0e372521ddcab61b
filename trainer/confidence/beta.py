"""Feedback items and the Beta arithmetic of their confidence (DESIGN.md "The method").

Every feedback item i carries a Beta(alpha_i, beta_i) belief in its reliability (eq. 4); its
mean is theta (eq. 6); agreement with a related item adds ``c`` to alpha or beta (eq. 7-8) as
decided by :func:`consistency` (eq. 9); the confidence in use is smoothed over the reviewer's
recent items when they vary (eq. 18).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import ConfidenceConfig
from ..encoders import Encoder, cosine_similarity

ROLES = ("developer", "student", "instructor")
"""Reviewer roles, in the order of the role one-hot of f_phi's input."""
KINDS = ("accept", "reject", "edit", "comment", "score", "ignore")
"""Feedback kinds, in the order of the kind one-hot of f_phi's input."""


@dataclass
class FeedbackItem:
    """One piece of human feedback on one suggestion."""

    id: str
    suggestion_id: str
    reviewer: str
    """Pseudonymous reviewer id."""
    role: str
    """One of ``ROLES``."""
    kind: str
    """One of ``KINDS``."""
    text: str | None = None
    """Comment text."""
    diff: str | None = None
    """Correction diff."""
    score: int | None = None
    """Rating 1-5."""
    location: str | None = None
    """Code location, e.g. ``path:function``; items on one location are compared too."""
    time: float = 0.0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {ROLES}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {KINDS}")
        if self.score is not None and not 1 <= self.score <= 5:
            raise ValueError(f"score must be in 1..5, got {self.score}")


def polarity(item: FeedbackItem) -> int:
    """+1 for accept or a score >= 4, -1 for reject, ignore or a score <= 2, 0 otherwise."""
    if item.kind == "accept":
        return 1
    if item.kind in ("reject", "ignore"):
        return -1
    if item.score is not None:
        if item.score >= 4:
            return 1
        if item.score <= 2:
            return -1
    return 0


def has_content(item: FeedbackItem) -> bool:
    """True when the item carries comment text or a correction diff."""
    return bool(item.text) or bool(item.diff)


def feedback_content(item: FeedbackItem) -> str:
    """The text the encoders see: comment text and diff, joined by a newline."""
    return "\n".join(part for part in (item.text, item.diff) if part)


def beta_mean(alpha: float, beta: float) -> float:
    """theta = alpha / (alpha + beta), the mean of Beta(alpha, beta) (eq. 6)."""
    return alpha / (alpha + beta)


def updated_beta(alpha: float, beta: float, consistent: bool, c: float) -> tuple[float, float]:
    """alpha += c if consistent (eq. 7), else beta += c (eq. 8)."""
    return (alpha + c, beta) if consistent else (alpha, beta + c)


@dataclass(frozen=True)
class Consistency:
    """Outcome of comparing two feedback items (eq. 9)."""

    consistent: bool | None
    """True, False, or None when undecided (no update)."""
    basis: str
    """``cosine`` (both have text/diff), ``polarity`` or ``none``."""
    value: float
    """The cosine, or the product of the two polarities, or 0."""


def consistency(
    item_i: FeedbackItem, item_j: FeedbackItem, code_encoder: Encoder, tau_c: float
) -> Consistency:
    """Compare two items (eq. 9).

    * both have text/diff: consistent iff ``cos(CE(f_i), CE(f_j)) > tau_c``;
    * otherwise, when both have a polarity (+1/-1): consistent iff the polarities agree; this
      covers the paper's "neither has text" case and the mixed case where the textual item also
      carries a polarity (e.g. a reject with a comment, or a score with a comment);
    * otherwise (an edit or comment without polarity against a bare vote, or a neutral score):
      undecided, no update.
    """
    if has_content(item_i) and has_content(item_j):
        emb = code_encoder.encode([feedback_content(item_i), feedback_content(item_j)])
        cos = cosine_similarity(emb[0], emb[1])
        return Consistency(cos > tau_c, "cosine", cos)
    p_i, p_j = polarity(item_i), polarity(item_j)
    if p_i != 0 and p_j != 0:
        return Consistency(p_i == p_j, "polarity", float(p_i * p_j))
    return Consistency(None, "none", 0.0)


def is_consistent(
    item_i: FeedbackItem, item_j: FeedbackItem, code_encoder: Encoder, tau_c: float
) -> bool | None:
    """The consistency indicator of eq. 9 (None = undecided); see ``consistency``."""
    return consistency(item_i, item_j, code_encoder, tau_c).consistent


def right_given_agreement(theta_self: float, theta_other: float, consistent: bool) -> float:
    """P(an item is right | it agreed, or not, with another reviewer's item) when each reviewer
    is right with probability theta, independently, and two items agree iff both are right or
    both wrong (beyond the paper; ``ConfidenceConfig.agreement_update = "posterior"``):
    agree: ts*to / (ts*to + (1-ts)(1-to)); disagree: ts(1-to) / (ts(1-to) + (1-ts)to).
    Counting c * P(right) to alpha and the rest to beta makes theta converge to the reviewer's
    reliability, where counting every agreement whole converges to the agreement rate."""
    if consistent:
        right, wrong = theta_self * theta_other, (1.0 - theta_self) * (1.0 - theta_other)
    else:
        right, wrong = theta_self * (1.0 - theta_other), (1.0 - theta_self) * theta_other
    return right / (right + wrong)


def smoothed_confidence(buffer: Sequence[float], xi: float) -> float:
    """theta~_t = sum_i theta_i e^{-(t-i)/xi} / sum_i e^{-(t-i)/xi} over the buffer (eq. 18).

    ``buffer`` runs oldest to newest (the newest is theta_t, weight 1); it holds the last w values.
    """
    values = np.asarray(buffer, dtype=np.float64)
    if values.size == 0:
        raise ValueError("smoothing needs at least one value")
    weights = np.exp(-np.arange(values.size - 1, -1, -1, dtype=np.float64) / xi)
    return float(np.dot(weights, values) / weights.sum())


def confidence_in_use(theta: float, buffer: Sequence[float], cfg: ConfidenceConfig) -> float:
    """theta_hat: the smoothed theta~ (eq. 18) when Var(M) > nu (population variance), else theta."""
    if (
        len(buffer) > 1
        and float(np.var(np.asarray(buffer, dtype=np.float64))) > cfg.variance_threshold
    ):
        return smoothed_confidence(buffer, cfg.decay)
    return theta
