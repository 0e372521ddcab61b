"""Eq. 10, 12-16 against hand-computed values and their properties."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from trustfix.trainer.config import PPOConfig, TrustRegionConfig
from trustfix.trainer.trust_region import (
    TrustRegionController,
    gae_lambda,
    human_signal,
    shaped_reward,
    shaping_coefficient,
    trust_region_radius,
    update_gate,
)

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def test_radius_hand_values():
    assert trust_region_radius(0.5) == pytest.approx(0.2 * math.tanh(1.5))  # 0.18103
    assert trust_region_radius(0.5) == pytest.approx(0.181029, abs=1e-6)
    assert trust_region_radius(0.0) == 0.0
    assert trust_region_radius(1.0, delta_base=0.3, gamma=1.0) == pytest.approx(
        0.3 * 0.761594, abs=1e-6
    )


@given(a=unit, b=unit)
def test_radius_in_range_and_increasing(a, b):
    lo, hi = sorted((a, b))
    d_lo, d_hi = trust_region_radius(lo), trust_region_radius(hi)
    assert 0.0 <= d_lo <= d_hi <= 0.2
    if hi > 0:
        assert d_hi > 0.0


def test_radius_on_tensors_matches_floats():
    thetas = torch.tensor([0.1, 0.5, 0.9])
    expected = [trust_region_radius(float(t)) for t in thetas]
    assert torch.allclose(trust_region_radius(thetas), torch.tensor(expected))


def test_gae_lambda_hand_values():
    assert gae_lambda(0.8) == pytest.approx(0.76)
    assert gae_lambda(1.0, lambda_base=0.9) == pytest.approx(0.9)


def test_shaping_schedule():
    assert shaping_coefficient(0, 100, 0.5) == pytest.approx(0.5)
    assert shaping_coefficient(50, 100, 0.5) == pytest.approx(0.125)
    assert shaping_coefficient(100, 100, 0.5) == 0.0
    assert shaping_coefficient(150, 100, 0.5) == 0.0
    assert shaping_coefficient(10_000, 0, 0.5) == 0.5  # T = 0: no annealing


def test_gate_hand_values():
    assert update_gate(0.7) == pytest.approx(0.5)
    assert update_gate(0.9) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert update_gate(0.2) == pytest.approx(1 / (1 + math.exp(5.0)))


@given(a=unit, b=unit)
def test_gate_increasing(a, b):
    lo, hi = sorted((a, b))
    assert 0.0 < update_gate(lo) <= update_gate(hi) < 1.0


def test_human_signal():
    assert human_signal("accept") == 1.0
    assert human_signal("reject") == -1.0
    assert [human_signal("score", s) for s in range(1, 6)] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert human_signal("comment", similarity=0.42) == 0.42
    assert human_signal("edit", similarity=1.3) == 1.0
    # polarity: a blaming comment and the action a correction corrects are negative
    assert human_signal("comment", similarity=0.42, polarity=-1) == pytest.approx(-0.42)
    assert human_signal("edit", similarity=0.54, polarity=-1) == pytest.approx(-0.54)
    assert human_signal("edit", similarity=0.9, polarity=1) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="polarity"):
        human_signal("comment", similarity=0.3, polarity=0.5)
    with pytest.raises(ValueError, match="score"):
        human_signal("score", 7)
    with pytest.raises(ValueError, match="similarity"):
        human_signal("comment")
    with pytest.raises(ValueError, match="unknown feedback kind"):
        human_signal("thumbs-up")


def test_shaped_reward():
    assert shaped_reward(0.3, 0.5, 0.8, -1.0) == pytest.approx(-0.1)


def test_controller_and_ablations():
    tr = TrustRegionConfig()
    ours = TrustRegionController(tr, PPOConfig())
    c = ours.control(0.6)
    assert c.delta == pytest.approx(trust_region_radius(0.6))
    assert c.lam == pytest.approx(0.95 * 0.6)
    assert c.gate == pytest.approx(update_gate(0.6))
    ppo = TrustRegionController(
        tr, PPOConfig(use_confidence=False, adaptive_trust_region=False, gate=False)
    )
    c = ppo.control(0.1)
    assert (c.theta, c.delta, c.lam, c.gate) == (1.0, 0.2, 0.95, 1.0)
    # confidence weighting ablation: the reward ignores theta, the trust region does not
    no_weight = TrustRegionController(tr, PPOConfig(confidence_weighted_reward=False))
    assert no_weight.reward(0.0, 0, 0.2, 1.0) == pytest.approx(0.5)
    assert ours.reward(0.0, 0, 0.2, 1.0) == pytest.approx(0.1)
    assert ours.reward(0.25, 0, 0.2, None) == 0.25
    assert no_weight.control(0.2).delta == pytest.approx(trust_region_radius(0.2))
