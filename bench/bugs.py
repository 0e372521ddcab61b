"""The bug model of the bench: which bugs are injected into correct programs, and how often.

It is deliberately separate from the repair families that propose fixes
(:mod:`trustfix.server.repairs`): its own code (Python's ``ast``, not tree-sitter), its own
replacement choices (an operator may become any other operator of its kind, a builtin one of
its own siblings), and its own family frequencies, so that a task's fix being among the
candidates is a measurement, not the operators checking themselves.  Each bug family is named
after the repair family that is meant to undo it, so coverage can be reported per family.

Frequencies: the single-statement bug patterns of ManySStuBs4J (Karampatsis and Sutton, MSR
2020), as counted over 6,706 SStuBs in the table of the ``h4iku/repairSStuBs`` repository
(README.md): CHANGE_IDENTIFIER 2429, DIFFERENT_METHOD_SAME_ARGS 1422, CHANGE_NUMERAL 754,
OVERLOAD_METHOD_MORE_ARGS 662, CHANGE_OPERATOR 250, LESS_SPECIFIC_IF 187,
CHANGE_CALLER_IN_FUNCTION_CALL 177, OVERLOAD_METHOD_DELETED_ARGS 162, CHANGE_UNARY_OPERATOR 161,
MORE_SPECIFIC_IF 154, SWAP_ARGUMENTS 120, SWAP_BOOLEAN_LITERAL 112, CHANGE_OPERAND 93,
CHANGE_MODIFIER 23.  How each count is mapped onto a family is written beside it in
:data:`BUG_MODEL`; OVERLOAD_METHOD_MORE_ARGS (a call that needs one more argument) and
CHANGE_MODIFIER (Java only) have no repair family and are not drawn.  The missing-statement and
return-value families are not single-statement changes, so these data sets do not count them:
their weights are a stated choice (that of the rarest counted pattern, CHANGE_OPERAND, 93).
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass

from .bug_injectors import INJECTORS, Program


@dataclass(frozen=True)
class BugFamily:
    """One family of the bug model: its weight and where the number comes from."""

    weight: float
    source: str


BUG_MODEL: dict[str, BugFamily] = {
    "wrong_variable": BugFamily(2429, "CHANGE_IDENTIFIER"),
    "builtin": BugFamily(1422, "DIFFERENT_METHOD_SAME_ARGS"),
    "constant": BugFamily(377 + 112, "half of CHANGE_NUMERAL + SWAP_BOOLEAN_LITERAL"),
    "off_by_one": BugFamily(377, "half of CHANGE_NUMERAL (bounds and indices)"),
    "comparison": BugFamily(100, "CHANGE_OPERATOR, 2/5 (relational)"),
    "arithmetic": BugFamily(100, "CHANGE_OPERATOR, 2/5 (arithmetic)"),
    "and_or": BugFamily(50, "CHANGE_OPERATOR, 1/5 (boolean)"),
    "negation": BugFamily(161, "CHANGE_UNARY_OPERATOR"),
    "condition": BugFamily(187 + 154, "LESS_SPECIFIC_IF + MORE_SPECIFIC_IF"),
    "replace": BugFamily(177, "CHANGE_CALLER_IN_FUNCTION_CALL"),
    "wrap": BugFamily(162, "OVERLOAD_METHOD_DELETED_ARGS (a call around a value lost)"),
    "swap_args": BugFamily(60, "SWAP_ARGUMENTS, half (call arguments)"),
    "swap_operands": BugFamily(60, "SWAP_ARGUMENTS, half (operands and indices)"),
    "adjust": BugFamily(93, "CHANGE_OPERAND"),
    "return_value": BugFamily(93, "not a SStuB: stated choice (= CHANGE_OPERAND)"),
    "insert": BugFamily(93, "not a SStuB: stated choice (= CHANGE_OPERAND)"),
}
"""Bug families, their weights (relative frequencies) and the source of each number."""


@dataclass(frozen=True)
class Bug:
    """One injected bug: its family, 1-based line, title and the whole buggy source."""

    family: str
    line: int
    title: str
    source: str


def _entry(tree: ast.Module, entry_point: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            return node
    return None


def _local_names(fn: ast.FunctionDef) -> dict[str, int]:
    """Parameters and assigned names of ``fn`` with the line where each is first bound."""
    names = {a.arg: fn.lineno for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.setdefault(node.id, node.lineno)
    return names


def injectable(source: str, entry_point: str, first_line: int) -> dict[str, list[Bug]]:
    """Every bug each family can inject into ``entry_point`` at or after ``first_line``: each
    parses, differs from ``source`` and from the others (the first family keeps a duplicate)."""
    tree = ast.parse(source)
    fn = _entry(tree, entry_point)
    if fn is None:
        return {}
    program = Program(source)
    nodes = [n for n in ast.walk(fn) if getattr(n, "lineno", 0) >= first_line]
    names = _local_names(fn)
    seen = {source}
    out: dict[str, list[Bug]] = {}
    for family, inject in INJECTORS.items():
        found = []
        for start, end, new, title, line in inject(program, fn, nodes, names):
            buggy = program.replaced(start, end, new)
            if buggy in seen:
                continue
            seen.add(buggy)
            try:
                ast.parse(buggy)
            except SyntaxError:
                continue
            found.append(Bug(family, line, title, buggy))
        if found:
            out[family] = found
    return out


def draw_order(
    bugs: dict[str, list[Bug]], rng: random.Random, model: dict[str, BugFamily] = BUG_MODEL
) -> list[Bug]:
    """All of ``bugs`` in the order the model draws them: a family by its weight among those
    with bugs left, then one of its bugs uniformly."""
    left = {f: list(b) for f, b in bugs.items() if b and model.get(f, BugFamily(0, "")).weight > 0}
    order = []
    while left:
        families = sorted(left)
        family = rng.choices(families, weights=[model[f].weight for f in families])[0]
        order.append(left[family].pop(rng.randrange(len(left[family]))))
        if not left[family]:
            del left[family]
    return order
