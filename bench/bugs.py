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
from collections.abc import Callable, Iterator
from dataclasses import dataclass


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


@dataclass(frozen=True)
class Bug:
    """One injected bug: its family, 1-based line, title and the whole buggy source."""

    family: str
    line: int
    title: str
    source: str


class _Program:
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
        start, end = self.span(node)
        return self.data[start:end].decode()

    def between(self, a: ast.AST, b: ast.AST) -> tuple[int, int]:
        """Byte offsets from the end of ``a`` to the start of ``b``."""
        return self.span(a)[1], self.span(b)[0]

    def replaced(self, start: int, end: int, new: str) -> str:
        return (self.data[:start] + new.encode() + self.data[end:]).decode()


Site = tuple[int, int, str, str, int]
"""(start byte, end byte, replacement, title, line) of one bug."""
Injector = Callable[[_Program, ast.FunctionDef, list[ast.AST], dict[str, int]], Iterator[Site]]


def _node_site(p: _Program, node: ast.AST, new: str, title: str) -> Site:
    start, end = p.span(node)
    return start, end, new, f"{title} on line {node.lineno}", node.lineno  # type: ignore[attr-defined]


def _op_site(p: _Program, a: ast.AST, b: ast.AST, old: str, new: str, line: int) -> Site | None:
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names:
            for other, bound_at in names.items():
                if other != node.id and bound_at <= node.lineno:
                    yield _node_site(p, node, other, f"bug: {other} used for {node.id}")


def _builtin(
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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


def _swap_args(
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            a, b = node.args[0], node.args[1]
            if (
                p.text(a) != p.text(b)
                and not isinstance(a, ast.Starred)
                and not isinstance(b, ast.Starred)
            ):
                start, end = p.span(a)[0], p.span(b)[1]
                middle = p.data[p.span(a)[1] : p.span(b)[0]].decode()
                yield (
                    start,
                    end,
                    p.text(b) + middle + p.text(a),
                    f"bug: arguments swapped on line {node.lineno}",
                    node.lineno,
                )


def _swap_operands(
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.BinOp) and isinstance(
            node.op, ast.Sub | ast.Div | ast.FloorDiv | ast.Mod | ast.Pow | ast.Add
        ):
            a, b = node.left, node.right
            if isinstance(a, ast.BinOp) or isinstance(b, ast.BinOp) or p.text(a) == p.text(b):
                continue
            start, end = p.span(a)[0], p.span(b)[1]
            middle = p.data[p.span(a)[1] : p.span(b)[0]].decode()
            yield (
                start,
                end,
                p.text(b) + middle + p.text(a),
                f"bug: operands swapped on line {node.lineno}",
                node.lineno,
            )


def _adjust(
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    bounds = {id(b) for b in _bound_nodes(nodes)}
    for node in nodes:
        if not isinstance(node, ast.BinOp) or id(node) in bounds:
            continue
        if isinstance(node.op, ast.Add | ast.Sub) and (
            _int_literal(node.right) and node.right.value == 1 or isinstance(node.right, ast.Name)
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
) -> Iterator[Site]:
    for node in nodes:
        if isinstance(node, ast.Return) and isinstance(node.value, ast.List) and node.value.elts:
            yield _node_site(p, node.value, "[]", f"bug: {p.text(node.value)} returned as []")


def _statement_site(p: _Program, body: list[ast.stmt], index: int, title: str) -> Site | None:
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
    p: _Program, fn: ast.FunctionDef, nodes: list[ast.AST], names: dict[str, int]
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
    program = _Program(source)
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
