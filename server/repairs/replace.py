"""Replacement families: a name or an expression for another one in scope.

- ``wrong_variable``: a local name read anywhere in the function for another local bound
  before it (the nearest binding first); an assignment target only where its name was bound
  before too (so that the edit can be undone);
- ``replace``: an attribute for a sibling attribute (its pair, ``.left`` to ``.right``, or one
  read elsewhere in the function), a tuple subscript for one of its parts (``d[u, v]`` to ``d[v]``), a call for its
  single argument (``f(x)`` to ``x``), a sequence name for a slice of it (``b`` to ``b[1:]``,
  ``b[:-1]``).
"""

from __future__ import annotations

from collections.abc import Iterator

from tree_sitter import Node

from .core import Context, Rule, Site, is_read, positional, short, site, text

SIBLING_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "left": ("right",),
    "right": ("left",),
    "x": ("y",),
    "y": ("x",),
    "start": ("end", "stop"),
    "end": ("start",),
    "stop": ("start",),
    "first": ("last",),
    "last": ("first",),
    "head": ("tail",),
    "tail": ("head",),
    "prev": ("next",),
    "next": ("prev",),
    "key": ("value",),
    "value": ("key",),
    "width": ("height",),
    "height": ("width",),
    "row": ("col",),
    "col": ("row",),
    "min": ("max",),
    "max": ("min",),
    "parent": ("child",),
    "real": ("imag",),
    "imag": ("real",),
    "lo": ("hi",),
    "hi": ("lo",),
}
"""Attribute names that come in pairs: each is a sibling of the other even when the function
reads only one of them."""
SLICES: tuple[str, ...] = ("[1:]", "[:-1]", "[::-1]")
"""Slices a sequence name may be replaced by, in order of preference."""


def _wrong_variable(node: Node, ctx: Context) -> Iterator[Site]:
    parent = node.parent
    target = (
        parent is not None
        and parent.type in ("assignment", "augmented_assignment")
        and (parent.child_by_field_name("left") == node)
    )
    if not target and not is_read(node):
        return
    facts = ctx.scope(node)
    old = text(node)
    if not facts.visible(old, node.start_byte) or (
        target and facts.names.get(old, node.start_byte) >= node.start_byte
    ):
        return
    for rank, new in enumerate(facts.before(node.start_byte, old)):
        yield site(node, new, "wrong_variable", f"use {new} instead of {old}", rank)


def _attribute(node: Node, ctx: Context) -> Iterator[Site]:
    attribute = node.child_by_field_name("attribute")
    parent = node.parent
    if attribute is None or (parent is not None and parent.type == "call"):
        return
    old = text(attribute)
    paired = SIBLING_ATTRIBUTES.get(old, ())
    siblings = [*paired, *(a for a in ctx.scope(node).attributes if a != old and a not in paired)]
    for rank, new in enumerate(siblings):
        yield site(attribute, new, "replace", f"use .{new} instead of .{old}", rank)


def _subscript(node: Node, ctx: Context) -> Iterator[Site]:
    value, parts = node.child_by_field_name("value"), node.children_by_field_name("subscript")
    if value is None or len(parts) < 2:
        return
    for rank, part in enumerate(parts):
        new = f"{text(value)}[{text(part)}]"
        yield site(
            node, new, "replace", f"index {short(text(value))} by {short(text(part))} only", rank
        )


def _call_argument(node: Node, ctx: Context) -> Iterator[Site]:
    function, arguments = (
        node.child_by_field_name("function"),
        node.child_by_field_name("arguments"),
    )
    if function is None or arguments is None or arguments.type != "argument_list":
        return
    args = positional(arguments)
    if len(args) != 1 or len(arguments.named_children) != 1 or args[0].type == "list_splat":
        return
    argument = text(args[0])
    if args[0].type in ("generator_expression",):
        return
    if node.parent is not None and node.parent.type in ("expression_statement",):
        return
    new = argument if "\n" not in argument else f"({argument})"
    yield site(node, new, "replace", f"use {short(argument)} instead of {short(text(node))}", 1)


def _slice(node: Node, ctx: Context) -> Iterator[Site]:
    if not is_read(node):
        return
    old = text(node)
    if old not in ctx.scope(node).sequences:
        return
    parent = node.parent
    if (
        parent is not None
        and parent.type == "subscript"
        and parent.child_by_field_name("value") == node
    ):
        return
    for rank, part in enumerate(SLICES):
        yield site(node, f"{old}{part}", "replace", f"use {old}{part} instead of {old}", rank + 1)


RULES: tuple[Rule, ...] = (
    Rule(("wrong_variable",), frozenset({"identifier"}), _wrong_variable),
    Rule(("replace",), frozenset({"attribute"}), _attribute),
    Rule(("replace",), frozenset({"subscript"}), _subscript),
    Rule(("replace",), frozenset({"call"}), _call_argument),
    Rule(("replace",), frozenset({"identifier"}), _slice),
)
