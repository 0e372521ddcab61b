"""The online confidence estimator (eq. 4-9, 18): items and reviewers, their Beta beliefs, every
increment recorded, f_phi trained online, increments exchanged between workers, forgetting.

f_phi is trained online: every item that receives an update is queued, and once
``prior_batch`` are queued one Adam step moves f_phi's predicted mean ``alpha0 / (alpha0 + beta0)``
toward their current posterior means.

Distributed training (:mod:`trustfix.trainer.distributed`): each worker's estimator sees only its
shard of the items and applies its own increments; ``increments()`` reports what it added to
each reviewer since the last exchange (Δalpha, Δbeta, items) and ``add_increments()`` takes
the sum over all workers, keeping the other workers' share apart (``remote``) so that it survives
saving and loading (:mod:`.persistence`) and a ``forget_reviewer`` replay (which drops the
forgotten reviewer's share; the next exchange must then be ``full``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..config import ConfidenceConfig
from ..encoders import Encoder
from .beta import (
    FeedbackItem,
    beta_mean,
    confidence_in_use,
    consistency,
    right_given_agreement,
    updated_beta,
)
from .prior import META_DIM, PriorNetwork, feedback_features, prior_with_history, single_threaded
from .state import EstimatorState, ItemState, ReviewerState, Update


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
        if cfg.agreement_update not in ("paper", "posterior"):
            raise ValueError(
                f"agreement_update must be 'paper' or 'posterior', not {cfg.agreement_update!r}"
            )
        self.cfg = cfg
        self.text_encoder = text_encoder
        self.code_encoder = code_encoder
        self.seed = seed
        self.lock = threading.RLock()
        """Held while the state changes or is read as a whole."""
        self._reset()

    # ------------------------------------------------------------ internals

    def _reset(self) -> None:
        """Empty state and a freshly initialised f_phi (deterministic in ``seed``)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            prior_net = PriorNetwork(
                self.text_encoder.dim + META_DIM, self.cfg.prior_hidden, self.cfg.prior_scale
            )
        self.state = EstimatorState(
            prior_net, torch.optim.Adam(prior_net.parameters(), lr=self.cfg.prior_lr)
        )

    def _reviewer(self, reviewer: str) -> ReviewerState:
        state = self.state.reviewers.get(reviewer)
        if state is None:
            alpha, beta = self.cfg.reviewer_prior
            state = self.state.reviewers[reviewer] = ReviewerState(alpha, beta)
        return state

    def _apply(self, update: Update) -> None:
        """Add one increment to an item and its reviewer and record it."""
        state = self.state.items[update.item_id]
        state.alpha, state.beta = updated_beta(
            state.alpha, state.beta, update.consistent, update.increment
        )
        reviewer = self.state.reviewers[state.item.reviewer]
        reviewer.alpha, reviewer.beta = updated_beta(
            reviewer.alpha, reviewer.beta, update.consistent, update.increment
        )
        self.state.unsynced.setdefault(state.item.reviewer, [0.0, 0.0, 0.0])[
            0 if update.consistent else 1
        ] += update.increment
        self.state.updates.setdefault(update.item_id, []).append(update)

    def _agreement_increments(
        self, consistent: bool, theta_self: float, theta_other: float
    ) -> list[tuple[bool, float]]:
        """What one comparison adds (eq. 7-8): ``(to alpha?, c)`` pairs.  ``paper``: all of c to
        alpha if consistent, else to beta; ``posterior``: c split by the probability that the
        item is right given the outcome and both reviewers' theta (:func:`right_given_agreement`)."""
        c = self.cfg.increment
        if self.cfg.agreement_update == "paper":
            return [(consistent, c)]
        right = right_given_agreement(theta_self, theta_other, consistent)
        return [(True, c * right), (False, c * (1.0 - right))]

    def _train_prior(self, item_ids: Iterable[str]) -> None:
        """Queue updated items; once ``prior_batch`` are queued, one Adam step of f_phi toward
        each queued item's current posterior mean."""
        self.state.pending.extend(item_ids)
        if len(self.state.pending) < self.cfg.prior_batch:
            return
        ids = list(dict.fromkeys(self.state.pending))
        self.state.pending.clear()
        features = torch.from_numpy(
            np.stack([feedback_features(self.state.items[i].item, self.text_encoder) for i in ids])
        )
        target = torch.tensor([self.state.items[i].theta for i in ids], dtype=torch.float32)
        with single_threaded():
            alpha0, beta0 = self.state.prior_net(features)
            loss = torch.mean((alpha0 / (alpha0 + beta0) - target) ** 2)
            self.state.optimizer.zero_grad()
            loss.backward()
            self.state.optimizer.step()

    def _earlier_related(self, item: FeedbackItem) -> list[str]:
        """The ``related_window`` most recent earlier items of other reviewers on the same
        suggestion or location."""
        related = list(self.state.by_suggestion.get(item.suggestion_id, ()))
        if item.location:
            related.extend(self.state.by_location.get(item.location, ()))
        others = [
            i for i in dict.fromkeys(related) if self.state.items[i].item.reviewer != item.reviewer
        ]
        others.sort(key=lambda i: self.state.items[i].seq)
        return others[-self.cfg.related_window :] if self.cfg.related_window > 0 else []

    def _f_phi(self, features: np.ndarray) -> tuple[float, float]:
        with torch.no_grad(), single_threaded():
            alpha0, beta0 = self.state.prior_net(torch.from_numpy(features)[None])
        return float(alpha0[0]), float(beta0[0])

    # ------------------------------------------------------------ public API

    def f_phi_prior(self, item: FeedbackItem) -> tuple[float, float]:
        """(alpha0, beta0) that f_phi gives ``item`` now, without the reviewer's history (eq. 5)."""
        with self.lock:
            return self._f_phi(feedback_features(item, self.text_encoder))

    def observe(self, item: FeedbackItem) -> float:
        """Add one feedback item; return its confidence in use, theta_hat.

        Prior from f_phi plus the reviewer's history (eq. 5); then every earlier item on the same
        suggestion or location, by another reviewer, is compared (eq. 9) and both items and both
        reviewers get the increment (eq. 7-8); the item's resulting theta is appended to its
        reviewer's buffer M (eq. 18).  Idempotent: an id seen before changes nothing.
        """
        with self.lock:
            if item.id in self.state.items:
                return self.confidence(item.id)
            seq = self.state.seq
            self.state.seq += 1
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
            self.state.items[item.id] = ItemState(
                item, seq, alpha_phi, beta_phi, alpha0 - alpha_phi, beta0 - beta_phi, alpha0, beta0
            )
            reviewer.count += 1
            self.state.unsynced.setdefault(item.reviewer, [0.0, 0.0, 0.0])[2] += 1
            updated = []
            for other_id in related:
                other = self.state.items[other_id].item
                if other.reviewer == item.reviewer:
                    continue
                result = consistency(item, other, self.code_encoder, self.cfg.consistency_threshold)
                if result.consistent is None:
                    continue
                reviewers = self.state.reviewers
                thetas = {
                    i: reviewers[self.state.items[i].item.reviewer].theta
                    for i in (item.id, other_id)
                }
                for target, partner in ((item.id, other_id), (other_id, item.id)):
                    for consistent, increment in self._agreement_increments(
                        result.consistent, thetas[target], thetas[partner]
                    ):
                        self._apply(
                            Update(
                                seq,
                                target,
                                partner,
                                "agreement",
                                consistent,
                                result.basis,
                                result.value,
                                increment,
                            )
                        )
                updated.append(other_id)
            self.state.by_suggestion.setdefault(item.suggestion_id, []).append(item.id)
            if item.location:
                self.state.by_location.setdefault(item.location, []).append(item.id)
            reviewer.buffer.append(self.state.items[item.id].theta)
            del reviewer.buffer[: -self.cfg.window]
            if updated:
                self._train_prior([item.id, *updated])
            return self.confidence(item.id)

    def observe_execution(self, feedback_id: str, verified: bool) -> float:
        """Execution evidence: following the item made tests pass / removed violations
        (``verified``: alpha += c_exec) or the opposite (beta += c_exec); for the item and its
        reviewer.  Returns the item's new theta_hat."""
        with self.lock:
            if feedback_id not in self.state.items:
                raise KeyError(f"unknown feedback item {feedback_id!r}")
            seq = self.state.seq
            self.state.seq += 1
            self.state.executions.append((seq, feedback_id, bool(verified)))
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
        with self.lock:
            state = self.state.items[feedback_id]
            if not smoothed:
                return state.theta
            buffer = self.state.reviewers[state.item.reviewer].buffer
            return confidence_in_use(state.theta, buffer, self.cfg)

    def reviewer_confidence(self, reviewer: str) -> float:
        """theta_r = alpha_r / (alpha_r + beta_r); the prior mean for an unknown reviewer."""
        with self.lock:
            state = self.state.reviewers.get(reviewer)
            if state is None:
                return beta_mean(*self.cfg.reviewer_prior)
            return state.theta

    def reviewer_state(self, reviewer: str) -> ReviewerState:
        """A copy of one reviewer's state (alpha, beta, theta, count, buffer)."""
        with self.lock:
            state = self.state.reviewers[reviewer]
            return dataclasses.replace(state, buffer=list(state.buffer))

    def reviewers(self) -> dict[str, ReviewerState]:
        """Copies of every reviewer's state, by reviewer id."""
        with self.lock:
            return {name: self.reviewer_state(name) for name in self.state.reviewers}

    def items(self) -> list[FeedbackItem]:
        """Every observed item, in arrival order."""
        with self.lock:
            return [state.item for state in self.state.items.values()]

    def explain(self, feedback_id: str) -> dict[str, Any]:
        """Why an item has the confidence it has: prior, every update, alpha, beta, theta, theta_hat."""
        with self.lock:
            state = self.state.items[feedback_id]
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
                    for u in self.state.updates.get(feedback_id, [])
                ],
                "alpha": state.alpha,
                "beta": state.beta,
                "theta": state.theta,
                "theta_hat": self.confidence(feedback_id),
                "reviewer_theta": self.state.reviewers[state.item.reviewer].theta,
            }

    def increments(self, full: bool = False) -> dict[str, tuple[float, float, int]]:
        """Per reviewer, what this estimator itself added to (alpha_r, beta_r) and to the item
        count since the last :meth:`add_increments`, or in total with ``full``."""
        with self.lock:
            if not full:
                return {name: (a, b, int(n)) for name, (a, b, n) in self.state.unsynced.items()}
            alpha0, beta0 = self.cfg.reviewer_prior
            out = {}
            for name, state in self.state.reviewers.items():
                ra, rb, rn = self.state.remote.get(name, (0.0, 0.0, 0.0))
                out[name] = (
                    state.alpha - alpha0 - ra,
                    state.beta - beta0 - rb,
                    int(state.count - rn),
                )
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
        with self.lock:
            names = set(totals) | (set(self.state.remote) if full else set())
            for name in sorted(names):
                extra = [
                    t - m
                    for t, m in zip(
                        totals.get(name, (0, 0, 0)), own.get(name, (0, 0, 0)), strict=True
                    )
                ]
                old = self.state.remote.get(name, [0.0, 0.0, 0.0])
                new = extra if full else [o + e for o, e in zip(old, extra, strict=True)]
                state = self._reviewer(name)
                state.alpha += new[0] - old[0]
                state.beta += new[1] - old[1]
                state.count += int(new[2] - old[2])
                if any(new):
                    self.state.remote[name] = new
                else:
                    self.state.remote.pop(name, None)
            self.state.unsynced.clear()

    def forget_reviewer(self, reviewer: str) -> int:
        """Remove every item of ``reviewer`` and rebuild all other state (including f_phi, from
        its seed) by replaying the remaining items and execution evidence in arrival order, so
        the reviewer's contribution to anyone's confidence is gone.  Other workers' increments
        (distributed training) stay, except the reviewer's own.  Returns items removed."""
        with self.lock:
            events: list[tuple[int, FeedbackItem | None, str, bool]] = [
                (s.seq, s.item, s.item.id, False) for s in self.state.items.values()
            ]
            events.extend((seq, None, fid, ok) for seq, fid, ok in self.state.executions)
            events.sort(key=lambda e: e[0])
            owners = {s.item.id: s.item.reviewer for s in self.state.items.values()}
            removed = sum(1 for owner in owners.values() if owner == reviewer)
            if removed == 0 and reviewer not in self.state.reviewers:
                return 0
            remote = {name: r for name, r in self.state.remote.items() if name != reviewer}
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
                state.alpha, state.beta, state.count = (
                    state.alpha + ra,
                    state.beta + rb,
                    state.count + int(rn),
                )
            self.state.remote = remote
            return removed
