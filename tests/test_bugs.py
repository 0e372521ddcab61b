"""The bench's bug model: every family injects bugs that parse, draws follow the weights."""

from __future__ import annotations

import ast
import random
from collections import Counter

from trustfix.bench.bugs import BUG_MODEL, BugFamily, draw_order, injectable
from trustfix.server.repairs import FAMILIES

SNIPPET = """\
def f(xs, n, node):
    out = []
    total = 0
    i = 0
    while i < n:
        i += 1
    for x in xs[1:]:
        if x > 0 and x < n:
            out.append(abs(x - n) + xs[i])
        total = max(total, x ** 2 + 1)
    if node.left is None:
        return [total]
    return sum(out) + pow(n, 2) - node.right
"""


def test_every_family_finds_a_bug_in_a_function_with_its_sites() -> None:
    bugs = injectable(SNIPPET, "f", 2)
    assert set(bugs) == set(BUG_MODEL)
    for family, found in bugs.items():
        for bug in found:
            ast.parse(bug.source)
            assert bug.source != SNIPPET and bug.family == family and bug.line >= 2
    sources = [b.source for found in bugs.values() for b in found]
    assert len(sources) == len(set(sources))
    assert injectable(SNIPPET, "absent", 1) == {}
    assert injectable("def g():\n    pass\n", "g", 1) == {}


def test_the_model_draws_families_by_weight_and_names_its_sources() -> None:
    assert set(BUG_MODEL) <= set(FAMILIES)
    assert all(m.weight > 0 and m.source for m in BUG_MODEL.values())
    bugs = injectable(SNIPPET, "f", 2)
    firsts = Counter(draw_order(bugs, random.Random(seed))[0].family for seed in range(400))
    assert firsts["wrong_variable"] > firsts["swap_args"] * 5  # 2429 vs 60
    only = {"constant": BugFamily(1.0, "test"), "and_or": BugFamily(0.0, "test")}
    order = draw_order(bugs, random.Random(0), only)
    assert {b.family for b in order} == {"constant"} and len(order) == len(bugs["constant"])
    assert draw_order(bugs, random.Random(3)) == draw_order(bugs, random.Random(3))
