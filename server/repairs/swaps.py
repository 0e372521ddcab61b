"""Swap families: two parts of one expression exchanged.

- ``swap_args``: two adjacent positional arguments of a call (``f(a, b)`` to ``f(b, a)``);
- ``swap_operands``: the operands of an order-sensitive binary operator (``result + c`` to
  ``c + result``, ``a - b`` to ``b - a``) and the indices of a subscript (``m[j, k]`` to
  ``m[k, j]``, ``m[j][k]`` to ``m[k][j]``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from tree_sitter import Node

from .core import Context, Rule, Site, positional, short, site, text

_ORDERED = frozenset({"+", "-", "/", "//", "%", "**", "<<", ">>", "@"})
"""Binary operators whose operands' order matters (``+`` for strings and lists)."""


def _between(a: Node, b: Node, data: bytes) -> Site | None:
    """A site exchanging nodes ``a`` and ``b`` (``a`` first), keeping what lies between."""
    if text(a) == text(b):
        return None
    middle = data[a.end_byte : b.start_byte].decode()
    line = a.start_point.row + 1
    return Site(a.start_byte, b.end_byte, text(b) + middle + text(a), "", f"on line {line}", line)


def _swap_args(node: Node, ctx: Context) -> Iterator[Site]:
    args = positional(node)
    call = node.parent
    function = call.child_by_field_name("function") if call is not None else None
    name = f" of {short(text(function))}" if function is not None else ""
    for rank, (a, b) in enumerate(itertools.pairwise(args)):
        swapped = _between(a, b, ctx.data)
        if swapped is not None:
            title = f"swap arguments {short(text(a), 15)} and {short(text(b), 15)}{name}"
            yield Site(
                swapped.start,
                swapped.end,
                swapped.replacement,
                "swap_args",
                f"{title} {swapped.title}",
                swapped.line,
                rank,
            )


def _swap_site(swapped: Site, title: str) -> Site:
    """The ``swap_operands`` site of an exchange found by :func:`_between`, titled ``title``."""
    return Site(
        swapped.start,
        swapped.end,
        swapped.replacement,
        "swap_operands",
        f"{title} {swapped.title}",
        swapped.line,
    )


def _swap_operands(node: Node, ctx: Context) -> Iterator[Site]:
    if node.type == "binary_operator":
        left, op, right = (node.child_by_field_name(f) for f in ("left", "operator", "right"))
        if left is None or op is None or right is None or text(op) not in _ORDERED:
            return
        if left.type == "binary_operator" or right.type == "binary_operator":
            return  # precedence would change the meaning beyond the swap
        swapped = _between(left, right, ctx.data)
        if swapped is not None:
            title = f"swap operands of {short(text(node))}"
            yield _swap_site(swapped, title)
        return
    parts = node.children_by_field_name("subscript")
    if len(parts) == 2:
        swapped = _between(parts[0], parts[1], ctx.data)
        if swapped is not None:
            title = f"swap indices of {short(text(node))}"
            yield _swap_site(swapped, title)
    inner = node.child_by_field_name("value")
    if len(parts) == 1 and inner is not None and inner.type == "subscript":
        inner_parts = inner.children_by_field_name("subscript")
        base = inner.child_by_field_name("value")
        if len(inner_parts) == 1 and base is not None and text(inner_parts[0]) != text(parts[0]):
            new = f"{text(base)}[{text(parts[0])}][{text(inner_parts[0])}]"
            yield site(node, new, "swap_operands", f"swap indices of {short(text(node))}")


RULES: tuple[Rule, ...] = (
    Rule(("swap_args",), frozenset({"argument_list"}), _swap_args),
    Rule(("swap_operands",), frozenset({"binary_operator", "subscript"}), _swap_operands),
)
