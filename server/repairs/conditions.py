"""Condition families: a test negated, narrowed, widened or replaced.

- ``negation``: ``not`` added to or removed from a condition (``if``, ``elif``, ``while``, a
  comprehension's ``if``, a ternary's test), ``in``/``not in``, ``is``/``is not``;
- ``condition``: a condition extended with a guard on a name in scope (``x is None or c``,
  ``c or not xs``, ``c and xs``), narrowed to one side of an ``and``/``or``, a comparison with
  an integer literal changed in operator and bound together (``== 0`` to ``<= 1``), a constant
  ``True`` test replaced by a name or a comparison of two integer names in scope (``while
  True`` to ``while queue``).
"""

from __future__ import annotations

from collections.abc import Iterator

from tree_sitter import Node

from .core import CONDITION_PARENTS, LOOSE, Context, Rule, Site, int_value, short, site, text

_RELATIONS: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=")
GUARDS: tuple[str, ...] = ("{name} is None or {cond}", "{cond} or not {name}", "{cond} and {name}")
"""Extensions of a condition ``cond`` by a guard on a name in scope, in order of preference."""


_TESTED = CONDITION_PARENTS | {"conditional_expression"}
"""Nodes with a condition: ``if``, ``elif``, ``while``, a comprehension's ``if``, a ternary."""


def condition_of(node: Node) -> Node | None:
    """The condition of an ``if``/``elif``/``while``/comprehension ``if``/ternary node."""
    if node.type == "if_clause":
        return node.named_children[0] if node.named_child_count else None
    if node.type == "conditional_expression":
        return node.named_children[1] if node.named_child_count == 3 else None
    return node.child_by_field_name("condition")


def _negation(node: Node, ctx: Context) -> Iterator[Site]:
    if node.type == "not_operator":
        argument = node.child_by_field_name("argument")
        if argument is None:
            return
        new = text(argument)
        whole = node.parent is not None and (
            node.parent.type in _TESTED | {"return_statement", "assignment"}
        )
        if (
            argument.type == "parenthesized_expression"
            and argument.named_child_count == 1
            and (whole or argument.named_children[0].type not in LOOSE | {"comparison_operator"})
        ):
            new = text(argument.named_children[0])
        yield site(node, new, "negation", f"remove not from {short(text(node))}")
    elif (test := condition_of(node)) is not None and test.type != "not_operator":
        old = text(test)
        new = f"not ({old})" if test.type in LOOSE else f"not {old}"
        yield site(test, new, "negation", f"negate {short(old)}")


def _paren(node: Node) -> str:
    return f"({text(node)})" if node.type in LOOSE - {"boolean_operator"} else text(node)


def _condition(parent: Node, ctx: Context) -> Iterator[Site]:
    node = condition_of(parent)
    if node is None:
        return
    if node.type == "true":
        yield from _constant_test(node, ctx)
        return
    facts = ctx.scope(node)
    old = text(node)
    cond = f"({old})" if node.type in LOOSE - {"boolean_operator"} else old
    used = {text(n) for n in _identifiers(node)}
    names = [n for n in facts.before(node.start_byte) if n in used or n in facts.sequences]
    for rank, name in enumerate(n for n in names if n not in facts.ints):
        for extra, template in enumerate(GUARDS):
            new = template.format(name=name, cond=cond)
            yield site(
                node, new, "condition", f"extend the condition to {short(new)}", rank + extra
            )
    if node.type == "boolean_operator":
        for side in ("left", "right"):
            part = node.child_by_field_name(side)
            if part is not None:
                title = f"narrow the condition to {short(text(part))}"
                yield site(node, _paren(part), "condition", title, 1)
    for comparison in _comparisons(node):
        yield from _bound_and_relation(comparison, ctx)


def _identifiers(node: Node) -> Iterator[Node]:
    if node.type == "identifier":
        yield node
        return
    for child in node.named_children:
        yield from _identifiers(child)


def _comparisons(node: Node) -> Iterator[Node]:
    """The comparisons of a condition, through ``and``/``or``/``not`` and parentheses."""
    if node.type == "comparison_operator":
        yield node
    elif node.type in ("boolean_operator", "not_operator", "parenthesized_expression"):
        for child in node.named_children:
            yield from _comparisons(child)


_SAME_TEST = {("<", -1): "<=", ("<=", 1): "<", (">", 1): ">=", (">=", -1): ">"}
"""(relation, bound shift) -> the relation that, with the old bound, tests the same integers."""


def _bound_and_relation(node: Node, ctx: Context) -> Iterator[Site]:
    """``e OP n`` with ``n`` an integer literal: operator and bound changed together (equality
    tests first; changes that test the same integers, ``< 1`` for ``<= 0``, left out)."""
    ops = node.children_by_field_name("operators")
    if len(ops) != 1 or node.named_child_count != 2:
        return
    op, right = ops[0], node.named_children[1]
    value = int_value(right)
    if value is None or text(op) not in _RELATIONS:
        return
    left_text = ctx.data[node.start_byte : op.start_byte].decode()
    for relation in _RELATIONS:
        for shift in (-1, 1):
            if relation == text(op) or _SAME_TEST.get((relation, shift)) == text(op):
                continue
            new = f"{left_text}{relation} {value + shift}"
            rank = 0 if relation in ("==", "!=") else 1
            yield site(node, new, "condition", f"change {short(text(node))} to {short(new)}", rank)


def _constant_test(node: Node, ctx: Context) -> Iterator[Site]:
    facts = ctx.scope(node)
    names = facts.before(node.start_byte)
    for rank, name in enumerate(n for n in names if n in facts.sequences or n not in facts.ints):
        yield site(node, name, "condition", f"test {name} instead of True", rank)
    ints = [n for n in names if n in facts.ints]
    for rank, (a, b) in enumerate((a, b) for a in ints for b in ints if a != b):
        new = f"{a} < {b}"
        yield site(node, new, "condition", f"test {new} instead of True", rank + 1)


RULES: tuple[Rule, ...] = (
    Rule(("negation",), frozenset({"not_operator"} | _TESTED), _negation),
    Rule(("condition",), _TESTED, _condition),
)
