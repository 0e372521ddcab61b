"""Simulated reviewers: pools, reliabilities, kinds, and labels that match the content."""

from __future__ import annotations

import math
import random
import re
from collections import Counter

import pytest
from trustfix.bench.reviewers import (
    _BLAME_SPECIFIC,
    _BLAME_VAGUE,
    _PRAISE_SPECIFIC,
    _PRAISE_VAGUE,
    KINDS,
    Edit,
    Reviewer,
    ReviewerPoolConfig,
    Step,
    make_pool,
    pool_feedback,
    style_kind,
    team_preference,
    unified_diff,
)
from trustfix.server.operators import operator_edits

CORRECT = """\
def count_positive(xs):
    total = 0
    for x in xs:
        if x > 0:
            total += 1
    return total
"""
BUGGY = CORRECT.replace("if x > 0:", "if x >= 0:")


def _edit(before: str, after: str) -> Edit:
    match = next(e for e in operator_edits(before) if e.source == after)
    return Edit.between(before, after, match.title, match.line)


@pytest.fixture(scope="module")
def steps() -> tuple[Step, Step]:
    fix = _edit(BUGGY, CORRECT)
    others = [e for e in operator_edits(BUGGY) if e.source != CORRECT]
    decoys = tuple(Edit.between(BUGGY, e.source, e.title, e.line) for e in others[:5])
    good = Step("t1", BUGGY, fix, True, fix, decoys)
    bad = Step("t1", BUGGY, decoys[0], False, fix, decoys[1:])
    return good, bad


def _template_kind(text: str) -> str:
    def matches(templates: tuple[str, ...]) -> bool:
        for t in templates:
            pattern = re.escape(t).replace(r"\{title\}", ".+").replace(r"\{line\}", r"\d+")
            if re.fullmatch(pattern, text):
                return True
        return False

    if matches(_PRAISE_SPECIFIC) or matches(_PRAISE_VAGUE):
        return "praise"
    assert matches(_BLAME_SPECIFIC) or matches(_BLAME_VAGUE), text
    return "blame"


def test_pools_have_the_conditions_reliabilities():
    cfg = ReviewerPoolConfig()
    for condition, (lo, hi) in (("high", cfg.high), ("low", cfg.low)):
        pool = make_pool(condition, n=10, seed=3)
        assert len(pool) == 10 and all(lo <= r.reliability <= hi for r in pool)
    mixed = make_pool("mixed", n=10, seed=3)
    reliable = [r for r in mixed if cfg.high[0] <= r.reliability <= cfg.high[1]]
    unreliable = [r for r in mixed if cfg.unreliable[0] <= r.reliability <= cfg.unreliable[1]]
    assert len(reliable) == 5 and len(unreliable) == 5
    with pytest.raises(ValueError):
        make_pool("medium")


def test_pools_are_deterministic_pseudonymous_and_configurable():
    a, b = make_pool("mixed", seed=7), make_pool("mixed", seed=7)
    assert a == b and a != make_pool("mixed", seed=8)
    assert len({r.id for r in a}) == len(a)
    assert all(re.fullmatch(r"rv-[0-9a-f]{10}", r.id) for r in a)
    cfg = ReviewerPoolConfig(n=4, high=(0.99, 1.0), kind_weights={"score": 1.0})
    pool = make_pool("high", seed=0, cfg=cfg)
    assert len(pool) == 4 and all(r.reliability >= 0.99 for r in pool)
    assert all(set(r.kind_weights) == {"score"} for r in pool)


def test_reliabilities_are_reproduced_within_sampling_error(steps):
    draws = 2000
    rng = random.Random(11)
    for reviewer in make_pool("mixed", n=10, seed=5):
        right = sum(reviewer.feedback(steps[i % 2], rng).right for i in range(draws))
        p = reviewer.reliability
        assert abs(right / draws - p) <= 3 * math.sqrt(p * (1 - p) / draws), reviewer


def test_every_kind_appears(steps):
    rng = random.Random(0)
    pool = make_pool("mixed", seed=1)
    kinds = Counter(d.kind for i in range(600) for d in pool_feedback(pool, steps[i % 2], rng))
    assert set(kinds) == set(KINDS)


def test_right_and_wrong_labels_match_the_content(steps):
    rng = random.Random(2)
    pool = make_pool("mixed", n=10, seed=2)
    seen = Counter()
    for i in range(4000):
        step = steps[i % 2]
        d = pool[i % len(pool)].feedback(step, rng)
        seen[(d.kind, d.right, step.good)] += 1
        if d.kind == "accept":
            assert d.right == step.good
        elif d.kind == "reject":
            assert d.right == (not step.good)
        elif d.kind == "score":
            assert d.score in (1, 2, 4, 5) and d.right == ((d.score >= 4) == step.good)
            assert d.text == "" and d.diff is None
        elif d.kind == "edit":
            fix_diff = unified_diff(step.source, step.fix.source)
            assert d.diff and d.right == (d.diff == fix_diff)
        else:
            assert d.diff is None and d.score is None
            praise = _template_kind(d.text) == "praise"
            assert praise == (step.good == d.right)
            if d.right and not step.good and re.search(r"line \d", d.text, re.IGNORECASE):
                assert f"line {step.fix.line}" in d.text.lower()
    # every (kind, right, good) combination that can occur did occur
    for kind in ("edit", "comment", "score"):
        for right in (True, False):
            for good in (True, False):
                assert seen[(kind, right, good)] > 0, (kind, right, good)


def test_specificity_decides_specific_or_vague_comments(steps):
    rng = random.Random(4)
    weights = {"comment": 1.0}
    specific = Reviewer("rv-a", 1.0, 1.0, weights, "ta")
    vague = Reviewer("rv-b", 1.0, 0.0, weights, "ta")
    good, bad = steps
    for _ in range(50):
        text = specific.feedback(bad, rng).text
        assert f"line {bad.fix.line}" in text.lower()
        assert not re.search(r"\d", vague.feedback(bad, rng).text)
    texts = {specific.feedback(good, rng).text for _ in range(200)}
    assert len(texts) >= 4  # varied templates


def test_wrong_edits_come_from_operator_edits_without_decoys(steps):
    good, _ = steps
    bare = Step("t1", good.source, good.candidate, True, good.fix, ())
    liar = Reviewer("rv-c", 0.0, 0.5, {"edit": 1.0}, "student")
    rng = random.Random(5)
    diffs = {liar.feedback(bare, rng).diff for _ in range(30)}
    fix_diff = unified_diff(bare.source, bare.fix.source)
    assert fix_diff not in diffs and all(d and d.startswith("--- a/") for d in diffs)


def test_polarity_is_the_reviewers_stance_toward_the_chosen_edit(steps):
    rng = random.Random(6)
    pool = make_pool("mixed", n=10, seed=6)
    for i in range(3000):
        step = steps[i % 2]
        d = pool[i % len(pool)].feedback(step, rng)
        if d.kind == "edit":
            proposes_chosen = d.diff == unified_diff(step.source, step.candidate.source)
            assert d.polarity == (1 if proposes_chosen else -1)
        elif d.kind == "comment":
            assert d.polarity == (1 if _template_kind(d.text) == "praise" else -1)
        else:
            assert d.polarity == (1 if d.kind == "accept" or (d.score or 0) >= 4 else -1)


def test_team_preference_is_hidden_consistent_and_per_pool():
    assert style_kind("ruff", "W291: Trailing whitespace (line 3)") == "W291"
    assert style_kind("ruff-format", "ruff format f (lines 1-4)") == "format"
    assert style_kind("operator", "swap < for <= on line 2") is None
    kinds = [f"X{i:03d}" for i in range(400)]
    team = team_preference("mixed", seed=0)
    assert team == team_preference("mixed", seed=0)
    wanted = [team.wants(k) for k in kinds]
    assert wanted == [team_preference("mixed", seed=0).wants(k) for k in kinds]
    assert 0.4 < sum(wanted) / len(kinds) < 0.6
    other = [team_preference("mixed", seed=1).wants(k) for k in kinds]
    assert 0.3 < sum(a != b for a, b in zip(wanted, other)) / len(kinds) < 0.7
    picky = team_preference("high", seed=0, cfg=ReviewerPoolConfig(wanted_share=0.1))
    assert sum(picky.wants(k) for k in kinds) < 0.2 * len(kinds)
