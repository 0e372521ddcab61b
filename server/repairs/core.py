"""What every repair family shares: the site and edit types, node helpers, and the facts about
a function's scope that the families draw their replacements from.

A *site* is a byte-range replacement of the source proposed by one family; an *edit* is the
whole new source after one site.  Each site carries a ``rank``: 0 for a family's first choice
at that node, higher for later alternatives (the candidate budget takes low ranks first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from tree_sitter import Node


@dataclass(frozen=True)
class Site:
    """A byte-range replacement proposed by one family at one node."""

    start: int
    end: int
    replacement: str
    family: str
    title: str
    line: int
    rank: int = 0


@dataclass(frozen=True)
class RepairEdit:
    """One single-site edit: family, 1-based line, title, the whole new source, and its rank
    among the family's alternatives at that site (0 first)."""

    family: str
    line: int
    title: str
    source: str
    rank: int = 0


@dataclass(frozen=True)
class Rule:
    """A family's generator: the node types it looks at and the sites it proposes at one."""

    families: tuple[str, ...]
    node_types: frozenset[str]
    sites: Callable[[Node, Context], Iterable[Site]]


NESTED_SCOPES = frozenset({"function_definition", "class_definition", "lambda"})
CONDITION_PARENTS = frozenset({"if_statement", "elif_clause", "while_statement", "if_clause"})
NO_PARENS = frozenset(
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
        "tuple",
        "dictionary",
        "set",
        "list_comprehension",
        "generator_expression",
    }
)
"""Expression types that need no parentheses as the operand of ``+``/``-`` or ``not``."""
TIGHT_BINARY = frozenset({"*", "/", "//", "%", "@", "**"})
"""Binary operators that bind tighter than ``+``/``-`` (their result needs no parentheses)."""
LOOSE = frozenset({"boolean_operator", "conditional_expression", "lambda", "named_expression"})
"""Expression types that need parentheses after ``not`` or beside ``and``/``or``."""


def text(node: Node) -> str:
    """The node's source text."""
    return node.text.decode() if node.text is not None else ""


def short(value: str, width: int = 30) -> str:
    """``value`` on one line, cut to ``width`` characters for a title."""
    value = " ".join(value.split())
    return value if len(value) <= width else value[: width - 3] + "..."


def site(node: Node, replacement: str, family: str, title: str, rank: int = 0) -> Site:
    """A site replacing ``node``; the title gets the node's line."""
    line = node.start_point.row + 1
    return Site(
        node.start_byte, node.end_byte, replacement, family, f"{title} on line {line}", line, rank
    )


def operand(node: Node) -> str:
    """``node``'s text, parenthesised when it would not bind as an operand of ``+``/``-``."""
    if node.type == "binary_operator":
        op = node.child_by_field_name("operator")
        if op is not None and text(op) in TIGHT_BINARY:
            return text(node)
    return text(node) if node.type in NO_PARENS else f"({text(node)})"


def tight(node: Node) -> str:
    """``node``'s text, parenthesised unless it is atomic (operand of ``*``, ``**``, ``[...]``)."""
    return text(node) if node.type in NO_PARENS - {"unary_operator"} else f"({text(node)})"


def int_value(node: Node) -> int | None:
    """The value of an integer literal or a negated one, else None."""
    if node.type == "unary_operator":
        op, argument = node.child_by_field_name("operator"), node.child_by_field_name("argument")
        if op is not None and argument is not None and text(op) == "-":
            value = int_value(argument)
            return None if value is None else -value
        return None
    if node.type != "integer":
        return None
    try:
        return int(text(node), 0)
    except ValueError:
        return None


def positional(arguments: Node) -> list[Node]:
    """The leading positional arguments of an argument list."""
    out = []
    for child in arguments.named_children:
        if child.type in ("keyword_argument", "list_splat", "dictionary_splat", "comment"):
            break
        out.append(child)
    return out


def call_name(call: Node) -> str:
    """The called name of a call node (``f`` of ``f(x)``, ``append`` of ``xs.append(x)``)."""
    function = call.child_by_field_name("function")
    if function is None:
        return ""
    if function.type == "attribute":
        attribute = function.child_by_field_name("attribute")
        return text(attribute) if attribute is not None else ""
    return text(function) if function.type == "identifier" else ""


def is_read(node: Node) -> bool:
    """Whether an identifier is read as a value (not a called name, attribute name, keyword,
    assignment or loop target, parameter or the name of a definition)."""
    parent = node.parent
    if parent is None:
        return False
    kind = parent.type
    if kind == "call":
        return parent.child_by_field_name("function") != node
    if kind == "attribute":
        return parent.child_by_field_name("object") == node
    if kind == "keyword_argument":
        return parent.child_by_field_name("value") == node
    if kind in ("assignment", "augmented_assignment", "for_statement", "for_in_clause"):
        return parent.child_by_field_name("left") != node
    if kind in (
        "parameters",
        "default_parameter",
        "typed_parameter",
        "lambda_parameters",
        "function_definition",
        "class_definition",
        "pattern_list",
        "tuple_pattern",
        "dotted_name",
        "aliased_import",
        "global_statement",
        "nonlocal_statement",
        "as_pattern_target",
        "typed_default_parameter",
    ):
        return kind == "default_parameter" and parent.child_by_field_name("value") == node
    return True


def enclosing_scope(node: Node) -> Node:
    """The innermost function (or the module) around ``node``."""
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


_INT_CALLS = frozenset({"len", "int", "ord", "sum", "abs", "round", "count", "index", "find"})
_SEQUENCE_CALLS = frozenset({"len", "sorted", "reversed", "enumerate", "set", "list", "max", "min"})


@dataclass
class Scope:
    """Facts about one function (or module) for the families' replacement sets.

    ``names`` maps each local name to the byte offset where it is first bound (parameters at
    their own position, targets after their value); ``comprehension`` holds the variables of
    comprehensions with the byte range where each is visible; ``ints`` are names that hold integers by
    their use (an ``int``-valued assignment, a ``range`` loop target, an index, a ``range``
    bound); ``sequences`` are names that are indexed, sliced, iterated or measured by ``len``;
    ``lists`` are names assigned a list display; ``attributes`` are the attribute names read
    without a call; ``literals`` the return values written as literals.
    """

    names: dict[str, int] = field(default_factory=dict)
    comprehension: list[tuple[str, int, int]] = field(default_factory=list)
    ints: set[str] = field(default_factory=set)
    sequences: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    attributes: list[str] = field(default_factory=list)
    literals: list[str] = field(default_factory=list)

    def before(self, offset: int, exclude: str = "") -> list[str]:
        """Names visible at ``offset``: comprehension variables around it (the innermost
        first), then the names bound before it (the nearest binding first)."""
        inner = [(start, n) for n, start, end in self.comprehension if start <= offset < end]
        found = [(at, n) for n, at in self.names.items() if at < offset]
        ordered = [n for _, n in sorted(inner, reverse=True)]
        ordered += [n for _, n in sorted(found, reverse=True) if n not in ordered]
        return [n for n in ordered if n != exclude]

    def visible(self, name: str, offset: int) -> bool:
        """Whether ``name`` is a local or a comprehension variable visible at ``offset``."""
        return name in self.names or any(
            n == name and start <= offset < end for n, start, end in self.comprehension
        )


def _int_expression(node: Node, ints: set[str]) -> bool:
    """Whether an expression evidently holds an integer."""
    if node.type == "integer" or (node.type == "identifier" and text(node) in ints):
        return True
    if node.type == "call":
        return call_name(node) in _INT_CALLS
    if node.type == "binary_operator":
        op = node.child_by_field_name("operator")
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        if op is not None and text(op) in ("//", "%"):
            return True
        return bool(
            op is not None
            and text(op) in ("+", "-", "*")
            and left is not None
            and right is not None
            and _int_expression(left, ints)
            and _int_expression(right, ints)
        )
    if node.type == "parenthesized_expression" and node.named_child_count == 1:
        return _int_expression(node.named_children[0], ints)
    return False


def scope_facts(scope: Node) -> Scope:
    """The :class:`Scope` of a function (or module) node, nested scopes left out."""
    facts = Scope()

    def bind(target: Node, at: int) -> None:
        for ident in _bound_names(target):
            facts.names.setdefault(text(ident), at)

    parameters = scope.child_by_field_name("parameters")
    if parameters is not None:
        for parameter in parameters.named_children:
            bind(parameter, parameter.start_byte)
    body = scope.child_by_field_name("body") if scope.type == "function_definition" else scope
    nodes: list[Node] = []
    stack = list(reversed(body.named_children)) if body is not None else []
    while stack:
        node = stack.pop()
        if node.type in NESTED_SCOPES:
            continue
        nodes.append(node)
        if node.type in ("assignment", "augmented_assignment", "for_statement"):
            target, value = node.child_by_field_name("left"), node.child_by_field_name("right")
            if target is not None:
                bind(target, (value or target).end_byte)
        elif node.type == "as_pattern_target":
            bind(node.named_children[0], node.end_byte)
        elif node.type == "for_in_clause" and node.parent is not None:
            target = node.child_by_field_name("left")
            for ident in _bound_names(target) if target is not None else ():
                span = (text(ident), node.parent.start_byte, node.parent.end_byte)
                facts.comprehension.append(span)
        stack.extend(reversed(node.named_children))
    for _ in range(2):  # ints flow through one more assignment on the second pass
        for node in nodes:
            _learn(node, facts)
    return facts


def _learn(node: Node, facts: Scope) -> None:
    """Add what one node tells about the kinds of the names it uses."""
    kind = node.type
    if kind in ("assignment", "augmented_assignment"):
        target, value = node.child_by_field_name("left"), node.child_by_field_name("right")
        if target is not None and target.type == "identifier" and value is not None:
            if _int_expression(value, facts.ints):
                facts.ints.add(text(target))
            elif value.type in ("list", "list_comprehension"):
                facts.lists.add(text(target))
                facts.sequences.add(text(target))
    elif kind == "for_statement":
        target, value = node.child_by_field_name("left"), node.child_by_field_name("right")
        if value is not None and value.type == "identifier":
            facts.sequences.add(text(value))
        ranged = value is not None and value.type == "call" and call_name(value) == "range"
        if target is not None and target.type == "identifier" and ranged:
            facts.ints.add(text(target))
    elif kind == "binary_operator":
        op, left, right = (node.child_by_field_name(f) for f in ("operator", "left", "right"))
        if op is not None and text(op) in ("+", "-") and left is not None and right is not None:
            for name, other in ((left, right), (right, left)):
                if name.type == "identifier" and _int_expression(other, facts.ints):
                    facts.ints.add(text(name))
    elif kind == "subscript":
        value, index = node.child_by_field_name("value"), node.child_by_field_name("subscript")
        if value is not None and value.type == "identifier":
            facts.sequences.add(text(value))
        if index is not None and index.type == "identifier":
            facts.ints.add(text(index))
    elif kind == "call":
        name, arguments = call_name(node), node.child_by_field_name("arguments")
        args = positional(arguments) if arguments is not None else []
        if name == "range":
            facts.ints.update(text(a) for a in args if a.type == "identifier")
        elif name in _SEQUENCE_CALLS and len(args) == 1 and args[0].type == "identifier":
            facts.sequences.add(text(args[0]))
    elif kind == "attribute":
        attribute = node.child_by_field_name("attribute")
        parent = node.parent
        called = parent is not None and parent.type == "call"
        if attribute is not None and not called and text(attribute) not in facts.attributes:
            facts.attributes.append(text(attribute))
    elif kind == "return_statement" and node.named_child_count:
        value = node.named_children[0]
        if (
            value.type
            in (
                "list",
                "integer",
                "true",
                "false",
                "none",
                "string",
                "tuple",
                "dictionary",
                "float",
            )
            and text(value) not in facts.literals
        ):
            facts.literals.append(text(value))


class Context:
    """Per-call state shared by the families: the source bytes and cached scope facts."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._scopes: dict[int, Scope] = {}

    def scope(self, node: Node) -> Scope:
        """The facts of the function (or module) enclosing ``node``."""
        owner = enclosing_scope(node)
        if owner.id not in self._scopes:
            self._scopes[owner.id] = scope_facts(owner)
        return self._scopes[owner.id]
