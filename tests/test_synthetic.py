"""The learning core end to end: ranker + estimator + controller + PPO on a noisy-feedback bandit."""

import numpy as np
import pytest
from trustfix.trainer.synthetic import (
    BanditConfig,
    make_request,
    mean_ci,
    reviewer_reliabilities,
    run_bandit,
    summarize,
)

HALF_WRONG = (0.9,) * 5 + (0.2,) * 5
"""Mixed reliability: five reliable reviewers and five who are usually wrong."""


def test_requests_and_pools():
    rng = np.random.default_rng(0)
    state, candidates, right = make_request(rng, 4)
    intent = state.split()[5]
    assert candidates[right - 1].split()[1] == intent
    assert sum(intent in c for c in candidates) == 1
    mixed = reviewer_reliabilities("mixed", 10, rng)
    assert sum(p >= 0.85 for p in mixed) == 5 and sum(p <= 0.6 for p in mixed) == 5
    with pytest.raises(ValueError, match="unknown condition"):
        reviewer_reliabilities("chaotic", 10, rng)


def test_rate_intervals_stay_in_zero_one():
    # the demo's three seeds once gave "0.689 [0.069, 1.309]"
    mean, lo, hi = mean_ci([0.95, 0.3, 0.817], lower=0.0, upper=1.0)
    assert mean == pytest.approx(0.689, abs=1e-3)
    assert 0.0 <= lo < mean < hi == 1.0
    assert mean_ci([0.95, 0.3, 0.817])[2] > 1.0  # unclipped Student-t interval


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_confidence_adaptive_learner_beats_plain_ppo_on_the_same_seeds():
    """Measured on seeds 0-3 (2048 steps): mean accuracy over training 0.44 vs 0.29 for plain
    PPO, ours ahead on every seed; over seeds 0-7 the gap is 0.14 (ours ahead on 6 of 8)."""
    results = [
        run_bandit(method, BanditConfig(seed=seed, reliabilities=HALF_WRONG))
        for seed in range(4)
        for method in ("ours", "ppo")
    ]
    summary = summarize(results)
    ours, ppo = summary["methods"]["ours"], summary["methods"]["ppo"]
    assert ours["mean_accuracy"] - ppo["mean_accuracy"] >= 0.07
    per_seed = [
        (np.mean([a for _, a in o.accuracy]), np.mean([a for _, a in p.accuracy]))
        for o, p in zip(results[0::2], results[1::2])
    ]
    assert sum(o > p for o, p in per_seed) >= 3
    # the ranker really learned: well above the random policy's 1/5
    assert ours["mean_accuracy"] > 1.8 * summary["random_accuracy"]
    # and the estimator put the reliable reviewers above the unreliable ones
    assert ours["reviewer_spearman"] > 0.6
