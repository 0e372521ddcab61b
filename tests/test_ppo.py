"""The learner: GAE with per-step lambda, per-sample clip, gate, and a full update."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from trustfix.trainer.config import PPOConfig, TrustRegionConfig
from trustfix.trainer.policies.base import Policy, PolicyOutput
from trustfix.trainer.ppo import (
    PPOLearner,
    clipped_surrogate,
    explained_variance,
    gated_policy_loss,
    generalized_advantages,
)


class TablePolicy(Policy):
    """A tiny tabular policy: one learnable logit per candidate text (STOP has its own)."""

    kind = "table"

    def __init__(self, names):
        super().__init__()
        self.index = {n: i for i, n in enumerate(names)}
        self.logits = torch.nn.Parameter(torch.zeros(len(names) + 1))
        self.value = torch.nn.Parameter(torch.zeros(1))

    def forward(self, states, candidates):
        width = 1 + max(len(c) for c in candidates)
        rows = []
        for cands in candidates:
            row = [self.logits[0]] + [self.logits[1 + self.index[c]] for c in cands]
            row += [torch.tensor(-math.inf)] * (width - len(row))
            rows.append(torch.stack(row))
        logits = torch.stack(rows)
        return PolicyOutput(torch.log_softmax(logits, 1), self.value.expand(len(states)))

    def get_config(self):
        return {"names": list(self.index)}


def textbook_gae(rewards, values, dones, lam, gamma, last_value):
    adv, gae = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        nv = last_value if t == len(rewards) - 1 else values[t + 1]
        nt = 1.0 - dones[t]
        d = rewards[t] + gamma * nv * nt - values[t]
        gae = d + gamma * lam * nt * gae
        adv[t] = gae
    return adv


def test_gae_hand_computed():
    # two-step episode, gamma 1: d1 = 1 - 0.5 = 0.5; d0 = 0 + 0.5 - 0.2 = 0.3
    adv, ret = generalized_advantages(
        torch.tensor([0.0, 1.0]),
        torch.tensor([0.2, 0.5]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([0.5, 0.9]),
        gamma=1.0,
    )
    assert adv.tolist() == pytest.approx([0.3 + 0.5 * 0.5, 0.5])
    assert ret.tolist() == pytest.approx([0.75, 1.0])


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.floats(-2, 2), st.floats(-2, 2), st.booleans()), min_size=1, max_size=12
    ),
    lam=st.floats(0, 1),
    gamma=st.floats(0.5, 1),
    last=st.floats(-1, 1),
)
def test_gae_constant_lambda_is_textbook(data, lam, gamma, last):
    rewards, values, dones = zip(*data)
    dones = [float(d) for d in dones]
    adv, _ = generalized_advantages(
        torch.tensor(rewards),
        torch.tensor(values),
        torch.tensor(dones),
        torch.full((len(rewards),), lam),
        gamma,
        last,
    )
    assert adv.tolist() == pytest.approx(
        textbook_gae(rewards, values, dones, lam, gamma, last), abs=1e-4
    )


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.floats(0.05, 3), st.floats(-3, 3)), min_size=1, max_size=20),
    eps=st.floats(0.01, 0.5),
)
def test_per_sample_clip_equals_standard_clip_when_equal(pairs, eps):
    ratio, adv = (torch.tensor(x) for x in zip(*pairs))
    standard = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
    ours = clipped_surrogate(ratio, adv, torch.full_like(ratio, eps))
    assert torch.allclose(ours, standard)


def test_gate_zero_means_no_policy_gradient():
    ratio = torch.tensor([1.05, 0.9, 1.0], requires_grad=True)
    adv = torch.tensor([1.0, -2.0, 0.5])
    delta = torch.tensor([0.2, 0.2, 0.2])
    loss = gated_policy_loss(clipped_surrogate(ratio, adv, delta), torch.tensor([0.0, 1.0, 0.0]))
    loss.backward()
    assert ratio.grad[0] == 0 and ratio.grad[2] == 0 and ratio.grad[1] != 0


def test_explained_variance():
    y = torch.tensor([1.0, 2.0, 3.0])
    assert explained_variance(y, y) == 1.0
    assert explained_variance(torch.zeros(3), y) == pytest.approx(0.0)
    assert explained_variance(y + 1, y) == pytest.approx(1.0)
    assert explained_variance(torch.tensor([3.0, 2.0, 1.0]), y) == pytest.approx(
        1 - (8 / 3) / (2 / 3)
    )
    assert math.isnan(explained_variance(y, torch.ones(3)))


def _bandit_buffer(learner, theta, n=64, seed=0):
    """Candidates a, b, c; b pays 1, the rest -1; one-step episodes."""
    g = torch.Generator().manual_seed(seed)
    cands = ["a", "b", "c"]
    rows = []
    for _ in range(n):
        action, logp, value = learner.policy.act("s", cands, generator=g)
        reward = 1.0 if action == 2 else -1.0
        rows.append(("s", cands, action, logp, value, reward, True, theta))
    return learner.transitions_from(*zip(*rows))


def test_update_learns_and_logs_diagnostics():
    learner = PPOLearner(TablePolicy(["a", "b", "c"]), PPOConfig(lr=0.05, seed=1))
    for i in range(15):
        diag = learner.update(_bandit_buffer(learner, 0.95, seed=i))
    probs = learner.policy(["s"], [["a", "b", "c"]]).log_probs.exp()[0]
    assert probs[2] > 0.8
    for key in (
        "approx_kl",
        "clip_fraction",
        "explained_variance",
        "mean_delta",
        "mean_gate",
        "policy_loss",
        "value_loss",
        "entropy",
        "clip_fraction[0.75-1.00]",
    ):
        assert key in diag
    assert diag["mean_delta"] == pytest.approx(0.2 * math.tanh(3 * 0.95), abs=1e-6)
    assert len(learner.history) == 15


def _split_buffer(learner, theta_right, theta_wrong, n=128, seed=0):
    """Half the samples say b pays (confidence theta_right), half say c pays (theta_wrong)."""
    g = torch.Generator().manual_seed(seed)
    cands, rows = ["a", "b", "c"], []
    for i in range(n):
        action, logp, value = learner.policy.act("s", cands, generator=g)
        good = 2 if i % 2 == 0 else 3
        theta = theta_right if i % 2 == 0 else theta_wrong
        rows.append(("s", cands, action, logp, value, 1.0 if action == good else -1.0, True, theta))
    return learner.transitions_from(*zip(*rows))


def test_low_confidence_samples_weigh_less():
    """Within a batch, the gate and radius let confident samples dominate (plain PPO is torn)."""
    final = {}
    for name, switches in {
        "ours": PPOConfig(lr=0.05, seed=3),
        "ppo": PPOConfig(
            lr=0.05, seed=3, use_confidence=False, adaptive_trust_region=False, gate=False
        ),
    }.items():
        learner = PPOLearner(TablePolicy(["a", "b", "c"]), switches)
        for i in range(10):
            learner.update(_split_buffer(learner, 0.95, 0.3, seed=i))
        final[name] = learner.policy(["s"], [["a", "b", "c"]]).log_probs.exp()[0]
    assert final["ours"][2] > 0.7 and final["ours"][2] > final["ours"][3] + 0.5
    assert abs(float(final["ppo"][2].detach() - final["ppo"][3].detach())) < 0.3


def test_trust_region_bounds_the_ratios():
    """A small radius holds the new/old ratios back; a huge one lets them run."""
    spread = {}
    for delta_base in (0.02, 5.0):
        tr = TrustRegionConfig(delta_base=delta_base)
        cfg = PPOConfig(lr=0.05, epochs=8, entropy_coef=0.0, seed=0)
        learner = PPOLearner(TablePolicy(["a", "b", "c"]), cfg, tr)
        buffer = _bandit_buffer(learner, 1.0, seed=2)
        learner.update(buffer)
        actions = torch.tensor([t.action for t in buffer.transitions])
        with torch.no_grad():
            new, _, _ = learner.policy.evaluate_actions(
                ["s"] * len(actions), [["a", "b", "c"]] * len(actions), actions
            )
        spread[delta_base] = float(((new - buffer.column("log_prob")).exp() - 1).abs().max())
    assert spread[5.0] > 2 * spread[0.02]  # measured: 0.71 vs 0.31 (Adam momentum overshoots a bit)


def test_empty_buffer_is_an_error():
    from trustfix.trainer.ppo import RolloutBuffer

    learner = PPOLearner(TablePolicy(["a"]))
    with pytest.raises(ValueError, match="empty"):
        learner.update(RolloutBuffer())
