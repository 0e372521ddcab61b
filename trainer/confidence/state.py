"""The state of a confidence estimator: each item's and each reviewer's Beta belief, every
increment applied, and the whole as :class:`EstimatorState` (what :mod:`.persistence` saves)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .beta import FeedbackItem, beta_mean
from .prior import PriorNetwork


@dataclass
class ItemState:
    """The Beta belief of one feedback item and where its prior came from."""

    item: FeedbackItem
    seq: int
    """Position of the item's arrival in the estimator's event sequence."""
    alpha_phi: float
    beta_phi: float
    alpha_history: float
    """rho * (alpha_r - alpha_r_init) at arrival."""
    beta_history: float
    alpha: float
    beta: float

    @property
    def theta(self) -> float:
        return beta_mean(self.alpha, self.beta)


@dataclass
class ReviewerState:
    """The Beta belief in one reviewer, and their confidence buffer M (eq. 18)."""

    alpha: float
    beta: float
    count: int = 0
    """Feedback items observed from this reviewer."""
    buffer: list[float] = field(default_factory=list)
    """theta of the reviewer's last w items, oldest first."""

    @property
    def theta(self) -> float:
        return beta_mean(self.alpha, self.beta)


@dataclass(frozen=True)
class Update:
    """One increment applied to one item (and to its reviewer)."""

    seq: int
    """Event (observe or execution) that caused it."""
    item_id: str
    other_id: str | None
    """The item compared with; None for execution evidence."""
    source: str
    """``agreement`` or ``execution``."""
    consistent: bool
    basis: str
    """``cosine``, ``polarity`` or ``execution``."""
    value: float
    """Cosine, product of polarities, or 1/0 for verified/refuted."""
    increment: float


@dataclass
class EstimatorState:
    """Everything an estimator knows (what :mod:`.persistence` saves and loads)."""

    prior_net: PriorNetwork
    """f_phi."""
    optimizer: torch.optim.Optimizer
    """f_phi's Adam."""
    items: dict[str, ItemState] = field(default_factory=dict)
    reviewers: dict[str, ReviewerState] = field(default_factory=dict)
    updates: dict[str, list[Update]] = field(default_factory=dict)
    """Every increment, by the item it was applied to."""
    executions: list[tuple[int, str, bool]] = field(default_factory=list)
    """Execution evidence in arrival order: (seq, item id, verified)."""
    by_suggestion: dict[str, list[str]] = field(default_factory=dict)
    by_location: dict[str, list[str]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    """Items queued for f_phi's next training step."""
    seq: int = 0
    """Number of the next observation (item or execution)."""
    remote: dict[str, list[float]] = field(default_factory=dict)
    """Per reviewer, what other workers added: [alpha, beta, items]."""
    unsynced: dict[str, list[float]] = field(default_factory=dict)
    """Per reviewer, what this estimator added since the last exchange: [alpha, beta, items]."""
