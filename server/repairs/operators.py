"""Operator and builtin families: one operator or called name swapped for a sibling.

- ``comparison``: ``<`` for ``<=``, ``>``, ``>=`` (and so on), ``==`` for ``!=`` first, then
  any other relation;
- ``arithmetic``: ``+``/``-``, ``*``/``/``/``//``/``%``, ``**``/``*``, bitwise ``^``/``&``/``|``
  and shifts first, then any other operator of the same kind, in expressions and augmented
  assignments (``^=`` for ``&=``);
- ``is_eq``: ``is`` for ``==`` and back;
- ``and_or``: ``and`` for ``or`` and back;
- ``builtin``: a called builtin or method for its sibling (``max``/``min``, ``any``/``all``,
  ``upper``/``lower``, ``startswith``/``endswith``, ``keys``/``values``/``items`` ...).
"""

from __future__ import annotations

from collections.abc import Iterator

from tree_sitter import Node

from .core import Context, Rule, Site, site, text

COMPARISON: dict[str, tuple[str, ...]] = {
    "<": ("<=", ">", ">="),
    "<=": ("<", ">=", ">"),
    ">": (">=", "<", "<="),
    ">=": (">", "<=", "<"),
    "==": ("!=",),
    "!=": ("==",),
}
ARITHMETIC: dict[str, tuple[str, ...]] = {
    "+": ("-",),
    "-": ("+",),
    "*": ("/", "//", "**"),
    "/": ("*", "//"),
    "//": ("/", "%", "*"),
    "%": ("//",),
    "**": ("*",),
    "^": ("&", "|"),
    "&": ("|", "^"),
    "|": ("&", "^"),
    "<<": (">>",),
    ">>": ("<<",),
}
RELATIONS: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=")
ARITHMETIC_KINDS: tuple[tuple[str, ...], ...] = (
    ("+", "-", "*", "/", "//", "%", "**"),
    ("^", "&", "|"),
    ("<<", ">>"),
)
"""Operators that may stand for one another beyond the tables' first choices."""
NEGATED: dict[str, str] = {"in": "not in", "not in": "in", "is": "is not", "is not": "is"}
IS_EQ: dict[str, str] = {"is": "==", "==": "is", "is not": "!=", "!=": "is not"}
BUILTINS: dict[str, tuple[str, ...]] = {
    "max": ("min",),
    "min": ("max",),
    "any": ("all",),
    "all": ("any",),
    "sorted": ("reversed", "list"),
    "reversed": ("sorted",),
    "list": ("set", "sorted"),
    "set": ("list",),
    "ord": ("chr",),
    "chr": ("ord",),
    "floor": ("ceil",),
    "ceil": ("floor",),
    "upper": ("lower",),
    "lower": ("upper",),
    "isupper": ("islower",),
    "islower": ("isupper",),
    "isdigit": ("isalpha",),
    "isalpha": ("isdigit",),
    "startswith": ("endswith",),
    "endswith": ("startswith",),
    "lstrip": ("rstrip", "strip"),
    "rstrip": ("lstrip", "strip"),
    "strip": ("lstrip", "rstrip"),
    "find": ("rfind",),
    "rfind": ("find",),
    "index": ("rindex",),
    "append": ("extend",),
    "extend": ("append",),
    "keys": ("values", "items"),
    "values": ("keys", "items"),
    "items": ("keys", "values"),
    "pop": ("popleft",),
    "remove": ("discard",),
}
"""Called names and their sibling swaps (builtins, ``math`` functions, common methods)."""


def _swaps(
    node: Node,
    table: dict[str, tuple[str, ...]],
    family: str,
    kinds: tuple[tuple[str, ...], ...] = (),
) -> Iterator[Site]:
    """Swaps of an operator: the table's choices in order, then (rank after them) every other
    operator of its kind in ``kinds``."""
    old = text(node)
    choices = list(table.get(old, ()))
    for kind in kinds:
        if old in kind:
            choices += [o for o in kind if o != old and o not in choices]
    for rank, new in enumerate(choices):
        yield site(node, new, family, f"swap {old} for {new}", rank)


def _comparison(node: Node, ctx: Context) -> Iterator[Site]:
    for op in node.children_by_field_name("operators"):
        yield from _swaps(op, COMPARISON, "comparison", (RELATIONS,))
        yield from _swaps(op, {k: (v,) for k, v in NEGATED.items()}, "negation")
        yield from _swaps(op, {k: (v,) for k, v in IS_EQ.items()}, "is_eq")


def _arithmetic(node: Node, ctx: Context) -> Iterator[Site]:
    op = node.child_by_field_name("operator")
    if op is None:
        return
    if node.type == "augmented_assignment":
        table = {f"{k}=": tuple(f"{x}=" for x in v) for k, v in ARITHMETIC.items()}
        kinds = tuple(tuple(f"{o}=" for o in kind) for kind in ARITHMETIC_KINDS)
        yield from _swaps(op, table, "arithmetic", kinds)
    else:
        yield from _swaps(op, ARITHMETIC, "arithmetic", ARITHMETIC_KINDS)


def _and_or(node: Node, ctx: Context) -> Iterator[Site]:
    op = node.child_by_field_name("operator")
    new = {"and": "or", "or": "and"}.get(text(op)) if op is not None else None
    if op is not None and new:
        yield site(op, new, "and_or", f"swap {text(op)} for {new}")


def _builtin(node: Node, ctx: Context) -> Iterator[Site]:
    function = node.child_by_field_name("function")
    if function is not None and function.type == "attribute":
        function = function.child_by_field_name("attribute")
    if function is not None and function.type == "identifier":
        old = text(function)
        for rank, new in enumerate(BUILTINS.get(old, ())):
            yield site(function, new, "builtin", f"call {new} instead of {old}", rank)


RULES: tuple[Rule, ...] = (
    Rule(("comparison", "negation", "is_eq"), frozenset({"comparison_operator"}), _comparison),
    Rule(("arithmetic",), frozenset({"binary_operator", "augmented_assignment"}), _arithmetic),
    Rule(("and_or",), frozenset({"boolean_operator"}), _and_or),
    Rule(("builtin",), frozenset({"call"}), _builtin),
)
