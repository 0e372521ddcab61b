"""Repair operators over the tree-sitter syntax tree.

Each operator rewrites one site of the source (a byte-range replacement) into a small, plausible
variant: a comparison or arithmetic operator swap, an off-by-one in a bound or index, an added or
removed ``not``, ``and``/``or``, swapped call arguments, another variable of the same function,
``is``/``==``, a 0/1 or True/False constant.  Every family is closed under inversion (``<`` gives
``<=`` and ``<=`` gives ``<``; ``x`` gives ``x + 1`` and ``x + 1`` gives ``x``), so the same edits
inject bugs into correct code and repair them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from tree_sitter import Node, Point, Query, QueryCursor, Tree

from .units import LANGUAGE, has_error_in, parse, parse_bytes

OPERATORS: tuple[str, ...] = (
    "comparison",
    "arithmetic",
    "off_by_one",
    "negation",
    "and_or",
    "swap_args",
    "wrong_variable",
    "is_eq",
    "constant",
)
"""Operator families, in the order used to break ties between edits at the same site."""

_COMPARISON = {
    "<": ("<=", ">", ">="),
    "<=": ("<", ">=", ">"),
    ">": (">=", "<", "<="),
    ">=": (">", "<=", "<"),
    "==": ("!=",),
    "!=": ("==",),
}
_ARITHMETIC = {
    "+": ("-",),
    "-": ("+",),
    "*": ("/", "//"),
    "/": ("*", "//"),
    "//": ("/", "%", "*"),
    "%": ("//",),
}
_NEGATED_OPERATOR = {"in": "not in", "not in": "in", "is": "is not", "is not": "is"}
_IS_EQ = {"is": "==", "==": "is", "is not": "!=", "!=": "is not"}
_CONSTANT = {"0": "1", "1": "0", "True": "False", "False": "True"}

_NO_PARENS = frozenset(
    {
        "identifier",
        "integer",
        "float",
        "call",
        "subscript",
        "attribute",
        "parenthesized_expression",
        "unary_operator",
        "list",
        "string",
        "true",
        "false",
        "none",
    }
)
"""Expression types that need no parentheses as the operand of ``+``/``-`` or ``not``."""
_TIGHT_BINARY = frozenset({"+", "-", "*", "/", "//", "%", "@", "**"})
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
_LOOSE = frozenset({"boolean_operator", "conditional_expression", "lambda", "named_expression"})
"""Expression types that need parentheses after ``not``."""
_CONDITION_PARENTS = frozenset({"if_statement", "elif_clause", "while_statement", "if_clause"})
_NESTED_SCOPES = frozenset({"function_definition", "class_definition", "lambda"})

_QUERY = Query(
    LANGUAGE,
    """
    (comparison_operator operators: _ @comparison)
    (binary_operator operator: _ @arithmetic)
    (augmented_assignment operator: _ @augmented)
    (call function: (identifier) @_range arguments: (argument_list) @range_args
        (#eq? @_range "range"))
    (subscript subscript: (_) @index)
    (slice) @slice
    (if_statement condition: (_) @condition)
    (elif_clause condition: (_) @condition)
    (while_statement condition: (_) @condition)
    (if_clause (_) @condition)
    (conditional_expression) @ternary
    (not_operator) @not
    (boolean_operator operator: _ @boolean)
    (argument_list) @arguments
    (return_statement (_) @returned)
    (assignment left: (identifier) @target)
    (assignment right: (_) @assigned)
    (augmented_assignment left: (identifier) @target)
    (augmented_assignment right: (_) @assigned)
    (integer) @constant
    (true) @constant
    (false) @constant
    """,
)


@dataclass(frozen=True)
class OperatorEdit:
    """One single-site edit: operator family, 1-based line of the site, title, new whole source."""

    operator: str
    line: int
    title: str
    source: str


@dataclass(frozen=True)
class _Site:
    """A byte-range replacement proposed by one operator."""

    start: int
    end: int
    replacement: str
    operator: str
    title: str
    line: int


def _text(node: Node) -> str:
    return node.text.decode() if node.text is not None else ""


def _short(text: str, width: int = 30) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _site(node: Node, replacement: str, operator: str, title: str) -> _Site:
    line = node.start_point.row + 1
    return _Site(
        node.start_byte, node.end_byte, replacement, operator, f"{title} on line {line}", line
    )


def _swaps(node: Node, table: dict[str, tuple[str, ...]], operator: str) -> Iterator[_Site]:
    old = _text(node)
    for new in table.get(old, ()):
        yield _site(node, new, operator, f"swap {old} for {new}")


def _needs_parens(node: Node) -> bool:
    if node.type == "binary_operator":
        operator = node.child_by_field_name("operator")
        return operator is None or _text(operator) not in _TIGHT_BINARY
    return node.type not in _NO_PARENS


def _int_value(node: Node) -> int | None:
    """The value of an integer literal or a negated one, else None."""
    if node.type == "unary_operator":
        operator, argument = (
            node.child_by_field_name("operator"),
            node.child_by_field_name("argument"),
        )
        if operator is not None and argument is not None and _text(operator) == "-":
            value = _int_value(argument)
            return None if value is None else -value
        return None
    if node.type != "integer":
        return None
    try:
        return int(_text(node), 0)
    except ValueError:
        return None


def _shifted(node: Node) -> list[str]:
    """``node``'s expression moved by -1 and +1 (literals folded, existing offsets adjusted)."""
    value = _int_value(node)
    if value is not None:
        return [str(value - 1), str(value + 1)]
    base, offset = _text(node), 0
    if node.type == "binary_operator":
        left, op, right = (node.child_by_field_name(f) for f in ("left", "operator", "right"))
        if left is not None and op is not None and right is not None and _text(op) in ("+", "-"):
            shift = _int_value(right) if right.type == "integer" else None
            if shift is not None:
                base, offset = _text(left), shift if _text(op) == "+" else -shift
                if left.type not in _NO_PARENS and left.type != "binary_operator":
                    base = f"({base})"
    if not offset and _needs_parens(node):
        base = f"({base})"
    out = []
    for new in (offset - 1, offset + 1):
        out.append(base if new == 0 else f"{base} + {new}" if new > 0 else f"{base} - {-new}")
    return out


def _off_by_one(node: Node, what: str) -> Iterator[_Site]:
    if node.type not in _INDEXABLE:
        return
    old = _text(node)
    for new in _shifted(node):
        yield _site(node, new, "off_by_one", f"change {what} {_short(old)} to {_short(new)}")


def _slice_bounds(node: Node) -> Iterator[Node]:
    """The start and stop expressions of a slice (not its step)."""
    colons = 0
    for child in node.children:
        if child.type == ":":
            colons += 1
        elif child.is_named and colons < 2:
            yield child


def _positional(arguments: Node) -> list[Node]:
    """The leading positional arguments of an argument list."""
    out = []
    for child in arguments.named_children:
        if child.type in ("keyword_argument", "list_splat", "dictionary_splat", "comment"):
            break
        out.append(child)
    return out


def _negate(node: Node) -> Iterator[_Site]:
    if node.type == "not_operator":
        return
    text = _text(node)
    new = f"not ({text})" if node.type in _LOOSE else f"not {text}"
    yield _site(node, new, "negation", f"negate {_short(text)}")


def _remove_not(node: Node) -> Iterator[_Site]:
    argument = node.child_by_field_name("argument")
    if argument is None:
        return
    new = _text(argument)
    if (
        argument.type == "parenthesized_expression"
        and node.parent is not None
        and node.parent.type in _CONDITION_PARENTS | {"conditional_expression"}
        and argument.named_child_count == 1
        and argument.named_children[0].type in _LOOSE
    ):
        new = _text(argument.named_children[0])
    yield _site(node, new, "negation", f"remove not from {_short(_text(node))}")


def _enclosing_scope(node: Node) -> Node:
    scope = node.parent
    while scope is not None and scope.type not in ("function_definition", "module"):
        scope = scope.parent
    return scope if scope is not None else node


def _bound_names(node: Node) -> Iterator[Node]:
    """Identifier nodes bound by a parameter or an assignment/for/with target."""
    if node.type == "identifier":
        yield node
    elif node.type in ("typed_parameter", "list_splat_pattern", "dictionary_splat_pattern"):
        for child in node.named_children[:1]:
            yield from _bound_names(child)
    elif node.type in ("default_parameter", "typed_default_parameter"):
        name = node.child_by_field_name("name")
        if name is not None:
            yield from _bound_names(name)
    elif node.type in ("pattern_list", "tuple_pattern", "list_pattern", "parenthesized_expression"):
        for child in node.named_children:
            yield from _bound_names(child)


def _scope_names(scope: Node) -> dict[str, int]:
    """The local names of a function (or module) with the byte offset where each is first bound:
    parameters at their own position, targets after the value they are bound to."""
    names: dict[str, int] = {}

    def bind(target: Node, at: int) -> None:
        for ident in _bound_names(target):
            names.setdefault(_text(ident), at)

    parameters = scope.child_by_field_name("parameters")
    if parameters is not None:
        for parameter in parameters.named_children:
            bind(parameter, parameter.start_byte)
    body = scope.child_by_field_name("body") if scope.type == "function_definition" else scope
    stack = list(reversed(body.named_children)) if body is not None else []
    while stack:
        node = stack.pop()
        if node.type in _NESTED_SCOPES:
            continue
        if node.type in ("assignment", "augmented_assignment", "for_statement"):
            target, value = node.child_by_field_name("left"), node.child_by_field_name("right")
            if target is not None:
                bind(target, (value or target).end_byte)
        elif node.type == "as_pattern_target":
            bind(node.named_children[0], node.end_byte)
        stack.extend(reversed(node.named_children))
    return names


def _value_identifiers(node: Node) -> Iterator[Node]:
    """Identifiers read as values inside an expression (not call names, attributes, keywords)."""
    if node.type == "identifier":
        parent = node.parent
        if (
            parent is not None
            and parent.type == "call"
            and parent.child_by_field_name("function") == node
        ):
            return
        yield node
        return
    if node.type in _NESTED_SCOPES:
        return
    for index, child in enumerate(node.children):
        field = node.field_name_for_child(index)
        if node.type == "attribute" and field == "attribute":
            continue
        if node.type == "keyword_argument" and field == "name":
            continue
        yield from _value_identifiers(child)


def _wrong_variable(node: Node, scopes: dict[int, dict[str, int]], target: bool) -> Iterator[_Site]:
    """Replace a local name by each other local name already bound before it; an assignment
    target only where its name was bound before too (so that the edit can be undone)."""
    scope = _enclosing_scope(node)
    if scope.id not in scopes:
        scopes[scope.id] = _scope_names(scope)
    names = scopes[scope.id]
    old = _text(node)
    if old not in names or (target and names[old] >= node.start_byte):
        return
    for new, bound_at in names.items():
        if new != old and bound_at < node.start_byte:
            yield _site(node, new, "wrong_variable", f"use {new} instead of {old}")


def _sites(tree: Tree, lo: int, hi: int) -> list[_Site]:
    """Every operator site whose replaced range lies in [lo, hi)."""
    cursor = QueryCursor(_QUERY)
    cursor.set_byte_range(lo, hi)
    found: list[_Site] = []
    scopes: dict[int, dict[str, int]] = {}
    for _, captures in cursor.matches(tree.root_node):
        for capture, nodes in captures.items():
            for node in nodes:
                found.extend(_sites_for(capture, node, scopes))
    return [s for s in found if lo <= s.start and s.end <= hi]


def _sites_for(capture: str, node: Node, scopes: dict[int, dict[str, int]]) -> Iterable[_Site]:
    """The sites one query capture offers."""
    if capture == "comparison":
        return [
            *_swaps(node, _COMPARISON, "comparison"),
            *_swaps(node, {k: (v,) for k, v in _NEGATED_OPERATOR.items()}, "negation"),
            *_swaps(node, {k: (v,) for k, v in _IS_EQ.items()}, "is_eq"),
        ]
    if capture == "arithmetic":
        return _swaps(node, _ARITHMETIC, "arithmetic")
    if capture == "augmented":
        table = {f"{k}=": tuple(f"{x}=" for x in v) for k, v in _ARITHMETIC.items()}
        return _swaps(node, table, "arithmetic")
    if capture == "range_args":
        return [s for arg in _positional(node)[:2] for s in _off_by_one(arg, "range bound")]
    if capture == "index":
        return _off_by_one(node, "index")
    if capture == "slice":
        return [s for bound in _slice_bounds(node) for s in _off_by_one(bound, "slice bound")]
    if capture == "condition":
        return _negate(node)
    if capture == "ternary":
        return _negate(node.named_children[1]) if node.named_child_count == 3 else ()
    if capture == "not":
        return _remove_not(node)
    if capture == "boolean":
        new = {"and": "or", "or": "and"}.get(_text(node))
        return [_site(node, new, "and_or", f"swap {_text(node)} for {new}")] if new else []
    if capture == "arguments":
        args = _positional(node)
        if len(args) < 2 or _text(args[0]) == _text(args[1]):
            return []
        first, second = args[0], args[1]
        middle = node.text[first.end_byte - node.start_byte : second.start_byte - node.start_byte]
        replacement = _text(second) + middle.decode() + _text(first)
        call = node.parent.child_by_field_name("function") if node.parent is not None else None
        name = f" of {_short(_text(call))}" if call is not None else ""
        title = f"swap arguments {_short(_text(first), 15)} and {_short(_text(second), 15)}{name}"
        return [
            _Site(
                first.start_byte,
                second.end_byte,
                replacement,
                "swap_args",
                f"{title} on line {first.start_point.row + 1}",
                first.start_point.row + 1,
            )
        ]
    if capture in ("returned", "assigned"):
        return [
            s
            for ident in _value_identifiers(node)
            for s in _wrong_variable(ident, scopes, target=False)
        ]
    if capture == "target":
        return _wrong_variable(node, scopes, target=True)
    if capture == "constant":
        new = _CONSTANT.get(_text(node))
        return [_site(node, new, "constant", f"swap {_text(node)} for {new}")] if new else []
    return []


def _is_word(byte: int) -> bool:
    return chr(byte).isalnum() or byte == ord("_") or byte >= 0x80


def _padded(data: bytes, site: _Site) -> _Site:
    """The site with a space added where its replacement would fuse with a neighbouring word."""
    text = site.replacement
    if text and site.start > 0 and _is_word(data[site.start - 1]) and _is_word(ord(text[0])):
        text = " " + text
    if text and site.end < len(data) and _is_word(data[site.end]) and _is_word(ord(text[-1])):
        text = text + " "
    return site if text == site.replacement else replace(site, replacement=text)


def _point_after(text: bytes, start_point: Point) -> Point:
    """The (row, column) reached after inserting ``text`` at ``start_point``."""
    rows = text.count(b"\n")
    if rows:
        return Point(start_point.row + rows, len(text) - text.rfind(b"\n") - 1)
    return Point(start_point.row, start_point.column + len(text))


def _point_of(data: bytes, offset: int) -> Point:
    row = data.count(b"\n", 0, offset)
    return Point(row, offset - (data.rfind(b"\n", 0, offset) + 1))


def _parses(tree: Tree, data: bytes, site: _Site, new: bytes, lo: int, hi: int) -> bool:
    """Whether the edited source has no syntax error (within [lo, hi) if the original had one)."""
    replacement = site.replacement.encode()
    start_point = _point_of(data, site.start)
    edited = tree.copy()
    edited.edit(
        start_byte=site.start,
        old_end_byte=site.end,
        new_end_byte=site.start + len(replacement),
        start_point=start_point,
        old_end_point=_point_of(data, site.end),
        new_end_point=_point_after(replacement, start_point),
    )
    root = parse_bytes(new, edited).root_node
    if not tree.root_node.has_error:
        return not root.has_error
    delta = len(replacement) - (site.end - site.start)
    return not has_error_in(root, lo, hi + delta)


def _standalone_edits(
    data: bytes, lo: int, hi: int, cap: int, operators: Iterable[str] | None
) -> list[OperatorEdit]:
    """Edits of a unit that the whole file's parse swallowed into an error: computed on the
    unit's text alone (when that parses) and put back in place."""
    unit = data[lo:hi].decode()
    if parse(unit).root_node.has_error:
        return []
    shift = data.count(b"\n", 0, lo)
    out = []
    for edit in operator_edits(unit, cap=cap, operators=operators):
        line = edit.line + shift
        title = f"{edit.title.rsplit(' on line ', 1)[0]} on line {line}"
        new = data[:lo] + edit.source.encode() + data[hi:]
        out.append(OperatorEdit(edit.operator, line, title, new.decode()))
    return out


def operator_edits(
    source: str,
    start_byte: int = 0,
    end_byte: int | None = None,
    cap: int = 200,
    operators: Iterable[str] | None = None,
) -> list[OperatorEdit]:
    """Every single-site operator edit within the byte range [start_byte, end_byte).

    Results are deduplicated by resulting source (the original excluded), each parses without
    ERROR/MISSING nodes (the range's text alone when the file has syntax errors), ordered by
    site position then operator family, and capped at ``cap``.  ``operators`` restricts the
    families (default: all of :data:`OPERATORS`).
    """
    data = source.encode()
    hi = len(data) if end_byte is None else min(end_byte, len(data))
    tree = parse(source)
    if end_byte is not None and has_error_in(tree.root_node, start_byte, hi):
        return _standalone_edits(data, start_byte, hi, cap, operators)
    allowed = set(OPERATORS if operators is None else operators)
    rank = {name: i for i, name in enumerate(OPERATORS)}
    sites = sorted(
        (s for s in _sites(tree, start_byte, hi) if s.operator in allowed),
        key=lambda s: (s.start, s.end, rank[s.operator], s.replacement),
    )
    seen = {data}
    edits: list[OperatorEdit] = []
    for site in (_padded(data, s) for s in sites):
        if len(edits) >= cap:
            break
        new = data[: site.start] + site.replacement.encode() + data[site.end :]
        if new in seen:
            continue
        seen.add(new)
        if _parses(tree, data, site, new, start_byte, hi):
            edits.append(OperatorEdit(site.operator, site.line, site.title, new.decode()))
    return edits
