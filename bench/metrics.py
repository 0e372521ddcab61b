"""The experiment's reward and metrics: r_env, CCS, SIR, HFU/NRR and reviewer-estimate quality."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr


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
    return (
        (share_after - share_before)
        + style_weight * style
        + (float(passed_after) - float(passed_before))
    )


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
    """(Spearman rank correlation, mean absolute error) of estimated against true reliability;
    the correlation is nan when either side is constant (e.g. no reviewer has evidence yet)."""
    if len(truth) < 2:
        return float("nan"), float("nan")
    mae = float(np.mean(np.abs(np.subtract(estimated, truth))))
    if np.ptp(estimated) == 0 or np.ptp(truth) == 0:
        return float("nan"), mae
    return float(spearmanr(estimated, truth).statistic), mae


def preference_agreement(decisions: Sequence[bool]) -> float:
    """Preference agreement: percentage of style decisions taken as the team wants (nan: none)."""
    return 100.0 * float(np.mean(decisions)) if len(decisions) else float("nan")


def estimate_bias(estimated: Sequence[float], truth: Sequence[float]) -> float:
    """Mean signed error of estimated against true reliability (negative: under-estimated)."""
    return float(np.mean(np.subtract(estimated, truth))) if len(truth) else float("nan")


def paired_difference(
    ours: Sequence[float], other: Sequence[float], level: float = 0.95
) -> dict[str, float | int | list[float]]:
    """Paired difference ours - other over seeds (same task order and feedback per seed): mean,
    Student-t interval, seeds where ours is ahead, and the per-seed differences (pairs with a
    non-finite value left out)."""
    from trustfix.trainer.synthetic import mean_ci

    diffs = [a - b for a, b in zip(ours, other, strict=True) if np.isfinite(a) and np.isfinite(b)]
    if not diffs:
        return {
            "mean": float("nan"),
            "ci": [float("nan"), float("nan")],
            "ahead": 0,
            "n": 0,
            "per_seed": [],
        }
    mean, lo, hi = mean_ci(diffs, level)
    return {
        "mean": mean,
        "ci": [lo, hi],
        "ahead": sum(d > 0 for d in diffs),
        "n": len(diffs),
        "per_seed": diffs,
    }
