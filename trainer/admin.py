"""The trainer's offline verbs on its store: ``trustfix status``, ``explain``, ``export`` and
``forget`` (applied to the saved estimator when no trainer runs).

Importing this module costs no torch: :func:`status` reads SQLite counts only; the verbs that
need the confidence estimator load it (and torch) when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .config import TrustfixConfig
from .store import DISCONNECTED, TrainerStore

if TYPE_CHECKING:
    from .confidence import ConfidenceEstimator


def status(store: TrainerStore) -> dict[str, Any]:
    """Versions, queue depths and rejects by reason, from the store."""
    versions = store.versions()
    rejects = store.rejects()
    disconnects = rejects.pop(DISCONNECTED, 0)
    return {
        "events": store.count(),
        "suggestions": store.count("suggestion"),
        "feedback": store.count("feedback"),
        "unprocessed": store.max_seq() - store.get_state("processed_seq", 0),
        "untrained": store.max_seq() - store.get_state("trained_seq", 0),
        "versions": [{k: v for k, v in row.items() if k != "path"} for row in versions],
        "latest_version": versions[-1]["version"] if versions else None,
        "rejects": rejects,
        "disconnects": disconnects,
        "forget_requests_pending": len(store.pending_forgets()),
        "last_update": (store.metrics() or [None])[-1],
    }


def estimator_from_store(store: TrainerStore, cfg: TrustfixConfig) -> ConfidenceEstimator:
    """The confidence estimator as last saved (empty when nothing was saved), with the encoders
    the daemon used (recorded in the store), else those of ``cfg``."""
    from .confidence import ConfidenceEstimator, estimator_from_rows
    from .encoders import get_encoder

    names = store.get_state("encoders") or {
        "text": cfg.encoders.text_encoder,
        "code": cfg.encoders.code_encoder,
        "max_length": cfg.encoders.max_length,
    }
    text = get_encoder(names["text"], names["max_length"])
    code = get_encoder(names["code"], names["max_length"])
    rows = store.load_estimator_rows()
    if rows is None:
        return ConfidenceEstimator(cfg.confidence, text, code)
    return estimator_from_rows(rows, cfg.confidence, text, code)


def forget_offline(store: TrainerStore, cfg: TrustfixConfig) -> int:
    """Apply queued forget requests to the saved estimator (no trainer running); items removed."""
    requests = store.pending_forgets()
    if not requests:
        return 0
    estimator = estimator_from_store(store, cfg)
    removed = sum(estimator.forget_reviewer(reviewer) for _, reviewer in requests)
    from .confidence import estimator_to_rows

    store.save_estimator(estimator_to_rows(estimator))
    store.mark_forgotten([i for i, _ in requests])
    return removed


def explain(store: TrainerStore, cfg: TrustfixConfig, feedback_id: str) -> dict[str, Any]:
    """Why one feedback item has its weight: the estimator's account (prior, each update, alpha,
    beta, theta, theta_hat) plus the clip radius delta and gate q that theta_hat gives (eq. 10, 16)."""
    from .trust_region import TrustRegionController

    estimator = estimator_from_store(store, cfg)
    try:
        report = estimator.explain(feedback_id)
    except KeyError:
        raise KeyError(f"no feedback item {feedback_id!r} in {store.path}") from None
    control = TrustRegionController(cfg.trust_region, cfg.ppo).control(report["theta_hat"])
    return {**report, "delta": control.delta, "q": control.gate, "lambda": control.lam}


def export_reviewer(store: TrainerStore, cfg: TrustfixConfig, reviewer: str) -> dict[str, Any]:
    """Everything stored about one reviewer: their events, their Beta state, each item's account."""
    estimator = estimator_from_store(store, cfg)
    events = [msgspec.to_builtins(e) for e in store.reviewer_events(reviewer)]
    known = {i.id for i in estimator.items() if i.reviewer == reviewer}
    state = estimator.reviewers().get(reviewer)
    return {
        "reviewer": reviewer,
        "confidence": None
        if state is None
        else {"alpha": state.alpha, "beta": state.beta, "theta": state.theta, "items": state.count},
        "events": events,
        "items": [estimator.explain(fid) for fid in sorted(known)],
    }
