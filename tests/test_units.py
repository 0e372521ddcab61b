"""Units: functions and methods via tree-sitter, the unit at a cursor, node sequences."""

from __future__ import annotations

from trustfix.server.operators import operator_edits
from trustfix.server.units import has_error_in, node_sequence, parse, unit_at, units

SOURCE = """import os


def top(a):
    def inner(b):
        return b + 1
    return inner(a)


class Box:
    def method(self, x):
        return x * 2

    @staticmethod
    async def fetch(url):
        return url


async def main():
    pass
"""

BROKEN = """def good(a, b):
    if a < b:
        return a
    return b


def bad(x:
    return x +


def after(y):
    return y == 0
"""


def test_units_names_kinds_and_lines() -> None:
    found = {u.qualname: u for u in units(SOURCE)}
    assert list(found) == ["top", "top.<locals>.inner", "Box.method", "Box.fetch", "main"]
    assert found["Box.method"].kind == "method" and found["top"].kind == "function"
    assert found["top.<locals>.inner"].kind == "function"
    inner = found["top.<locals>.inner"]
    assert (inner.start_line, inner.end_line) == (5, 6)
    assert inner.source == "def inner(b):\n        return b + 1"
    assert SOURCE.encode()[inner.start_byte : inner.end_byte].decode() == inner.source
    assert found["Box.fetch"].source.startswith("async def fetch(url):")


def test_unit_at_innermost_and_outside() -> None:
    assert unit_at(SOURCE, 6, 10).qualname == "top.<locals>.inner"
    assert unit_at(SOURCE, 7).qualname == "top"
    assert unit_at(SOURCE, 5, 0).qualname == "top.<locals>.inner"  # indentation before def
    assert unit_at(SOURCE, 1) is None
    assert unit_at(SOURCE, 10) is None  # the class line itself is no function
    assert unit_at(SOURCE, 12, 8).qualname == "Box.method"


def test_units_in_a_file_with_syntax_errors() -> None:
    assert parse(BROKEN).root_node.has_error
    names = [u.name for u in units(BROKEN)]
    assert "good" in names and "after" in names
    good = unit_at(BROKEN, 3, 8)
    assert good is not None and good.name == "good"
    assert good.source.endswith("return b")
    after = unit_at(BROKEN, 12)
    assert after is not None and after.name == "after"
    assert after.source == "def after(y):\n    return y == 0"
    # operators still apply inside a sound unit of a broken file
    edits = operator_edits(BROKEN, good.start_byte, good.end_byte)
    assert any("if a <= b:" in e.source for e in edits)
    assert all(e.source.endswith(BROKEN[good.end_byte :]) for e in edits)


def test_node_sequence_pre_order() -> None:
    unit = units("def f(a):\n    return a + 1\n")[0]
    assert node_sequence(unit) == [
        "function_definition",
        "identifier",
        "parameters",
        "identifier",
        "block",
        "return_statement",
        "binary_operator",
        "identifier",
        "integer",
    ]
    assert node_sequence("x = 1\n") == [
        "expression_statement",
        "assignment",
        "identifier",
        "integer",
    ]
    method = units(SOURCE)[2]
    assert node_sequence(method)[0] == "function_definition"
    assert "ERROR" not in node_sequence(method)


def test_parse_is_cached_by_content() -> None:
    text = "def cached():\n    return 1\n"
    same = "".join(["def cached():\n", "    return 1\n"])
    assert same is not text and parse(same) is parse(text)


def test_operators_on_a_unit_swallowed_by_an_error_elsewhere() -> None:
    after = unit_at(BROKEN, 11)
    assert after is not None
    edits = operator_edits(BROKEN, after.start_byte, after.end_byte)
    assert {e.title for e in edits} >= {"swap == for != on line 12", "swap 0 for 1 on line 12"}
    assert all(e.source.startswith(BROKEN[: after.start_byte]) for e in edits)
    assert "    return y != 0\n" in {e.source[after.start_byte + 14 :] for e in edits}


def test_deep_nesting_costs_no_recursion_and_linear_time() -> None:
    parens = "def f():\n    return " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    terms = "def g():\n    return " + "+".join(["1"] * 50_000) + "\n"
    for source in (parens, terms, "def h(:\n    return " + "[" * 3000 + "\n"):
        found = units(source)
        assert unit_at(source, 2, 4) in found or not found
    assert node_sequence(units(terms)[0]).count("binary_operator") == 49_999  # was quadratic
    broken = parse("def h(:\n    return " + "[" * 3000 + "\n").root_node
    assert has_error_in(broken, 0, 10) and not has_error_in(parse(parens).root_node, 0, 10**6)
