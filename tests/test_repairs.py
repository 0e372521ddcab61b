"""Repair families on small functions: the intended fix appears, every edit parses, and a unit
with no site of a family gets nothing from it; the candidate budget."""

from __future__ import annotations

import ast

import pytest
from trustfix.server.repairs import FAMILIES, CandidateBudget, allocate, edit_parses, repair_edits
from trustfix.server.repairs.budget import locality

NO_SITE = "def f():\n    pass\n"
"""A unit with no site of any family."""

# family -> (buggy function, its intended fix); each a bug of the kind the family repairs
CASES: dict[str, list[tuple[str, str]]] = {
    "comparison": [
        (
            (
                "def below_zero(ops):\n    b = 0\n    for op in ops:\n        b += op\n"
                "        if b <= 0:\n            return True\n    return False\n"
            ),
            (
                "def below_zero(ops):\n    b = 0\n    for op in ops:\n        b += op\n"
                "        if b < 0:\n            return True\n    return False\n"
            ),
        ),
    ],
    "arithmetic": [
        ("def f(x, m):\n    x ^= m\n    return x\n", "def f(x, m):\n    x &= m\n    return x\n"),
        ("def f(a, b):\n    return a * b\n", "def f(a, b):\n    return a ** b\n"),
    ],
    "off_by_one": [
        (
            "def f(xs):\n    for i in range(len(xs) + 1):\n        print(xs[i])\n",
            "def f(xs):\n    for i in range(len(xs)):\n        print(xs[i])\n",
        ),
    ],
    "negation": [
        (
            "def f(x):\n    if x:\n        return 1\n    return 0\n",
            "def f(x):\n    if not x:\n        return 1\n    return 0\n",
        )
    ],
    "and_or": [("def f(a, b):\n    return a and b\n", "def f(a, b):\n    return a or b\n")],
    "swap_args": [("def f(a, b):\n    return pow(b, a)\n", "def f(a, b):\n    return pow(a, b)\n")],
    "wrong_variable": [
        (
            "def f(xs, ys):\n    out = []\n    for x in xs:\n        out.append(x)\n    return xs\n",
            "def f(xs, ys):\n    out = []\n    for x in xs:\n        out.append(x)\n    return out\n",
        ),
    ],
    "is_eq": [("def f(x):\n    return x is 1\n", "def f(x):\n    return x == 1\n")],
    "constant": [("def f():\n    n = 7\n    return n\n", "def f():\n    n = 8\n    return n\n")],
    "builtin": [
        (
            "def f(xs):\n    return any(x > 0 for x in xs)\n",
            "def f(xs):\n    return all(x > 0 for x in xs)\n",
        ),
        ("def f(a, b):\n    return max(a, b)\n", "def f(a, b):\n    return min(a, b)\n"),
    ],
    "adjust": [
        (
            "def search(xs, lo, hi):\n    mid = (lo + hi) // 2\n    return search(xs, mid, hi)\n",
            "def search(xs, lo, hi):\n    mid = (lo + hi) // 2\n    return search(xs, mid + 1, hi)\n",
        ),
        (
            "def last(xs):\n    n = len(xs)\n    return n\n",
            "def last(xs):\n    n = len(xs) - 1\n    return n\n",
        ),
        (
            "def f(k, j):\n    for i in range(j):\n        k = k + i\n    return k\n",
            "def f(k, j):\n    for i in range(j):\n        k = k + i\n    return k - j\n",
        ),
        (
            "def f(xs):\n    return sum(x for x in xs)\n",
            "def f(xs):\n    return sum(x ** 2 for x in xs)\n",
        ),
    ],
    "replace": [
        (
            "def depth(node):\n    a = node.left\n    b = node.left\n    return a, b\n",
            "def depth(node):\n    a = node.left\n    b = node.right\n    return a, b\n",
        ),
        ("def f(d, u, v):\n    return d[u, v]\n", "def f(d, u, v):\n    return d[v]\n"),
        ("def f(x):\n    return abs(x)\n", "def f(x):\n    return x\n"),
        ("def f(b):\n    return len(b) + sum(b)\n", "def f(b):\n    return len(b) + sum(b[1:])\n"),
    ],
    "swap_operands": [
        (
            "def f(result, c):\n    return result + c\n",
            "def f(result, c):\n    return c + result\n",
        ),
        ("def f(m, j, k):\n    return m[j, k]\n", "def f(m, j, k):\n    return m[k, j]\n"),
        ("def f(m, j, k):\n    return m[j][k]\n", "def f(m, j, k):\n    return m[k][j]\n"),
    ],
    "condition": [
        (
            "def f(x, y):\n    if x > y:\n        return 1\n    return 0\n",
            "def f(x, y):\n    if x is None or x > y:\n        return 1\n    return 0\n",
        ),
        (
            "def f(coins, n):\n    if n < 0:\n        return 0\n    return f(coins[1:], n - coins[0])\n",
            (
                "def f(coins, n):\n    if n < 0 or not coins:\n        return 0\n"
                "    return f(coins[1:], n - coins[0])\n"
            ),
        ),
        (
            "def f(n):\n    if n == 0:\n        return 1\n    return n\n",
            "def f(n):\n    if n <= 1:\n        return 1\n    return n\n",
        ),
        (
            "def f(queue):\n    while True:\n        queue.pop()\n",
            "def f(queue):\n    while queue:\n        queue.pop()\n",
        ),
        (
            "def f(a, b):\n    if a and b:\n        return 1\n",
            "def f(a, b):\n    if a:\n        return 1\n",
        ),
    ],
    "return_value": [
        (
            "def f(n):\n    if n == 0:\n        return []\n    return f(n - 1)\n",
            "def f(n):\n    if n == 0:\n        return [n]\n    return f(n - 1)\n",
        ),
        (
            "def subsets(xs):\n    if not xs:\n        return []\n    return xs\n",
            "def subsets(xs):\n    if not xs:\n        return [[]]\n    return xs\n",
        ),
    ],
    "wrap": [
        (
            "def f(xs):\n    best = 0\n    for x in xs:\n        best = x\n    return best\n",
            "def f(xs):\n    best = 0\n    for x in xs:\n        best = max(best, x)\n    return best\n",
        ),
        (
            "def f(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n",
            "def f(xs):\n    t = 0\n    for x in xs:\n        t = x\n    return t\n",
        ),
        ("def f(a, b):\n    return a - b\n", "def f(a, b):\n    return abs(a - b)\n"),
    ],
    "insert": [
        (
            "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n",
            "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n",
        ),
        (
            "def f(n):\n    i = 0\n    while i < n:\n        print(i)\n",
            "def f(n):\n    i = 0\n    while i < n:\n        print(i)\n        i += 1\n",
        ),
        (
            "def f(xs):\n    out = []\n    for x in xs:\n        print(x)\n    return out\n",
            (
                "def f(xs):\n    out = []\n    for x in xs:\n        print(x)\n        out.append(x)\n"
                "    return out\n"
            ),
        ),
        (
            "def f(xs):\n    return xs[0]\n",
            "def f(xs):\n    if not xs:\n        return None\n    return xs[0]\n",
        ),
    ],
}


def test_every_family_has_cases() -> None:
    assert set(CASES) == set(FAMILIES)


@pytest.mark.parametrize(
    ("family", "buggy", "fixed"),
    [(f, b, x) for f, cases in CASES.items() for b, x in cases],
    ids=[f"{f}-{i}" for f, cases in CASES.items() for i in range(len(cases))],
)
def test_the_intended_fix_appears_and_every_edit_parses(
    family: str, buggy: str, fixed: str
) -> None:
    edits = repair_edits(buggy, families=[family])
    assert fixed in {e.source for e in edits}
    for edit in edits:
        assert edit.family == family and edit.source != buggy
        ast.parse(edit.source)
        assert edit.title.endswith(f"on line {edit.line}")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_unit_without_a_site_gets_nothing(family: str) -> None:
    assert repair_edits(NO_SITE, families=[family]) == []


def test_families_without_sites_in_a_unit_that_has_others() -> None:
    src = "def f(a, b):\n    return a < b\n"
    assert repair_edits(src, families=["builtin", "return_value", "replace", "insert"]) == []
    assert repair_edits("def f(a):\n    return g(a)\n", families=["swap_args"]) == []


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown repair families"):
        repair_edits(NO_SITE, families=["nonsense"])


def test_unchecked_edits_match_checked_ones_where_they_parse() -> None:
    src = CASES["insert"][0][0]
    checked = repair_edits(src)
    unchecked = repair_edits(src, check=False)
    assert [e for e in unchecked if edit_parses(src, e.source)] == checked


def test_edit_parses_sees_a_broken_edit() -> None:
    src = "def f(a):\n    return a\n"
    assert edit_parses(src, "def f(a):\n    return a + 1\n")
    assert not edit_parses(src, "def f(a):\n    return a +\n")


class _C:
    def __init__(self, proposer: str, family: str, line: int, rank: int = 0) -> None:
        self.proposer, self.family, self.line, self.rank = proposer, family, line, rank

    def __repr__(self) -> str:
        return f"{self.proposer}/{self.family}@{self.line}"


def test_budget_cannot_starve_a_proposer_or_a_family() -> None:
    many = [_C("operator", "wrong_variable", line) for line in range(1, 101)]
    few = [_C("operator", "insert", 200), _C("ruff", "E231", 300)]
    taken = allocate(many + few, cap=10)
    assert len(taken) == 10
    assert few[0] in taken and few[1] in taken


def test_budget_takes_failing_lines_then_the_cursor_then_the_rest() -> None:
    items = [_C("operator", "constant", line) for line in range(1, 31)]
    taken = allocate(
        items,
        cap=3,
        failing_lines={20},
        cursor_line=10,
        budget=CandidateBudget(near_cursor_lines=0),
    )
    assert [c.line for c in taken] == [20, 10, 1]
    assert locality(5, {5}, 5, 3) == 0 and locality(7, (), 5, 3) == 1 and locality(9, (), 5, 3) == 2


def test_budget_quotas_and_refusals() -> None:
    items = [_C("operator", "constant", line) for line in range(10)]
    items += [_C("operator", "comparison", line) for line in range(10)]
    taken = allocate(items, cap=10, budget=CandidateBudget(family_share=0.2))
    # round-robin: both families get half the slots
    assert sum(c.family == "constant" for c in taken) == 5
    refused = allocate(items, cap=4, accept=lambda c: c.line % 2 == 0)
    assert len(refused) == 4 and all(c.line % 2 == 0 for c in refused)
    # quotas only bind while others still have candidates: one family fills the cap alone
    alone = allocate(items[:10], cap=8, budget=CandidateBudget(family_share=0.1))
    assert len(alone) == 8
    with pytest.raises(ValueError):
        CandidateBudget(family_share=0)


def test_budget_prefers_low_ranks_within_a_group() -> None:
    items = [_C("operator", "wrong_variable", 1, rank=3), _C("operator", "wrong_variable", 2, 0)]
    assert allocate(items, cap=1)[0].line == 2
