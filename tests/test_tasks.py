"""HumanEval refinement tasks: style injections, bug injection, determinism, split, oracle."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest
from ruff.__main__ import find_ruff_bin
from trustfix.bench.bugs import BUG_MODEL
from trustfix.bench.style import INJECTIONS, logical_lines
from trustfix.bench.tasks import (
    BUILD_SANDBOX,
    EditInfo,
    Task,
    build_tasks,
    family_coverage,
    fix_in_first_step,
    make_tasks,
    operator_proposer,
    oracle,
    split_tasks,
    style_count,
    style_counts,
)
from trustfix.server.operators import operator_edits
from trustfix.server.sandbox import Sandbox

SNIPPET = """\
def f(xs, y=None):
    total = 0
    seen = []
    if y is None:
        y = 1
    for x in xs:
        if x not in seen:
            seen.append(x)
        total = total + x
    return total * y
"""
EXPECTED_CODE = {
    "semicolon": "E703",
    "trailing_whitespace": "W291",
    "blank_line_whitespace": "W293",
    "two_statements": "E702",
    "one_line_block": "E701",
    "none_equality": "E711",
    "true_equality": "E712",
    "not_in": "E713",
    "multiple_imports": "E401",
    "lambda_assignment": "E731",
}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(BUILD_SANDBOX) as sb:
        yield sb


def _ruff_codes(source: str) -> list[str]:
    out = subprocess.run(
        [
            find_ruff_bin(),
            "check",
            "--isolated",
            "--select",
            "E,W",
            "--output-format",
            "json",
            "--exit-zero",
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d["code"] for d in json.loads(out)]


def test_each_style_injection_adds_exactly_the_flagged_violation(sandbox):
    assert _ruff_codes(SNIPPET) == []
    lines, logical = SNIPPET.splitlines(keepends=True), logical_lines(SNIPPET)
    checks = []
    for kind, inject in INJECTIONS.items():
        options = list(inject(SNIPPET, lines, logical, 2))
        assert options, kind
        for new in options:
            assert _ruff_codes(new) == [EXPECTED_CODE[kind]], (kind, new)
            checks.append((new, ["assert f([1, 2, 2], 3) == 15", "assert f([]) == 0"], "f"))
    assert all(r.all_passed for r in sandbox.run_many(checks))
    assert style_counts([SNIPPET, checks[0][0]]) == [0, 1] and style_count(SNIPPET) == 0


def test_injections_leave_the_prompt_alone():
    lines, logical = SNIPPET.splitlines(keepends=True), logical_lines(SNIPPET)
    for inject in INJECTIONS.values():
        for new in inject(SNIPPET, lines, logical, 6):
            assert new.splitlines()[:5] == SNIPPET.splitlines()[:5]


@pytest.fixture(scope="module")
def small(sandbox) -> list[Task]:
    return build_tasks(seed=1, n=12, sandbox=sandbox)


def test_tasks_have_a_failing_bug_and_a_passing_fix(small, sandbox):
    assert len(small) >= 10
    jobs = [(t.buggy, t.tests, t.entry_point) for t in small]
    jobs += [(t.fixed, t.tests, t.entry_point) for t in small]
    results = sandbox.run_many(jobs)
    bugged, fixed = results[: len(small)], results[len(small) :]
    assert all(r.failed > 0 and r.error is None for r in bugged)
    assert all(r.all_passed for r in fixed)
    for t in small:
        assert t.buggy != t.fixed and (t.fixed != t.original) == (t.style_violations > 0)
        assert 0 <= t.style_violations <= 3 and len(t.style_kinds) == t.style_violations
        assert t.bug.family in BUG_MODEL and t.bug.line > 0
        assert style_count(t.fixed) - style_count(t.original) == t.style_violations


def test_tasks_are_deterministic_per_seed(small, sandbox):
    assert build_tasks(seed=1, n=12, sandbox=sandbox) == small
    other = build_tasks(seed=2, n=12, sandbox=sandbox)
    assert [t.buggy for t in other] != [t.buggy for t in small]


def test_make_tasks_caches_as_json(tmp_path, sandbox):
    first = make_tasks(seed=3, n=4, cache_dir=tmp_path, sandbox=sandbox)
    files = list(tmp_path.glob("tasks-seed3-n4-*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    stored[0]["buggy"] = "# from the cache\n" + stored[0]["buggy"]
    files[0].write_text(json.dumps(stored))
    again = make_tasks(seed=3, n=4, cache_dir=tmp_path, sandbox=sandbox)
    assert again[0].buggy.startswith("# from the cache") and again[1:] == first[1:]


def test_split_is_disjoint_by_problem_and_deterministic(small):
    many = [
        dataclasses.replace(small[0], id=f"HumanEval/{i}@{s}", problem_id=f"HumanEval/{i}")
        for i in range(164)
        for s in range(2)
    ]
    train, test = split_tasks(many, test_fraction=0.25, seed=0)
    assert {t.problem_id for t in train}.isdisjoint({t.problem_id for t in test})
    assert len(train) + len(test) == len(many)
    assert 0.15 < len({t.problem_id for t in test}) / 164 < 0.35
    assert split_tasks(many, 0.25, 0) == (train, test)
    assert split_tasks(many, 0.25, 1) != (train, test)


def test_oracle_and_first_step_coverage(small, sandbox):
    covered = [t for t in small if fix_in_first_step(t)]
    assert covered
    task = covered[0]
    result = oracle(task, sandbox=sandbox, horizon=3)
    assert result.solved and result.depth == 1 and result.evaluated > 1


def test_oracle_needs_two_steps_for_two_bugs(small, sandbox):
    task = next(t for t in small if fix_in_first_step(t))
    propose = operator_proposer(task.entry_point)
    # a second failing bug on another line, which one operator edit reverts
    second = next(
        e
        for e in operator_edits(task.buggy)
        if e.line != task.bug.line
        and task.buggy in propose(e.source)
        and sandbox.run(e.source, task.tests, task.entry_point).failed
    )
    two_bugs = dataclasses.replace(task, buggy=second.source)
    assert not fix_in_first_step(two_bugs)
    shallow = oracle(two_bugs, sandbox=sandbox, horizon=1)
    deep = oracle(two_bugs, sandbox=sandbox, horizon=2)
    assert not shallow.solved and shallow.depth <= 1
    assert deep.solved and deep.depth == 2 and deep.evaluated > shallow.evaluated


def test_fix_info_names_the_repairing_edit(small):
    for t in small:
        if t.fix.family:
            match = [e for e in operator_edits(t.buggy, cap=100_000) if e.source == t.fixed]
            assert match and EditInfo(match[0].family, match[0].line, match[0].title) == t.fix
        else:
            assert t.fix.title.startswith("undo: bug:")


def test_family_coverage_counts_tasks_per_bug_family(small):
    coverage = family_coverage(small)
    assert sum(total for _, total in coverage.values()) == len(small)
    assert set(coverage) == {t.bug.family for t in small}
    assert sum(hits for hits, _ in coverage.values()) == sum(fix_in_first_step(t) for t in small)
    nothing = family_coverage(small, propose_for=lambda task: lambda source: [])
    assert all(hits == 0 for hits, _ in nothing.values())


def test_several_bugs_per_problem(sandbox):
    tasks = build_tasks(seed=1, n=3, sandbox=sandbox, bugs_per_problem=2)
    by_problem: dict[str, list[Task]] = {}
    for t in tasks:
        by_problem.setdefault(t.problem_id, []).append(t)
    assert any(len(group) == 2 for group in by_problem.values())
    for group in by_problem.values():
        assert len({t.buggy for t in group}) == len(group) and len({t.id for t in group}) == len(
            group
        )


@pytest.mark.slow
def test_all_problems_get_a_bug_that_fails_and_a_fix_that_passes(tmp_path):
    with Sandbox(BUILD_SANDBOX) as sb:
        tasks = make_tasks(seed=0, cache_dir=tmp_path, sandbox=sb)
        assert len(tasks) >= 150
        results = sb.run_many([(t.buggy, t.tests, t.entry_point) for t in tasks])
        fixed = sb.run_many([(t.fixed, t.tests, t.entry_point) for t in tasks])
    assert all(r.failed > 0 and r.error is None for r in results)
    assert all(r.all_passed for r in fixed)
    assert {t.style_violations for t in tasks} == {0, 1, 2, 3}
    assert len({k for t in tasks for k in t.style_kinds}) >= 6
