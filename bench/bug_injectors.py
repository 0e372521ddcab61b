"""The bench bug model's injectors: for each bug family, the sites where Python's ``ast`` finds
a bug of that family in a function, as byte-range replacements.

Written apart from the repair families (:mod:`trustfix.server.repairs`), with their own
replacement choices, so that a bug's fix being among the repair candidates is a measurement.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator

SIBLINGS: dict[str, tuple[str, ...]] = {
    "max": ("min",),
    "min": ("max",),
    "any": ("all",),
    "all": ("any",),
    "sum": ("max", "len"),
    "len": ("sum",),
    "sorted": ("reversed", "set"),
    "upper": ("lower",),
    "lower": ("upper",),
    "isupper": ("islower",),
    "islower": ("isupper",),
    "startswith": ("endswith",),
    "endswith": ("startswith",),
    "append": ("extend",),
    "ord": ("chr",),
    "chr": ("ord",),
    "floor": ("ceil",),
    "ceil": ("floor",),
    "int": ("round",),
    "round": ("int",),
    "index": ("find", "count"),
    "split": ("rsplit",),
    "isdigit": ("isnumeric", "isalpha"),
    "isalpha": ("isalnum",),
    "keys": ("values",),
    "values": ("keys",),
    "lstrip": ("strip",),
    "rstrip": ("strip",),
    "abs": ("int",),
}
"""Called names a bug may confuse (the bug model's own list: some are not repair swaps)."""
_COMPARE = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_RELATIONS = ("<", "<=", ">", ">=", "==", "!=")
_ARITH = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}
_ARITH_KINDS = (("+", "-", "*", "/", "//", "%", "**"), ("^", "&", "|"))


class Program:
    """A source with byte offsets of its lines, for replacing ``ast`` nodes by position."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.data = source.encode()
        self.starts = [0]
        for line in self.data.split(b"\n")[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)

    def span(self, node: ast.AST) -> tuple[int, int]:
        """Byte offsets [start, end) of a node."""
        start = self.starts[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
        end = self.starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[attr-defined]
        return start, end

    def text(self, node: ast.AST) -> str:
        """A node's source text."""
        start, end = self.span(node)
        return self.data[start:end].decode()

    def between(self, a: ast.AST, b: ast.AST) -> tuple[int, int]:
        """Byte offsets from the end of ``a`` to the start of ``b``."""
        return self.span(a)[1], self.span(b)[0]

    def replaced(self, start: int, end: int, new: str) -> str:
        """The source with bytes [start, end) replaced by ``new``."""
        return (self.data[:start] + new.encode() + self.data[end:]).decode()


Site = tuple[int, int, str, str, int]
"""(start byte, end byte, replacement, title, line) of one bug."""
Injector = Callable[[Program, ast.FunctionDef, list[ast.AST], dict[str, int]], Iterator[Site]]


def _node_site(p: Program, node: ast.AST, new: str, title: str) -> Site:
    start, end = p.span(node)
    return start, end, new, f"{title} on line {node.lineno}", node.lineno  # type: ignore[attr-defined]


def _op_site(p: Program, a: ast.AST, b: ast.AST, old: str, new: str, line: int) -> Site | None:
    """Replace the operator ``old`` written between nodes ``a`` and ``b``."""
    start, end = p.between(a, b)
    gap = p.data[start:end].decode()
    padded = f" {old} " if old.isalpha() or " " in old else old
    at = gap.find(padded) if padded != old else gap.find(old)
    if at < 0:
        return None
    replaced = gap[:at] + (f" {new} " if padded != old else new) + gap[at + len(padded) :]
    return start, end, replaced, f"bug: {old} written as {new} on line {line}", line


def _needs_parens(node: ast.AST) -> bool:
    return isinstance(node, ast.BoolOp | ast.IfExp | ast.Lambda | ast.NamedExpr)


def _wrong_variable(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names:
            for other, bound_at in names.items():
                if other != node.id and bound_at <= node.lineno:
                    yield _node_site(p, node, other, f"bug: {other} used for {node.id}")


def _builtin(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else ""
        )
        for other in SIBLINGS.get(name, ()):
            start, end = p.span(func)
            if isinstance(func, ast.Attribute):
                start = end - len(name.encode())
            yield (
                start,
                end,
                other,
                f"bug: {other} called for {name} on line {node.lineno}",
                node.lineno,
            )


def _int_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _bound_nodes(nodes: list[ast.AST]) -> Iterator[ast.AST]:
    """Range bounds, indices and slice bounds."""
    for node in nodes:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
        ):
            yield from node.args[:2]
        elif isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice | ast.Tuple):
            yield node.slice
        elif isinstance(node, ast.Slice):
            yield from (b for b in (node.lower, node.upper) if b is not None)


def _constant(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            yield _node_site(
                p, node, str(not node.value), f"bug: {node.value} for {not node.value}"
            )
        elif _int_literal(node) and p.text(node) == str(node.value):  # type: ignore[union-attr]
            for new in (node.value - 1, node.value + 1):  # type: ignore[union-attr]
                if new >= 0:
                    yield _node_site(p, node, str(new), f"bug: {node.value} written as {new}")  # type: ignore[union-attr]


def _off_by_one(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for bound in _bound_nodes(nodes):
        if _int_literal(bound) or isinstance(bound, ast.Constant | ast.Tuple):
            continue
        old = p.text(bound)
        if (
            isinstance(bound, ast.BinOp)
            and isinstance(bound.op, ast.Add | ast.Sub)
            and _int_literal(bound.right)
            and bound.right.value == 1
        ):  # type: ignore[attr-defined]
            yield _node_site(
                p, bound, p.text(bound.left), f"bug: {old} cut to {p.text(bound.left)}"
            )
            continue
        base = (
            old
            if isinstance(bound, ast.Name | ast.Call | ast.Attribute | ast.Subscript)
            else f"({old})"
        )
        for sign in ("+", "-"):
            yield _node_site(p, bound, f"{base} {sign} 1", f"bug: {old} moved by {sign}1")


def _comparison(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            old = _COMPARE[type(op)]
            if old in _RELATIONS:
                choices = [r for r in _RELATIONS if r != old]
            else:
                choices = {"is": ["=="], "is not": ["!="], "in": ["not in"], "not in": ["in"]}[old]
            for new in choices:
                site = _op_site(p, operands[i], operands[i + 1], old, new, node.lineno)
                if site is not None:
                    yield site


def _arithmetic(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            old = _ARITH[type(node.op)]
            kind = next(k for k in _ARITH_KINDS if old in k)
            for new in (o for o in kind if o != old):
                site = _op_site(p, node.left, node.right, old, new, node.lineno)
                if site is not None:
                    yield site
        elif isinstance(node, ast.AugAssign) and type(node.op) in _ARITH:
            old = _ARITH[type(node.op)] + "="
            kind = next(k for k in _ARITH_KINDS if old[:-1] in k)
            for new in (o + "=" for o in kind if o + "=" != old):
                site = _op_site(p, node.target, node.value, old, new, node.lineno)
                if site is not None:
                    yield site


def _and_or(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.BoolOp):
            old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            for a, b in zip(node.values, node.values[1:], strict=False):
                site = _op_site(p, a, b, old, new, node.lineno)
                if site is not None:
                    yield site


def _tests(fn: ast.FunctionDef, nodes: list[ast.AST]) -> Iterator[ast.AST]:
    for node in nodes:
        if isinstance(node, ast.If | ast.While | ast.IfExp):
            yield node.test
        elif isinstance(node, ast.comprehension):
            yield from node.ifs


def _negation(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for test in _tests(fn, nodes):
        old = p.text(test)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = p.text(test.operand)
            yield _node_site(p, test, inner, f"bug: not dropped from {old}")
        else:
            new = (
                f"not ({old})"
                if _needs_parens(test) or isinstance(test, ast.Compare)
                else f"not {old}"
            )
            yield _node_site(p, test, new, f"bug: {old} negated")


def _condition(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for test in _tests(fn, nodes):
        if isinstance(test, ast.BoolOp):
            joiner = " and " if isinstance(test.op, ast.And) else " or "
            for i in range(len(test.values)):
                rest = [v for j, v in enumerate(test.values) if j != i]
                new = joiner.join(f"({p.text(v)})" if _needs_parens(v) else p.text(v) for v in rest)
                yield _node_site(
                    p, test, new, f"bug: {p.text(test.values[i])} dropped from the test"
                )
        for node in ast.walk(test):
            if (
                isinstance(node, ast.Compare)
                and len(node.ops) == 1
                and _int_literal(node.comparators[0])
            ):
                old, bound = _COMPARE[type(node.ops[0])], node.comparators[0].value  # type: ignore[attr-defined]
                if old not in _RELATIONS:
                    continue
                left = p.text(node.left)
                for new_op, new_bound in (
                    (o, b) for o in _RELATIONS for b in (bound - 1, bound + 1) if o != old
                ):
                    new = f"{left} {new_op} {new_bound}"
                    yield _node_site(p, node, new, f"bug: {p.text(node)} written as {new}")


def _replace(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    attributes = sorted(
        {n.attr for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)}
    )
    for node in nodes:
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            for other in attributes:
                if other != node.attr:
                    start, end = p.span(node)
                    start = end - len(node.attr.encode())
                    yield (
                        start,
                        end,
                        other,
                        f"bug: .{other} for .{node.attr} on line {node.lineno}",
                        node.lineno,
                    )
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Slice)
            and isinstance(node.value, ast.Name)
        ):
            yield _node_site(p, node, node.value.id, f"bug: {p.text(node)} used whole")


def _wrap(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if (
                node.func.id in ("max", "min", "abs", "int", "len", "sorted", "sum", "set")
                and node.args
            ):
                value = node.args[-1]
                if not isinstance(value, ast.Starred):
                    yield _node_site(
                        p,
                        node,
                        p.text(value),
                        f"bug: {node.func.id}(...) dropped around {p.text(value)}",
                    )
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            start, end = p.between(node.target, node.value)
            yield (
                start,
                end,
                " = ",
                f"bug: = for augmented assignment on line {node.lineno}",
                node.lineno,
            )


def _exchanged(p: Program, a: ast.AST, b: ast.AST, what: str, line: int) -> Site:
    """Nodes ``a`` and ``b`` (``a`` first) exchanged, what lies between kept."""
    start, end = p.span(a)[0], p.span(b)[1]
    middle = p.data[p.span(a)[1] : p.span(b)[0]].decode()
    return start, end, p.text(b) + middle + p.text(a), f"bug: {what} swapped on line {line}", line


def _swap_args(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            a, b = node.args[0], node.args[1]
            if (
                p.text(a) != p.text(b)
                and not isinstance(a, ast.Starred)
                and not isinstance(b, ast.Starred)
            ):
                yield _exchanged(p, a, b, "arguments", node.lineno)


def _swap_operands(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.BinOp) and isinstance(
            node.op, ast.Sub | ast.Div | ast.FloorDiv | ast.Mod | ast.Pow | ast.Add
        ):
            a, b = node.left, node.right
            if isinstance(a, ast.BinOp) or isinstance(b, ast.BinOp) or p.text(a) == p.text(b):
                continue
            yield _exchanged(p, a, b, "operands", node.lineno)


def _adjust(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    bounds = {id(b) for b in _bound_nodes(nodes)}
    for node in nodes:
        if not isinstance(node, ast.BinOp) or id(node) in bounds:
            continue
        if isinstance(node.op, ast.Add | ast.Sub) and (
            (_int_literal(node.right) and node.right.value == 1) or isinstance(node.right, ast.Name)
        ):  # type: ignore[attr-defined]
            yield _node_site(
                p,
                node,
                p.text(node.left) if not _needs_parens(node.left) else f"({p.text(node.left)})",
                f"bug: {p.text(node)} written as {p.text(node.left)}",
            )
        elif isinstance(node.op, ast.Pow) and _int_literal(node.right) and node.right.value == 2:  # type: ignore[attr-defined]
            yield _node_site(p, node, p.text(node.left), f"bug: {p.text(node)} not squared")


def _return_value(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.Return) and isinstance(node.value, ast.List) and node.value.elts:
            yield _node_site(p, node.value, "[]", f"bug: {p.text(node.value)} returned as []")


def _statement_site(p: Program, body: list[ast.stmt], index: int, title: str) -> Site | None:
    """Delete statement ``body[index]`` (with its line), leaving the block non-empty."""
    if len(body) < 2:
        return None
    node = body[index]
    start, end = p.span(node)
    line_start = p.starts[node.lineno - 1]
    if p.data[line_start:start].strip() or (end < len(p.data) and p.data[end : end + 1] != b"\n"):
        return None
    return line_start, end + 1, "", f"bug: {title} deleted on line {node.lineno}", node.lineno


def _insert(
    p: Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    last = fn.body[-1]
    if isinstance(last, ast.Return) and last.value is not None:
        site = _statement_site(p, fn.body, len(fn.body) - 1, "the final return")
        if site is not None:
            yield site
    for node in nodes:
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for i, stmt in enumerate(body):
            kind = ""
            if isinstance(node, ast.While) and isinstance(stmt, ast.AugAssign):
                kind = "the loop variable's update"
            elif (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Attribute)
                and stmt.value.func.attr == "append"
            ):
                kind = "an append"
            elif (
                node is fn
                and isinstance(stmt, ast.If)
                and len(stmt.body) == 1
                and isinstance(stmt.body[0], ast.Return)
                and not stmt.orelse
            ):
                kind = "a guard"
            if kind:
                site = _statement_site(p, body, i, kind)
                if site is not None:
                    yield site


INJECTORS: dict[str, Injector] = {
    "wrong_variable": _wrong_variable,
    "builtin": _builtin,
    "constant": _constant,
    "off_by_one": _off_by_one,
    "comparison": _comparison,
    "arithmetic": _arithmetic,
    "and_or": _and_or,
    "negation": _negation,
    "condition": _condition,
    "replace": _replace,
    "wrap": _wrap,
    "swap_args": _swap_args,
    "swap_operands": _swap_operands,
    "adjust": _adjust,
    "return_value": _return_value,
    "insert": _insert,
}
"""The injector of each family of :data:`BUG_MODEL`."""
