"""Bayesian feedback-confidence estimator: equations, estimator behaviour, recovery of reviewer
reliability from simulated reviewers, persistence and forgetting."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pytest
import sqlite_utils
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from trustfix.trainer.confidence import (
    ConfidenceEstimator,
    FeedbackItem,
    beta_mean,
    confidence_in_use,
    consistency,
    estimator_from_rows,
    estimator_to_rows,
    feedback_meta,
    has_content,
    is_consistent,
    polarity,
    prior_parameters,
    prior_with_history,
    right_given_agreement,
    smoothed_confidence,
    updated_beta,
)
from trustfix.trainer.config import EMBEDDED, ConfidenceConfig
from trustfix.trainer.encoders import HashingEncoder, get_encoder

HASH = HashingEncoder()
CFG = ConfidenceConfig(related_window=10)
"""Compares a new item with up to 10 earlier ones, so small hand-computed cases see them all."""


def item(
    fid: str,
    reviewer: str,
    kind: str,
    suggestion: str = "s0",
    **kw: object,
) -> FeedbackItem:
    return FeedbackItem(fid, suggestion, reviewer, kw.pop("role", "student"), kind, **kw)  # type: ignore[arg-type]


def estimator(cfg: ConfidenceConfig = CFG, seed: int = 0) -> ConfidenceEstimator:
    return ConfidenceEstimator(cfg, HASH, HASH, seed=seed)


# ---------------------------------------------------------------- equations by hand


def test_defaults_are_the_papers() -> None:
    assert (CFG.increment, CFG.consistency_threshold, CFG.window) == (0.25, 0.8, 5)
    assert (CFG.decay, CFG.variance_threshold) == (2.0, 0.1)


def test_beta_mean_eq6() -> None:
    assert beta_mean(3.0, 1.0) == 0.75
    assert beta_mean(1.0, 1.0) == 0.5
    assert beta_mean(2.5, 7.5) == 0.25


def test_updated_beta_eq7_eq8() -> None:
    assert updated_beta(2.0, 3.0, True, 0.25) == (2.25, 3.0)
    assert updated_beta(2.0, 3.0, False, 0.25) == (2.0, 3.25)


def test_smoothed_confidence_eq18_hand_computed() -> None:
    # weights e^{-(t-i)/2} for the oldest .. newest of three values: e^-1, e^-0.5, 1
    w = [math.exp(-1.0), math.exp(-0.5), 1.0]
    expected = (0.2 * w[0] + 0.4 * w[1] + 0.9 * w[2]) / sum(w)
    assert smoothed_confidence([0.2, 0.4, 0.9], 2.0) == pytest.approx(expected, rel=1e-12)
    assert smoothed_confidence([0.2, 0.4, 0.9], 2.0) == pytest.approx(0.615975, abs=1e-6)
    assert smoothed_confidence([0.7], 2.0) == 0.7
    with pytest.raises(ValueError):
        smoothed_confidence([], 2.0)


def test_confidence_in_use_switches_at_nu() -> None:
    wide = [0.0, 1.0]  # population variance 0.25 > nu = 0.1
    narrow = [0.25, 0.75]  # 0.0625 (exact in binary)
    assert confidence_in_use(1.0, wide, CFG) == pytest.approx(1 / (1 + math.exp(-0.5)))
    assert confidence_in_use(0.75, narrow, CFG) == 0.75
    at_variance = dataclasses.replace(CFG, variance_threshold=0.0625)
    assert confidence_in_use(0.75, narrow, at_variance) == 0.75  # Var(M) > nu is strict
    just_below = dataclasses.replace(CFG, variance_threshold=0.0624)
    expected = (0.25 * math.exp(-0.5) + 0.75) / (math.exp(-0.5) + 1)
    assert confidence_in_use(0.75, narrow, just_below) == pytest.approx(expected)


def test_prior_parameters_eq5_bounds() -> None:
    zero = prior_parameters(torch.zeros(1, 2), prior_scale=2.0)
    assert float(zero[0][0]) == pytest.approx(1 + math.log(2))
    assert float(zero[1][0]) == pytest.approx(1 + math.log(2))
    big = prior_parameters(torch.tensor([[30.0, 10.0]]), prior_scale=2.0)
    a, b = float(big[0][0]), float(big[1][0])
    assert a - 1 + b - 1 == pytest.approx(2.0)
    assert a == pytest.approx(1 + 2.0 * 30 / 40, rel=1e-5)
    low = prior_parameters(torch.tensor([[-30.0, -30.0]]), prior_scale=2.0)
    assert float(low[0][0]) >= 1.0 and float(low[1][0]) >= 1.0


def test_prior_with_history() -> None:
    assert prior_with_history(1.5, 1.25, 3.0, 2.0, (1.0, 1.0), 0.5) == (2.5, 1.75)
    assert prior_with_history(1.5, 1.25, 1.0, 1.0, (1.0, 1.0), 1.0) == (1.5, 1.25)


def test_polarity_and_content() -> None:
    assert polarity(item("a", "r", "accept")) == 1
    assert polarity(item("a", "r", "reject")) == -1
    assert polarity(item("a", "r", "ignore")) == -1
    assert polarity(item("a", "r", "score", score=4)) == 1
    assert polarity(item("a", "r", "score", score=2)) == -1
    assert polarity(item("a", "r", "score", score=3)) == 0
    assert polarity(item("a", "r", "edit", diff="+x")) == 0
    assert polarity(item("a", "r", "comment", text="hm")) == 0
    assert has_content(item("a", "r", "comment", text="hm"))
    assert has_content(item("a", "r", "edit", diff="+x"))
    assert not has_content(item("a", "r", "accept"))
    with pytest.raises(ValueError):
        item("a", "r", "like")
    with pytest.raises(ValueError):
        item("a", "r", "score", score=6)
    with pytest.raises(ValueError):
        item("a", "r", "accept", role="boss")


def test_feedback_meta_layout() -> None:
    meta = feedback_meta(item("a", "r", "score", score=5, diff="+x", role="instructor"))
    assert meta[4] == 1.0 and meta[:4].sum() == 0 and meta[5] == 0  # kind one-hot: score
    assert meta[6] == 1.0 and meta[7] == 1.0 and meta[8] == 1.0  # score, has-score, has-code
    assert meta[9] == pytest.approx(math.log1p(2) / 10)
    assert list(meta[10:]) == [0.0, 0.0, 1.0]


def test_consistency_eq9_cases() -> None:
    fix = "-    if i < len(xs) - 1:\n+    if i < len(xs):"
    other_fix = "-    total = total + x\n+    total = x"
    same = consistency(
        item("a", "r1", "edit", diff=fix), item("b", "r2", "edit", diff=fix + "  # ok"), HASH, 0.8
    )
    assert same.consistent is True and same.basis == "cosine" and same.value > 0.8
    differ = consistency(
        item("a", "r1", "edit", diff=fix), item("b", "r2", "edit", diff=other_fix), HASH, 0.8
    )
    assert differ.consistent is False and differ.basis == "cosine" and differ.value < 0.8
    # the threshold decides: the same pair is inconsistent above its own cosine
    assert not is_consistent(
        item("a", "r1", "edit", diff=fix), item("b", "r2", "edit", diff=fix + "  # ok"), HASH, 0.999
    )
    acc, rej = item("a", "r1", "accept"), item("b", "r2", "reject")
    assert is_consistent(acc, item("c", "r3", "score", score=5), HASH, 0.8) is True
    assert is_consistent(acc, rej, HASH, 0.8) is False
    # mixed: a textual item with a polarity compares by polarity, without one it is undecided
    assert is_consistent(item("d", "r4", "reject", text="wrong bound"), acc, HASH, 0.8) is False
    assert is_consistent(item("d", "r4", "edit", diff=fix), acc, HASH, 0.8) is None
    assert is_consistent(item("e", "r5", "score", score=3), acc, HASH, 0.8) is None


# ---------------------------------------------------------------- properties


@given(st.floats(1e-3, 1e6), st.floats(1e-3, 1e6))
def test_beta_mean_in_open_unit_interval(alpha: float, beta: float) -> None:
    assert 0.0 < beta_mean(alpha, beta) < 1.0


@given(st.floats(0.0, 1.0), st.integers(1, 5), st.floats(0.1, 10.0))
def test_smoothing_a_constant_buffer_gives_the_constant(value: float, n: int, xi: float) -> None:
    assert smoothed_confidence([value] * n, xi) == pytest.approx(value, abs=1e-12)
    assert confidence_in_use(value, [value] * n, CFG) == value


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5), st.floats(0.1, 10.0))
def test_smoothing_stays_within_the_buffer(buffer: list[float], xi: float) -> None:
    out = smoothed_confidence(buffer, xi)
    assert min(buffer) - 1e-12 <= out <= max(buffer) + 1e-12


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 2),
            st.sampled_from(["accept", "reject", "edit", "comment", "score", "ignore"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_every_confidence_is_a_probability(events: list[tuple[int, int, str, bool]]) -> None:
    est = estimator()
    for n, (reviewer, suggestion, kind, verified) in enumerate(events):
        kw: dict[str, object] = {}
        if kind == "edit":
            kw["diff"] = f"+ x = {suggestion}"
        elif kind == "comment":
            kw["text"] = "fine" if verified else "wrong"
        elif kind == "score":
            kw["score"] = 1 + n % 5
        fid = f"f{n}"
        theta_hat = est.observe(item(fid, f"r{reviewer}", kind, f"s{suggestion}", **kw))
        assert 0.0 < theta_hat < 1.0
        if n % 2:
            assert 0.0 < est.observe_execution(fid, verified) < 1.0
    for name, state in est.reviewers().items():
        assert 0.0 < state.theta < 1.0
        assert 0.0 < est.reviewer_confidence(name) < 1.0


# ---------------------------------------------------------------- estimator mechanics


def test_first_item_prior_comes_from_f_phi_only() -> None:
    est = estimator()
    first = item("a", "r1", "accept")
    alpha_phi, beta_phi = est.f_phi_prior(first)
    assert alpha_phi >= 1.0 and beta_phi >= 1.0
    assert alpha_phi + beta_phi - 2 <= CFG.prior_scale + 1e-6
    theta_hat = est.observe(first)
    assert theta_hat == pytest.approx(alpha_phi / (alpha_phi + beta_phi))
    info = est.explain("a")
    assert info["prior"]["f_phi"] == {"alpha": alpha_phi, "beta": beta_phi}
    assert info["prior"]["reviewer_history"] == {"alpha": 0.0, "beta": 0.0}
    assert info["updates"] == []


def test_agreement_updates_both_items_and_both_reviewers() -> None:
    est = estimator()
    est.observe(item("a", "r1", "accept"))
    a_before = est.explain("a")
    est.observe(item("b", "r2", "accept"))
    est.observe(item("c", "r3", "reject"))
    a, b, c = est.explain("a"), est.explain("b"), est.explain("c")
    c_inc = CFG.increment
    assert a["alpha"] == pytest.approx(a_before["alpha"] + c_inc)  # confirmed by b
    assert a["beta"] == pytest.approx(a_before["beta"] + c_inc)  # contradicted by c
    assert [(u["other"], u["consistent"], u["basis"]) for u in a["updates"]] == [
        ("b", True, "polarity"),
        ("c", False, "polarity"),
    ]
    assert [(u["other"], u["consistent"]) for u in b["updates"]] == [("a", True), ("c", False)]
    assert [(u["other"], u["consistent"]) for u in c["updates"]] == [("a", False), ("b", False)]
    assert all(u["source"] == "agreement" and u["increment"] == c_inc for u in c["updates"])
    r1, r3 = est.reviewer_state("r1"), est.reviewer_state("r3")
    assert (r1.alpha, r1.beta, r1.count) == (1.25, 1.25, 1)
    assert (r3.alpha, r3.beta) == (1.0, 1.5)
    assert est.reviewer_confidence("r3") == pytest.approx(1.0 / 2.5)
    assert est.reviewer_confidence("nobody") == 0.5


def test_reviewer_history_enters_the_next_prior_with_weight_rho() -> None:
    cfg = dataclasses.replace(CFG, reviewer_weight=0.5)
    est = estimator(cfg)
    est.observe(item("a", "r1", "accept"))
    est.observe(item("b", "r2", "accept"))
    est.observe(item("c", "r3", "accept"))  # r1: alpha_r = 1.5
    nxt = item("d", "r1", "reject", suggestion="s1")
    alpha_phi, beta_phi = est.f_phi_prior(nxt)
    est.observe(nxt)
    prior = est.explain("d")["prior"]
    assert prior["reviewer_history"] == {"alpha": pytest.approx(0.25), "beta": 0.0}
    assert prior["alpha0"] == pytest.approx(alpha_phi + 0.25)
    assert prior["beta0"] == pytest.approx(beta_phi)


def test_same_reviewer_never_confirms_itself_and_locations_link_suggestions() -> None:
    est = estimator()
    est.observe(item("a", "r1", "accept", location="m.py:f"))
    est.observe(item("b", "r1", "accept"))
    assert est.explain("a")["updates"] == []
    est.observe(item("c", "r2", "reject", suggestion="other", location="m.py:f"))
    assert [u["other"] for u in est.explain("a")["updates"]] == ["c"]
    assert est.explain("b")["updates"] == []


def test_execution_evidence_moves_item_and_reviewer() -> None:
    est = estimator()
    est.observe(item("a", "r1", "accept"))
    before = est.explain("a")
    est.observe_execution("a", verified=True)
    est.observe_execution("a", verified=False)
    est.observe_execution("a", verified=False)
    after = est.explain("a")
    assert after["alpha"] == pytest.approx(before["alpha"] + CFG.exec_increment)
    assert after["beta"] == pytest.approx(before["beta"] + 2 * CFG.exec_increment)
    assert [u["source"] for u in after["updates"]] == ["execution"] * 3
    r1 = est.reviewer_state("r1")
    assert (r1.alpha, r1.beta) == (1 + CFG.exec_increment, 1 + 2 * CFG.exec_increment)
    with pytest.raises(KeyError):
        est.observe_execution("missing", True)


def test_observe_is_idempotent() -> None:
    est = estimator()
    fb = item("a", "r1", "accept")
    first = est.observe(fb)
    est.observe(item("b", "r2", "accept"))
    rows = estimator_to_rows(est)
    assert est.observe(fb) == est.confidence("a")
    assert estimator_to_rows(est) == rows
    assert first != est.confidence("a")


def test_smoothing_in_use_when_the_buffer_varies() -> None:
    cfg = dataclasses.replace(CFG, variance_threshold=0.0, window=3)
    est = estimator(cfg)
    for n in range(4):
        est.observe(item(f"x{n}", "r2", "accept", suggestion=f"s{n}"))
        est.observe_execution(f"x{n}", verified=n % 2 == 0)
    returned = [est.observe(item(f"a{n}", "r1", "accept", suggestion=f"s{n}")) for n in range(4)]
    state = est.reviewer_state("r1")
    assert len(state.buffer) == 3
    assert state.buffer == pytest.approx(
        [est.confidence(f"a{n}", smoothed=False) for n in (1, 2, 3)]
    )
    assert returned[-1] == pytest.approx(smoothed_confidence(state.buffer, cfg.decay))
    assert est.confidence("a3") == pytest.approx(smoothed_confidence(state.buffer, cfg.decay))
    assert est.confidence("a3", smoothed=False) == est.explain("a3")["theta"]
    assert est.confidence("a3") != est.confidence("a3", smoothed=False)


def test_f_phi_learns_from_posteriors() -> None:
    cfg = dataclasses.replace(CFG, prior_lr=1e-2, prior_batch=8)
    est = estimator(cfg)
    probe = item("probe", "new", "comment", text="the loop bound is off by one", role="student")
    alpha0, beta0 = est.f_phi_prior(probe)
    for n in range(60):
        fid = f"f{n}"
        est.observe(item(fid, f"r{n % 4}", "comment", f"s{n}", text="the loop bound is off by one"))
        est.observe_execution(fid, verified=True)
    alpha1, beta1 = est.f_phi_prior(probe)
    assert alpha1 / (alpha1 + beta1) > alpha0 / (alpha0 + beta0) + 0.05


def test_embedded_encoders_drive_consistency() -> None:
    enc = get_encoder(EMBEDDED)
    est = ConfidenceEstimator(CFG, enc, enc)
    fix = "-    for i in range(len(xs) - 1):\n+    for i in range(len(xs)):"
    est.observe(item("a", "r1", "edit", diff=fix))
    est.observe(item("b", "r2", "edit", diff=fix + "  # include the last element"))
    est.observe(item("c", "r3", "comment", text="I would rather rename this class to Manager"))
    updates = {(u["other"], u["consistent"]) for u in est.explain("a")["updates"]}
    assert updates == {("b", True), ("c", False)}
    assert est.explain("a")["updates"][0]["value"] > CFG.consistency_threshold


# ---------------------------------------------------------------- simulated reviewers

RIGHT_FIXES = [
    "-    for i in range(len(xs) - 1):\n+    for i in range(len(xs)):",
    "-    return a - b\n+    return a + b",
    "-    if n > 0:\n+    if n >= 0:",
]
WRONG_FIXES = [
    "-    total = total + x\n+    total = x",
    "-    result.append(item)\n+    result = [item]",
    "-    while lo < hi:\n+    while True:",
]
RIGHT_COMMENTS = [
    "off by one in the loop bound",
    "the subtraction should be an addition",
    "zero must be accepted, use >=",
]
WRONG_COMMENTS = [
    "rename the variable, the logic is fine",
    "add a docstring, nothing else is wrong",
    "this needs a global cache",
]
TAILS = ["", "  # fix", "  # fixed", " "]


Event = tuple[FeedbackItem, bool]
"""A feedback item and whether its reviewer was right (what execution later reveals)."""


def simulated_stream(
    reliabilities: list[float],
    n_items: int = 50,
    per_suggestion: int = 4,
    seed: int = 0,
) -> list[Event]:
    """Each round every reviewer reviews one suggestion, shared with 2-3 others; a suggestion is
    good or bad; reviewer r is right with probability p_r (accepts good / rejects bad, writes the
    right fix or comment), else wrong the same way everybody wrong is."""
    rng = np.random.default_rng(seed)
    n = len(reliabilities)
    events: list[Event] = []
    for round_ in range(n_items):
        groups = np.array_split(rng.permutation(n), math.ceil(n / per_suggestion))
        for g, group in enumerate(groups):
            good = bool(rng.random() < 0.5)
            task = int(rng.integers(len(RIGHT_FIXES)))
            for r in group:
                right = bool(rng.random() < reliabilities[r])
                u = rng.random()
                kw: dict[str, object] = {}
                if u < 0.6:
                    kind = "accept" if good == right else "reject"
                elif u < 0.85:
                    kind = "edit"
                    fix = RIGHT_FIXES[task] if right else WRONG_FIXES[task]
                    kw["diff"] = fix + TAILS[int(rng.integers(len(TAILS)))]
                else:
                    kind = "comment"
                    kw["text"] = RIGHT_COMMENTS[task] if right else WRONG_COMMENTS[task]
                t = len(events)
                fb = item(f"f{t}", f"r{r}", kind, f"s{round_}.{g}", time=float(t), **kw)
                events.append((fb, right))
    return events


def feed(
    est: ConfidenceEstimator, events: list[Event], execution: bool = True
) -> ConfidenceEstimator:
    """Observe each item, then (with ``execution``) the execution evidence about it."""
    for fb, right in events:
        est.observe(fb)
        if execution:
            est.observe_execution(fb.id, right)
    return est


def simulate(
    est: ConfidenceEstimator, reliabilities: list[float], execution: bool = True, **kw: int
) -> ConfidenceEstimator:
    return feed(est, simulated_stream(reliabilities, **kw), execution)


def test_simulated_texts_behave_as_intended() -> None:
    right = HASH.encode([RIGHT_FIXES[0] + tail for tail in TAILS])
    wrong = HASH.encode(WRONG_FIXES[:1] + RIGHT_FIXES[1:])
    assert (right @ right.T).min() > CFG.consistency_threshold
    assert (right @ wrong.T).max() < CFG.consistency_threshold


def test_recovers_reviewer_reliability_with_execution_evidence() -> None:
    reliabilities = [*np.linspace(0.2, 0.95, 10).tolist(), 0.1]
    est = simulate(estimator(), reliabilities)
    thetas = [est.reviewer_confidence(f"r{i}") for i in range(len(reliabilities))]
    assert all(est.reviewer_state(f"r{i}").count == 50 for i in range(len(reliabilities)))
    assert spearmanr(thetas, reliabilities).statistic >= 0.8
    assert thetas[-1] < 0.5  # the consistently wrong reviewer (p = 0.1)
    assert thetas[-1] == min(thetas)


def test_agreement_alone_rewards_a_wrong_majority() -> None:
    """Why execution evidence exists: when most reviewers are wrong the same way, agreement
    (eq. 7-9 alone) trusts them more than the right minority; execution reverses that."""
    reliabilities = [0.2] * 7 + [0.95] * 3
    names = [f"r{i}" for i in range(len(reliabilities))]
    agree_only = simulate(estimator(), reliabilities, execution=False)
    theta = np.array([agree_only.reviewer_confidence(r) for r in names])
    assert theta[:7].mean() > theta[7:].mean()
    with_exec = simulate(estimator(), reliabilities, execution=True)
    theta = np.array([with_exec.reviewer_confidence(r) for r in names])
    assert theta[7:].min() > theta[:7].max()
    assert theta[:7].max() < 0.5 < theta[7:].min()


def test_a_long_stream_processes_in_seconds() -> None:
    est = estimator()
    start = time.perf_counter()
    simulate(est, [0.3, 0.5, 0.7, 0.9] * 5, n_items=100, per_suggestion=5)  # 2000 items
    elapsed = time.perf_counter() - start
    assert len(est.items()) == 2000
    assert elapsed < 30.0, f"2000 items took {elapsed:.1f} s"


# ---------------------------------------------------------------- persistence and forgetting


def _assert_same_state(a: ConfidenceEstimator, b: ConfidenceEstimator) -> None:
    ids = [fb.id for fb in a.items()]
    assert ids == [fb.id for fb in b.items()]
    for fid in ids:
        assert a.confidence(fid) == b.confidence(fid)
        assert a.confidence(fid, smoothed=False) == b.confidence(fid, smoothed=False)
        assert a.explain(fid) == b.explain(fid)
    assert a.reviewers() == b.reviewers()


def test_round_trip_through_json_is_exact_and_continues_identically() -> None:
    cfg = dataclasses.replace(CFG, prior_batch=13)
    est = simulate(estimator(cfg, seed=3), [0.3, 0.6, 0.9, 0.5, 0.8], n_items=12)
    rows = json.loads(json.dumps(estimator_to_rows(est)))
    meta = {row["key"]: json.loads(row["value"]) for row in rows["meta"]}
    assert meta["pending"], "the case must carry a half-filled f_phi training batch"
    back = estimator_from_rows(rows, cfg, HASH, HASH)
    _assert_same_state(est, back)
    assert estimator_to_rows(back) == estimator_to_rows(est)
    # f_phi, its optimiser state and the pending training queue came back too
    for target in (est, back):
        for n in range(7):
            target.observe(item(f"new{n}", f"r{n % 3}", "accept", f"s0.{n % 2}"))
            target.observe_execution(f"new{n}", n % 2 == 0)
    _assert_same_state(est, back)
    probe = item("probe", "r9", "comment", text="off by one")
    assert est.f_phi_prior(probe) == back.f_phi_prior(probe)


def test_round_trip_through_sqlite(tmp_path) -> None:
    est = simulate(estimator(), [0.3, 0.6, 0.9, 0.5], n_items=10)
    db = sqlite_utils.Database(tmp_path / "confidence.sqlite")
    rows = estimator_to_rows(est)
    for table, table_rows in rows.items():
        db[table].insert_all(table_rows)
    loaded = {table: list(db[table].rows) for table in rows}
    back = estimator_from_rows(loaded, CFG, HASH, HASH)
    _assert_same_state(est, back)
    assert all(row["data"] and isinstance(row["data"], str) for row in loaded["f_phi"])


def test_forget_reviewer_equals_never_having_seen_them() -> None:
    events = simulated_stream([0.2, 0.9, 0.7, 0.4, 0.8], n_items=20, per_suggestion=3)
    est = feed(estimator(seed=1), events)
    before = est.reviewers()

    removed = est.forget_reviewer("r0")

    assert removed == 20
    assert "r0" not in est.reviewers()
    assert all(fb.reviewer != "r0" for fb in est.items())
    assert any(est.reviewers()[r] != before[r] for r in ("r1", "r2", "r3", "r4"))
    fresh = feed(estimator(seed=1), [(fb, ok) for fb, ok in events if fb.reviewer != "r0"])
    _assert_same_state(est, fresh)
    assert estimator_to_rows(est) == estimator_to_rows(fresh)
    owner = {fb.id: fb.reviewer for fb, _ in events}
    for fb in est.items():
        others = [u["other"] for u in est.explain(fb.id)["updates"] if u["other"] is not None]
        assert all(owner[other] != "r0" for other in others)


def test_default_window_compares_with_the_latest_other_reviewer_only() -> None:
    est = estimator(ConfidenceConfig())
    for fid, reviewer in (("a", "r1"), ("b", "r2"), ("c", "r1"), ("d", "r3")):
        est.observe(item(fid, reviewer, "accept"))
    assert [u["other"] for u in est.explain("d")["updates"]] == ["c"]
    assert [u["other"] for u in est.explain("c")["updates"]] == ["b", "d"]


def test_right_given_agreement_is_bayes_rule_for_one_coin_reviewers() -> None:
    assert right_given_agreement(0.5, 0.9, True) == pytest.approx(0.9)
    assert right_given_agreement(0.5, 0.9, False) == pytest.approx(0.1)
    assert right_given_agreement(0.9, 0.5, True) == pytest.approx(0.9)  # an uninformative partner
    assert right_given_agreement(0.8, 0.7, True) == pytest.approx(0.56 / (0.56 + 0.06))
    assert right_given_agreement(0.8, 0.7, False) == pytest.approx(0.24 / (0.24 + 0.14))


def test_posterior_agreement_removes_most_of_the_pull_toward_the_agreement_rate() -> None:
    """Counting each agreement whole (eq. 7-8) pulls a reliable reviewer's theta toward their
    rate of agreement with imperfect others; splitting c by P(right | outcome) does not."""
    pool = list(np.linspace(0.85, 0.95, 4)) + list(np.linspace(0.2, 0.6, 4))
    bias = {}
    for update in ("paper", "posterior"):
        est = simulate(estimator(dataclasses.replace(CFG, agreement_update=update)), pool)
        theta = np.array([est.reviewer_confidence(f"r{i}") for i in range(len(pool))])
        bias[update] = float(np.mean(theta - np.array(pool)))
    assert bias["paper"] < -0.05
    assert abs(bias["posterior"]) < abs(bias["paper"]) / 2
