"""Verified suggestions: the workspace's tests run in the real sandbox against candidates, and
the order offers are made in (verified fixes first, broken ones left out, near the cursor first
among near-equal scores)."""

from __future__ import annotations

from pathlib import Path

from trustfix.server.proposers import Candidate
from trustfix.server.session import Ranking, offer_order
from trustfix.server.units import units
from trustfix.server.verify import Verdict, Verifier, adapt_test

SOURCE = "import math\n\n\ndef add(a, b):\n    return a - b\n\n\ndef half(x):\n    return x / 2\n"
TESTS = """import functools
from calc import add as plus, half
import calc


def test_add():
    assert plus(1, 2) == 3


def test_zero():
    assert calc.add(0, 0) == 0
"""


def candidate(title: str, old: str, new: str) -> Candidate:
    line = SOURCE[: SOURCE.index(old)].count("\n") + 1
    return Candidate(title, "operator", "", SOURCE.replace(old, new), line)


def ranking(candidates: list[Candidate], log_probs: list[float]) -> Ranking:
    return Ranking(units(SOURCE)[0], "state", (), tuple(candidates), (-2.0, *log_probs), None)


def test_imports_of_the_module_become_the_programs_names() -> None:
    adapted = adapt_test(TESTS, "calc")
    assert adapted is not None
    assert "from calc" not in adapted and "import calc" not in adapted
    assert "plus = add\n" in adapted and "import functools\n" in adapted
    assert "calc = __import__('types').SimpleNamespace(**globals())" in adapted
    assert adapted.count("\n") == TESTS.count("\n")  # the other lines stay where they were
    assert adapt_test("def broken(:\n", "calc") is None


def test_candidates_are_verified_in_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text(SOURCE)
    (tmp_path / "test_calc.py").write_text(TESTS)
    fix = candidate("swap - for +", "a - b", "a + b")
    same = candidate("swap - for *", "a - b", "a * b")
    broken = candidate("return 1", "a - b", "1")
    ranked = ranking([same, broken, fix], [-1.0, -1.1, -1.2])
    done: list[str] = []
    verifier = Verifier(candidates=3, budget_s=60.0, on_done=done.append)
    try:
        future = verifier.submit(
            "file:///calc.py", tmp_path, tmp_path / "calc.py", SOURCE, ranked, ranked.order
        )
        assert future is not None and future.result(timeout=120) == 3
        assert (
            verifier.submit(
                "file:///calc.py", tmp_path, tmp_path / "calc.py", SOURCE, ranked, ranked.order
            )
            is future
        )  # once per text and unit
        verdicts = verifier.known(SOURCE, ranked)
    finally:
        verifier.close()
    assert done == ["file:///calc.py"]
    assert verdicts[2].label == "✓ 2/2 tests" and verdicts[2].improves and verdicts[2].r_env == 1.0
    assert (
        verdicts[0].label == "✗ 1/2 tests" and not verdicts[0].improves and not verdicts[0].breaks
    )
    assert verdicts[1].breaks and verdicts[1].broke == 1
    assert verdicts[2].command == "sandbox: test_calc.py"
    assert verifier.failing_lines  # test_add fails on the current text
    assert offer_order(ranked, verdicts, set(), 0.0) == [2, 0]


def verdict(fixed: int, broke: int) -> Verdict:
    return Verdict(1, 0, fixed, broke, None, "sandbox", "")


def test_near_equal_scores_put_the_change_at_the_cursor_first() -> None:
    far = candidate("far", "import math", "import math as m")  # line 1
    near = candidate("near", "x / 2", "x // 2")  # line 9
    low = candidate("low", "a - b", "b - a")  # line 5
    ranked = ranking([far, near, low], [-1.00, -1.05, -3.0])
    assert (far.line, near.line, low.line) == (1, 9, 5)
    assert offer_order(ranked, {}, {9}, 0.1) == [1, 0, 2]
    assert offer_order(ranked, {}, {9}, 0.0) == [0, 1, 2]  # the rule off
    assert offer_order(ranked, {}, {9}, 0.01) == [0, 1, 2]  # not near-equal
    assert offer_order(ranked, {}, {5}, 0.1) == [0, 1, 2]  # too far below to move up
    assert offer_order(ranked, {2: verdict(1, 0), 0: verdict(0, 1)}, {9}, 0.1) == [2, 1]
