"""Bayesian confidence of each feedback item and of each reviewer (DESIGN.md "The method").

Every feedback item i carries a Beta(alpha_i, beta_i) belief in its reliability (eq. 4):

* prior (eq. 5, :mod:`.prior`): ``(alpha0, beta0) = f_phi(FE(text_i) ⊕ meta_i)`` plus the
  reviewer's history.  f_phi is a 2-layer MLP whose two softplus outputs are added to 1 and
  scaled down together so that ``alpha0 + beta0 - 2 <= prior_scale``.  The reviewer's history
  enters as the evidence the reviewer has gathered so far, weighted by rho:
  ``alpha0 += rho * (alpha_r - alpha_r_init)``, ``beta0 += rho * (beta_r - beta_r_init)``
  (``(alpha_r_init, beta_r_init)`` = ``ConfidenceConfig.reviewer_prior``), so a new reviewer
  adds nothing and an experienced one carries their record into each new item.
* updates (eq. 7-9, :mod:`.beta`): when a later item j about the same suggestion or the same
  code location arrives, i and j are compared; consistent -> ``alpha += c`` on both,
  inconsistent -> ``beta += c`` on both, undecided -> nothing.  Both reviewers'
  ``(alpha_r, beta_r)`` get the same increments.  Two items by the same reviewer are never
  compared (self-agreement is no evidence).
* execution evidence (beyond the paper): ``observe_execution`` adds ``c_exec`` to alpha when
  following the item was verified by execution, to beta when it was refuted; same for the reviewer.
* ``theta = alpha / (alpha + beta)`` (eq. 6); the reviewer's buffer M keeps the theta of their
  last w items as observed; ``theta_hat`` is the smoothed value (eq. 18) when Var(M) > nu.

Modules: :mod:`.beta` (items, Beta arithmetic, consistency, smoothing), :mod:`.prior` (f_phi),
:mod:`.state` (what an estimator knows), :mod:`.estimator` (the online estimator, increments
between workers, forgetting), :mod:`.persistence` (plain tables for the store).
"""

from __future__ import annotations

from .beta import (
    KINDS,
    ROLES,
    Consistency,
    FeedbackItem,
    beta_mean,
    confidence_in_use,
    consistency,
    feedback_content,
    has_content,
    is_consistent,
    polarity,
    right_given_agreement,
    smoothed_confidence,
    updated_beta,
)
from .estimator import ConfidenceEstimator
from .persistence import from_rows as estimator_from_rows
from .persistence import to_rows as estimator_to_rows
from .prior import (
    META_DIM,
    PriorNetwork,
    feedback_features,
    feedback_meta,
    prior_parameters,
    prior_with_history,
)
from .state import EstimatorState, ItemState, ReviewerState, Update

__all__ = [
    "KINDS",
    "META_DIM",
    "ROLES",
    "ConfidenceEstimator",
    "Consistency",
    "EstimatorState",
    "FeedbackItem",
    "ItemState",
    "PriorNetwork",
    "ReviewerState",
    "Update",
    "beta_mean",
    "confidence_in_use",
    "consistency",
    "estimator_from_rows",
    "estimator_to_rows",
    "feedback_content",
    "feedback_features",
    "feedback_meta",
    "has_content",
    "is_consistent",
    "polarity",
    "prior_parameters",
    "prior_with_history",
    "right_given_agreement",
    "smoothed_confidence",
    "updated_beta",
]
