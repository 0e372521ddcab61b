"""Statement-level families: what a statement returns, wraps or misses.

- ``return_value``: a returned ``[]`` for ``[[]]`` or ``[name]``, a bare ``return``/``return
  None`` for ``return name`` (names bound before, the nearest first);
- ``wrap``: an assigned or returned value wrapped in a call that fits its kind (``max(t, e)``
  and ``min(t, e)`` for a re-assigned name ``t``; ``abs``/``int`` for arithmetic; ``len``,
  ``sorted``, ``sum``, ``max``, ``min``, ``set`` for sequences), an augmented assignment
  replaced by a plain one and back (``x += e`` to ``x = e``);
- ``insert``: a missing statement added: a ``return`` of a computed value at a function's end,
  the update of a ``while`` loop's variable (``i += 1``), an ``append`` of a ``for`` loop's
  variable to a list built there, a guard ``if not xs: return ...`` at a function's start.
"""

from __future__ import annotations

from collections.abc import Iterator

from tree_sitter import Node

from .core import Context, Rule, Site, call_name, is_read, short, site, text

NUMERIC_WRAPPERS: tuple[str, ...] = ("abs", "int")
SEQUENCE_WRAPPERS: tuple[str, ...] = ("len", "sorted", "sum", "max", "min", "set")
DEFAULT_RETURNS: tuple[str, ...] = ("None", "[]", "0", "False")
"""Values a guard may return when the function returns no literal of its own."""
_EXITS = frozenset({"return_statement", "raise_statement"})
_ARITHMETIC = frozenset({"+", "-", "*", "/", "//", "%", "**"})


def _returned(node: Node, ctx: Context) -> Iterator[Site]:
    value = node.named_children[0] if node.named_child_count else None
    facts = ctx.scope(node)
    names = facts.before(node.start_byte)
    if value is not None and value.type == "list" and value.named_child_count == 0:
        yield site(value, "[[]]", "return_value", "return [[]] instead of []")
        for rank, name in enumerate(names):
            yield site(value, f"[{name}]", "return_value", f"return [{name}] instead of []", rank)
    elif value is None or value.type == "none":
        for rank, name in enumerate(names):
            new = f"return {name}"
            yield site(node, new, "return_value", f"{new} instead of {short(text(node))}", rank)


def _sequence(node: Node, ctx: Context) -> bool:
    if node.type == "identifier":
        return text(node) in ctx.scope(node).sequences
    if node.type == "call":
        return call_name(node) in ("sorted", "list", "filter", "map", "reversed")
    return node.type in ("list_comprehension", "generator_expression", "list")


def _wrap_value(value: Node, ctx: Context) -> Iterator[Site]:
    old = text(value)
    if value.type == "binary_operator":
        op = value.child_by_field_name("operator")
        wrappers = NUMERIC_WRAPPERS if op is not None and text(op) in _ARITHMETIC else ()
    elif _sequence(value, ctx):
        wrappers = SEQUENCE_WRAPPERS
    else:
        return
    inner = old[1:-1] if value.type == "generator_expression" else old
    for rank, name in enumerate(w for w in wrappers if w != call_name(value)):
        new = f"{name}({inner})"
        yield site(value, new, "wrap", f"wrap {short(old)} in {name}(...)", rank + 1)


def _wrap(node: Node, ctx: Context) -> Iterator[Site]:
    if node.type == "return_statement":
        if node.named_child_count:
            yield from _wrap_value(node.named_children[0], ctx)
        return
    target, value = node.child_by_field_name("left"), node.child_by_field_name("right")
    if target is None or value is None or target.type != "identifier":
        return
    name, facts = text(target), ctx.scope(node)
    bound_before = facts.names.get(name, node.end_byte) < node.start_byte
    op = node.child_by_field_name("operator")
    if node.type == "augmented_assignment" and op is not None:
        new = f"{name} = {text(value)}"
        yield site(
            node, new, "wrap", f"assign {short(text(value))} to {name} instead of {text(op)}"
        )
        return
    if node.type == "assignment" and value.type not in ("expression_list", "assignment"):
        if bound_before:
            for rank, wrapper in enumerate(("max", "min")):
                new = f"{wrapper}({name}, {text(value)})"
                yield site(value, new, "wrap", f"assign {short(new)} to {name}", rank)
            for op_text in ("+=", "-="):
                new = f"{name} {op_text} {text(value)}"
                yield site(node, new, "wrap", f"use {op_text} on {name} instead of =", 2)
        yield from _wrap_value(value, ctx)


def _block_indent(block: Node, header: Node) -> str | None:
    """The indentation of a block's statements; None for a block on its header's line."""
    statements = block.named_children
    if not statements or statements[0].start_point.row == header.start_point.row:
        return None
    return " " * statements[0].start_point.column


def _append_at_end(block: Node, header: Node, statement: str) -> tuple[int, str, int] | None:
    """(byte offset, inserted text, 1-based line) adding ``statement`` after a block's last."""
    indent = _block_indent(block, header)
    if indent is None:
        return None
    last = block.named_children[-1]
    return last.end_byte, f"\n{indent}{statement}", last.end_point.row + 2


def _insertion(at: tuple[int, str, int] | None, title: str, rank: int) -> Iterator[Site]:
    if at is not None:
        offset, new, line = at
        yield Site(offset, offset, new, "insert", f"{title} on line {line}", line, rank)


def _assigned_in(block: Node, name: str) -> bool:
    """Whether ``name`` is assigned (or augmented) anywhere in ``block``."""
    stack = [block]
    while stack:
        node = stack.pop()
        if node.type in ("assignment", "augmented_assignment"):
            target = node.child_by_field_name("left")
            if target is not None and text(target) == name:
                return True
        stack.extend(node.named_children)
    return False


def _calls_method(block: Node, receiver: str, method: str) -> bool:
    return f"{receiver}.{method}(".encode() in (block.text or b"")


def _insert(node: Node, ctx: Context) -> Iterator[Site]:
    body = node.child_by_field_name("body")
    if body is None or not body.named_children:
        return
    facts = ctx.scope(body)
    if node.type == "function_definition":
        yield from _insert_return(node, body, ctx)
        yield from _insert_guard(node, body, ctx)
    elif node.type == "while_statement":
        condition = node.child_by_field_name("condition")
        names = {text(n) for n in _reads(condition)} if condition is not None else set()
        for rank, name in enumerate(n for n in facts.before(node.start_byte) if n in names):
            if name in facts.ints and not _assigned_in(body, name):
                for step, update in enumerate((f"{name} += 1", f"{name} -= 1")):
                    yield from _insertion(
                        _append_at_end(body, node, update), f"add {update}", rank + step
                    )
    elif node.type == "for_statement":
        target = node.child_by_field_name("left")
        if target is None or target.type != "identifier":
            return
        lists = [n for n in facts.before(node.start_byte) if n in facts.lists]
        for rank, name in enumerate(lists):
            if not _calls_method(body, name, "append"):
                statement = f"{name}.append({text(target)})"
                yield from _insertion(
                    _append_at_end(body, node, statement), f"add {statement}", rank
                )


def _reads(node: Node) -> Iterator[Node]:
    if node.type == "identifier" and is_read(node):
        yield node
    for child in node.named_children:
        yield from _reads(child)


def _insert_return(node: Node, body: Node, ctx: Context) -> Iterator[Site]:
    last = body.named_children[-1]
    if last.type in _EXITS:
        return
    facts = ctx.scope(body)
    values = [n for n in facts.before(node.end_byte) if facts.names[n] > body.start_byte]
    values += [v for v in facts.literals if v not in values]
    for rank, value in enumerate(values):
        statement = f"return {value}"
        yield from _insertion(_append_at_end(body, node, statement), f"add {statement}", rank)


def _insert_guard(node: Node, body: Node, ctx: Context) -> Iterator[Site]:
    indent = _block_indent(body, node)
    if indent is None:
        return
    facts = ctx.scope(body)
    statements = body.named_children
    first = statements[0]
    if first.type == "expression_statement" and first.named_children[0].type == "string":
        if len(statements) == 1:
            return
        first = statements[1]
    parameters = [n for n, at in facts.names.items() if at < body.start_byte]
    defaults = facts.literals or list(DEFAULT_RETURNS)
    for rank, name in enumerate(p for p in parameters if p in facts.sequences):
        for extra, value in enumerate(defaults):
            guard = f"if not {name}:\n{indent}    return {value}\n{indent}"
            line = first.start_point.row + 1
            title = f"add a guard: if not {name}: return {value} on line {line}"
            yield Site(
                first.start_byte, first.start_byte, guard, "insert", title, line, rank + extra
            )


RULES: tuple[Rule, ...] = (
    Rule(("return_value",), frozenset({"return_statement"}), _returned),
    Rule(("wrap",), frozenset({"return_statement", "assignment", "augmented_assignment"}), _wrap),
    Rule(
        ("insert",), frozenset({"function_definition", "while_statement", "for_statement"}), _insert
    ),
)
