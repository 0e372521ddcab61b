"""Numeric families: a bound, an expression or a literal moved by a little.

- ``off_by_one``: a ``range`` bound, an index or a slice bound moved by -1 and +1 (literals
  folded, an existing ``+ k``/``- k`` adjusted, so ``n + 1`` gives ``n`` and ``n + 2``);
- ``adjust``: an integer-valued expression elsewhere (a call argument, a comparison operand, an
  assigned or returned value) moved by ±1, by ± another integer name in scope (``k`` to
  ``k - j``), or squared (``x`` to ``x ** 2``, for operands of arithmetic and summed values);
- ``constant``: a literal changed: 0 and 1 swapped, any other integer ±1, True/False swapped.
"""

from __future__ import annotations

from collections.abc import Iterator

from tree_sitter import Node

from .core import (
    NO_PARENS,
    Context,
    Rule,
    Site,
    call_name,
    int_value,
    operand,
    positional,
    short,
    site,
    text,
    tight,
)

_INDEXABLE = frozenset(
    {
        "identifier",
        "integer",
        "binary_operator",
        "unary_operator",
        "call",
        "attribute",
        "subscript",
        "parenthesized_expression",
    }
)
"""Index and bound expressions that off-by-one may shift (strings, tuples... are left alone)."""
_ARITHMETIC_PARENTS = frozenset({"+", "-", "*", "/", "//", "%"})


def shifted(node: Node, by: tuple[int, ...] = (-1, 1)) -> list[str]:
    """``node``'s expression moved by each of ``by`` (literals folded, offsets adjusted)."""
    value = int_value(node)
    if value is not None:
        return [str(value + b) for b in by]
    base, offset = text(node), 0
    if node.type == "binary_operator":
        left, op, right = (node.child_by_field_name(f) for f in ("left", "operator", "right"))
        if left is not None and op is not None and right is not None and text(op) in ("+", "-"):
            shift = int_value(right) if right.type == "integer" else None
            if shift is not None:
                base, offset = text(left), shift if text(op) == "+" else -shift
                if left.type not in NO_PARENS and left.type != "binary_operator":
                    base = f"({base})"
    if not offset:
        base = operand(node)
    out = []
    for new in (offset + b for b in by):
        out.append(base if new == 0 else f"{base} + {new}" if new > 0 else f"{base} - {-new}")
    return out


def _off_by_one(node: Node, what: str) -> Iterator[Site]:
    if node.type not in _INDEXABLE:
        return
    old = text(node)
    for rank, new in enumerate(shifted(node)):
        yield site(node, new, "off_by_one", f"change {what} {short(old)} to {short(new)}", rank)


def _slice_bounds(node: Node) -> Iterator[Node]:
    """The start and stop expressions of a slice (not its step)."""
    colons = 0
    for child in node.children:
        if child.type == ":":
            colons += 1
        elif child.is_named and colons < 2:
            yield child


def _bounds(node: Node, ctx: Context) -> Iterator[Site]:
    if node.type == "call":
        function, arguments = (node.child_by_field_name(f) for f in ("function", "arguments"))
        if function is not None and text(function) == "range" and arguments is not None:
            for argument in positional(arguments)[:2]:
                yield from _off_by_one(argument, "range bound")
    elif node.type == "subscript":
        for index in node.children_by_field_name("subscript"):
            if index.type != "slice":
                yield from _off_by_one(index, "index")
    elif node.type == "slice":
        for bound in _slice_bounds(node):
            yield from _off_by_one(bound, "slice bound")


def _bound_position(node: Node) -> bool:
    """Whether off-by-one already moves ``node`` (a range bound, an index, a slice bound)."""
    parent = node.parent
    if parent is None:
        return False
    if parent.type == "slice":
        return True
    if parent.type == "subscript":
        return parent.child_by_field_name("value") != node
    if parent.type == "argument_list" and parent.parent is not None:
        return call_name(parent.parent) == "range"
    return False


def _adjust_position(node: Node) -> int | None:
    """Where adjust may move ``node``, as the rank of its first choice there: 0 for a call
    argument or an assigned value, 1 for a returned value or an operand of ``+``/``-``, 2 for a
    comparison operand (the comparison family already moves those bounds); None elsewhere."""
    parent = node.parent
    if parent is None or _bound_position(node):
        return None
    if parent.type == "argument_list":
        return 0
    if parent.type in ("assignment", "augmented_assignment"):
        return 0 if parent.child_by_field_name("right") == node else None
    if parent.type == "return_statement":
        return 1
    if parent.type == "binary_operator":
        op = parent.child_by_field_name("operator")
        return 1 if op is not None and text(op) in ("+", "-") else None
    return 2 if parent.type == "comparison_operator" else None


def _squared_position(node: Node) -> bool:
    """Whether squaring ``node`` is plausible: an operand of arithmetic, an augmented value, or
    the element summed by ``sum(...)``."""
    parent = node.parent
    if parent is None:
        return False
    if parent.type == "binary_operator":
        op = parent.child_by_field_name("operator")
        return op is not None and text(op) in _ARITHMETIC_PARENTS
    if parent.type == "augmented_assignment":
        return parent.child_by_field_name("right") == node
    if parent.type == "generator_expression" and parent.parent is not None:
        call = parent.parent
        return call.type == "call" and call_name(call) == "sum" and parent.named_children[0] == node
    return False


def _adjust(node: Node, ctx: Context) -> Iterator[Site]:
    if node.type == "identifier" and node.parent is not None and node.parent.type == "call":
        return
    facts = ctx.scope(node)
    old = text(node)
    integer = (node.type == "identifier" and old in facts.ints) or (
        node.type == "call" and call_name(node) == "len"
    )
    base = _adjust_position(node) if integer else None
    if base is not None:
        for new in shifted(node):
            yield site(node, new, "adjust", f"change {short(old)} to {short(new)}", base)
        others = [n for n in facts.before(node.start_byte, old) if n in facts.ints and n not in old]
        for rank, other in enumerate(others):
            for sign in ("+", "-"):
                new = f"{operand(node)} {sign} {other}"
                yield site(
                    node, new, "adjust", f"change {short(old)} to {short(new)}", base + 2 + rank
                )
    if node.type in ("identifier", "subscript") and _squared_position(node):
        new = f"{tight(node)} ** 2"
        yield site(node, new, "adjust", f"square {short(old)}", 1)


def _constant(node: Node, ctx: Context) -> Iterator[Site]:
    old = text(node)
    if node.type in ("true", "false"):
        new = "False" if node.type == "true" else "True"
        yield site(node, new, "constant", f"swap {old} for {new}")
        return
    value = int_value(node)
    if (
        value is None
        or _bound_position(node)
        or (node.parent is not None and node.parent.type == "unary_operator")
    ):
        return
    choices = {0: ["1"], 1: ["0"]}.get(value, [str(value - 1), str(value + 1)])
    if value not in (0, 1) and text(node) != str(value):
        return  # hex, octal and binary literals keep their base: left alone
    for rank, new in enumerate(choices):
        yield site(node, new, "constant", f"swap {old} for {new}", rank)


RULES: tuple[Rule, ...] = (
    Rule(("off_by_one",), frozenset({"call", "subscript", "slice"}), _bounds),
    Rule(("adjust",), frozenset({"identifier", "call", "subscript"}), _adjust),
    Rule(("constant",), frozenset({"integer", "true", "false"}), _constant),
)
