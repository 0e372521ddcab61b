"""The experiment: reward and metric functions by hand, the HP-PPO reward model, UA-TRPO's
radius and KL bound, and `trustfix bench --quick` end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from trustfix.bench.experiment import (
    ccs,
    environment_reward,
    follow_rates,
    reviewer_quality,
    sir,
)
from trustfix.bench.hp_ppo import Preference, RewardModel, RewardModelConfig, bradley_terry_loss
from trustfix.bench.ua_trpo import (
    UATRPOConfig,
    UATRPOLearner,
    categorical_kl,
    kl_limit,
    step_length,
    uncertainty_metric,
    uncertainty_radius,
)
from trustfix.trainer.config import PPOConfig, RankerConfig
from trustfix.trainer.encoders import HASHING, make_encoder
from trustfix.trainer.policies.ranker import RankerPolicy


def test_bradley_terry_loss_hand_value() -> None:
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(2.0))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_reward_model_learns_a_clear_preference() -> None:
    model = RewardModel(make_encoder(HASHING), RewardModelConfig(epochs=40), seed=0)
    state = "unit f\n1| def f(x):\n2|     return x < 0\ntests: 2 passed, 3 failed"
    good = "swap < for <= on line 2\n-    return x < 0\n+    return x <= 0"
    bad = "rename x to y on line 1\n-def f(x):\n+def f(y):"
    for _ in range(12):
        model.add(Preference(state, good, 1.0))
        model.add(Preference(state, bad, -1.0))
    before = model([state, state], [good, bad])
    loss = model.refresh()
    after = model([state, state], [good, bad])
    assert abs(float(before[0] - before[1])) < 0.5
    assert float(after[0] - after[1]) > 2.0
    assert loss < 0.2
    assert model.signal([state], [good])[0] > 0 > model.signal([state], [bad])[0]


def test_uncertainty_radius_by_hand() -> None:
    log_term = math.log(20.0)
    expected = (6 + 2 * math.sqrt(6 * log_term) + 2 * log_term) / 64
    assert uncertainty_radius(6, 64, 0.05) == pytest.approx(expected)
    assert uncertainty_radius(6, 64, 0.05) == pytest.approx(0.319855, abs=1e-6)
    assert uncertainty_radius(6, 128, 0.05) == pytest.approx(expected / 2)


def test_step_length_and_kl_limit_by_hand() -> None:
    eigs = torch.tensor([2.0, 1.0])
    cov = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    metric = uncertainty_metric(eigs, cov, c=0.1, rn2=0.5, damping=0.0)
    assert torch.allclose(metric, torch.tensor([[2.05, 0.0], [0.0, 1.15]]))
    v = torch.tensor([1.0, 1.0])
    beta = step_length(v, metric, delta=0.02)
    assert beta == pytest.approx(math.sqrt(0.04 / 3.2))
    # the quadratic model of the KL at the step is delta
    assert 0.5 * beta**2 * float(v @ metric @ v) == pytest.approx(0.02)
    assert kl_limit(v, eigs, cov, 0.1, 0.5, 0.02, 1.5) == pytest.approx(1.5 * 0.02 * 3.0 / 3.2)


def _tiny_buffer(learner: UATRPOLearner, n: int = 12):
    gen = torch.Generator().manual_seed(0)
    states = [f"state {i % 3} tests failed at line {i % 3}" for i in range(n)]
    cands = [[f"fix line {j}" for j in range(4)] for _ in range(n)]
    actions, log_probs, values = [], [], []
    for s, c in zip(states, cands):
        a, lp, v = learner.policy.act(s, c, generator=gen)
        actions.append(a)
        log_probs.append(lp)
        values.append(v)
    rewards = [1.0 if a == 1 + int(s.split()[1]) else 0.0 for a, s in zip(actions, states)]
    return (
        states,
        cands,
        learner.transitions_from(
            states, cands, actions, log_probs, values, rewards, [True] * n, [None] * n
        ),
    )


def test_ua_trpo_step_satisfies_its_kl_bound() -> None:
    torch.manual_seed(0)
    policy = RankerPolicy(
        RankerConfig(
            vocab_size=256, d_model=16, n_heads=2, n_layers=1, max_tokens=32, state_tokens=16
        )
    )
    ppo = PPOConfig(use_confidence=False, adaptive_trust_region=False, gate=False, device="cpu")
    learner = UATRPOLearner(
        policy, ppo, ua=UATRPOConfig(rank=3, minibatches=4, fisher_states=8, delta=0.05)
    )
    states, cands, buffer = _tiny_buffer(learner)
    with torch.no_grad():
        before = policy(states, cands).log_probs
    params_before = [p.detach().clone() for p in policy.parameters()]
    diag = learner.update(buffer)
    with torch.no_grad():
        after = policy(states, cands).log_probs
    kl = float(categorical_kl(before, after))
    assert diag["backtracks"] >= 0, "the line search found no acceptable step"
    assert kl > 0
    assert kl == pytest.approx(diag["approx_kl"], rel=1e-4, abs=1e-7)
    assert kl <= diag["kl_limit"] + 1e-9
    assert diag["kl_limit"] <= 1.5 * 0.05 + 1e-12
    moved = sum(float((p.detach() - b).norm()) for p, b in zip(policy.parameters(), params_before))
    assert moved > 0


def test_environment_reward_by_hand() -> None:
    # half -> all tests pass, one of 4 style violations removed: 0.5 + 0.2 * 1/4 + 1
    assert environment_reward(0.5, 1.0, 3, 2, 4, False, True) == pytest.approx(1.55)
    # breaking a passing program: -0.5 share and -1 for losing "all pass"
    assert environment_reward(1.0, 0.5, 2, 2, 2, True, False) == pytest.approx(-1.5)
    # a style-only step on a program without starting violations counts per violation
    assert environment_reward(1.0, 1.0, 1, 0, 0, True, True, style_weight=0.3) == pytest.approx(0.3)


def test_metrics_by_hand() -> None:
    assert ccs([True, False, True, True]) == pytest.approx(75.0)
    assert sir([2, 0, 4], [1, 0, 4]) == pytest.approx(0.25)  # the 0-violation task is left out
    assert sir([2], [3]) == pytest.approx(-0.5)
    hfu, nrr = follow_rates([True, True, False, False, False], [True, True, True, False, False])
    assert hfu == pytest.approx(2 / 3)
    assert nrr == pytest.approx(1.0)
    rho, mae = reviewer_quality([0.2, 0.5, 0.9], [0.1, 0.6, 0.8])
    assert rho == pytest.approx(1.0)
    assert mae == pytest.approx(0.1)
    rho, mae = reviewer_quality([0.5, 0.5], [0.2, 0.9])
    assert math.isnan(rho) and mae == pytest.approx(0.35)


def test_true_fix_gets_the_all_pass_bonus_and_style_follows_the_team() -> None:
    from trustfix.bench.environment import Environment
    from trustfix.bench.reviewers import TeamPreference, style_kind
    from trustfix.bench.tasks import make_tasks
    from trustfix.server.proposers import Candidate
    from trustfix.server.sandbox import Sandbox, SandboxConfig

    task = next(t for t in make_tasks(0) if t.violations > 0)
    with Sandbox(SandboxConfig(cpu_seconds=1, wall_timeout=3.0)) as sb:
        env = Environment(sb, max_candidates=32, style_weight=0.2)
        start = env.run(task, task.buggy)
        r = env.reward(task, task.buggy, task.fixed)
        assert not start.all_passed
        assert r == pytest.approx(
            1.0
            - start.share_passed
            + 1.0
            + 0.2 * (task.violations - env.style(task.fixed)) / task.violations
        )
        team = TeamPreference("t")
        fix = Candidate("the fix", "operator", "", task.fixed, 1)
        back = Candidate("the bug", "operator", "", task.buggy, 1)
        assert env.test_verdict(task, task.buggy, task.fixed) is True
        assert env.is_good(task, task.buggy, fix, team)
        assert not env.is_good(task, task.fixed, back, team)
        # a style refinement of the bug-free program: the tests cannot judge it, the team does
        styles = [c for c in env.candidates(task, task.fixed) if style_kind(c.proposer, c.title)]
        assert styles
        for c in styles:
            assert env.test_verdict(task, task.fixed, c.source) is None
            assert env.is_good(task, task.fixed, c, team) == team.wants(
                style_kind(c.proposer, c.title)
            )
        wanted = env.true_fix(task, task.fixed, team)
        assert wanted is None or team.wants(style_kind(wanted.proposer, wanted.title))


def test_feedback_is_a_function_of_seed_task_state_and_action() -> None:
    from trustfix.bench.environment import Environment
    from trustfix.bench.feedback import FeedbackChannel, tests_run
    from trustfix.bench.reviewers import make_pool, team_preference
    from trustfix.bench.tasks import make_tasks
    from trustfix.server.sandbox import Sandbox, SandboxConfig
    from trustfix.trainer.confidence import ConfidenceEstimator
    from trustfix.trainer.config import ConfidenceConfig

    enc = make_encoder(HASHING)
    tasks = make_tasks(0)[:6]

    def drafts(seed: int, order: list[int]) -> dict[tuple[str, str], object]:
        channel = FeedbackChannel(
            env,
            enc,
            make_pool("mixed", 6, seed),
            team_preference("mixed", seed),
            "mixed",
            seed,
            f"m{seed}",
            ConfidenceEstimator(ConfidenceConfig(), enc, enc),
        )
        out = {}
        for i in order:
            cand = env.candidates(tasks[i], tasks[i].buggy)[0]
            out[(tasks[i].id, cand.source)] = channel.review(
                "train", tasks[i], tasks[i].buggy, cand
            )[1]
        return out

    with Sandbox(SandboxConfig(cpu_seconds=1, wall_timeout=3.0)) as sb:
        env = Environment(sb, max_candidates=8, style_weight=0.2)
        first = drafts(0, list(range(6)))
        assert drafts(0, list(reversed(range(6)))) == first  # another method, another order
        assert drafts(1, list(range(6))) != first
    keys = [(t, f"s{i}", f"a{i}") for t in tasks for i in range(200)]
    share = sum(tests_run(0, t, s, a, 0.2) for t, s, a in keys) / len(keys)
    assert share == pytest.approx(0.2, abs=0.03)


def test_paired_difference_and_clipped_intervals_by_hand() -> None:
    from trustfix.bench.metrics import paired_difference
    from trustfix.bench.report import summary_stat

    d = paired_difference([50.0, 60.0, 55.0], [40.0, 62.0, 45.0])
    assert d["per_seed"] == [10.0, -2.0, 10.0] and d["ahead"] == 2 and d["n"] == 3
    assert d["mean"] == pytest.approx(6.0)
    half = 4.302653 * math.sqrt(48.0) / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert d["ci"] == pytest.approx([6.0 - half, 6.0 + half], rel=1e-5)
    stat = summary_stat([0.95, 0.3, 0.817], 0.0, 1.0)
    assert stat["ci"][1] == 1.0 and stat["ci"][0] >= 0.0


def test_starting_policy_loads_the_checkpoint_or_warns(tmp_path: Path, caplog) -> None:
    from trustfix.bench.starting import resolve_starting_policy
    from trustfix.trainer.policies import save_checkpoint

    small = RankerConfig(vocab_size=128, d_model=16, n_heads=2, n_layers=1)
    with caplog.at_level("WARNING"):
        fresh = resolve_starting_policy("pretrained", small, tmp_path)
    assert (
        fresh.weights is None
        and "fresh" in fresh.label
        and "no pretrained checkpoint" in caplog.text
    )
    torch.manual_seed(3)
    shipped = RankerPolicy(small)
    save_checkpoint(shipped, tmp_path, 1)
    start = resolve_starting_policy("pretrained", RankerConfig(), tmp_path)
    assert start.label.startswith("pretrained v1") and start.config == small
    a, b = start.build(0), start.build(1)
    for name, value in shipped.state_dict().items():
        assert torch.equal(a.state_dict()[name], value) and torch.equal(b.state_dict()[name], value)
    assert resolve_starting_policy("fresh", small, tmp_path).weights is None
    with pytest.raises(ValueError, match="starting policy"):
        resolve_starting_policy("warm", small, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_quick_bench_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trustfix.cli",
            "bench",
            "--quick",
            "--ablations",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=390,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in (
        "results.json",
        "table1.md",
        "table2.md",
        "paired.md",
        "diagnostics.md",
        "fig1_update_vs_confidence.png",
        "fig2_ccs_curves.png",
        "reviewers.png",
        "feedback.jsonl",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    for key in (
        "schema_version",
        "command",
        "config",
        "settings",
        "versions",
        "machine",
        "wall_time_s",
        "wall_time_per_method_s",
        "summary",
        "runs",
        "bounds_per_seed",
    ):
        assert key in results, key
    methods = results["summary"]["methods"]
    for method in ("ours", "ppo", "hp-ppo", "ua-trpo", "ours w/o gate", "ours w/o estimator"):
        row = methods[method]["mixed"]
        for metric in (
            "ccs",
            "sir",
            "preference",
            "hfu",
            "nrr",
            "ccs_in_use",
            "spearman",
            "mae",
            "bias",
            "wall_s",
        ):
            assert set(row[metric]) == {"mean", "ci", "per_seed"}, (method, metric)
        for metric in ("ccs", "preference", "ccs_in_use"):
            assert 0.0 <= row[metric]["mean"] <= 100.0, (method, metric)
        assert 0.0 <= row["hfu"]["mean"] <= 1.0 and 0.0 <= row["nrr"]["mean"] <= 1.0
    assert {
        "no_refinement",
        "random",
        "oracle",
        "pretrained",
        "pretrained_sir",
        "pretrained_preference[mixed]",
    } <= set(results["summary"]["bounds"])
    paired = results["summary"]["paired"]["mixed"]
    assert set(paired) >= {"ppo", "hp-ppo", "ua-trpo", "ours w/o gate"}
    assert paired["ppo"]["ccs"]["n"] == 1
    diag = results["summary"]["diagnostics"]["ours"]["mixed"]
    assert 0.0 < diag["mean_gate"] < 1.0 and diag["approx_kl"] is not None
    assert set(results["wall_time_per_method_s"]) >= {"ours", "ppo", "hp-ppo", "ua-trpo"}
    run = results["runs"][0]
    assert run["curve"] and run["diagnostics"] and "update_norm" in run["diagnostics"][0]
    table1 = (out / "table1.md").read_text()
    assert all(m in table1 for m in ("ours", "ppo", "hp-ppo", "ua-trpo", "oracle", "no feedback"))
    assert "ours w/o smoothing" in (out / "table2.md").read_text()
    lines = (out / "feedback.jsonl").read_text().splitlines()
    assert lines
    items = [json.loads(line) for line in lines]
    assert {
        "reviewer",
        "item",
        "kind",
        "text",
        "truth",
        "reliability",
        "step_good",
        "polarity",
        "suggestion",
        "theta_final",
    } <= set(items[0])
    assert {i["phase"] for i in items} == {"train", "use", "probe"}
    # the probes have several reviewers on one item
    probe = Counter(
        i["suggestion"] for i in items if i["phase"] == "probe" and i["run"] == "ours:mixed:0"
    )
    assert max(probe.values()) == 2
    trained = [i for i in items if i["phase"] == "train"]
    assert 0 < sum(i["executed"] for i in trained) < len(trained)


def test_candidate_text_is_the_trainers_and_the_ranker_cuts_it() -> None:
    from trustfix.bench.experiment import candidate_text, changed_lines
    from trustfix.server.proposers import Candidate
    from trustfix.trainer.events import candidate_text as trainer_candidate_text

    diff = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n" + "\n".join(
        f"+    value_{i} = value_{i} + 1" for i in range(60)
    )
    cand = Candidate("swap + for -", "operator", diff, "x = 1\n", 3)
    text = candidate_text(cand)
    assert text == trainer_candidate_text(cand.title, diff)
    assert "+++" not in text and text.count("\n") == 60
    # a batch mixing a short state with long candidates and a full-length state works: the
    # ranker keeps the first candidate_tokens of each candidate
    policy = RankerPolicy(RankerConfig())
    long_state = " ".join(f"w{i}" for i in range(400))
    out = policy(["short", long_state], [[text], [text]])
    assert torch.isfinite(out.log_probs[:, :2]).all()
    assert changed_lines("a\nb\nc\n", "a\nB\nc\nd\n") == 3
