"""Bayesian confidence of each feedback item and of each reviewer (DESIGN.md "The method").

Every feedback item i carries a Beta(alpha_i, beta_i) belief in its reliability (eq. 4):

* prior (eq. 5): ``(alpha0, beta0) = f_phi(FE(text_i) ⊕ meta_i)`` plus the reviewer's history.
  f_phi is a 2-layer MLP whose two softplus outputs are added to 1 and scaled down together so
  that ``alpha0 + beta0 - 2 <= prior_scale``.  The reviewer's history enters as the evidence the
  reviewer has gathered so far, weighted by rho:
  ``alpha0 += rho * (alpha_r - alpha_r_init)``, ``beta0 += rho * (beta_r - beta_r_init)``
  (``(alpha_r_init, beta_r_init)`` = ``ConfidenceConfig.reviewer_prior``), so a new reviewer
  adds nothing and an experienced one carries their record into each new item.
* updates (eq. 7-9): when a later item j about the same suggestion or the same code location
  arrives, i and j are compared; consistent -> ``alpha += c`` on both, inconsistent ->
  ``beta += c`` on both, undecided -> nothing.  Both reviewers' ``(alpha_r, beta_r)`` get the same
  increments.  Two items by the same reviewer are never compared (self-agreement is no evidence).
* execution evidence (beyond the paper): ``observe_execution`` adds ``c_exec`` to alpha when
  following the item was verified by execution, to beta when it was refuted; same for the reviewer.
* ``theta = alpha / (alpha + beta)`` (eq. 6); the reviewer's buffer M keeps the theta of their
  last w items as observed; ``theta_hat`` is the smoothed value (eq. 18) when Var(M) > nu.

f_phi is trained online: every item that receives an update is queued, and once
``prior_batch`` are queued one Adam step moves f_phi's predicted mean ``alpha0 / (alpha0 + beta0)``
toward their current posterior means.

Distributed training (:mod:`trustfix.trainer.distributed`): each worker's estimator sees only its
shard of the items and applies its own increments; ``increments()`` reports what it added to
each reviewer since the last exchange (Δalpha_r, Δbeta_r, items) and ``add_increments()`` takes
the sum over all workers, keeping the other workers' share apart (``remote``) so that it survives
``to_rows``/``from_rows`` and a ``forget_reviewer`` replay (which drops the forgotten reviewer's
share; the next exchange must then be ``full``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import ConfidenceConfig
from .encoders import Encoder, cosine_similarity

ROLES = ("developer", "student", "instructor")
"""Reviewer roles, in the order of the role one-hot of f_phi's input."""
KINDS = ("accept", "reject", "edit", "comment", "score", "ignore")
"""Feedback kinds, in the order of the kind one-hot of f_phi's input."""
META_DIM = len(KINDS) + 4 + len(ROLES)
"""Width of the metadata part of f_phi's input: kind, score, has-score, has-code, log length, role."""


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


# ---------------------------------------------------------------- equations


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


def feedback_meta(item: FeedbackItem) -> np.ndarray:
    """Metadata part of f_phi's input (eq. 5): kind one-hot, score, has-score, has-code,
    log length, role one-hot."""
    meta = np.zeros(META_DIM, dtype=np.float32)
    meta[KINDS.index(item.kind)] = 1.0
    k = len(KINDS)
    if item.score is not None:
        meta[k] = (item.score - 3) / 2
        meta[k + 1] = 1.0
    meta[k + 2] = 1.0 if item.diff else 0.0
    meta[k + 3] = math.log1p(len(feedback_content(item))) / 10.0
    meta[k + 4 + ROLES.index(item.role)] = 1.0
    return meta


def feedback_features(item: FeedbackItem, text_encoder: Encoder) -> np.ndarray:
    """f_phi's input (eq. 5): FE(text ⊕ diff) ⊕ meta; FE part zero when the item has no text."""
    content = feedback_content(item)
    if content:
        embedded = text_encoder.encode([content])[0]
    else:
        embedded = np.zeros(text_encoder.dim, dtype=np.float32)
    return np.concatenate([embedded.astype(np.float32), feedback_meta(item)])


class PriorNetwork(nn.Module):
    """f_phi (eq. 5): a 2-layer MLP, softplus outputs plus 1, total mass bounded by prior_scale."""

    def __init__(self, in_dim: int, hidden: int, prior_scale: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        self.prior_scale = prior_scale

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return prior_parameters(self.layers(features), self.prior_scale)


def prior_parameters(
    outputs: torch.Tensor, prior_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha0, beta0) = 1 + softplus(outputs) (eq. 5), both softplus terms scaled down together
    so that ``alpha0 + beta0 - 2 <= prior_scale`` (a prior never outweighs a few observations)."""
    raw = nn.functional.softplus(outputs)
    total = raw.sum(dim=-1, keepdim=True)
    raw = raw * (prior_scale / torch.clamp(total, min=prior_scale))
    return 1.0 + raw[..., 0], 1.0 + raw[..., 1]


def prior_with_history(
    alpha_phi: float,
    beta_phi: float,
    reviewer_alpha: float,
    reviewer_beta: float,
    reviewer_prior: tuple[float, float],
    rho: float,
) -> tuple[float, float]:
    """Item prior (eq. 5 plus history): f_phi's (alpha, beta) plus rho times the evidence the
    reviewer has gathered beyond their initial ``reviewer_prior``."""
    return (
        alpha_phi + rho * (reviewer_alpha - reviewer_prior[0]),
        beta_phi + rho * (reviewer_beta - reviewer_prior[1]),
    )


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch ops on one intra-op thread: f_phi is far too small to gain from more, and on a
    busy CPU the thread pool's synchronisation makes each step 10-100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------- state


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


def _tensor_row(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    array = tensor.detach().cpu().contiguous().numpy()
    return {
        "name": name,
        "shape": json.dumps(list(array.shape)),
        "dtype": str(array.dtype),
        "data": base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode(),
    }


def _row_tensor(row: dict[str, Any]) -> torch.Tensor:
    dtype = np.dtype(row["dtype"]).newbyteorder("<")
    array = np.frombuffer(base64.b64decode(row["data"]), dtype=dtype)
    shape = json.loads(row["shape"]) if isinstance(row["shape"], str) else row["shape"]
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")).reshape(shape).copy())


class ConfidenceEstimator:
    """Online Bayesian confidence of feedback items and reviewers (eq. 4-9, 18).

    Thread-safe (one lock).  Constructing it asks ``text_encoder.dim``, which loads that model.
    Embeddings are never stored: they come from the encoders' caches when needed.
    """

    def __init__(
        self,
        cfg: ConfidenceConfig,
        text_encoder: Encoder,
        code_encoder: Encoder,
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.text_encoder = text_encoder
        self.code_encoder = code_encoder
        self.seed = seed
        self._lock = threading.RLock()
        self._reset()

    # ------------------------------------------------------------ internals

    def _reset(self) -> None:
        """Empty state and a freshly initialised f_phi (deterministic in ``seed``)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._prior_net = PriorNetwork(
                self.text_encoder.dim + META_DIM, self.cfg.prior_hidden, self.cfg.prior_scale
            )
        self._optimizer = torch.optim.Adam(self._prior_net.parameters(), lr=self.cfg.prior_lr)
        self._items: dict[str, ItemState] = {}
        self._reviewers: dict[str, ReviewerState] = {}
        self._updates: dict[str, list[Update]] = {}
        self._executions: list[tuple[int, str, bool]] = []
        self._by_suggestion: dict[str, list[str]] = {}
        self._by_location: dict[str, list[str]] = {}
        self._pending: list[str] = []
        self._seq = 0
        self._remote: dict[str, list[float]] = {}
        """Per reviewer, what other workers added: [alpha, beta, items]."""
        self._unsynced: dict[str, list[float]] = {}
        """Per reviewer, what this estimator added since the last exchange: [alpha, beta, items]."""

    def _reviewer(self, reviewer: str) -> ReviewerState:
        state = self._reviewers.get(reviewer)
        if state is None:
            alpha, beta = self.cfg.reviewer_prior
            state = self._reviewers[reviewer] = ReviewerState(alpha, beta)
        return state

    def _apply(self, update: Update) -> None:
        """Add one increment to an item and its reviewer and record it."""
        state = self._items[update.item_id]
        state.alpha, state.beta = updated_beta(
            state.alpha, state.beta, update.consistent, update.increment
        )
        reviewer = self._reviewers[state.item.reviewer]
        reviewer.alpha, reviewer.beta = updated_beta(
            reviewer.alpha, reviewer.beta, update.consistent, update.increment
        )
        self._unsynced.setdefault(state.item.reviewer, [0.0, 0.0, 0.0])[
            0 if update.consistent else 1
        ] += update.increment
        self._updates.setdefault(update.item_id, []).append(update)

    def _train_prior(self, item_ids: Iterable[str]) -> None:
        """Queue updated items; once ``prior_batch`` are queued, one Adam step of f_phi toward
        each queued item's current posterior mean."""
        self._pending.extend(item_ids)
        if len(self._pending) < self.cfg.prior_batch:
            return
        ids = list(dict.fromkeys(self._pending))
        self._pending.clear()
        features = torch.from_numpy(
            np.stack([feedback_features(self._items[i].item, self.text_encoder) for i in ids])
        )
        target = torch.tensor([self._items[i].theta for i in ids], dtype=torch.float32)
        with _single_threaded():
            alpha0, beta0 = self._prior_net(features)
            loss = torch.mean((alpha0 / (alpha0 + beta0) - target) ** 2)
            self._optimizer.zero_grad()
            loss.backward()
            self._optimizer.step()

    def _earlier_related(self, item: FeedbackItem) -> list[str]:
        """The ``related_window`` most recent earlier items of other reviewers on the same
        suggestion or location."""
        related = list(self._by_suggestion.get(item.suggestion_id, ()))
        if item.location:
            related.extend(self._by_location.get(item.location, ()))
        others = [
            i for i in dict.fromkeys(related) if self._items[i].item.reviewer != item.reviewer
        ]
        others.sort(key=lambda i: self._items[i].seq)
        return others[-self.cfg.related_window :] if self.cfg.related_window > 0 else []

    def _f_phi(self, features: np.ndarray) -> tuple[float, float]:
        with torch.no_grad(), _single_threaded():
            alpha0, beta0 = self._prior_net(torch.from_numpy(features)[None])
        return float(alpha0[0]), float(beta0[0])

    # ------------------------------------------------------------ public API

    def f_phi_prior(self, item: FeedbackItem) -> tuple[float, float]:
        """(alpha0, beta0) that f_phi gives ``item`` now, without the reviewer's history (eq. 5)."""
        with self._lock:
            return self._f_phi(feedback_features(item, self.text_encoder))

    def observe(self, item: FeedbackItem) -> float:
        """Add one feedback item; return its confidence in use, theta_hat.

        Prior from f_phi plus the reviewer's history (eq. 5); then every earlier item on the same
        suggestion or location, by another reviewer, is compared (eq. 9) and both items and both
        reviewers get the increment (eq. 7-8); the item's resulting theta is appended to its
        reviewer's buffer M (eq. 18).  Idempotent: an id seen before changes nothing.
        """
        with self._lock:
            if item.id in self._items:
                return self.confidence(item.id)
            seq = self._seq
            self._seq += 1
            reviewer = self._reviewer(item.reviewer)
            features = feedback_features(item, self.text_encoder)
            alpha_phi, beta_phi = self._f_phi(features)
            alpha0, beta0 = prior_with_history(
                alpha_phi,
                beta_phi,
                reviewer.alpha,
                reviewer.beta,
                self.cfg.reviewer_prior,
                self.cfg.reviewer_weight,
            )
            related = self._earlier_related(item)
            self._items[item.id] = ItemState(
                item, seq, alpha_phi, beta_phi, alpha0 - alpha_phi, beta0 - beta_phi, alpha0, beta0
            )
            reviewer.count += 1
            self._unsynced.setdefault(item.reviewer, [0.0, 0.0, 0.0])[2] += 1
            updated = []
            for other_id in related:
                other = self._items[other_id].item
                if other.reviewer == item.reviewer:
                    continue
                result = consistency(item, other, self.code_encoder, self.cfg.consistency_threshold)
                if result.consistent is None:
                    continue
                for target, partner in ((item.id, other_id), (other_id, item.id)):
                    self._apply(
                        Update(
                            seq,
                            target,
                            partner,
                            "agreement",
                            result.consistent,
                            result.basis,
                            result.value,
                            self.cfg.increment,
                        )
                    )
                updated.append(other_id)
            self._by_suggestion.setdefault(item.suggestion_id, []).append(item.id)
            if item.location:
                self._by_location.setdefault(item.location, []).append(item.id)
            reviewer.buffer.append(self._items[item.id].theta)
            del reviewer.buffer[: -self.cfg.window]
            if updated:
                self._train_prior([item.id, *updated])
            return self.confidence(item.id)

    def observe_execution(self, feedback_id: str, verified: bool) -> float:
        """Execution evidence: following the item made tests pass / removed violations
        (``verified``: alpha += c_exec) or the opposite (beta += c_exec); for the item and its
        reviewer.  Returns the item's new theta_hat."""
        with self._lock:
            if feedback_id not in self._items:
                raise KeyError(f"unknown feedback item {feedback_id!r}")
            seq = self._seq
            self._seq += 1
            self._executions.append((seq, feedback_id, bool(verified)))
            self._apply(
                Update(
                    seq,
                    feedback_id,
                    None,
                    "execution",
                    bool(verified),
                    "execution",
                    1.0 if verified else 0.0,
                    self.cfg.exec_increment,
                )
            )
            self._train_prior([feedback_id])
            return self.confidence(feedback_id)

    def confidence(self, feedback_id: str, smoothed: bool = True) -> float:
        """theta_hat of an item: its current theta, or the reviewer's smoothed theta~ when
        ``smoothed`` and Var(M) > nu (eq. 18)."""
        with self._lock:
            state = self._items[feedback_id]
            if not smoothed:
                return state.theta
            buffer = self._reviewers[state.item.reviewer].buffer
            return confidence_in_use(state.theta, buffer, self.cfg)

    def reviewer_confidence(self, reviewer: str) -> float:
        """theta_r = alpha_r / (alpha_r + beta_r); the prior mean for an unknown reviewer."""
        with self._lock:
            state = self._reviewers.get(reviewer)
            if state is None:
                return beta_mean(*self.cfg.reviewer_prior)
            return state.theta

    def reviewer_state(self, reviewer: str) -> ReviewerState:
        """A copy of one reviewer's state (alpha, beta, theta, count, buffer)."""
        with self._lock:
            state = self._reviewers[reviewer]
            return dataclasses.replace(state, buffer=list(state.buffer))

    def reviewers(self) -> dict[str, ReviewerState]:
        """Copies of every reviewer's state, by reviewer id."""
        with self._lock:
            return {name: self.reviewer_state(name) for name in self._reviewers}

    def items(self) -> list[FeedbackItem]:
        """Every observed item, in arrival order."""
        with self._lock:
            return [state.item for state in self._items.values()]

    def explain(self, feedback_id: str) -> dict[str, Any]:
        """Why an item has the confidence it has: prior, every update, alpha, beta, theta, theta_hat."""
        with self._lock:
            state = self._items[feedback_id]
            return {
                "id": feedback_id,
                "reviewer": state.item.reviewer,
                "prior": {
                    "alpha0": state.alpha_phi + state.alpha_history,
                    "beta0": state.beta_phi + state.beta_history,
                    "f_phi": {"alpha": state.alpha_phi, "beta": state.beta_phi},
                    "reviewer_history": {"alpha": state.alpha_history, "beta": state.beta_history},
                },
                "updates": [
                    {
                        "other": u.other_id,
                        "consistent": u.consistent,
                        "basis": u.basis,
                        "value": u.value,
                        "increment": u.increment,
                        "source": u.source,
                    }
                    for u in self._updates.get(feedback_id, [])
                ],
                "alpha": state.alpha,
                "beta": state.beta,
                "theta": state.theta,
                "theta_hat": self.confidence(feedback_id),
                "reviewer_theta": self._reviewers[state.item.reviewer].theta,
            }

    def increments(self, full: bool = False) -> dict[str, tuple[float, float, int]]:
        """Per reviewer, what this estimator itself added to (alpha_r, beta_r) and to the item
        count since the last :meth:`add_increments`, or in total with ``full``."""
        with self._lock:
            if not full:
                return {name: (a, b, int(n)) for name, (a, b, n) in self._unsynced.items()}
            alpha0, beta0 = self.cfg.reviewer_prior
            out = {}
            for name, state in self._reviewers.items():
                ra, rb, rn = self._remote.get(name, (0.0, 0.0, 0.0))
                out[name] = (state.alpha - alpha0 - ra, state.beta - beta0 - rb, int(state.count - rn))
            return out

    def add_increments(
        self,
        totals: dict[str, tuple[float, float, int]],
        own: dict[str, tuple[float, float, int]],
        full: bool = False,
    ) -> None:
        """Take an exchange between workers: ``totals`` the sum of every worker's
        :meth:`increments` (``full`` or not, as ``own``, this estimator's part of it).  Each
        reviewer gets the others' share, ``totals - own``, added (``full``: the others' share is
        replaced, and dropped for reviewers no worker reports); the pending increments restart."""
        with self._lock:
            names = set(totals) | (set(self._remote) if full else set())
            for name in sorted(names):
                extra = [t - m for t, m in zip(totals.get(name, (0, 0, 0)), own.get(name, (0, 0, 0)),
                                                strict=True)]
                old = self._remote.get(name, [0.0, 0.0, 0.0])
                new = extra if full else [o + e for o, e in zip(old, extra, strict=True)]
                state = self._reviewer(name)
                state.alpha += new[0] - old[0]
                state.beta += new[1] - old[1]
                state.count += int(new[2] - old[2])
                if any(new):
                    self._remote[name] = new
                else:
                    self._remote.pop(name, None)
            self._unsynced.clear()

    def forget_reviewer(self, reviewer: str) -> int:
        """Remove every item of ``reviewer`` and rebuild all other state (including f_phi, from
        its seed) by replaying the remaining items and execution evidence in arrival order, so
        the reviewer's contribution to anyone's confidence is gone.  Other workers' increments
        (distributed training) stay, except the reviewer's own.  Returns items removed."""
        with self._lock:
            events: list[tuple[int, FeedbackItem | None, str, bool]] = [
                (s.seq, s.item, s.item.id, False) for s in self._items.values()
            ]
            events.extend((seq, None, fid, ok) for seq, fid, ok in self._executions)
            events.sort(key=lambda e: e[0])
            owners = {s.item.id: s.item.reviewer for s in self._items.values()}
            removed = sum(1 for owner in owners.values() if owner == reviewer)
            if removed == 0 and reviewer not in self._reviewers:
                return 0
            remote = {name: r for name, r in self._remote.items() if name != reviewer}
            self._reset()
            for _, item, fid, ok in events:
                if owners[fid] == reviewer:
                    continue
                if item is not None:
                    self.observe(item)
                else:
                    self.observe_execution(fid, ok)
            for name, (ra, rb, rn) in remote.items():
                state = self._reviewer(name)
                state.alpha, state.beta, state.count = state.alpha + ra, state.beta + rb, state.count + int(rn)
            self._remote = remote
            return removed

    # ------------------------------------------------------------ persistence

    def to_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Plain tables (no pickle): meta, items, reviewers, updates, executions, f_phi."""
        with self._lock:
            items = []
            for s in self._items.values():
                row = dataclasses.asdict(s.item)
                row.update(
                    seq=s.seq,
                    alpha_phi=s.alpha_phi,
                    beta_phi=s.beta_phi,
                    alpha_history=s.alpha_history,
                    beta_history=s.beta_history,
                    alpha=s.alpha,
                    beta=s.beta,
                )
                items.append(row)
            reviewers = [
                {
                    "reviewer": name,
                    "alpha": r.alpha,
                    "beta": r.beta,
                    "count": r.count,
                    "buffer": json.dumps(r.buffer),
                }
                for name, r in self._reviewers.items()
            ]
            updates = [dataclasses.asdict(u) for ups in self._updates.values() for u in ups]
            updates.sort(key=lambda u: u["seq"])
            executions = [
                {"seq": seq, "item_id": fid, "verified": ok} for seq, fid, ok in self._executions
            ]
            f_phi = [_tensor_row(name, p) for name, p in self._prior_net.state_dict().items()]
            for index, param_state in self._optimizer.state_dict()["state"].items():
                for key, value in param_state.items():
                    f_phi.append(_tensor_row(f"adam.{index}.{key}", torch.as_tensor(value)))
            shares = {
                table: [
                    {"reviewer": name, "alpha": a, "beta": b, "count": n}
                    for name, (a, b, n) in source.items()
                ]
                for table, source in (("remote", self._remote), ("unsynced", self._unsynced))
            }
            meta = [
                {"key": "seed", "value": json.dumps(self.seed)},
                {"key": "next_seq", "value": json.dumps(self._seq)},
                {"key": "pending", "value": json.dumps(self._pending)},
            ]
            return {
                "meta": meta,
                "items": items,
                "reviewers": reviewers,
                "updates": updates,
                "executions": executions,
                "f_phi": f_phi,
                **shares,
            }

    @classmethod
    def from_rows(
        cls,
        rows: dict[str, list[dict[str, Any]]],
        cfg: ConfidenceConfig,
        text_encoder: Encoder,
        code_encoder: Encoder,
    ) -> ConfidenceEstimator:
        """Rebuild an estimator from ``to_rows`` tables; every confidence comes back exactly."""
        meta = {row["key"]: json.loads(row["value"]) for row in rows["meta"]}
        est = cls(cfg, text_encoder, code_encoder, seed=int(meta["seed"]))
        item_fields = [f.name for f in dataclasses.fields(FeedbackItem)]
        for row in sorted(rows["items"], key=lambda r: r["seq"]):
            item = FeedbackItem(**{name: row[name] for name in item_fields})
            est._items[item.id] = ItemState(
                item,
                int(row["seq"]),
                float(row["alpha_phi"]),
                float(row["beta_phi"]),
                float(row["alpha_history"]),
                float(row["beta_history"]),
                float(row["alpha"]),
                float(row["beta"]),
            )
            est._by_suggestion.setdefault(item.suggestion_id, []).append(item.id)
            if item.location:
                est._by_location.setdefault(item.location, []).append(item.id)
        for row in rows["reviewers"]:
            buffer = json.loads(row["buffer"]) if isinstance(row["buffer"], str) else row["buffer"]
            est._reviewers[row["reviewer"]] = ReviewerState(
                float(row["alpha"]), float(row["beta"]), int(row["count"]), list(buffer)
            )
        for row in sorted(rows["updates"], key=lambda r: r["seq"]):
            update = Update(**{f.name: row[f.name] for f in dataclasses.fields(Update)})
            update = dataclasses.replace(update, consistent=bool(update.consistent))
            est._updates.setdefault(update.item_id, []).append(update)
        est._executions = [
            (int(r["seq"]), r["item_id"], bool(r["verified"]))
            for r in sorted(rows["executions"], key=lambda r: r["seq"])
        ]
        tensors = {row["name"]: _row_tensor(row) for row in rows["f_phi"]}
        est._prior_net.load_state_dict(
            {name: tensors[name] for name in est._prior_net.state_dict()}
        )
        opt_state = est._optimizer.state_dict()
        for name, tensor in tensors.items():
            if name.startswith("adam."):
                _, index, key = name.split(".", 2)
                opt_state["state"].setdefault(int(index), {})[key] = tensor
        est._optimizer.load_state_dict(opt_state)
        est._seq = int(meta["next_seq"])
        est._pending = list(meta["pending"])
        for table, target in (("remote", est._remote), ("unsynced", est._unsynced)):
            for row in rows.get(table, []):  # absent in stores written before distributed training
                target[row["reviewer"]] = [float(row["alpha"]), float(row["beta"]), float(row["count"])]
        return est


__all__ = [
    "KINDS",
    "META_DIM",
    "ROLES",
    "ConfidenceEstimator",
    "Consistency",
    "FeedbackItem",
    "ItemState",
    "PriorNetwork",
    "ReviewerState",
    "Update",
    "beta_mean",
    "confidence_in_use",
    "consistency",
    "feedback_content",
    "feedback_features",
    "feedback_meta",
    "has_content",
    "is_consistent",
    "polarity",
    "prior_parameters",
    "prior_with_history",
    "smoothed_confidence",
    "updated_beta",
]
